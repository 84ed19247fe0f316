"""dlib landmarks of video segments in worker processes.

dlib's shape predictor holds the GIL (about 1.3 ms per face), so threads cannot take
landmarks past ~700 frames/s however many cores there are. :class:`DlibProcessPool`
runs whole tracking segments in ``spawn``-ed worker processes instead:

- the frames of a chunk are copied once into a shared-memory block that every worker
  maps (no pickling of frames);
- a job is a pure function of (frames ``a:b`` of the block, the tracker's starting box),
  so the result does not depend on which worker runs it or how many there are, and is
  the same as running :class:`~sw_mro.io.landmarks.DlibLandmarker` in this process;
- the pool is started once per process and options (:func:`shared_pool`) and reused
  across videos, because each worker parses the 100 MB model (~1 s) when it starts.

Workers import only numpy, OpenCV and dlib (``sw_mro.io`` imports nothing heavy
eagerly), never torch or CUDA.
"""

from __future__ import annotations

import atexit
import functools
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context, shared_memory

import numpy as np

from sw_mro.io.landmarks import DlibLandmarker, LandmarkResult

__all__ = ["DlibProcessPool", "SegmentJob", "disable", "shared_pool", "usable"]

# (first frame, end frame, starting tracker box or None for a fresh tracker)
SegmentJob = tuple[int, int, tuple[float, float, float, float] | None]

_WORKER: dict = {}  # in each worker: the landmarker and the attached shared blocks


def _init_worker(predictor_path: str | None) -> None:
    _WORKER["lm"] = DlibLandmarker(predictor_path, fill_missing=False)
    _WORKER["shm"] = {}


def _attach(name: str) -> shared_memory.SharedMemory:
    blocks = _WORKER["shm"]
    if name not in blocks:
        for old in list(blocks):  # the parent replaced its block: drop the old mapping
            blocks.pop(old).close()
        # The parent owns (and unlinks) the block; this process only maps it. Spawned
        # workers share the parent's resource tracker, so attaching registers nothing new.
        blocks[name] = shared_memory.SharedMemory(name=name)
    return blocks[name]


def _run_segment(
    name: str, shape: tuple[int, ...], job: SegmentJob
) -> tuple[LandmarkResult, tuple[float, float, float, float] | None]:
    a, b, start_box = job
    frames = np.ndarray(shape, np.uint8, buffer=_attach(name).buf)[a:b]
    lm: DlibLandmarker = _WORKER["lm"]
    lm.reset()
    lm.tracking_box = start_box
    res = lm.detect(frames)
    return res, lm.tracking_box


class DlibProcessPool:
    """``workers`` processes that run dlib tracking segments on shared frames."""

    def __init__(self, workers: int, predictor_path: str | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(predictor_path,),
        )
        self._shm: shared_memory.SharedMemory | None = None
        self._lock = threading.Lock()  # one chunk at a time (the block is reused)

    def _block(self, nbytes: int) -> shared_memory.SharedMemory:
        if self._shm is None or self._shm.size < nbytes:
            self._free_block()
            self._shm = shared_memory.SharedMemory(create=True, size=max(nbytes, 1))
        return self._shm

    def _free_block(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def run(
        self, frames: np.ndarray, jobs: list[SegmentJob]
    ) -> list[tuple[LandmarkResult, tuple[float, float, float, float] | None]]:
        """Landmarks of each ``frames[a:b]`` segment, with each job's tracker end box."""
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        with self._lock:
            shm = self._block(frames.nbytes)
            np.ndarray(frames.shape, np.uint8, buffer=shm.buf)[...] = frames
            futures = [
                self._pool.submit(_run_segment, shm.name, frames.shape, job) for job in jobs
            ]
            return [f.result() for f in futures]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._free_block()


_DISABLED: list[str] = []  # why worker processes are not used in this process, if so


def disable(reason: str) -> None:
    """Use no worker processes from now on in this process (see :func:`usable`)."""
    _DISABLED.append(reason)
    shared_pool.cache_clear()


def usable() -> bool:
    """False after the workers failed to start once (e.g. an unguarded main script)."""
    return not _DISABLED


@functools.cache
def shared_pool(workers: int, predictor_path: str | None = None) -> DlibProcessPool:
    """The process-wide pool for these options, started on first use, closed at exit."""
    pool = DlibProcessPool(workers, predictor_path)
    atexit.register(pool.close)
    return pool

