"""glibc keeps freed memory for reuse while features are computed.

Each group of windows allocates and frees about 1 GB of large host tensors (crops,
Farneback expansions and flows, Kornia grids). glibc hands every block over its mmap
threshold (at most 32 MiB) back to the kernel when it is freed, so the next group's
blocks are fresh pages again: on the dev VM (2 cores, SPEC defaults, 48 frames of
640x480) 700,000-770,000 page faults and 1.1-1.3 s of system time per extraction.
:func:`reuse_freed_memory` raises glibc's mmap and trim thresholds while an extraction
runs, so freed blocks stay in the heap and are reused: ~190,000 faults for the first
group of an extraction and almost none after it (4.55-4.91 -> 4.25-4.54 s an
extraction; 3.9 s when the thresholds stay raised across extractions, as in the
command-line tools, :func:`keep_for_process`). The cost: a peak 10-17 % higher, held
between groups; it did not grow with the video's length (benchmarks/bench_extract.py,
``test_peak_memory_flat*``; docs/sw_mro.md, "Host memory"). At the end it
gives the free memory back (``malloc_trim``) and sets the thresholds to 32 and 64 MiB,
the values glibc's own rule reaches once a block of 32 MiB has been freed.

It does nothing where the process does not use glibc's malloc, where the user set
glibc's malloc tunables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_TOP_PAD_`` or ``glibc.malloc`` in ``GLIBC_TUNABLES``), or with
``SW_MRO_MALLOC=0``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["active", "keep_for_process", "reuse_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt(3)
HOLD = (1 << 30, 1 << 30)  # (mmap, trim) thresholds while an extraction runs
AFTER = (32 << 20, 64 << 20)  # glibc's dynamic maxima (DEFAULT_MMAP_THRESHOLD_MAX, 2x)
_USER_TUNABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

# Reentrant: the cyclic GC can finalize an abandoned stream (its scope's exit) on this
# thread while the lock is held here (found in review: with a plain Lock the process hung).
_lock = threading.RLock()
_users = 0
_raised = False  # whether glibc has HOLD now
_process_held = False  # keep_for_process() counted once


@functools.cache
def _libc() -> Any | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        lib = ctypes.CDLL(None)
        lib.mallopt.argtypes, lib.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        lib.malloc_trim.argtypes, lib.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return lib


def _wanted() -> bool:
    env = os.environ
    if env.get("SW_MRO_MALLOC", "").strip() == "0":
        return False
    if any(k in env for k in _USER_TUNABLES) or "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        return False
    return _libc() is not None


def active() -> bool:
    """Whether the thresholds are raised now (an extraction is running in this process)."""
    return _users > 0


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Raise glibc's thresholds for the duration (nested and concurrent uses count)."""
    global _users
    if not _wanted():
        yield
        return
    with _lock:
        _users += 1
        _settle()
    try:
        yield
    finally:
        if _lock is not None:  # None when a stream is finalized at interpreter shutdown
            with _lock:
                _users -= 1
                _settle()


def _settle() -> None:
    """Make glibc's thresholds match the count (under ``_lock``; a nested exit run by the
    GC in between settles first, and this call then sees its count)."""
    global _raised
    lib = _libc()
    if _users > 0 and not _raised:
        _raised = True
        # glibc before 2.35 refuses an mmap threshold over 32 MiB (HEAP_MAX_SIZE / 2) and
        # returns 0; the trim threshold alone would then freeze the mmap one at its start
        # value, 128 KiB, and every block over it would be mapped afresh (found in review:
        # 2-2.5x the page faults). Take the largest it accepts.
        if not lib.mallopt(_M_MMAP_THRESHOLD, HOLD[0]):
            lib.mallopt(_M_MMAP_THRESHOLD, AFTER[0])
        lib.mallopt(_M_TRIM_THRESHOLD, HOLD[1])
    elif _users == 0 and _raised:
        _raised = False
        lib.mallopt(_M_MMAP_THRESHOLD, AFTER[0])
        lib.mallopt(_M_TRIM_THRESHOLD, AFTER[1])
        lib.malloc_trim(0)


def keep_for_process() -> None:
    """For the command-line processes: the thresholds stay raised until the process
    ends, so the memory freed by one input is reused by the next (idempotent)."""
    global _process_held, _users
    if not _wanted():
        return
    with _lock:  # a count that no scope gives back (no generator left to finalize at exit)
        if not _process_held:
            _process_held = True
            _users += 1
            _settle()
