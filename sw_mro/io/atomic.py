"""Atomic file writes, one rule for every output of both packages.

A writer fills a hidden temp file next to the target (``.<name>.tmp``, same folder,
so the rename never crosses file systems). Only when it returns is the temp file
flushed to disk and renamed over the target, and the folder synced (POSIX), so that
the rename survives a power loss. When it fails, or the run is killed, the
target keeps its old content (or stays absent) and a failure leaves no temp file.
The writer holds an exclusive ``flock`` on its temp file until the rename (POSIX, where
the file system has locks): a second writer of the same target meanwhile gets a
``FileExistsError`` that says another process is writing it, and the temp file that a
killed writer left is taken over by the next one.

A target that is a link to a file is written through the link (the file it points to
is replaced, the link stays); a target that exists and is not a file (``/dev/null``,
``/dev/stdout``, a named pipe) is written in place, with nothing renamed onto it
(found in a probe: ``--out /dev/null`` run as root replaced the machine's
``/dev/null`` with a file); a folder is an ``IsADirectoryError``.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = [
    "NoFileLocks",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "fresh_temp",
    "hidden_name",
    "lock_at",
    "temp_name",
    "write_temp",
]

#: The longest file name, in bytes, of the common file systems (ext4, XFS, APFS, NTFS's
#: 255 UTF-16 units are at least this).
NAME_MAX = 255


def hidden_name(path: str | os.PathLike, tail: str) -> Path:
    """``.<name><tail>`` next to ``path``: the hidden file (a temp file, a lock) that goes
    with it. Where that name would be longer than :data:`NAME_MAX` bytes while ``path``'s
    own fits (found in review: a 253-byte output name failed with "File name too long"
    on its temp file), the name is cut and a hash of the whole of it keeps it unique:
    ``.<start of name>~<16 hex digits><tail>``."""
    import hashlib

    path = Path(path)
    name = f".{path.name}{tail}"
    raw = os.fsencode(name)
    if len(raw) <= NAME_MAX:
        return path.with_name(name)
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]
    keep = max(0, NAME_MAX - len(os.fsencode(f".~{digest}{tail}")))
    start = os.fsencode(path.name)[:keep].decode("utf-8", "ignore")  # whole characters
    if os.fsencode(start) != os.fsencode(path.name)[: len(os.fsencode(start))]:
        start = ""  # a name that is not UTF-8 (surrogate escapes): the hash alone
    return path.with_name(f".{start}~{digest}{tail}")


def temp_name(path: str | os.PathLike, *, keep_suffix: bool = False) -> Path:
    """The temp file that :func:`atomic_path` writes for ``path``: ``.<name>.tmp``, or
    ``.<name>.tmp<suffix>`` with ``keep_suffix`` (for writers that choose the format from
    the file name, such as PyAV or matplotlib); cut as :func:`hidden_name` says where
    that is too long a name."""
    path = Path(path)
    return hidden_name(path, ".tmp" + (path.suffix if keep_suffix else ""))


def fresh_temp(tmp: str | os.PathLike) -> Path:
    """Create ``tmp`` as a new, empty regular file of this process: whatever a killed
    run left there is removed first, and a symbolic link is removed, not followed
    (found in review: a link at ``.<name>.npy.tmp`` had the features written into the
    file it pointed to, and then was itself renamed into place as the output)."""
    tmp = Path(tmp)
    tmp.unlink(missing_ok=True)  # a link goes, not its target
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    os.close(os.open(tmp, flags, 0o666))  # the umask applies, as for open()
    return tmp


def _fsync(path: Path) -> None:
    # Windows flushes only a file opened for writing; POSIX syncs any descriptor.
    fd = os.open(path, os.O_RDONLY if os.name == "posix" else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX: the directory entry is only on disk
    once the folder is synced; found in review: after a power loss the outputs could
    be missing). Where a file system or OS cannot sync a folder, nothing more is done."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot sync a folder; a disk error raises
        if exc.errno not in _NO_DIR_SYNC:
            raise
    finally:
        os.close(fd)


_NO_DIR_SYNC = {
    getattr(errno, n)
    for n in ("EINVAL", "EBADF", "EOPNOTSUPP", "ENOTSUP", "EROFS")
    if hasattr(errno, n)
}


@contextmanager
def atomic_path(path: str | os.PathLike, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield the temp path to write; on a normal exit it is synced and renamed to ``path``.

    On an exception (a full disk, a bug in the writer, Ctrl-C) the temp file is removed
    and the exception propagates; ``path`` is untouched.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # through links
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    if mode is not None and not stat.S_ISREG(mode):  # a device, a pipe: no rename onto it
        yield path
        return
    if path.is_symlink():  # the file it points to is replaced; the link stays
        path = Path(os.path.realpath(path))
    if not path.parent.is_dir():  # found in review: a raw error on the temp file's name
        if path.parent.exists():
            raise NotADirectoryError(
                errno.ENOTDIR, f"not a folder (to write {path.name} in)", str(path.parent)
            )
        raise FileNotFoundError(
            errno.ENOENT, f"no such folder (to write {path.name} in)", str(path.parent)
        )
    tmp = temp_name(path, keep_suffix=keep_suffix)
    held = _claim_temp(tmp, path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:  # a read-only folder raises here too: never in place of the error on its way
        with suppress(OSError):
            if held is None or _is_open_file(held, tmp):  # not another writer's
                tmp.unlink(missing_ok=True)
        if held is not None:
            os.close(held)  # after the rename: the lock covers it


def _is_open_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.lstat(path))
    except OSError:
        return False


class NoFileLocks(OSError):
    """``flock`` is not supported where the file is (ENOLCK, EOPNOTSUPP: some network
    file systems)."""


def lock_at(path: Path, *, wait: bool = False) -> int:
    """A descriptor of the regular file at ``path`` (created where absent, the umask
    applying) holding an exclusive ``flock`` on it, and still the file at ``path`` when
    this returns (a holder before may have removed or renamed it). A link or a pipe at
    ``path`` is removed, never followed or locked (found in review: a link at a lock had
    the holder's pid written into the file it pointed to). The lock dies with the
    process. Raises ``BlockingIOError`` where another descriptor holds it (unless
    ``wait``), :class:`NoFileLocks` where the file system has no locks, and ``open``'s
    errors (a read-only folder). POSIX only (``fcntl``)."""
    import fcntl

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as exc:
            if exc.errno != errno.ELOOP or not path.is_symlink():
                raise
            path.unlink(missing_ok=True)
            continue
        regular = held = False
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            if regular:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    raise
                except OSError as exc:
                    raise NoFileLocks(exc.errno, exc.strerror, str(path)) from exc
                held = os.path.samestat(os.fstat(fd), os.lstat(path))
        except FileNotFoundError:  # removed by its holder before we got the lock
            pass
        except BaseException:
            os.close(fd)
            raise
        if held:
            return fd
        os.close(fd)
        if not regular:
            path.unlink(missing_ok=True)


def _claim_temp(tmp: Path, path: Path) -> int | None:
    """Make ``tmp`` a new, empty regular file of this writer, and hold an exclusive
    ``flock`` on it until the rename (:func:`lock_at`; the descriptor returned). Two
    writers of one target at once (two runs with one ``--out``) would otherwise share the
    temp file: found in review, one removed the other's and the first to finish renamed
    the other's half-written file into place. The second writer now gets a
    ``FileExistsError`` that says so, and the first writes on. A killed writer's lock
    dies with it: its temp file is reused. None, and unguarded as before, where there
    are no file locks (Windows, some network file systems) or a leftover of another
    user's cannot be opened."""
    try:
        fd = lock_at(tmp) if os.name == "posix" else None
    except BlockingIOError:
        raise FileExistsError(
            errno.EEXIST,
            f"another process is writing {path} now (its temp file is locked); wait for it "
            "to finish, or write elsewhere",
            str(tmp),
        ) from None
    except OSError:
        fd = None
    if fd is None:
        fresh_temp(tmp)  # raises what stops the write (a read-only folder)
        return None
    os.ftruncate(fd, 0)  # a killed writer's leftover
    return fd


def write_temp(tmp: Path, data: bytes, target: str | os.PathLike) -> None:
    """Write ``data`` to the temp file ``tmp`` of ``target``; an error that names no file
    (a full disk: ``write`` and ``close`` give none) names both (found in review:
    "OSError: [Errno 28] No space left on device" and nothing else)."""
    try:
        tmp.write_bytes(data)
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        why = f"{exc.strerror or exc} (writing {target})"
        raise OSError(exc.errno, why, str(tmp)) from exc


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        write_temp(tmp, data, path)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))
