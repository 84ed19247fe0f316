"""CuPy CUDA kernels (sources compiled with NVRTC) and torch interop."""

from __future__ import annotations

import functools

#: How to get NVRTC, which CuPy needs to build the kernels at run time.
NVRTC_HINT = (
    "install NVRTC for your CUDA version: pip install nvidia-cuda-nvrtc (CUDA 13, with "
    "cupy-cuda13x; `pip install .[gpu]` does it) or nvidia-cuda-nvrtc-cu12 (with "
    "cupy-cuda12x), or a CUDA toolkit"
)


@functools.cache
def cupy_status() -> tuple[bool, str]:
    """``(usable, why not)``: CuPy imports, sees a CUDA device and builds this package's
    kernels (checked once per process). CuPy builds kernels with NVRTC at run time, so a
    machine with a driver but no NVRTC library imports CuPy fine and fails at the first
    kernel; that is found here, before any video is read."""
    try:
        import cupy
    except Exception as exc:  # any import failure (missing wheel, driver mismatch) means "no"
        return False, f"CuPy is not importable ({type(exc).__name__}: {exc})"
    try:
        if cupy.cuda.runtime.getDeviceCount() <= 0:
            return False, "CuPy sees no CUDA device"
    except Exception as exc:  # cupy present but no driver or device, or a driver too old
        return False, f"CuPy sees no CUDA device ({type(exc).__name__}: {exc})"
    try:
        from sw_mro.cuda.farneback import KERNELS, _module

        _module().get_function(KERNELS[0])
    except Exception as exc:
        from sw_mro.errors import one_line

        return False, (
            f"CuPy cannot build the CUDA kernels ({type(exc).__name__}: {one_line(exc)}); "
            f"{NVRTC_HINT}"
        )
    return True, ""


def cupy_available() -> bool:
    """True when CuPy imports, sees a CUDA device and builds the kernels (see
    :func:`cupy_status` for the reason when not)."""
    return cupy_status()[0]
