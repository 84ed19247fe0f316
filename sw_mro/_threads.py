"""An iterator whose items a background thread produces ahead of the consumer."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "name_this_thread",
    "os_thread_name",
    "read_ahead",
    "set_os_thread_name",
    "start_named",
    "watch_parent",
]

_PR_SET_NAME, _PR_GET_NAME = 15, 16  # prctl(2); a name is at most 15 bytes


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def os_thread_name_of_current() -> str | None:
    """The calling thread's name as the OS knows it (None off Linux)."""
    prctl = _prctl()
    if prctl is None:
        return None
    buf = ctypes.create_string_buffer(16)
    if prctl(_PR_GET_NAME, buf, 0, 0, 0) != 0:
        return None
    return buf.value.decode(errors="replace")


def set_os_thread_name(name: str) -> None:
    """Name the calling thread for the OS (``top -H``, ``/proc/<pid>/task/*/comm``,
    ``py-spy``, ``gdb``): CPython 3.11 leaves every thread named after the program.

    Threads that this one starts afterwards inherit the name, native ones included
    (FFmpeg's decoders, OpenMP's), so CPU time can be traced to the code that started
    them. Linux only, best effort (15 bytes are kept); elsewhere a no-op."""
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


@contextlib.contextmanager
def os_thread_name(name: str) -> Iterator[None]:
    """The calling thread carries the OS name ``name`` inside the block (so the threads
    it starts there inherit it), then its own name again."""
    old = os_thread_name_of_current()
    set_os_thread_name(name)
    try:
        yield
    finally:
        if old is not None:
            set_os_thread_name(old)


def name_this_thread() -> None:
    """Give the calling thread its Python name at the OS level (a ``ThreadPoolExecutor``
    ``initializer``)."""
    set_os_thread_name(threading.current_thread().name)


def start_named(target: Callable[..., Any], args: tuple = (), *, name: str) -> threading.Thread:
    """Start a daemon thread named ``name`` both in Python and for the OS."""

    def run(*a: Any) -> None:
        name_this_thread()
        target(*a)

    thread = threading.Thread(target=run, args=args, daemon=True, name=name)
    thread.start()
    return thread


@contextlib.contextmanager
def signals_blocked(*signums: int) -> Iterator[None]:
    """These signals blocked in this thread while it starts worker processes: a spawned
    worker inherits the mask (through exec), so a Ctrl-C during its seconds of imports
    waits until the worker has set its own handling and unblocks them (found in review:
    a KeyboardInterrupt traceback per worker). In this process the signal goes to
    another thread, or arrives when unblocked.

    multiprocessing's resource tracker is started first (:func:`ensure_resource_tracker`):
    starting it (with the first spawned process) unblocks SIGINT and SIGTERM in the
    calling thread."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    ensure_resource_tracker()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ensure_resource_tracker() -> None:
    """Start multiprocessing's resource tracker, if it is not running, with SIGHUP
    blocked: it ignores SIGINT and SIGTERM by itself, but a SIGHUP to the process group
    (the terminal or the ssh connection closed) ended it, so the shared memory and
    semaphores it would free after a kill stayed, and unregistering them printed its
    tracebacks (found in review). Blocked, SIGHUP never reaches it; it ends when the
    processes using it have."""
    import signal
    from multiprocessing import resource_tracker

    hup = getattr(signal, "SIGHUP", None)
    if hup is None or not hasattr(signal, "pthread_sigmask"):
        resource_tracker.ensure_running()
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {hup})
    try:
        resource_tracker.ensure_running()  # the tracker inherits this thread's mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unblock_signals(*signums: int) -> None:
    """In a worker started under :func:`signals_blocked`, once it handles (or ignores)
    these signals: one sent while it started arrives now."""
    import signal

    if hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signums)


def watch_parent(parent: int, period: float = 0.5) -> threading.Thread:
    """End this process (``os._exit(0)``) once its parent ``parent`` is gone, from a
    daemon thread: for worker processes whose parent may be killed by a signal."""

    def watch() -> None:
        name_this_thread()
        while os.getppid() == parent:
            time.sleep(period)
        os._exit(0)

    thread = threading.Thread(target=watch, daemon=True, name="sw_mro-watch-parent")
    thread.start()
    return thread


def put_unless(q: queue.Queue, item: object, halted: Callable[[], bool]) -> bool:
    """Put ``item`` on ``q``, waiting while it is full, unless ``halted()`` first; True
    when the item went in."""
    while not halted():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def read_ahead(
    items: Iterable[T],
    depth: int = 1,
    *,
    stop: threading.Event | None = None,
    name: str = "sw_mro-read-ahead",
) -> Iterator[T]:
    """Iterate ``items`` with up to ``depth`` of them produced ahead in a thread.

    Work that releases the GIL (decoding, OpenCV, numpy) then overlaps the consumer's.
    Order is kept and an exception of ``items`` is raised at its place. The thread stops
    when ``stop`` is set or when the consumer goes away (the generator is closed).
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    halt = threading.Event()

    def halted() -> bool:
        return halt.is_set() or (stop is not None and stop.is_set())

    def offer(item: object) -> bool:
        # Unless halted first: a consumer that went away without closing this generator
        # (e.g. one whose exception keeps its frame alive) sets ``stop``.
        return put_unless(q, item, halted)

    def work() -> None:
        name_this_thread()
        try:
            for item in items:
                if not offer(item):
                    return
            offer(done)
        except BaseException as exc:  # handed to the consumer, re-raised there
            offer(exc)

    thread = threading.Thread(target=work, daemon=True, name=name)
    thread.start()
    try:
        while True:
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                # On stop the thread returns without an end marker: do not wait for one.
                if stop is not None and stop.is_set() and not thread.is_alive():
                    return
                continue
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        halt.set()
        while thread.is_alive():  # unblock a put on the full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
