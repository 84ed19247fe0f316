"""Tests added after mutation testing of the output writing (sw_mro.io.atomic,
sw_mro.io.writer), the ``--devices`` dispatcher (sw_mro.commands.devices) and the
landmark worker pool (sw_mro.io.landmark_pool): each checks a behaviour that a
plausible bug would break and that no earlier test pinned down."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from sw_mro.io.atomic import NAME_MAX, atomic_path, atomic_write_bytes, atomic_write_text
from sw_mro.io.atomic import temp_name as atomic_temp_name

# --------------------------------------------------------------------------- atomic


@pytest.mark.skipif(os.name != "posix", reason="POSIX folders are synced")
def test_a_disk_error_syncing_the_folder_raises_an_unsupported_sync_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that cannot sync a folder (EINVAL) is not an error; a disk error
    (EIO) while syncing it is: the output may not survive a power loss."""
    real_fsync = os.fsync
    failure: list[int] = []

    def fsync(fd: int) -> None:
        if failure and stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(failure[0], os.strerror(failure[0]))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    failure.append(errno.EINVAL)
    atomic_write_text(tmp_path / "a.json", "a")
    assert (tmp_path / "a.json").read_text() == "a"
    failure[0] = errno.EIO
    with pytest.raises(OSError) as err:
        atomic_write_text(tmp_path / "b.json", "b")
    assert err.value.errno == errno.EIO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]  # no temp


def test_temp_names_at_the_name_length_limit(tmp_path: Path) -> None:
    """``.<name>.tmp`` of exactly NAME_MAX bytes is kept as it is; one byte more is cut
    to NAME_MAX bytes; names that differ only past the cut get different temp files;
    and every one of them can be written."""
    fits = "a" * (NAME_MAX - len(".") - len(".tmp"))
    assert atomic_temp_name(tmp_path / fits).name == f".{fits}.tmp"
    longer = fits + "b"
    cut = atomic_temp_name(tmp_path / longer).name
    assert len(os.fsencode(cut)) == NAME_MAX and cut.endswith(".tmp")
    twin = fits + "c"  # differs from `longer` in its last byte only
    assert atomic_temp_name(tmp_path / twin) != atomic_temp_name(tmp_path / longer)
    for i, name in enumerate([fits, longer, twin]):
        atomic_write_bytes(tmp_path / name, bytes([i]))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fits, longer, twin])
    assert [(tmp_path / n).read_bytes() for n in (fits, longer, twin)] == [b"\0", b"\1", b"\2"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_link_target_is_replaced_atomically_not_written_in_place(tmp_path: Path) -> None:
    """Through a link, the file it points to keeps its old content until the writer
    returns (a failure leaves it whole), as for a plain target."""
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "out.csv"
    link.symlink_to(real)
    with pytest.raises(RuntimeError, match="writer broke"), atomic_path(link) as tmp:
        assert tmp != link and tmp.parent == tmp_path
        tmp.write_text("half")
        assert real.read_text() == "old"
        raise RuntimeError("writer broke")
    assert real.read_text() == "old" and link.is_symlink()
    with atomic_path(link) as tmp:
        tmp.write_text("new")
        assert real.read_text() == "old"
    assert real.read_text() == "new" and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "real.csv"]


def test_a_write_error_that_names_a_file_is_kept_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only an error that names no file is given the output's name: one that names its
    file already (here another one) keeps that name and its message."""
    import pathlib

    elsewhere = str(tmp_path / "elsewhere")

    def broken(self: Path, data: bytes) -> None:
        raise OSError(errno.EIO, "Input/output error", elsewhere)

    monkeypatch.setattr(pathlib.Path, "write_bytes", broken)
    with pytest.raises(OSError) as err:
        atomic_write_text(tmp_path / "out.json", "x")
    assert err.value.errno == errno.EIO and err.value.filename == elsewhere
    assert err.value.strerror == "Input/output error"
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_write_video_of_no_frames_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    from sw_mro.io.writer import write_video

    with pytest.raises(ValueError, match="no frames given"):
        write_video(tmp_path / "empty.mp4", [])
    assert list(tmp_path.iterdir()) == []


def test_write_video_makes_its_folder(tmp_path: Path) -> None:
    from sw_mro.io.writer import write_video

    path = write_video(tmp_path / "a" / "b" / "v.mp4", [np.zeros((16, 16, 3), np.uint8)] * 2)
    assert path.is_file() and path.stat().st_size > 0
    assert [p.name for p in path.parent.iterdir()] == ["v.mp4"]


# --------------------------------------------------------------------------- --devices


def _job(device: str, path: str, options: dict, progress) -> str:
    """A stand-in job for run_on_devices (importable by the spawned workers)."""
    name = Path(path).name
    folder = Path(options["dir"]) if "dir" in options else None
    if name.startswith("crash"):
        os._exit(9)  # a segfault, the OOM killer
    if name.startswith("raise"):
        raise RuntimeError(f"bad input {name}")
    if name.startswith("slow"):  # stopped by the parent: cleans up, as an extraction does
        (folder / "slow-started").touch()
        try:
            time.sleep(120)
        except KeyboardInterrupt:
            (folder / "slow-cleaned-up").touch()
            raise
    if name.startswith("after-slow"):  # done only once "slow" is in its job
        for _ in range(1200):
            if (folder / "slow-started").exists():
                break
            time.sleep(0.05)
    if options.get("y_dies_once"):
        if device == "y" and not (folder / "y-died").exists():
            (folder / "y-died").touch()
            os._exit(9)
        if device == "y":
            (folder / "y-done").touch()
        else:  # x holds its input until a y worker did one (or gives up after 60 s)
            for _ in range(1200):
                if (folder / "y-done").exists():
                    break
                time.sleep(0.05)
    return f"{name} on {device} pid {os.getpid()}"


def test_an_input_given_twice_runs_once() -> None:
    from sw_mro.commands.devices import run_on_devices

    seen: list[str] = []
    run = run_on_devices(
        ["a", "b", "a"], ["cpu"], _job, {}, on_result=lambda p, ok, line: seen.append(p)
    )
    assert sorted(seen) == ["a", "b"] and sorted(run.done) == ["a", "b"]


def test_inputs_are_handed_out_largest_first(tmp_path: Path) -> None:
    from sw_mro.commands.devices import run_on_devices

    sizes = {"mid": 20, "small": 1, "big": 300, "tiny": 0}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
    order: list[str] = []
    run_on_devices(
        [str(tmp_path / n) for n in sizes],
        ["cpu"],  # one worker: it takes them in the order they are handed out
        _job,
        {},
        on_result=lambda p, ok, line: order.append(Path(p).name),
    )
    assert order == sorted(sizes, key=sizes.get, reverse=True)


def test_an_input_done_resets_the_count_of_deaths_in_a_row() -> None:
    """Worker deaths count in a row: two, an input done, two more do not retire the
    device, and the inputs after them are done."""
    from sw_mro.commands.devices import MAX_DEATHS, run_on_devices

    assert MAX_DEATHS == 3  # the inputs below are laid out for it
    inputs = ["crash1", "crash2", "a", "crash3", "crash4", "b"]
    run = run_on_devices(inputs, ["cpu"], _job, {})
    assert sorted(run.done) == ["a", "b"]
    assert sorted(run.failed) == ["crash1", "crash2", "crash3", "crash4"]


def test_input_errors_in_a_row_keep_their_worker() -> None:
    """An input that raises (not a device error) fails alone: the same worker process
    takes the next ones, however many fail in a row."""
    from sw_mro.commands.devices import run_on_devices

    inputs = ["a", "raise1", "raise2", "raise3", "raise4", "b"]
    run = run_on_devices(inputs, ["cpu"], _job, {})
    assert sorted(run.done) == ["a", "b"]
    assert all(run.failed[f"raise{i}"] == f"RuntimeError: bad input raise{i}" for i in range(1, 5))
    assert run.done["a"].rsplit(" ", 1)[1] == run.done["b"].rsplit(" ", 1)[1]  # one pid


def test_a_dead_worker_is_replaced_on_its_own_device(tmp_path: Path) -> None:
    """The worker of device y dies on its first input; its replacement runs on y (not on
    another device of the list) and does the input left."""
    from sw_mro.commands.devices import run_on_devices

    opts = {"dir": str(tmp_path), "y_dies_once": True}
    run = run_on_devices(["i1", "i2", "i3"], ["x", "y"], _job, opts)
    assert len(run.failed) == 1 and len(run.done) == 2, run
    (died,) = run.failed
    assert run.failed[died] == "the worker process on y ended (exit code 9) while working on it"
    assert any(" on y pid " in line for line in run.done.values()), run.done


def test_an_error_in_the_caller_stops_the_workers_and_lets_them_clean_up(
    tmp_path: Path,
) -> None:
    """A failure in this process (an on_result callback here; Ctrl-C alike) propagates,
    and a worker in the middle of an input is interrupted so that its cleanup runs (it
    removes its temp files), not killed at the deadline."""
    from sw_mro.commands.devices import run_on_devices

    def boom(path: str, ok: bool, line: str) -> None:
        raise RuntimeError(f"caller failed at {Path(path).name}")

    with pytest.raises(RuntimeError, match="caller failed at after-slow"):
        run_on_devices(["slow", "after-slow"], ["cpu", "cpu"], _job, {"dir": str(tmp_path)},
                       on_result=boom)  # fmt: skip
    assert (tmp_path / "slow-cleaned-up").exists()


# --------------------------------------------------------------------------- landmark pool


def test_a_chunk_without_jobs_gives_its_block_back_at_once() -> None:
    from sw_mro.io.landmark_pool import DlibProcessPool

    pool = DlibProcessPool(1)
    try:
        sub = pool.submit(np.zeros((2, 8, 8, 3), np.uint8), [])
        assert len(pool._idle) == 1 and list(pool._all.values()) == pool._idle
        assert sub.result() == []
    finally:
        pool.close()
    assert pool._all == {} and pool._idle == []


def test_a_failed_submit_gives_its_block_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A submission that fails before any job is queued (the executor broke) gives its
    shared block back for the next chunk, and close frees it."""
    from sw_mro.io.landmark_pool import DlibProcessPool

    pool = DlibProcessPool(1)
    try:

        def broken(*args, **kwargs):
            raise RuntimeError("cannot schedule new futures after shutdown")

        monkeypatch.setattr(pool._pool, "submit", broken)
        frames = np.zeros((2, 8, 8, 3), np.uint8)
        with pytest.raises(RuntimeError, match="cannot schedule"):
            pool.submit(frames, [(0, 2, None)])
        (name,) = pool._all
        assert [b.name for b in pool._idle] == [name]
        with pytest.raises(RuntimeError, match="cannot schedule"):
            pool.submit(frames, [(0, 2, None)])
        assert list(pool._all) == [name]  # reused, not a second block
    finally:
        monkeypatch.undo()
        pool.close()
    assert pool._all == {}


def test_a_full_dev_shm_leaves_no_block_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """When /dev/shm cannot hold a block (ENOSPC at the page reservation), the block
    made there is removed before the memfd fallback: nothing of this pool stays in
    /dev/shm."""
    from sw_mro.io import landmark_pool
    from sw_mro.io.landmark_pool import SHM_PREFIX, DlibProcessPool

    def ours() -> set[str]:
        mine = f"{SHM_PREFIX}{os.getpid()}_"
        return {n for n in os.listdir("/dev/shm") if n.startswith(mine)}

    reserve = landmark_pool._reserve

    def no_room_in_dev_shm(fd: int, size: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith("/dev/shm/"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        reserve(fd, size)

    before = ours()
    monkeypatch.setattr(landmark_pool, "_reserve", no_room_in_dev_shm)
    pool = DlibProcessPool(1)
    try:
        pool.submit(np.zeros((2, 8, 8, 3), np.uint8), [])  # no jobs: no worker starts
        assert pool.dev_shm_full
        (name,) = pool._all
        assert name.startswith(f"/proc/{os.getpid()}/fd/")
        assert ours() == before
    finally:
        pool.close()


def test_close_cancels_the_jobs_still_queued() -> None:
    """close() does not run the segments still waiting for a worker (an extraction
    that stops early would otherwise wait for all of them): with one worker still
    starting, the jobs queued behind it are cancelled, and their block is freed."""
    from sw_mro.io.landmark_pool import DlibProcessPool

    pool = DlibProcessPool(1)
    sub = pool.submit(np.zeros((40, 16, 16, 3), np.uint8), [(i, i + 1, None) for i in range(40)])
    pool.close()
    assert sum(f.cancelled() for f in sub.futures) > 0
    assert pool._all == {} and pool._idle == []


def test_a_discarded_pool_closes_with_its_last_holder_not_its_first() -> None:
    """Two extractions hold a pool that is then discarded: the first one's release must
    not close it under the second (no submissions: no worker process starts)."""
    from sw_mro.io import landmark_pool

    first = landmark_pool.hold_pool(1, redetect=31)
    second = landmark_pool.hold_pool(1, redetect=31)
    assert first is second and first.holders == 2
    landmark_pool.discard_pool(first)
    landmark_pool.release_pool(first)
    assert not first._pool._shutdown_thread  # still in use by the second
    landmark_pool.release_pool(second)
    assert first._pool._shutdown_thread  # closed with its last holder
