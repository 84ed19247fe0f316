"""Batched Farneback dense optical flow with the exact semantics of OpenCV.

``farneback(prev, next)`` returns what ``cv2.calcOpticalFlowFarneback(prev, next, None,
pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags)`` returns, for a
whole batch at once and on any torch device: ``flow[:, 0]`` is dx and ``flow[:, 1]``
is dy, with ``prev(y, x) ~ next(y + dy, x + dx)`` (SPEC.md section 2).

``farneback_pairs(frames, ref_idx, tgt_idx)`` computes each frame's pyramid and
polynomial expansion once and shares them between all the pairs that use the frame,
which is where SW-MRO's speed comes from (every frame is in up to 2 (w - 1) pairs).

Backends (``backend=``):

- ``"torch"``: batched PyTorch (``sw_mro.ops._farneback_torch``), any device.
- ``"cupy"``: fused CUDA kernels (``sw_mro.cuda.farneback``) on CUDA tensors.
- ``"numba"``: CPU only; the torch per-frame expansion, then a numba-compiled per-pair
  solver (``sw_mro.ops._farneback_numba``: fused row passes, ``prange`` over pairs on
  ``torch.get_num_threads()`` threads). Compiled once per machine (numba's cache).
- ``"native"``: CPU only; per-frame expansion and per-pair solver in C++
  (``sw_mro/ops/farneback_cpu.cpp``, AVX-512 or AVX2 gathers where the CPU has them).
  The solver is bit-equal to ``"numba"``'s on the same expansions and about 2x faster.
  Built on first use with the system C++ compiler and cached
  (``sw_mro.ops._farneback_native``).
- ``"opencv"``: ``cv2.calcOpticalFlowFarneback`` per pair in a thread pool of
  ``torch.get_num_threads()`` workers; CPU tensors only. No sharing is possible.
- ``"auto"``: CUDA input -> ``"cupy"`` when CuPy imports, else ``"torch"`` (with a
  one-time warning). CPU input -> ``"native"`` when it builds (the fastest on CPU as
  measured; docs/farneback.md), else :data:`CPU_AUTO_BACKEND` (``"numba"``). Other
  devices -> ``"torch"``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

import numpy as np
import torch

from sw_mro.ops import _farneback_torch as _ft
from sw_mro.ops._farneback_torch import FarnebackParams
from sw_mro.ops.checks import as_tensor, gray_batch, index_vector

Backend = Literal["auto", "torch", "cupy", "opencv", "numba", "native"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "cupy", "opencv", "numba", "native")

#: Backend that ``"auto"`` picks for CPU tensors when ``"native"`` (the C++ solver, about
#: twice the numba solver's speed, bit-equal to it) cannot be built here. Measured with
#: benchmarks/bench_farneback.py (docs/farneback.md), SW-MRO pattern: the numba solver on shared expansions runs
#: 1.3-1.65x the pairs/s of the cv2 thread pool (128 and 256 px, 1 and 2 threads, same
#: process, 2 shared cores), while torch's op-by-op CPU path does not beat it (about 0.7x
#: per core). The first numba call on a machine compiles (~9 s), later ones load numba's
#: cache (~0.35 s).
CPU_AUTO_BACKEND: Literal["torch", "opencv", "numba"] = "numba"

#: Memory budget (bytes) of one batch of pairs when ``max_batch`` is not given.
BATCH_BYTES = {"cpu": 256 * 2**20, "cuda": 2 * 2**30}
#: float32 values held per full-resolution pixel per pair of a batch, by engine: the
#: torch engine on CPU keeps only flows per pair (its work buffers are per chunk of
#: CHUNK_PIXELS); on CUDA it works on the whole batch at once (about 50 planes); the
#: cupy engine keeps flow, M and the blurred M.
_FLOATS_PER_PIXEL = {"torch-cpu": 8, "torch-cuda": 56, "cupy": 16}

_warned_no_cupy = False
T = TypeVar("T")
R = TypeVar("R")

__all__ = ["BACKENDS", "CPU_AUTO_BACKEND", "FarnebackParams", "farneback", "farneback_pairs"]


def farneback(
    prev: torch.Tensor,
    next: torch.Tensor,  # shadows the builtin on purpose: cv2's and the issue's name
    *,
    pyr_scale: float = 0.5,
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 5,
    poly_n: int = 7,
    poly_sigma: float = 1.5,
    gaussian: bool = False,
    init_flow: torch.Tensor | None = None,
    backend: Backend = "auto",
    max_batch: int | None = None,
) -> torch.Tensor:
    """Dense optical flow from ``prev`` to ``next``, as ``cv2.calcOpticalFlowFarneback``.

    Args:
        prev: grayscale ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)``, uint8 or float in
            0..255, on CPU or CUDA (numpy arrays are accepted too).
        next: same shape and device as ``prev``.
        pyr_scale, levels, winsize, iterations, poly_n, poly_sigma: OpenCV's parameters.
        gaussian: ``OPTFLOW_FARNEBACK_GAUSSIAN`` (Gaussian instead of box window).
        init_flow: ``OPTFLOW_USE_INITIAL_FLOW``: ``(B, 2, H, W)`` (or ``(2, H, W)``).
        backend: ``"auto"``, ``"torch"``, ``"cupy"``, ``"opencv"``, ``"numba"`` or
            ``"native"`` (CPU).
        max_batch: pairs solved at once (memory bound); default from :data:`BATCH_BYTES`.

    Returns:
        ``(B, 2, H, W)`` float32 on the input's device; channel 0 dx, channel 1 dy.

    Examples:
        >>> prev = torch.rand(64, 64) * 255
        >>> next = torch.roll(prev, shifts=1, dims=1)
        >>> farneback(prev, next, backend="torch").shape
        torch.Size([1, 2, 64, 64])
    """
    p = gray_batch(prev, "prev")
    n = gray_batch(next, "next")
    if p.shape != n.shape:
        raise ValueError(
            f"prev and next must have the same shape; got {tuple(p.shape)} and {tuple(n.shape)}"
        )
    if p.device != n.device:
        raise ValueError(f"prev is on {p.device} but next is on {n.device}; move both to one")
    b = p.shape[0]
    frames = torch.cat([p, n]) if p.dtype == n.dtype else torch.cat([p.float(), n.float()])
    frames = frames[:, None]  # (2B, 1, H, W): narrow frames are not taken for (H, W, C)
    idx = torch.arange(b, device=p.device)
    return farneback_pairs(
        frames,
        idx,
        idx + b,
        pyr_scale=pyr_scale,
        levels=levels,
        winsize=winsize,
        iterations=iterations,
        poly_n=poly_n,
        poly_sigma=poly_sigma,
        gaussian=gaussian,
        init_flow=init_flow,
        backend=backend,
        max_batch=max_batch,
    )


def farneback_pairs(
    frames: torch.Tensor,
    ref_idx: torch.Tensor,
    tgt_idx: torch.Tensor,
    *,
    pyr_scale: float = 0.5,
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 5,
    poly_n: int = 7,
    poly_sigma: float = 1.5,
    gaussian: bool = False,
    init_flow: torch.Tensor | None = None,
    backend: Backend = "auto",
    max_batch: int | None = None,
    check_indices: bool = True,
) -> torch.Tensor:
    """Flows of many pairs of frames, sharing each frame's pyramid and expansion.

    Pair ``i`` is ``frames[ref_idx[i]] -> frames[tgt_idx[i]]``; any index pattern is
    allowed (repeats, ``ref == tgt``, unsorted). The result equals calling
    :func:`farneback` on each pair.

    Args:
        frames: ``(F, H, W)`` or ``(F, 1, H, W)``, uint8 or float in 0..255.
        ref_idx, tgt_idx: ``(P,)`` integer indices into ``frames``.
        init_flow: optional ``(P, 2, H, W)`` initial flows (``OPTFLOW_USE_INITIAL_FLOW``).
        max_batch: pairs solved at once. Memory: the expansions of all F frames stay
            resident (about 7 float32 per pixel per frame), plus per pair of a batch
            8 (torch on CPU), 16 (cupy) or 56 (torch on CUDA) float32 per pixel (numba,
            native and opencv: not used; the output plus ~14 float32 per pixel per
            thread). Default:
            as many as fit :data:`BATCH_BYTES` (CPU: split over the worker threads).
        check_indices: check that every index is in range (default). On a GPU the check
            is a device sync; ``False`` skips it for indices that are known to be valid
            (out-of-range indices are then undefined behaviour).
        Other arguments: as :func:`farneback`.

    Returns:
        ``(P, 2, H, W)`` float32 on the frames' device.
    """
    f = gray_batch(frames, "frames")
    params = _check_params(pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, gaussian)
    name = _resolve_backend(backend, f.device)
    ref = index_vector(ref_idx, "ref_idx", f.shape[0], f.device, check=check_indices)
    tgt = index_vector(tgt_idx, "tgt_idx", f.shape[0], f.device, check=check_indices)
    if ref.numel() != tgt.numel():
        raise ValueError(
            f"ref_idx and tgt_idx must have the same length; got {ref.numel()} and {tgt.numel()}"
        )
    height, width = f.shape[-2:]
    if 5 < min(height, width) < 10:  # found in review: 0.19-1.3 px mean from cv2
        raise ValueError(
            f"frames of {width}x{height} px are not supported: below 10 px a side OpenCV's "
            "border test wraps around (unsigned arithmetic) and leaves some border pixels "
            "unweighted, which this port does not copy; use frames of at least 10 px a side"
        )
    init = _check_init_flow(init_flow, ref.numel(), height, width, f.device)
    if max_batch is not None and (not _is_int(max_batch) or max_batch < 1):  # not True
        raise ValueError(f"max_batch must be a positive int or None; got {max_batch!r}")
    if ref.numel() == 0:
        return torch.zeros(0, 2, height, width, device=f.device, dtype=torch.float32)
    if name == "opencv":
        return _opencv_pairs(f, ref, tgt, params, init)
    if name == "numba":
        return _numba_pairs(f, ref, tgt, params, init)
    if name == "native":
        return _native_pairs(f, ref, tgt, params, init)
    if name == "cupy":
        from sw_mro.cuda import farneback as engine
    else:
        engine = _ft
    pairs = ref.numel()
    workers = _cpu_workers(f.device, pairs)
    batch = int(max_batch) if max_batch else _auto_batch(height, width, f.device, name, workers)
    batch = min(batch, -(-pairs // workers))  # at least one batch per worker
    expansions = _shared_expansions(f.float(), params, engine, workers)
    out = torch.empty(pairs, 2, height, width, device=f.device, dtype=torch.float32)

    def solve(sl: slice) -> None:
        out[sl] = engine.solve_pairs(
            expansions, ref[sl], tgt[sl], params, None if init is None else init[sl]
        )

    _parallel_map(solve, [slice(s, s + batch) for s in range(0, pairs, batch)], workers)
    return out


# --------------------------------------------------------------------------- helpers


def _is_int(v: object) -> bool:
    """An int or a numpy integer, not a bool (``True`` is not a count or a batch size)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_params(
    pyr_scale: float,
    levels: int,
    winsize: int,
    iterations: int,
    poly_n: int,
    poly_sigma: float,
    gaussian: bool,
) -> FarnebackParams:
    def is_real(v: object) -> bool:  # numpy scalars too (found in review: np.float32(0.5))
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

    if not is_real(pyr_scale) or not 0 < pyr_scale < 1:
        raise ValueError(f"pyr_scale must be in (0, 1) (0.5 halves each level); got {pyr_scale!r}")
    if not _is_int(levels) or levels < 0:
        raise ValueError(f"levels must be an int >= 0 (0 = no pyramid); got {levels!r}")
    if not _is_int(winsize) or winsize < 1:
        raise ValueError(f"winsize must be an int >= 1 (e.g. 15); got {winsize!r}")
    if not _is_int(iterations) or iterations < 1:
        raise ValueError(f"iterations must be an int >= 1 (e.g. 5); got {iterations!r}")
    if not _is_int(poly_n) or poly_n not in (5, 7):
        raise ValueError(f"poly_n must be 5 or 7; got {poly_n!r}")
    if not is_real(poly_sigma) or not math.isfinite(poly_sigma) or poly_sigma <= 0:
        raise ValueError(
            f"poly_sigma must be a positive number (1.1 for poly_n=5, 1.5 for 7); got {poly_sigma!r}"
        )
    if not isinstance(gaussian, (bool, np.bool_)):
        raise ValueError(f"gaussian must be True or False; got {gaussian!r}")
    if winsize == 1 and not gaussian:  # found in review: 0.08-4 px mean from cv2
        raise ValueError(
            "winsize 1 with the box window is not supported: OpenCV's running sums then add "
            "the first row and column to every pixel's window, which this port does not copy; "
            "use winsize >= 2, or gaussian=True"
        )
    return FarnebackParams(
        float(pyr_scale), int(levels), int(winsize), int(iterations), int(poly_n),
        float(poly_sigma), bool(gaussian),
    )  # fmt: skip


def _check_init_flow(
    init_flow: torch.Tensor | None, pairs: int, height: int, width: int, device: torch.device
) -> torch.Tensor | None:
    if init_flow is None:
        return None
    t = as_tensor(init_flow, "init_flow")
    if t.dim() == 3:
        t = t[None]
    if t.shape != (pairs, 2, height, width):
        raise ValueError(
            f"init_flow must have shape {(pairs, 2, height, width)} (pairs, dx/dy, H, W); "
            f"got {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        raise ValueError(f"init_flow must be floating point; got {t.dtype}")
    if t.device != device:
        raise ValueError(f"init_flow is on {t.device} but the images are on {device}")
    return t.float()


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that ``backend`` (``"auto"`` or a name) means for tensors on ``device``."""
    return _resolve_backend(backend, device)


def _resolve_backend(backend: str, device: torch.device) -> str:
    global _warned_no_cupy
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    cuda = device.type == "cuda"
    if backend == "cupy" and not cuda:
        raise ValueError(
            f"backend='cupy' needs CUDA tensors; the images are on {device}. "
            "Move them with .cuda() or use backend='torch'."
        )
    if backend in ("opencv", "numba", "native") and device.type != "cpu":
        raise ValueError(
            f"backend={backend!r} runs on CPU tensors; the images are on {device}. "
            "Use backend='cupy' or 'torch' on the GPU, or move them with .cpu()."
        )
    if backend != "auto":
        return backend
    if not cuda:
        if device.type != "cpu":
            return "torch"
        return "native" if native_available() else CPU_AUTO_BACKEND
    from sw_mro.cuda import cupy_status

    usable, why = cupy_status()
    if usable:
        return "cupy"
    if not _warned_no_cupy:
        _warned_no_cupy = True
        hint = "; install cupy-cuda13x (or cupy-cuda12x)" if "not importable" in why else ""
        warnings.warn(
            f"{why}, so farneback uses the slower torch backend on CUDA{hint}.",
            RuntimeWarning,
            stacklevel=3,
        )
    return "torch"


def _auto_batch(height: int, width: int, device: torch.device, engine: str, workers: int) -> int:
    cuda = device.type == "cuda"
    budget = BATCH_BYTES["cuda" if cuda else "cpu"] // workers
    key = "cupy" if engine == "cupy" else ("torch-cuda" if cuda else "torch-cpu")
    return max(1, budget // (_FLOATS_PER_PIXEL[key] * 4 * height * width))


def _cpu_workers(device: torch.device, jobs: int) -> int:
    """Worker threads for the torch engine: ``torch.get_num_threads()`` on CPU, else 1."""
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), jobs))


def _split(n: int, parts: int) -> list[slice]:
    step = -(-n // parts)
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def _parallel_map(fn: Callable[[T], R], jobs: list[T], workers: int) -> list[R]:
    """``fn`` over ``jobs`` in ``workers`` threads, each running torch single-threaded.

    The torch engine issues many small ops. Under torch's own intra-op parallelism every
    op ends in an OpenMP barrier, and when the cores are shared with other processes a
    descheduled thread stalls all the others: measured here, 2 intra-op threads ran
    10x slower than 1 (docs/farneback.md). Threads over independent chunks of work, each
    with one intra-op thread, scale like a pool of cv2 calls instead. ``set_num_threads``
    in a worker sets that thread's OpenMP and MKL thread counts; it also changes torch's
    process-wide default, which is restored on the way out.
    """
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    default = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads,
                                initargs=(1,)) as pool:  # fmt: skip
            return list(pool.map(fn, jobs))
    finally:
        torch.set_num_threads(default)


def _opencv_pairs(
    frames: torch.Tensor,
    ref: torch.Tensor,
    tgt: torch.Tensor,
    params: FarnebackParams,
    init: torch.Tensor | None,
) -> torch.Tensor:
    """One ``cv2.calcOpticalFlowFarneback`` per pair, in a thread pool (cv2 drops the GIL)."""
    import cv2

    imgs = frames.numpy() if frames.dtype == torch.uint8 else frames.float().numpy()
    init_np = None if init is None else init.permute(0, 2, 3, 1).numpy()
    flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if params.gaussian else 0
    if init_np is not None:
        flags |= cv2.OPTFLOW_USE_INITIAL_FLOW
    out = np.empty((ref.numel(), frames.shape[-2], frames.shape[-1], 2), dtype=np.float32)
    refs, tgts = ref.tolist(), tgt.tolist()

    def one(i: int) -> None:
        flow = None if init_np is None else np.ascontiguousarray(init_np[i])
        out[i] = cv2.calcOpticalFlowFarneback(
            imgs[refs[i]], imgs[tgts[i]], flow, params.pyr_scale, params.levels,
            params.winsize, params.iterations, params.poly_n, params.poly_sigma, flags,
        )  # fmt: skip

    workers = max(1, min(torch.get_num_threads(), os.cpu_count() or 1, len(refs)))
    if workers == 1:
        for i in range(len(refs)):
            one(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(len(refs))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def native_available() -> bool:
    """Whether the C++ CPU solver (``backend="native"``) is built here; builds it once."""
    from sw_mro.ops import _farneback_native

    return _farneback_native.available()


def _shared_expansions(
    frames32: torch.Tensor, params: FarnebackParams, engine=_ft, workers: int | None = None
) -> list[torch.Tensor]:
    """Every frame's expansions by ``engine`` (torch or cupy), the frames split over
    ``workers`` threads (default: one per frame up to ``torch.get_num_threads()`` on CPU)."""
    if workers is None:
        workers = _cpu_workers(frames32.device, frames32.shape[0])
    if workers > 1:
        groups = _split(frames32.shape[0], workers)
        parts = _parallel_map(lambda g: engine.expand_frames(frames32[g], params), groups, workers)
        return [torch.cat(level) for level in zip(*parts, strict=True)]
    return engine.expand_frames(frames32, params)


def _native_pairs(
    frames: torch.Tensor,
    ref: torch.Tensor,
    tgt: torch.Tensor,
    params: FarnebackParams,
    init: torch.Tensor | None,
) -> torch.Tensor:
    """C++ expansions of every frame, then the C++ per-pair solver, both on
    ``torch.get_num_threads()`` threads (the GIL is released). Memory as
    :func:`_numba_pairs`."""
    from sw_mro.ops import _farneback_native as engine

    expansions = engine.expand_frames(frames.float(), params)
    return engine.solve_pairs(expansions, ref.cpu(), tgt.cpu(), params, init)


def _numba_pairs(
    frames: torch.Tensor,
    ref: torch.Tensor,
    tgt: torch.Tensor,
    params: FarnebackParams,
    init: torch.Tensor | None,
) -> torch.Tensor:
    """Shared torch expansions, then the numba per-pair solver on ``torch.get_num_threads()``
    threads. Memory: the expansions of all frames, the output and per thread about
    14 float32 per full-resolution pixel of work buffers (``max_batch`` is not used)."""
    import numba

    from sw_mro.ops import _farneback_numba as engine

    expansions = _shared_expansions(frames.float(), params)
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        return engine.solve_pairs(expansions, ref.cpu(), tgt.cpu(), params, init)
    finally:
        numba.set_num_threads(before)
