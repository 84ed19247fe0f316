"""``numba.njit`` with numba's on-disk cache wherever one can be written.

numba's ``cache=True`` raises "cannot cache function ...: no locator available" when the
function is defined, if neither the package's ``__pycache__`` nor numba's user-wide
cache folder can be written: a read-only install used by someone whose home folder is
not writable (``docker run --user``, ``HOME=/nonexistent``). Found in review: every
extraction failed there, because the dlib landmarks import a numba module. :func:`njit`
then caches in ``$SW_MRO_CACHE/numba`` or in a folder of the user's own in the temp
folder (as the C++ Farneback does), and failing those compiles in each process, with
no cache. numba's global ``config.CACHE_DIR`` is only set while a function is defined.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import numba

__all__ = ["njit"]


_LOCK = threading.Lock()  # numba.config.CACHE_DIR is swapped under it


def _own_folder(path: str) -> bool:
    """``path`` exists or was made, is a folder (not a link to one: found in review),
    this user's and only writable by them."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    uid = getattr(os, "getuid", lambda: st.st_uid)()
    return (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid == uid
        and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        and os.access(path, os.W_OK)
    )


def fallback_cache_dirs() -> list[str]:
    """Where :func:`njit` caches when numba finds no place: ``$SW_MRO_CACHE/numba``, then
    ``<temp>/sw_mro-numba-<uid>``."""
    out = []
    if os.environ.get("SW_MRO_CACHE"):
        out.append(os.path.join(os.environ["SW_MRO_CACHE"], "numba"))
    uid = getattr(os, "getuid", lambda: "user")()
    out.append(os.path.join(tempfile.gettempdir(), f"sw_mro-numba-{uid}"))
    return out


def njit(**options: Any) -> Callable[[Callable], Any]:
    """``numba.njit(cache=True, **options)`` that never fails for want of a cache folder
    (see the module docstring)."""

    def wrap(fn: Callable) -> Any:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # no cache location numba can write
            pass
        for folder in fallback_cache_dirs():
            if not _own_folder(folder):
                continue
            with _LOCK:  # two threads importing at once must not keep each other's folder
                before = numba.config.CACHE_DIR
                numba.config.CACHE_DIR = folder  # read once, when the function's cache is made
                try:
                    return numba.njit(cache=True, **options)(fn)
                except RuntimeError:
                    continue
                finally:
                    numba.config.CACHE_DIR = before
        return numba.njit(cache=False, **options)(fn)

    return wrap
