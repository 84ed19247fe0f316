"""Atomic file writes, one rule for every output of both packages.

A writer fills a hidden temp file next to the target (``.<name>.tmp``, same folder,
so the rename never crosses file systems). Only when it returns is the temp file
flushed to disk and renamed over the target. When it fails, or the run is killed, the
target keeps its old content (or stays absent) and a failure leaves no temp file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "temp_name"]


def temp_name(path: str | os.PathLike, *, keep_suffix: bool = False) -> Path:
    """The temp file that :func:`atomic_path` writes for ``path``: ``.<name>.tmp``, or
    ``.<name>.tmp<suffix>`` with ``keep_suffix`` (for writers that choose the format from
    the file name, such as PyAV or matplotlib)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp" + (path.suffix if keep_suffix else ""))


def _fsync(path: Path) -> None:
    # Windows flushes only a file opened for writing; POSIX syncs any descriptor.
    fd = os.open(path, os.O_RDONLY if os.name == "posix" else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield the temp path to write; on a normal exit it is synced and renamed to ``path``.

    On an exception (a full disk, a bug in the writer, Ctrl-C) the temp file is removed
    and the exception propagates; ``path`` is untouched.
    """
    path = Path(path)
    tmp = temp_name(path, keep_suffix=keep_suffix)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))
