"""torch <-> CuPy interop: zero-copy views and kernels on torch's current stream.

Tensors are shared through DLPack (``cupy.from_dlpack``), so no data is copied, and
every launch happens inside :func:`torch_stream`, which makes torch's current CUDA
stream CuPy's current stream: kernels are ordered with the surrounding torch work
without any synchronisation.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch


def as_cupy(t: torch.Tensor) -> Any:
    """A CuPy array viewing the memory of a contiguous CUDA tensor (no copy)."""
    import cupy

    if t.dtype not in (torch.float32, torch.int64):  # what the kernels take (float*,
        # long long*): a float64 buffer was written as float32 bits (found in review)
        raise TypeError(f"as_cupy needs a float32 or int64 tensor; got {t.dtype}")
    if t.device.type != "cuda":
        raise ValueError(f"as_cupy needs a CUDA tensor; got one on {t.device}")
    if not t.is_contiguous():
        raise ValueError("as_cupy needs a contiguous tensor; call .contiguous() first")
    return cupy.from_dlpack(t.detach())


#: CuPy's view of each torch stream, by (device index, stream handle): made once, since
#: building one per launch costs host time (and ``ExternalStream`` warns each time).
_STREAMS: dict[tuple[int, int], Any] = {}


def _cupy_stream(stream: torch.cuda.Stream, index: int) -> Any:
    import cupy

    key = (index, int(stream.cuda_stream))
    found = _STREAMS.get(key)
    if found is None:
        try:  # CuPy >= 14: the CUDA stream protocol (keeps the torch stream alive)
            found = cupy.cuda.Stream.from_external(stream)
        except (AttributeError, TypeError):  # older CuPy or torch: the raw handle
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                found = cupy.cuda.ExternalStream(stream.cuda_stream, index)
        _STREAMS[key] = found
    return found


@contextlib.contextmanager
def torch_stream(device: torch.device) -> Iterator[None]:
    """Run CuPy launches on torch's current stream of ``device``."""
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(index)
    with cupy.cuda.Device(index), _cupy_stream(stream, index):
        yield
