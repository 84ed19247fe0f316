"""Decode throughput: decord vs cv2.VideoCapture vs our ``open_video(...).chunks()``.

One 640x480 H.264 clip (150 frames, 30 fps, CRF 18, made once per session with PyAV
through ``sw_mro.io.writer.write_video``) is decoded whole to RGB uint8 by each reader.
All are in one benchmark group; frames/s goes into ``extra_info`` and the result (frame
count, shape) is asserted after timing, so ``--benchmark-disable`` still checks it.

cv2 returns BGR, so its timed loop includes ``cvtColor(BGR2RGB)``: every entry
produces the same RGB frames (tests/test_video.py checks that they are bit-identical).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from sw_mro.io import open_video
from sw_mro.io.writer import write_video

N, H, W, FPS = 150, 480, 640, 30.0
CHUNK = 64
GROUP = "decode-640x480-h264"


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """A smooth random texture panning 2 px per frame: realistic work for the codec."""
    rng = np.random.default_rng(2024)
    small = rng.integers(0, 256, size=(h // 16, (w + 2 * n) // 16, 3), dtype=np.uint8)
    big = cv2.resize(small, (w + 2 * n, h), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(big[:, 2 * k : 2 * k + w]) for k in range(n)]


@pytest.fixture(scope="session")
def clip_640x480(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("bench") / "clip.mp4", _frames(N, H, W), fps=FPS)


def decode_decord(path: Path, zero_copy: bool = False) -> tuple[int, tuple[int, ...]]:
    """decord's usual ``get_batch(...).asnumpy()`` (a copy), or DLPack to torch (none)."""
    import decord
    from decord.bridge.torchdl import to_torch

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
    n, shape = 0, ()
    for first in range(0, len(vr), CHUNK):
        nd = vr.get_batch(list(range(first, min(first + CHUNK, len(vr)))))
        batch = to_torch(nd) if zero_copy else nd.asnumpy()
        n, shape = n + batch.shape[0], tuple(batch.shape[1:])
    return n, shape


def decode_cv2(path: Path) -> tuple[int, tuple[int, ...]]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, ()
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            n, shape = n + 1, rgb.shape
    finally:
        cap.release()
    return n, shape


def decode_open_video(path: Path, color: str = "rgb", stride: int = 1) -> tuple[int, tuple]:
    n, shape = 0, ()
    for _, chunk in open_video(path, color=color, stride=stride).chunks(CHUNK):
        n, shape = n + chunk.shape[0], tuple(chunk.shape[1:])
    return n, shape


CASES: dict[str, tuple[Callable[[Path], tuple[int, tuple]], int, tuple[int, ...]]] = {
    "decord": (decode_decord, N, (H, W, 3)),
    "decord-dlpack": (lambda p: decode_decord(p, zero_copy=True), N, (H, W, 3)),
    "cv2": (decode_cv2, N, (H, W, 3)),
    "open_video-rgb": (decode_open_video, N, (H, W, 3)),
    "open_video-gray": (lambda p: decode_open_video(p, color="gray"), N, (H, W)),
    # SAMM-style subsampling: decodes every frame, returns every 7th.
    "open_video-stride7": (lambda p: decode_open_video(p, stride=7), -(-N // 7), (H, W, 3)),
}


@pytest.mark.parametrize("reader", list(CASES))
def test_decode_throughput(benchmark, clip_640x480: Path, reader: str) -> None:
    fn, want_n, want_shape = CASES[reader]
    benchmark.group = GROUP
    benchmark.extra_info.update(
        {"reader": reader, "clip": f"{W}x{H} H.264 {N} frames", "chunk": CHUNK}
    )
    n, shape = benchmark.pedantic(fn, args=(clip_640x480,), rounds=5, warmup_rounds=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        # Source frames decoded per second (stride 7 still decodes all N).
        benchmark.extra_info["frames_per_s"] = round(N / median, 1)
    assert n == want_n
    assert shape == want_shape


# --------------------------------------------------------------------------- frame folders

FOLDER_N, FOLDER_H, FOLDER_W = 24, 1088, 2040  # SAMM-LV's frame size
FOLDER_GROUP = "decode-folder-2040x1088-jpeg"


@pytest.fixture(scope="session")
def samm_like_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 JPEG frames (quality 95) of SAMM-LV's size, named as SAMM-LV names them."""
    folder = tmp_path_factory.mktemp("bench") / "006_1"
    folder.mkdir()
    for k, rgb in enumerate(_frames(FOLDER_N, FOLDER_H, FOLDER_W)):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        ok = cv2.imwrite(
            str(folder / f"006_1_{k + 1:04d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
        assert ok
    return folder


def _folder_cv2(folder: Path) -> tuple[int, tuple]:
    """The baseline: one ``cv2.imread`` + BGR->RGB per file, in order, on one thread."""
    n, shape = 0, ()
    for f in sorted(folder.glob("*.jpg")):
        rgb = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        n, shape = n + 1, rgb.shape
    return n, shape


def _folder_open_video(folder: Path, threads: int | None) -> tuple[int, tuple]:
    import sw_mro.io.video as vid

    keep = vid.FOLDER_DECODE_THREADS
    if threads is not None:
        vid.FOLDER_DECODE_THREADS = threads
    try:
        n, shape = 0, ()
        for _, chunk in open_video(folder).chunks(FOLDER_N):
            n, shape = n + chunk.shape[0], tuple(chunk.shape[1:])
        return n, shape
    finally:
        vid.FOLDER_DECODE_THREADS = keep


FOLDER_CASES: dict[str, Callable[[Path], tuple[int, tuple]]] = {
    "cv2-imread-loop": _folder_cv2,
    "open_video-1-thread": lambda p: _folder_open_video(p, 1),
    "open_video-threads": lambda p: _folder_open_video(p, None),
}


@pytest.mark.parametrize("reader", list(FOLDER_CASES))
def test_folder_decode_throughput(benchmark, samm_like_folder: Path, reader: str) -> None:
    """Frame folders (CAS(ME)^2, SAMM-LV) are decoded by up to FOLDER_DECODE_THREADS
    threads (at most the usable cores); the baseline is a one-thread imread loop."""
    from sw_mro.config import usable_cpus
    from sw_mro.io.video import FOLDER_DECODE_THREADS

    benchmark.group = FOLDER_GROUP
    benchmark.extra_info.update(
        {
            "reader": reader,
            "frames": f"{FOLDER_N} JPEG q95 {FOLDER_W}x{FOLDER_H}",
            "threads": min(FOLDER_DECODE_THREADS, usable_cpus()),
        }
    )
    n, shape = benchmark.pedantic(
        FOLDER_CASES[reader], args=(samm_like_folder,), rounds=3, warmup_rounds=1
    )
    if benchmark.stats is not None:
        benchmark.extra_info["frames_per_s"] = round(FOLDER_N / benchmark.stats.stats.median, 1)
    assert (n, shape) == (FOLDER_N, (FOLDER_H, FOLDER_W, 3))
