"""An iterator whose items a background thread produces ahead of the consumer."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

__all__ = ["read_ahead", "watch_parent"]


def watch_parent(parent: int, period: float = 0.5) -> threading.Thread:
    """End this process (``os._exit(0)``) once its parent ``parent`` is gone, from a
    daemon thread: for worker processes whose parent may be killed by a signal."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        os._exit(0)

    thread = threading.Thread(target=watch, daemon=True, name="sw_mro-watch-parent")
    thread.start()
    return thread


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

    def work() -> None:
        try:
            for item in items:
                while not halted():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if halted():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer, re-raised there
            q.put(exc)

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
