"""The CuPy Farneback kernels (sw_mro/cuda/farneback.cu).

Without a GPU (CI): the source must compile to PTX through NVRTC, and the kernels'
logic is checked by compiling the same .cu file as C++ for the CPU (a few macros stand
in for CUDA's built-ins) and running our real launch code (sw_mro.cuda.farneback) on
it, against cv2. The tiled kernels also run with blocks of real threads at a barrier,
and their shared memory is bounds-checked. With a GPU (``cuda`` marker, skipped cleanly here): the cupy backend
against the torch backend on the same GPU, mean EPE <= 1e-3 px, and against cv2.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from test_farneback import SPEC, assert_parity, cv2_flow, kwargs_of, scenes
from tolerances import TOL

import sw_mro.cuda.farneback as fbcuda
from sw_mro.ops import farneback, farneback_pairs
from sw_mro.ops._farneback_kernels import FarnebackParams

# --------------------------------------------------------------------------- NVRTC (CPU)


@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_kernels_compile_to_ptx_with_nvrtc(arch: str) -> None:
    ptx = fbcuda.compile_ptx(arch)
    assert f".target {arch.replace('compute', 'sm')}" in ptx
    for name in fbcuda.KERNELS:
        assert f".entry {name}(" in ptx, f"kernel {name} missing from the PTX"


def test_nvrtc_reports_compile_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fbcuda, "source", lambda: 'extern "C" __global__ void k() { oops; }')
    with pytest.raises(RuntimeError, match="NVRTC failed"):
        fbcuda.compile_ptx()


def test_gpu_without_nvrtc_falls_back_to_torch_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CuPy imports and sees a GPU, but the kernels cannot be built (a driver-only machine
    without the NVRTC library): ``auto`` picks torch before any video is read, and the
    warning says what to install. Stand-ins for the GPU parts; the decision is real."""
    import importlib
    import warnings

    import cupy

    import sw_mro.cuda as swcuda

    fb = importlib.import_module("sw_mro.ops.farneback")  # the module, not the function

    def no_nvrtc():
        raise RuntimeError("CuPy failed to load libnvrtc.so.13: OSError: cannot open shared object")

    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceCount", lambda: 1)
    monkeypatch.setattr(fbcuda, "_module", no_nvrtc)
    monkeypatch.setattr(fb, "_warned_no_cupy", False)
    swcuda.cupy_status.cache_clear()
    try:
        usable, why = swcuda.cupy_status()
        assert not usable and "libnvrtc.so.13" in why and "nvidia-cuda-nvrtc" in why
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert fb.resolve_backend("auto", torch.device("cuda")) == "torch"
        (w,) = caught
        assert "cannot build the CUDA kernels" in str(w.message)
        assert "pip install nvidia-cuda-nvrtc" in str(w.message)
        assert not swcuda.cupy_available()
    finally:
        swcuda.cupy_status.cache_clear()  # the real answer for later tests


# --------------------------------------------------------------------------- kernels on CPU

_SHIM = r"""
#include <cmath>
#include <cstring>
#include <pthread.h>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__
struct fb_dim3 { unsigned x = 0, y = 0, z = 0; };
static thread_local fb_dim3 blockIdx, threadIdx, blockDim;
// A tiled kernel's block runs either as one thread (its block-stride loops do the whole
// tile, so a barrier has nothing to wait for) or as bx * by real threads that meet at a
// pthread barrier wherever the kernel calls __syncthreads().
static pthread_barrier_t fb_barrier;
static bool fb_threaded = false;
static inline void __syncthreads() { if (fb_threaded) pthread_barrier_wait(&fb_barrier); }
// A block's shared memory. Bytes past the launch's dynamic size are poisoned with 0xff
// (NaN in float and double) before a launch and checked after it.
#define FB_SMEM_BYTES (4 << 20)
extern "C" {
float fb_smem[FB_SMEM_BYTES / 4];
double fb_smem_d[FB_SMEM_BYTES / 8];
}
static inline int max(int a, int b) { return a > b ? a : b; }
static inline int min(int a, int b) { return a < b ? a : b; }
#include "SOURCE"
#define RUN(call) for (long long i = 0; i < count; i++) { \
    blockDim.x = 256; blockIdx.x = (unsigned)(i / 256); threadIdx.x = (unsigned)(i % 256); call; }
#define RUN_TILES(call) \
    for (unsigned z = 0; z < gz; z++) for (unsigned y = 0; y < gy; y++) \
    for (unsigned x = 0; x < gx; x++) { \
        if (bx * by == 1) { \
            blockDim = fb_dim3{1, 1, 1}; threadIdx = fb_dim3{0, 0, 0}; \
            blockIdx = fb_dim3{x, y, z}; call; continue; } \
        pthread_barrier_init(&fb_barrier, nullptr, bx * by); fb_threaded = true; \
        std::vector<std::thread> team; \
        for (unsigned ty = 0; ty < by; ty++) for (unsigned tx = 0; tx < bx; tx++) \
            team.emplace_back([=] { blockDim = fb_dim3{bx, by, 1}; \
                                    blockIdx = fb_dim3{x, y, z}; \
                                    threadIdx = fb_dim3{tx, ty, 0}; call; }); \
        for (auto& t : team) t.join(); \
        fb_threaded = false; pthread_barrier_destroy(&fb_barrier); }
extern "C" {
void fb_shim_poison(long long shared) {
    std::memset((char*)fb_smem + shared, 0xff, FB_SMEM_BYTES - shared);
    std::memset((char*)fb_smem_d + shared, 0xff, FB_SMEM_BYTES - shared);
}
int fb_shim_intact(long long shared) {
    for (long long i = shared; i < FB_SMEM_BYTES; i++)
        if (((unsigned char*)fb_smem)[i] != 0xff || ((unsigned char*)fb_smem_d)[i] != 0xff)
            return 0;
    return 1;
}
void fb_poly_rows_cpu(long long count, const float* img, float* v, int f, int h, int w, int n,
                      const float* a, const float* b, const float* c)
{ RUN(fb_poly_rows(img, v, f, h, w, n, a, b, c)) }
void fb_poly_cols_cpu(long long count, const float* v, float* r, int f, int h, int w, int n,
                      const float* a, const float* b, const float* c, double i11, double i03,
                      double i33, double i55)
{ RUN(fb_poly_cols(v, r, f, h, w, n, a, b, c, i11, i03, i33, i55)) }
void fb_update_matrices_cpu(long long count, const float* r, const long long* ref,
                            const long long* tgt, const float* flow, float* m, int p, int h, int w)
{ RUN(fb_update_matrices(r, ref, tgt, flow, m, p, h, w)) }
void fb_blur_rows_cpu(long long count, const float* m, float* mv, int p, int h, int w, int half,
                      const float* k)
{ RUN(fb_blur_rows(m, mv, p, h, w, half, k)) }
void fb_blur_cols_solve_cpu(long long count, const float* mv, float* m, float* flow,
                            const float* r, const long long* ref, const long long* tgt, int p,
                            int h, int w, int half, const float* k, double scale, int update)
{ RUN(fb_blur_cols_solve(mv, m, flow, r, ref, tgt, p, h, w, half, k, scale, update)) }
void fb_iter_tiled_cpu(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                       const float* m_in, float* m_out, float* flow, const float* r,
                       const long long* ref, const long long* tgt, int p, int h, int w, int half,
                       const float* k, double scale, int update)
{ RUN_TILES(fb_iter_tiled(m_in, m_out, flow, r, ref, tgt, p, h, w, half, k, scale, update)) }
void fb_iter_box_cpu(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                     const float* m_in, float* m_out, float* flow, const float* r,
                     const long long* ref, const long long* tgt, int p, int h, int w, int half,
                     double scale, int update)
{ RUN_TILES(fb_iter_box(m_in, m_out, flow, r, ref, tgt, p, h, w, half, scale, update)) }
}
"""
_SHIM_SMEM_BYTES = 4 << 20


@pytest.fixture(scope="module")
def cpu_kernels(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:  # an environment limit, not a result: the NVRTC test still runs
        pytest.skip("no C++ compiler to build the CPU stand-in of the CUDA kernels")
    tmp = tmp_path_factory.mktemp("fbcpu")
    src = tmp / "shim.cpp"
    src.write_text(_SHIM.replace("SOURCE", str(fbcuda.SOURCE_PATH)))
    lib = tmp / "libfbcpu.so"
    # No contraction into FMAs, so the bit-equality tests hold on any CPU.
    cmd = [compiler, "-O2", "-ffp-contract=off", "-pthread", "-shared", "-fPIC"]
    subprocess.run([*cmd, "-o", str(lib), str(src)], check=True)
    return ctypes.CDLL(str(lib))


def _ctypes_arg(a: object) -> object:
    if isinstance(a, torch.Tensor):
        assert a.is_contiguous() and a.device.type == "cpu"
        return ctypes.c_void_p(a.data_ptr())
    if isinstance(a, np.uint64):  # the null pointer of an absent Gaussian window
        return ctypes.c_void_p(int(a) or None)
    if isinstance(a, np.float64):
        return ctypes.c_double(float(a))
    return ctypes.c_int(int(a))


class _CpuEngine:
    """Launch settings of the CPU build: the tiled kernels' block shape (1 x 1 runs each
    block as one thread; a test sets the GPU's 32 x 8, run as real threads)."""

    block: tuple[int, int] = (1, 1)


def _partial_tile_frames(n: int) -> torch.Tensor:
    """n prev frames then their n next frames, 90 x 75 px: partial tiles at every level."""
    names, prevs, nexts = scenes(128)
    return torch.from_numpy(np.concatenate([prevs[:n], nexts[:n]])[:, 20:95, 10:100]).float()


@pytest.fixture()
def cupy_engine_on_cpu(cpu_kernels: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch):
    """sw_mro.cuda.farneback with its launches redirected to the CPU build of the kernels.

    ``_CpuEngine.block`` sets the block shape of the tiled kernels. Every tiled launch poisons the shared memory past its dynamic size and fails if the kernel
    wrote there (reads there give NaN, which the flow checks catch).
    """

    def launch(name: str, count: int, args: tuple) -> None:
        fn = getattr(cpu_kernels, f"{name}_cpu")
        fn(ctypes.c_longlong(count), *(_ctypes_arg(a) for a in args))

    def launch_tiles(name: str, grid: tuple[int, int, int], shared: int, args: tuple) -> None:
        assert 0 < shared <= _SHIM_SMEM_BYTES
        cpu_kernels.fb_shim_poison(ctypes.c_longlong(shared))
        fn = getattr(cpu_kernels, f"{name}_cpu")
        block = _CpuEngine.block
        fn(*(ctypes.c_uint(g) for g in (*grid, *block)), *(_ctypes_arg(a) for a in args))
        if not cpu_kernels.fb_shim_intact(ctypes.c_longlong(shared)):
            raise AssertionError(f"{name} wrote past its {shared} bytes of shared memory")

    monkeypatch.setattr(fbcuda, "_launch", launch)
    monkeypatch.setattr(fbcuda, "_launch_tiles", launch_tiles)
    monkeypatch.setattr(fbcuda, "as_cupy", lambda t: t)
    monkeypatch.setattr(fbcuda, "torch_stream", lambda dev: contextlib.nullcontext())
    return fbcuda


@pytest.mark.parametrize("solver", ["box", "tiled", "split"])
@pytest.mark.parametrize("gaussian", [False, True], ids=["box", "gaussian"])
def test_kernel_logic_matches_cv2_on_cpu(cupy_engine_on_cpu, gaussian: bool, solver: str) -> None:
    names, prevs, nexts = scenes(128)
    pick = [names.index(n) for n in ("astronaut/rotate-3deg", "carphone/bump-2px",
                                     "low-texture/shift-3.7px")]  # fmt: skip
    params = FarnebackParams(*SPEC, gaussian=gaussian)
    frames = torch.from_numpy(np.concatenate([prevs[pick], nexts[pick]])).float()
    expansions = cupy_engine_on_cpu.expand_frames(frames, params)
    k = len(pick)
    flows = cupy_engine_on_cpu.solve_pairs(
        expansions, torch.arange(k), torch.arange(k) + k, params, solver=solver
    )
    for j, i in enumerate(pick):
        assert_parity(names[i], flows[j], cv2_flow(prevs[i], nexts[i], SPEC, gaussian))


def test_kernel_buffers_are_float32_under_a_float64_default(cupy_engine_on_cpu) -> None:
    """Found in review: the CuPy engine allocated its buffers in torch's default dtype,
    so a caller's ``torch.set_default_dtype(torch.float64)`` had the float* kernels write
    float32 bits into float64 buffers (max |flow| 1.3e308, no error). The buffers are
    float32 now, and ``as_cupy`` refuses any other float dtype."""
    from sw_mro.cuda._interop import as_cupy

    frames = _partial_tile_frames(2)
    params = FarnebackParams(*SPEC)

    def flows() -> torch.Tensor:
        expansions = cupy_engine_on_cpu.expand_frames(frames, params)
        return cupy_engine_on_cpu.solve_pairs(
            expansions, torch.arange(2), torch.arange(2) + 2, params, solver="box"
        )

    want = flows()
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = flows()
    finally:
        torch.set_default_dtype(before)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(TypeError, match="float32 or int64"):
        as_cupy(torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("gaussian", [False, True], ids=["box", "gaussian"])
def test_tiled_iteration_equals_split_kernels_on_cpu(
    cupy_engine_on_cpu, monkeypatch: pytest.MonkeyPatch, gaussian: bool
) -> None:
    """The one-launch tiled iteration computes the split kernels' sums in their order.

    Frames of 90 x 75 px leave partial tiles at every level (tiles are 32 x 16), the pairs
    repeat and swap frames, and a grid limit of 2 pairs per launch exercises the chunked
    launches. Same build, same arithmetic: the flows must be equal bit for bit.
    """
    frames = _partial_tile_frames(3)
    ref, tgt = torch.tensor([0, 1, 2, 0, 3, 5]), torch.tensor([3, 4, 5, 4, 0, 2])
    params = FarnebackParams(*SPEC, gaussian=gaussian)
    expansions = cupy_engine_on_cpu.expand_frames(frames, params)
    split = cupy_engine_on_cpu.solve_pairs(expansions, ref, tgt, params, solver="split")
    tiled = cupy_engine_on_cpu.solve_pairs(expansions, ref, tgt, params, solver="tiled")
    monkeypatch.setattr(cupy_engine_on_cpu, "_MAX_GRID_Z", 2)
    chunked = cupy_engine_on_cpu.solve_pairs(expansions, ref, tgt, params, solver="tiled")
    assert float(split.abs().max()) > 0.5  # real motion, not an all-zero field
    assert torch.equal(tiled, split)
    assert torch.equal(chunked, split)


@pytest.mark.parametrize("gaussian", [False, True], ids=["box", "gaussian"])
def test_tiled_kernels_with_gpu_shaped_thread_blocks_on_cpu(
    cupy_engine_on_cpu, monkeypatch: pytest.MonkeyPatch, gaussian: bool
) -> None:
    """Blocks of 32 x 8 real threads meeting at barriers, as on the GPU.

    A missing barrier or a loop striding by the wrong block dimension changes the flows
    here (a one-thread block cannot show either). Every output is one thread's, summed in
    a fixed order, so the flows equal the one-thread run bit for bit.
    """
    frames = _partial_tile_frames(3)
    ref, tgt = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    params = FarnebackParams(*SPEC, gaussian=gaussian)
    expansions = cupy_engine_on_cpu.expand_frames(frames, params)
    split = cupy_engine_on_cpu.solve_pairs(expansions, ref, tgt, params, solver="split")
    for solver in ("tiled",) if gaussian else ("tiled", "box"):
        one = cupy_engine_on_cpu.solve_pairs(expansions, ref, tgt, params, solver=solver)
        with monkeypatch.context() as m:
            m.setattr(_CpuEngine, "block", cupy_engine_on_cpu.TILE_BLOCK[:2])
            team = cupy_engine_on_cpu.solve_pairs(expansions, ref, tgt, params, solver=solver)
        assert torch.equal(team, one), solver
        if solver == "tiled":
            assert torch.equal(team, split)


def test_tiled_kernels_stay_within_their_shared_memory(
    cupy_engine_on_cpu, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launch sizes match the kernels: a smaller size is caught by the poison check."""
    names, prevs, nexts = scenes(128)
    frames = torch.from_numpy(np.stack([prevs[0], nexts[0]])).float()
    params = FarnebackParams(*SPEC)
    expansions = cupy_engine_on_cpu.expand_frames(frames, params)
    one, two = torch.tensor([0]), torch.tensor([1])
    for solver, size in (("box", "box_shared_bytes"), ("tiled", "tile_shared_bytes")):
        exact = getattr(cupy_engine_on_cpu, size)
        with monkeypatch.context() as m:
            m.setattr(cupy_engine_on_cpu, size, lambda half, f=exact: f(half) - 8)
            with pytest.raises(AssertionError, match="wrote past"):
                cupy_engine_on_cpu.solve_pairs(expansions, one, two, params, solver=solver)


def test_tile_constants_match_the_kernel_source() -> None:
    src = fbcuda.source()
    assert f"#define FB_TW {fbcuda.TILE_W}\n" in src
    assert f"#define FB_TH {fbcuda.TILE_H}\n" in src
    assert fbcuda.TILE_BLOCK[0] * fbcuda.TILE_BLOCK[1] <= 1024


@pytest.mark.parametrize("size", [128, 256])
def test_box_running_sums_agree_with_split_kernels_on_cpu(cupy_engine_on_cpu, size: int) -> None:
    """The running-sum box kernel sums in another order (OpenCV's): equal to rounding.

    Measured on these 16 scenes: max |diff| 1.1e-4 px at 128 px, 8.0e-4 px at 256 px
    (carphone/rotate-3deg, one pixel); mean 1.7e-7 px. The GPU test runs both sizes too.
    """
    names, prevs, nexts = scenes(size)
    k = len(prevs)
    frames = torch.from_numpy(np.concatenate([prevs, nexts])).float()
    params = FarnebackParams(*SPEC)
    expansions = cupy_engine_on_cpu.expand_frames(frames, params)
    ref, tgt = torch.arange(k), torch.arange(k) + k
    split = cupy_engine_on_cpu.solve_pairs(expansions, ref, tgt, params, solver="split")
    box = cupy_engine_on_cpu.solve_pairs(expansions, ref, tgt, params, solver="box")
    diff = (box - split).abs()
    assert (
        float(diff.max()) <= TOL["flow_box_vs_split_max"]
        and float(diff.mean()) <= TOL["flow_box_vs_split_mean"]
    )
    # Partial tiles, as for the tiled kernel.
    exp2 = cupy_engine_on_cpu.expand_frames(_partial_tile_frames(3), params)
    ref, tgt = torch.tensor([0, 1, 2, 0, 3, 5]), torch.tensor([3, 4, 5, 4, 0, 2])
    whole = cupy_engine_on_cpu.solve_pairs(exp2, ref, tgt, params, solver="box")
    ref_split = cupy_engine_on_cpu.solve_pairs(exp2, ref, tgt, params, solver="split")
    assert float((whole - ref_split).abs().max()) <= TOL["flow_box_vs_split_max"]


def test_tiled_solvers_fall_back_for_wide_windows(cupy_engine_on_cpu) -> None:
    """A window whose tile would need over 48 KB of shared memory runs the split kernels."""
    params = FarnebackParams(0.5, 1, 49, 2, 5, 1.1, False)
    half = params.winsize // 2
    for need in (cupy_engine_on_cpu.tile_shared_bytes, cupy_engine_on_cpu.box_shared_bytes):
        assert need(half) > cupy_engine_on_cpu.TILE_SHARED_MAX >= need(7)
    names, prevs, nexts = scenes(128)
    frames = torch.from_numpy(np.stack([prevs[0], nexts[0]])).float()
    expansions = cupy_engine_on_cpu.expand_frames(frames, params)
    one, two = torch.tensor([0]), torch.tensor([1])
    split = cupy_engine_on_cpu.solve_pairs(expansions, one, two, params, solver="split")
    for solver in ("box", "tiled"):
        got = cupy_engine_on_cpu.solve_pairs(expansions, one, two, params, solver=solver)
        assert torch.equal(got, split), solver
    with pytest.raises(ValueError, match="solver must be one of"):
        cupy_engine_on_cpu.solve_pairs(expansions, one, two, params, solver="fast")


# --------------------------------------------------------------------------- on a GPU


@pytest.mark.cuda
@pytest.mark.parametrize("gaussian", [False, True], ids=["box", "gaussian"])
@pytest.mark.parametrize("size", [128, 256])
def test_cupy_matches_torch_on_gpu(size: int, gaussian: bool) -> None:
    names, prevs, nexts = scenes(size)
    p = torch.from_numpy(prevs).cuda()
    n = torch.from_numpy(nexts).cuda()
    kw = kwargs_of(SPEC, gaussian)
    ours = farneback(p, n, backend="cupy", **kw)
    ref = farneback(p, n, backend="torch", **kw)
    assert ours.device.type == "cuda" and ours.shape == ref.shape
    epe = (ours - ref).norm(dim=1).mean(dim=(1, 2))
    assert float(epe.max()) <= TOL["flow_cupy_vs_torch_mean"], epe
    for i, name in enumerate(names):
        assert_parity(name, ours[i], cv2_flow(prevs[i], nexts[i], SPEC, gaussian))


@pytest.mark.cuda
@pytest.mark.parametrize("gaussian", [False, True], ids=["box", "gaussian"])
def test_tiled_iteration_equals_split_kernels_on_gpu(gaussian: bool) -> None:
    """The shared-memory tiled iteration against the split kernels, on the GPU.

    The same sums in the same order; NVRTC may contract multiply-adds differently in the
    two kernels, so the bound is float rounding (1e-4 px max), not bit equality.
    """
    names, prevs, nexts = scenes(256)
    frames = torch.from_numpy(np.concatenate([prevs, nexts])).cuda().float()
    k = len(prevs)
    ref, tgt = torch.arange(k, device="cuda"), torch.arange(k, device="cuda") + k
    params = FarnebackParams(*SPEC, gaussian=gaussian)
    expansions = fbcuda.expand_frames(frames, params)
    split = fbcuda.solve_pairs(expansions, ref, tgt, params, solver="split")
    tiled = fbcuda.solve_pairs(expansions, ref, tgt, params, solver="tiled")
    torch.cuda.synchronize()
    assert torch.isfinite(tiled).all()
    assert float((tiled - split).abs().max()) <= 1e-4
    for i, name in enumerate(names):
        assert_parity(name, tiled[i], cv2_flow(prevs[i], nexts[i], SPEC, gaussian))


@pytest.mark.cuda
def test_tiled_solvers_on_partial_tiles_and_chunked_launches_on_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CPU case of partial tiles (90 x 75 frames) and chunked grid launches, on the GPU."""
    frames = _partial_tile_frames(3).cuda()
    ref = torch.tensor([0, 1, 2, 0, 3, 5], device="cuda")
    tgt = torch.tensor([3, 4, 5, 4, 0, 2], device="cuda")
    params = FarnebackParams(*SPEC)
    expansions = fbcuda.expand_frames(frames, params)
    split = fbcuda.solve_pairs(expansions, ref, tgt, params, solver="split")
    whole = {
        s: fbcuda.solve_pairs(expansions, ref, tgt, params, solver=s) for s in ("tiled", "box")
    }
    monkeypatch.setattr(fbcuda, "_MAX_GRID_Z", 2)
    for solver, flows in whole.items():
        chunked = fbcuda.solve_pairs(expansions, ref, tgt, params, solver=solver)
        assert torch.equal(chunked, flows), solver
    torch.cuda.synchronize()
    assert float(split.abs().max()) > 0.5
    assert float((whole["tiled"] - split).abs().max()) <= 1e-4
    assert float((whole["box"] - split).abs().max()) <= TOL["flow_box_vs_split_max"]


@pytest.mark.cuda
@pytest.mark.parametrize("size", [128, 256])
def test_box_running_sums_agree_with_split_kernels_on_gpu(size: int) -> None:
    names, prevs, nexts = scenes(size)
    frames = torch.from_numpy(np.concatenate([prevs, nexts])).cuda().float()
    k = len(prevs)
    ref, tgt = torch.arange(k, device="cuda"), torch.arange(k, device="cuda") + k
    params = FarnebackParams(*SPEC)
    expansions = fbcuda.expand_frames(frames, params)
    split = fbcuda.solve_pairs(expansions, ref, tgt, params, solver="split")
    box = fbcuda.solve_pairs(expansions, ref, tgt, params, solver="box")
    torch.cuda.synchronize()
    diff = (box - split).abs()
    assert torch.isfinite(box).all()
    assert float(diff.max()) <= TOL["flow_box_vs_split_max"]
    assert float(diff.mean()) <= TOL["flow_box_vs_split_mean"]
    for i, name in enumerate(names):
        assert_parity(name, box[i], cv2_flow(prevs[i], nexts[i], SPEC, False))


@pytest.mark.cuda
def test_cupy_pairs_on_a_side_stream() -> None:
    """Kernels follow torch's current stream: results are ready after that stream syncs."""
    names, prevs, nexts = scenes(128)
    frames = torch.from_numpy(np.concatenate([prevs[:4], nexts[:4]])).cuda()
    ref = torch.tensor([0, 1, 2, 3, 0], device="cuda")
    tgt = torch.tensor([4, 5, 6, 7, 5], device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = farneback_pairs(frames, ref, tgt, backend="cupy", max_batch=2)
    stream.synchronize()
    want = farneback_pairs(frames, ref, tgt, backend="torch")
    epe = (got - want).norm(dim=1).mean()
    assert float(epe) <= TOL["flow_cupy_vs_torch_mean"]


@pytest.mark.cuda
def test_auto_backend_on_gpu_is_cupy_and_matches_torch() -> None:
    names, prevs, nexts = scenes(128)
    p, n = torch.from_numpy(prevs[:2]).cuda(), torch.from_numpy(nexts[:2]).cuda()
    got = farneback(p, n)
    want = farneback(p, n, backend="torch")
    assert float((got - want).norm(dim=1).mean()) <= TOL["flow_cupy_vs_torch_mean"]


def test_kernel_source_ships_with_the_package() -> None:
    assert Path(fbcuda.SOURCE_PATH).is_file() and fbcuda.SOURCE_PATH.suffix == ".cu"
