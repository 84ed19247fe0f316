"""dlib landmarks of video segments in worker processes.

dlib's HOG detector holds the GIL (about 2 ms per frame on the dev VM; its shape
predictor did too until it ran in numba, :mod:`sw_mro.io.shape_model`), so threads
cannot take landmarks far past ~500 frames/s however many cores there are.
:class:`DlibProcessPool` runs whole tracking segments in ``spawn``-ed worker processes
instead:

- the frames of a chunk are copied once into a shared-memory block that every worker
  maps (no pickling of frames); several chunks can be in flight, each in its own block,
  so the workers never wait for the caller between chunks. A block is POSIX shared
  memory (``/dev/shm``) with its pages reserved up front; where ``/dev/shm`` is too
  small for it (Docker gives containers 64 MB unless ``--shm-size`` or ``--ipc=host``
  says otherwise, and a 512-frame 640x480 chunk is 472 MB) it is an anonymous
  ``memfd`` file instead, which is not bound by that mount's size. Without the
  reservation a full ``/dev/shm`` killed the whole process with ``SIGBUS`` ("Bus
  error") on the first write past its size;
- a job is a pure function of (frames ``a:b`` of the block, the tracker's starting box),
  so the result does not depend on which worker runs it or how many there are, and is
  the same as running :class:`~sw_mro.io.landmarks.DlibLandmarker` in this process;
- the pool is started once per process and options (:func:`shared_pool`) and reused
  across videos, because each worker reads the 100 MB model (~0.6 s) when it starts.

Workers import only numpy, OpenCV, dlib and numba (``sw_mro.io`` imports nothing heavy
eagerly), never torch or CUDA.
"""

from __future__ import annotations

import errno
import itertools
import mmap
import os
import secrets
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context, shared_memory
from multiprocessing import util as mp_util

import numpy as np

from sw_mro._threads import (
    ensure_resource_tracker,
    signals_blocked,
    unblock_signals,
    watch_parent,
)
from sw_mro.io.landmarks import DlibLandmarker, LandmarkResult

__all__ = [
    "DlibProcessPool",
    "SegmentJob",
    "SharedMemoryError",
    "Submission",
    "close_pools",
    "disable",
    "discard_pool",
    "hold_pool",
    "release_pool",
    "shared_pool",
    "usable",
]

# (first frame, end frame, the tracker's starting state or None for a fresh tracker:
# DlibLandmarker.tracking_state)
SegmentJob = tuple[int, int, tuple | None]

_WORKER: dict = {}  # in each worker: the landmarker and the attached shared blocks
_MAPPED = 4  # shared blocks a worker keeps mapped (the parent rotates a few)

#: Niceness the worker processes add to their own (``os.nice``) when they start; 0
#: keeps the caller's priority. Where the host's CPUs are all busy (``extract --gpu``
#: on the H100 host), a positive value lets the thread that feeds the GPU and the
#: decoders run first and the workers take the cycles left. Not measured yet on a GPU:
#: ``benchmarks/gpu_diag.py`` times it (``DIAG_WORKER_NICE``).
WORKER_NICE = 0


def _init_worker(predictor_path: str | None, parent: int, redetect: int = 1, nice: int = 0) -> None:
    # Ctrl-C reaches every process of the group: the parent shuts the pool down, and a
    # worker's own KeyboardInterrupt would only print a traceback per worker. The worker
    # started with SIGINT blocked (signals_blocked), so a Ctrl-C while it imported is
    # pending, and dropped here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    unblock_signals(signal.SIGINT)
    if nice > 0:
        os.nice(nice)
    _WORKER["lm"] = DlibLandmarker(predictor_path, redetect=redetect, fill_missing=False)
    _WORKER["shm"] = {}
    # A parent killed by a signal (SIGTERM from ``timeout`` or a scheduler, SIGKILL) runs
    # no ``atexit`` handler and cannot shut the pool down; the workers would otherwise
    # live on, each holding the 100 MB model, and keep its output pipes open.
    watch_parent(parent)


class SharedMemoryError(OSError):
    """No shared memory could be reserved for a chunk of frames (neither in
    ``/dev/shm`` nor as an anonymous ``memfd`` file)."""


def _reserve(fd: int, size: int) -> None:
    """Allocate every page of the file now: ENOSPC here, not SIGBUS at the first write
    past a full tmpfs (the file is only sized, not allocated, by ``ftruncate``)."""
    if size > 0 and hasattr(os, "posix_fallocate"):  # not on macOS: sized, not reserved
        os.posix_fallocate(fd, 0, size)


def _free_mib(path: str) -> str:
    try:
        st = os.statvfs(path)
    except OSError:
        return "unknown"
    return f"{st.f_bavail * st.f_frsize / 2**20:.0f} MiB"


class _MemfdBlock:
    """An anonymous ``memfd`` file mapped in the parent; workers open it through
    ``/proc/<parent>/fd/<fd>``. Its memory is freed once the parent closes it and the
    last worker unmaps it, so even a killed parent leaks nothing. ``name`` is that path
    plus a serial number: file descriptors are reused, names must not be."""

    _serial = itertools.count()

    def __init__(self, size: int) -> None:
        self.size = max(size, 1)
        self._fd = os.memfd_create("sw_mro_landmark_frames", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self._fd, self.size)
            _reserve(self._fd, self.size)
            self._mmap = mmap.mmap(self._fd, self.size)
        except BaseException:
            os.close(self._fd)
            raise
        self.buf = memoryview(self._mmap)
        # The inode lets a worker check that it opened this very file: fds are reused,
        # and /proc may be another pid namespace's (then the path names another process).
        ino = os.fstat(self._fd).st_ino
        self.name = f"/proc/{os.getpid()}/fd/{self._fd}#{next(self._serial)}#{ino}"

    def close(self) -> None:
        if self.buf is not None:
            self.buf.release()
            self._mmap.close()
            self.buf = None

    def unlink(self) -> None:
        os.close(self._fd)


class _MappedBlock:
    """A worker's mapping of a parent's :class:`_MemfdBlock` (by its name)."""

    def __init__(self, name: str) -> None:
        path, _, ino = name.split("#")
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise SharedMemoryError(
                exc.errno or errno.EIO, f"a landmark worker cannot open {path} ({exc})"
            ) from exc
        try:
            if os.fstat(fd).st_ino != int(ino):
                raise SharedMemoryError(
                    errno.ESTALE,
                    f"{path} is not the parent's frame buffer: /proc belongs to another pid "
                    "namespace. Give /dev/shm room for a chunk (docker run --shm-size=4g) "
                    "or run landmarks in the parent (landmark_workers=1)",
                )
            self._mmap = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        self.buf = memoryview(self._mmap)

    def close(self) -> None:
        self.buf.release()
        self._mmap.close()


def _attach(name: str):
    blocks = _WORKER["shm"]
    if name in blocks:
        blocks[name] = blocks.pop(name)  # most recently used last
    else:
        while len(blocks) >= _MAPPED:  # unmap the least recently used block
            blocks.pop(next(iter(blocks))).close()
        if name.startswith("/proc/"):
            blocks[name] = _MappedBlock(name)
        else:
            # The parent owns (and unlinks) the block; this process only maps it. Spawned
            # workers share the parent's resource tracker, so attaching registers nothing.
            blocks[name] = shared_memory.SharedMemory(name=name)
    return blocks[name]


def _run_segment(
    name: str, shape: tuple[int, ...], job: SegmentJob
) -> tuple[LandmarkResult, tuple[float, float, float, float] | None]:
    a, b, start_state = job
    frames = np.ndarray(shape, np.uint8, buffer=_attach(name).buf)[a:b]
    lm: DlibLandmarker = _WORKER["lm"]
    lm.reset()
    lm.tracking_state = start_state
    res = lm.detect(frames)
    return res, lm.tracking_state


class Submission:
    """The jobs of one chunk in flight; :meth:`result` waits for them, in job order."""

    def __init__(self, futures: list[Future], release) -> None:
        self.futures = futures
        self._left = len(futures)
        self._release = release  # gives the shared block back once every job is done
        self._lock = threading.Lock()
        self._released = threading.Event()
        if not futures:
            self._finish()
        for f in futures:
            f.add_done_callback(self._done)

    def _finish(self) -> None:
        self._release()
        self._released.set()

    def _done(self, _future: Future) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._finish()

    def result(self) -> list[tuple[LandmarkResult, tuple | None]]:
        """Each job's (result, tracker end state); returns once the block is back too
        (a future wakes its waiters before it runs its callbacks)."""
        out = [f.result() for f in self.futures]
        self._released.wait()
        return out


#: Seconds :meth:`DlibProcessPool.close` gives the workers to end after the executor
#: told them to (a segment in progress finishes; an idle worker ends at once), before it
#: kills those left.
CLOSE_GRACE = 30.0

#: ``/dev/shm`` names of the frame blocks: ``sw_mro_<pid>_<8 hex>``, so that a block left
#: by a process that was killed (SIGKILL, OOM) can be told from others' and removed:
#: one whose pid is not running is no one's.
SHM_PREFIX = "sw_mro_"


def _named_block(size: int) -> shared_memory.SharedMemory:
    """A new shared memory block named ``sw_mro_<pid>_<random>`` (31 characters at most,
    macOS's limit; Python's own names are ``psm_<random>``)."""
    for _ in range(100):
        name = f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        try:
            return shared_memory.SharedMemory(name=name, create=True, size=size)
        except FileExistsError:  # a name in use: draw again
            continue
    raise FileExistsError(errno.EEXIST, "no free shared memory name", name)


class DlibProcessPool:
    """``workers`` processes that run dlib tracking segments on shared frames.

    Several chunks can be in flight (:meth:`submit`): each has its own shared block, so
    the workers start on the next chunk's segments while the caller still waits for the
    last ones of the current chunk. Idle blocks are reused.
    """

    def __init__(
        self, workers: int, predictor_path: str | None = None, *, redetect: int = 1, nice: int = 0
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
            raise ValueError(f"nice must be an int in 0..19, got {nice!r}")
        self.workers = workers
        ensure_resource_tracker()  # before the executor's queues register with it
        self._pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(predictor_path, os.getpid(), redetect, nice),
        )
        self._idle: list = []  # blocks no submission uses
        self._all: dict = {}  # name -> SharedMemory or _MemfdBlock
        self._lock = threading.Lock()
        self.dev_shm_full = False  # /dev/shm could not hold a block: memfd from then on
        self.key: tuple | None = None  # its options, when it is a shared pool
        self.holders = 0  # extractions using it (hold_pool), when it is a shared pool
        self._started: dict = {}  # pid -> the worker processes it started
        self._finalizer = None  # the exit handler of a shared pool (shared_pool)

    def _new_block(self, nbytes: int):
        """A block of ``nbytes`` whose pages are reserved: in ``/dev/shm``, or as a
        ``memfd`` file once ``/dev/shm`` has been too small."""
        if not self.dev_shm_full:
            shm = _named_block(max(nbytes, 1))
            try:
                _reserve(shm._fd, shm.size)
                return shm
            except OSError as exc:
                shm.close()
                shm.unlink()
                if exc.errno not in (errno.ENOSPC, errno.ENOMEM):
                    raise
                self.dev_shm_full = True
        try:
            return _MemfdBlock(nbytes)
        except (OSError, AttributeError) as exc:  # AttributeError: no memfd on this OS
            raise SharedMemoryError(
                errno.ENOSPC,
                f"cannot reserve {nbytes / 2**20:.0f} MiB of shared memory for a chunk of "
                f"frames for the landmark workers: /dev/shm has {_free_mib('/dev/shm')} "
                f"free and an anonymous memfd file failed ({exc}). Free memory, give the "
                "container more shared memory (docker run --shm-size=4g, or --ipc=host), "
                "or run landmarks in this process (landmark_workers=1, "
                "--landmark-workers 1)",
            ) from exc

    def _take_block(self, nbytes: int):
        with self._lock:
            fits = [b for b in self._idle if b.size >= nbytes]
            if fits:
                shm = min(fits, key=lambda b: b.size)
                self._idle.remove(shm)
            else:
                if self._idle:  # too small for this chunk: replace the smallest idle block
                    self._free(min(self._idle, key=lambda b: b.size))
                shm = self._new_block(nbytes)
                self._all[shm.name] = shm
            return shm

    def _give_back(self, shm) -> None:
        with self._lock:
            if shm.name in self._all:
                self._idle.append(shm)

    def _free(self, shm) -> None:  # under self._lock
        if shm in self._idle:
            self._idle.remove(shm)
        self._all.pop(shm.name, None)
        shm.close()
        shm.unlink()

    def submit(self, frames: np.ndarray, jobs: list[SegmentJob]) -> Submission:
        """Start the jobs on ``frames`` (copied into a shared block) and return at once."""
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        shm = self._take_block(frames.nbytes)
        futures: list[Future] = []
        try:
            np.ndarray(frames.shape, np.uint8, buffer=shm.buf)[...] = frames
            with signals_blocked(signal.SIGINT):  # the executor starts workers here
                for job in jobs:
                    futures.append(self._pool.submit(_run_segment, shm.name, frames.shape, job))
            self._started.update(self._pool._processes or {})
        except BaseException:
            # Jobs submitted before the failure may be reading the block: it goes back
            # (to be reused or freed) only once they are cancelled or done.
            for f in futures:
                f.cancel()
            Submission(futures, lambda: self._give_back(shm))
            raise
        return Submission(futures, lambda: self._give_back(shm))

    def run(
        self, frames: np.ndarray, jobs: list[SegmentJob]
    ) -> list[tuple[LandmarkResult, tuple[float, float, float, float] | None]]:
        """Landmarks of each ``frames[a:b]`` segment, with each job's tracker end box."""
        return self.submit(frames, jobs).result()

    def killed_by(self, timeout: float = 2.0) -> int | None:
        """The signal that ended the workers from outside (SIGTERM from ``kill`` or a
        scheduler, the OOM killer's SIGKILL), or None: a worker that exited by itself
        (a failed start: exit code 1) means a failure, not a kill. The executor sends
        SIGTERM to the other workers once one has died, so SIGTERM counts only when every
        ended worker got it; another signal (SIGKILL) is named first (found in review)."""
        deadline = time.monotonic() + timeout
        codes, alive = [], False
        for proc in list(self._started.values()):
            proc.join(max(0.0, deadline - time.monotonic()))
            # join() returns once the worker's sentinel pipe closes, which a process
            # tearing down (a failed start printing its traceback) does before it can be
            # reaped: wait for the exit code itself (found when a loaded 2-core VM read
            # a failed start as SIGTERM, 1 run in 8, and said nothing).
            while proc.exitcode is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if proc.exitcode is None:
                alive = True
            else:
                codes.append(proc.exitcode)
        if not codes or any(c >= 0 for c in codes):
            return None
        others = [-c for c in codes if c != -signal.SIGTERM]
        if others:
            return others[0]
        # Only SIGTERM, from the executor after a failed start or from outside: a worker
        # still alive (starting, its signals blocked) leaves it open, and a failed start
        # is the answer that warns.
        return None if alive else int(signal.SIGTERM)

    def close(self, grace: float | None = None) -> None:
        """Shut the workers down and free the blocks. A worker that has not ended
        ``grace`` seconds (default :data:`CLOSE_GRACE`) after the executor told it to
        is killed: CPython's own shutdown would wait for it for ever. Found in the test
        suite (a 5-minute stall, pytest-timeout's dump): after workers were killed from
        outside, the executor's thread waited for ever on a worker process that did not
        end (most likely one started as the pool broke, which escaped its SIGTERM and
        waited on the call queue's lock a killed worker had held), and so did
        ``shutdown(wait=True)`` and the extraction."""
        manager = self._pool._executor_manager_thread  # None if never used or shut down
        self._pool.shutdown(wait=False, cancel_futures=True)
        if manager is not None:
            manager.join(CLOSE_GRACE if grace is None else grace)
            if manager.is_alive():  # kill what it waits for: its own list, as it is now
                procs = getattr(manager, "processes", None) or {}
                for proc in [*procs.values(), *self._started.values()]:
                    if proc.is_alive():
                        proc.kill()
                manager.join(CLOSE_GRACE)  # it was joining them: ends once they are reaped
        with self._lock:
            for shm in list(self._all.values()):
                self._free(shm)


_DISABLED: list[str] = []  # why worker processes are not used in this process, if so

# The shared pools by option set (each counts its holders: DlibProcessPool.holders).
_POOLS: dict[tuple, DlibProcessPool] = {}
_POOLS_LOCK = threading.Lock()


def disable(reason: str) -> None:
    """Use no worker processes from now on in this process (see :func:`usable`)."""
    _DISABLED.append(reason)
    for pool in list(_POOLS.values()):
        discard_pool(pool)


def usable() -> bool:
    """False after the workers failed to start once (e.g. an unguarded main script)."""
    return not _DISABLED


def _pool_locked(workers: int, predictor_path: str | None, redetect: int, nice: int):
    """The registered pool for these options, started if needed (under _POOLS_LOCK);
    with the pools that no extraction holds, to close outside the lock."""
    key = (workers, predictor_path, redetect, nice)
    pool = _POOLS.get(key)
    unheld: list[DlibProcessPool] = []
    if pool is None:
        unheld = _pop_unheld()
        pool = _POOLS[key] = DlibProcessPool(workers, predictor_path, redetect=redetect, nice=nice)
        pool.key = key
        # multiprocessing's exit function runs this in the main process (it is an atexit
        # handler) and in a multiprocessing child (a `sw-mro extract --devices` worker),
        # which leaves through os._exit and runs no atexit handler. It runs before that
        # function joins the child's non-daemon children, this pool's idle workers, which
        # waited for ever when the pool stayed open (priority above the executor's own
        # queue finalizers).
        pool._finalizer = mp_util.Finalize(pool, pool.close, exitpriority=100)
    return pool, unheld


def _pop_unheld() -> list[DlibProcessPool]:  # under _POOLS_LOCK
    return [_POOLS.pop(k) for k, p in list(_POOLS.items()) if not p.holders]


def _close_all(pools: list[DlibProcessPool]) -> int:
    for pool in pools:
        pool._finalizer()  # pool.close, once; unregistered from the exit handlers
    return len(pools)


def shared_pool(
    workers: int, predictor_path: str | None = None, *, redetect: int = 1, nice: int = 0
) -> DlibProcessPool:
    """The process-wide pool for these options, started on first use and kept for the
    next videos (each worker parses the 100 MB model once), closed at exit.

    Starting a pool for other options closes the pools that no extraction holds (found
    in review: one pool of workers and shared blocks per option set piled up in a
    process that extracted with several settings)."""
    with _POOLS_LOCK:
        pool, unheld = _pool_locked(workers, predictor_path, redetect, nice)
    _close_all(unheld)
    return pool


def hold_pool(
    workers: int, predictor_path: str | None = None, *, redetect: int = 1, nice: int = 0
) -> DlibProcessPool:
    """:func:`shared_pool`, kept open until :func:`release_pool` (an extraction's span).
    Found or started, and held, under one lock: no other thread closes it in between."""
    with _POOLS_LOCK:
        pool, unheld = _pool_locked(workers, predictor_path, redetect, nice)
        pool.holders += 1
    _close_all(unheld)
    return pool


def release_pool(pool: DlibProcessPool) -> None:
    """The end of a :func:`hold_pool`. A registered pool stays open for the next
    extraction; a discarded one (:func:`discard_pool`) closes with its last holder."""
    with _POOLS_LOCK:
        pool.holders = max(0, pool.holders - 1)
        orphan = not pool.holders and _POOLS.get(pool.key) is not pool
    _close_all([pool] if orphan else [])


def discard_pool(pool: DlibProcessPool) -> None:
    """Unregister ``pool`` (broken, or workers disabled): the next extraction starts a
    new one; it closes now if nobody holds it, else when its last holder releases it."""
    with _POOLS_LOCK:
        if _POOLS.get(pool.key) is pool:
            del _POOLS[pool.key]
        unheld = [] if pool.holders else [pool]
    _close_all(unheld)


def close_pools() -> int:
    """Close the shared worker pools that no extraction is using: their processes end
    and their shared memory is freed (``spotformer train`` calls it when extraction is
    done). The next extraction starts a pool again. Returns how many were closed."""
    with _POOLS_LOCK:
        unheld = _pop_unheld()
    return _close_all(unheld)
