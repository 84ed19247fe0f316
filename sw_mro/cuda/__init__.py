"""CuPy CUDA kernels (sources compiled with NVRTC) and torch interop."""

from __future__ import annotations

import functools


@functools.cache
def cupy_available() -> bool:
    """True when CuPy imports and sees a CUDA device (checked once per process)."""
    try:
        import cupy
    except Exception:  # any import failure (missing wheel, driver mismatch) means "no"
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # cupy present but no driver or device
        return False
