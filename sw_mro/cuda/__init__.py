"""CuPy CUDA kernels (sources compiled with NVRTC) and torch interop."""
