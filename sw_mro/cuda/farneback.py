"""Farneback on CUDA tensors with fused CuPy kernels (``farneback.cu``).

The same two halves as the torch engine (``sw_mro.ops._farneback_torch``), with the
same data layouts, so the dispatcher in ``sw_mro.ops.farneback`` can use either:

- :func:`expand_frames`: pyramid levels with torch ops (smoothing and resize), then the
  polynomial expansion in two kernels (vertical pass, horizontal pass + combination).
- :func:`solve_pairs`: per level, one update-matrices kernel, then per iteration one of
  (:data:`SOLVER`):

  - ``"box"`` (the default): one kernel on shared-memory tiles with OpenCV's running
    double sums for the box window (a column sum slid down the tile, prefix sums along
    rows), then the flow solve and the next update-matrices. Gaussian windows use
    ``"tiled"``.
  - ``"tiled"``: one kernel on the same tiles with direct sums (float vertical, double
    horizontal), box or Gaussian; the same flows as ``"split"`` to the last bit.
  - ``"split"``: two kernels, the vertical window, then the horizontal window fused with
    the solve and the update. Its vertical taps re-read M from L2 15 times per pixel.

  On an H100 (benchmarks/README.md) ``"tiled"`` ran 1.1-1.2x ``"split"``; it is bound
  by issuing its ~34 warp instructions per pixel, which ``"box"`` cuts to ~10.

Kernels run on torch's current stream and read and write torch tensors in place
(:mod:`sw_mro.cuda._interop`). :func:`compile_ptx` compiles the source with NVRTC
alone, so CI checks it on machines without a GPU.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sw_mro.cuda._interop import as_cupy, torch_stream
from sw_mro.ops._farneback_expand import pyramid_level
from sw_mro.ops._farneback_kernels import (
    FarnebackParams,
    plan_levels,
    poly_kernels,
    window_kernel,
)
from sw_mro.ops._farneback_torch import level_start_flow

SOURCE_PATH = Path(__file__).with_name("farneback.cu")
KERNELS = (
    "fb_poly_rows",
    "fb_poly_cols",
    "fb_update_matrices",
    "fb_blur_rows",
    "fb_blur_cols_solve",
    "fb_iter_tiled",
    "fb_iter_box",
)
NVRTC_OPTIONS = ("--std=c++14",)
_BLOCK = 256
#: The per-iteration kernels: "box" (running sums; Gaussian windows use "tiled"), "tiled"
#: (direct sums on shared-memory tiles) or "split" (two launches).
SOLVER = "box"
SOLVERS = ("box", "tiled", "split")
#: Tile of fb_iter_tiled (FB_TW x FB_TH in farneback.cu), its thread block, and the most
#: dynamic shared memory it may ask for without an opt-in (larger windows use "split").
TILE_W, TILE_H = 32, 16
TILE_BLOCK = (32, 8, 1)
TILE_SHARED_MAX = 48 * 1024
_MAX_GRID_Z = 65535

__all__ = ["KERNELS", "compile_ptx", "expand_frames", "solve_pairs"]


def source() -> str:
    """The CUDA C source of the kernels."""
    return SOURCE_PATH.read_text()


def compile_ptx(arch: str = "compute_90") -> str:
    """Compile the kernels to PTX with NVRTC only (no GPU or driver needed).

    Raises RuntimeError with NVRTC's log if the source does not compile.
    """
    from cupy_backends.cuda.libs import nvrtc

    prog = nvrtc.createProgram(source(), SOURCE_PATH.name, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [*NVRTC_OPTIONS, f"--gpu-architecture={arch}"])
        except nvrtc.NVRTCError as exc:
            log = nvrtc.getProgramLog(prog)
            raise RuntimeError(f"NVRTC failed to compile {SOURCE_PATH}:\n{log}") from exc
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


@functools.cache
def _module() -> Any:
    import cupy

    return cupy.RawModule(code=source(), options=NVRTC_OPTIONS)


def _launch(name: str, count: int, args: tuple) -> None:
    blocks = max(1, -(-count // _BLOCK))
    _module().get_function(name)((blocks,), (_BLOCK,), args)


def _launch_tiles(name: str, grid: tuple[int, int, int], shared: int, args: tuple) -> None:
    _module().get_function(name)(grid, TILE_BLOCK, args, shared_mem=shared)


def tile_shared_bytes(half: int) -> int:
    """Dynamic shared memory of fb_iter_tiled: M around the tile and the vertical sums."""
    ew = TILE_W + 2 * half
    return 4 * 5 * ew * (TILE_H + 2 * half + TILE_H)


def box_shared_bytes(half: int) -> int:
    """Dynamic shared memory of fb_iter_box: double vertical sums of the tile's rows."""
    return 8 * 5 * TILE_H * (TILE_W + 2 * half)


def _i32(v: int) -> np.int32:
    return np.int32(v)


_NULL = np.uint64(0)  # a null pointer argument


@functools.lru_cache(maxsize=16)
def _taps(n: int, sigma: float, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The expansion's one-sided taps g, xg, xxg on the device, uploaded once (a blocking
    upload per call would sync the device)."""
    kern = poly_kernels(n, sigma)
    return tuple(torch.from_numpy(a[n:].copy()).to(device) for a in (kern.g, kern.xg, kern.xxg))


@functools.lru_cache(maxsize=16)
def _window_taps(winsize: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(window_kernel(winsize)).to(device)


def expand_frames(frames: torch.Tensor, params: FarnebackParams) -> list[torch.Tensor]:
    """Per-level expansions of float32 CUDA frames (F, H, W): list of (F, 5, h, w)."""
    n_frames, height, width = frames.shape
    n = params.poly_n
    kern = poly_kernels(n, params.poly_sigma)
    dev = frames.device
    taps = _taps(n, params.poly_sigma, dev)
    out = []
    for level in plan_levels(height, width, params):
        img = pyramid_level(frames, level).contiguous()
        h, w = level.height, level.width
        # float32 whatever torch's default dtype (the kernels take float*; found in
        # review: under set_default_dtype(float64) they wrote into float64 buffers)
        v = torch.empty(n_frames, 3, h, w, device=dev, dtype=torch.float32)
        r = torch.empty(n_frames, 5, h, w, device=dev, dtype=torch.float32)
        with torch_stream(dev):
            kg, kxg, kxxg = (as_cupy(t) for t in taps)
            count = n_frames * h * w
            _launch("fb_poly_rows", count,
                    (as_cupy(img), as_cupy(v), _i32(n_frames), _i32(h), _i32(w), _i32(n),
                     kg, kxg, kxxg))  # fmt: skip
            _launch("fb_poly_cols", count,
                    (as_cupy(v), as_cupy(r), _i32(n_frames), _i32(h), _i32(w), _i32(n),
                     kg, kxg, kxxg, np.float64(kern.ig11), np.float64(kern.ig03),
                     np.float64(kern.ig33), np.float64(kern.ig55)))  # fmt: skip
        out.append(r)
    return out


def solve_pairs(
    expansions: list[torch.Tensor],
    ref_idx: torch.Tensor,
    tgt_idx: torch.Tensor,
    params: FarnebackParams,
    init_flow: torch.Tensor | None = None,
    solver: str | None = None,
) -> torch.Tensor:
    """Flows (P, 2, H, W) of pairs (ref_idx[i] -> tgt_idx[i]) of expanded CUDA frames.

    ``solver``: ``"box"``, ``"tiled"`` or ``"split"`` (default :data:`SOLVER`).
    """
    solver = SOLVER if solver is None else solver
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}; got {solver!r}")
    height, width = expansions[0].shape[-2:]
    dev = expansions[0].device
    pairs = ref_idx.numel()
    ref = ref_idx.to(device=dev, dtype=torch.int64).contiguous()
    tgt = tgt_idx.to(device=dev, dtype=torch.int64).contiguous()
    half = params.winsize // 2
    if params.gaussian:
        kern_t: torch.Tensor | None = _window_taps(params.winsize, dev)
        scale = 1.0
    else:
        kern_t = None
        scale = 1.0 / (params.winsize * params.winsize)  # note 6
    if solver == "box" and params.gaussian:
        solver = "tiled"
    if solver == "box":
        kernel, shared = "fb_iter_box", box_shared_bytes(half)
    else:
        kernel, shared = "fb_iter_tiled", tile_shared_bytes(half)
    tiled = solver != "split" and shared <= TILE_SHARED_MAX
    flow: torch.Tensor | None = None
    for level in reversed(plan_levels(height, width, params)):
        h, w = level.height, level.width
        flow = level_start_flow(flow, level, params, init_flow, pairs, dev).contiguous()
        r = expansions[level.k].contiguous()
        m = torch.empty(pairs, 5, h, w, device=dev, dtype=torch.float32)
        mv = torch.empty_like(m)
        with torch_stream(dev):
            c_r, c_ref, c_tgt = as_cupy(r), as_cupy(ref), as_cupy(tgt)
            c_flow, c_m, c_mv = as_cupy(flow), as_cupy(m), as_cupy(mv)
            c_kern = _NULL if kern_t is None else as_cupy(kern_t)
            px = pairs * h * w
            _launch("fb_update_matrices", px,
                    (c_r, c_ref, c_tgt, c_flow, c_m, _i32(pairs), _i32(h), _i32(w)))  # fmt: skip
            if tiled:  # M ping-pongs between m and mv (a block reads its neighbours' M)
                if pairs <= _MAX_GRID_Z:
                    views = [(pairs, c_m, c_mv, c_flow, c_ref, c_tgt)]
                else:  # grid z is at most 65535: launch the pairs in spans
                    views = [
                        (min(a + _MAX_GRID_Z, pairs) - a,
                         *(as_cupy(t[a : a + _MAX_GRID_Z]) for t in (m, mv, flow, ref, tgt)))
                        for a in range(0, pairs, _MAX_GRID_Z)
                    ]  # fmt: skip
                extra = () if solver == "box" else (c_kern,)  # fb_iter_box: always the box
                for i in range(params.iterations):
                    update = _i32(int(i < params.iterations - 1))  # note 7
                    for n, v_m, v_mv, v_flow, v_ref, v_tgt in views:
                        src, dst = (v_m, v_mv) if i % 2 == 0 else (v_mv, v_m)
                        args = (src, dst, v_flow, c_r, v_ref, v_tgt, _i32(n), _i32(h), _i32(w),
                                _i32(half), *extra, np.float64(scale), update)  # fmt: skip
                        _launch_tiles(kernel, (-(-w // TILE_W), -(-h // TILE_H), n), shared, args)
            else:
                for i in range(params.iterations):
                    _launch("fb_blur_rows", px * 5,
                            (c_m, c_mv, _i32(pairs), _i32(h), _i32(w), _i32(half), c_kern))  # fmt: skip
                    _launch("fb_blur_cols_solve", px,
                            (c_mv, c_m, c_flow, c_r, c_ref, c_tgt, _i32(pairs), _i32(h), _i32(w),
                             _i32(half), c_kern, np.float64(scale),
                             _i32(int(i < params.iterations - 1))))  # fmt: skip  # note 7
    assert flow is not None
    return flow
