"""The one atomic-write rule (sw_mro.io.atomic) and the writers that use it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from spotformer.data.table import AnnotationTable, Expression
from spotformer.metrics import Interval, read_intervals, write_intervals
from sw_mro.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text, temp_name
from sw_mro.io.writer import write_video


def test_atomic_path_renames_only_on_success(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp == tmp_path / ".out.csv.tmp" and tmp.parent == target.parent
        tmp.write_text("new")
        assert target.read_text() == "old"  # not replaced before the writer returns
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_atomic_path_failure_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError, match="writer broke"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer broke")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_temp_name_keeps_the_suffix_for_format_guessing_writers(tmp_path):
    assert temp_name(tmp_path / "clip.mp4", keep_suffix=True).name == ".clip.mp4.tmp.mp4"
    assert temp_name(tmp_path / "clip.mp4").name == ".clip.mp4.tmp"


def test_write_video_failure_leaves_nothing(tmp_path):
    frames = [np.zeros((32, 32, 3), np.uint8), np.zeros((33, 32, 3), np.uint8)]  # odd height
    with pytest.raises(ValueError, match="even H and W"):
        write_video(tmp_path / "v.mp4", frames)
    assert list(tmp_path.iterdir()) == []


def test_csv_writers_leave_no_temp_on_failure(tmp_path):
    out = tmp_path / "pred.csv"
    good = [Interval("v1", 3, 9, "macro", 0.5)]
    write_intervals(good, out)

    def broken():
        yield Interval("v1", 1, 2, "micro", 0.25)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_intervals(broken(), out)
    assert [(i.onset, i.offset) for i in read_intervals(out)] == [(3, 9)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.csv"]

    table = AnnotationTable([Expression("s1", "v1", 3, 5, 9, "macro")])
    table.to_csv(tmp_path / "ann.csv")
    table.expressions.append(object())  # not an Expression: the writer fails mid-file
    with pytest.raises(AttributeError):
        table.to_csv(tmp_path / "ann.csv")
    assert (tmp_path / "ann.csv").read_text().count("\n") == 2  # header + the old row
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.csv", "pred.csv"]


@pytest.mark.skipif(not hasattr(__import__("os"), "symlink"), reason="needs symbolic links")
def test_a_link_at_the_temp_path_is_removed_not_followed(tmp_path):
    """Found in review: a link left at ``.<name>.tmp`` (a shared folder) had the output
    written into the file it pointed to, and was then itself renamed into place."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out.json"
    (tmp_path / ".out.json.tmp").symlink_to(victim)
    atomic_write_text(target, "new")
    assert victim.read_text() == "precious"
    assert not target.is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "victim.txt"]
    # A leftover regular temp file of a killed run is replaced the same way.
    (tmp_path / ".out.json.tmp").write_text("stale, and longer than the new text")
    atomic_write_text(target, "newer")
    assert target.read_text() == "newer"


def test_a_full_disk_while_writing_names_the_file(tmp_path, monkeypatch):
    """``write``/``close`` on a full disk raise an OSError that names no file (found in
    review: "OSError: [Errno 28] No space left on device" for a JSON): the error names
    the output and its temp file, and the old file stays."""
    import errno
    import pathlib

    target = tmp_path / "meta.json"
    atomic_write_text(target, "old")

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    with pytest.raises(OSError) as err:
        atomic_write_text(target, "new")
    assert err.value.errno == errno.ENOSPC
    assert err.value.filename == str(tmp_path / ".meta.json.tmp")
    assert f"No space left on device (writing {target})" in str(err.value)
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


@pytest.mark.skipif(__import__("os").name != "posix", reason="POSIX folders are synced")
def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    """Found in review: nothing synced the folder after the rename, so after a power loss
    an output could be missing. The temp file is synced, renamed, then its folder."""
    import os
    import stat

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):  # the output's own folder, not another
            events.append("dir" if st.st_ino == os.stat(tmp_path).st_ino else "other dir")
        else:
            events.append("file")
        real_fsync(fd)

    def replace(a, b):
        events.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_text(tmp_path / "out.json", "{}")
    assert events == ["file", "rename", "dir"]


def test_a_missing_folder_is_named_not_the_temp_file(tmp_path):
    """Writing into a folder that does not exist (or is a file) names that folder; it
    used to be a raw FileNotFoundError on the temp name ``rt/.all.csv.tmp`` (found in
    review, with ``AnnotationTable.to_csv``)."""
    with pytest.raises(FileNotFoundError, match="no such folder \\(to write all.csv in\\)") as e:
        AnnotationTable([]).to_csv(tmp_path / "rt" / "all.csv")
    assert e.value.filename == str(tmp_path / "rt")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder \\(to write x.bin in\\)"):
        atomic_write_bytes(tmp_path / "file" / "x.bin", b"data")
    assert not list(tmp_path.glob("**/.*tmp*"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_pipe_or_device_target_is_written_in_place_not_replaced(tmp_path):
    """Found in a probe: ``spotformer spot --out /dev/null`` run as root renamed its temp
    file onto /dev/null, replacing the machine's null device with a file. A target that
    is not a file (a pipe here, as /dev/null or /dev/stdout) is written in place."""
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    write_intervals([Interval("v", 1, 5, "macro", 0.5)], fifo)
    reader.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the pipe
    assert got and got[0].startswith("video,onset,offset,type") and "v,1,5,macro" in got[0]
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temp file left
    with pytest.raises(IsADirectoryError, match="is a folder"):
        atomic_write_text(tmp_path, "x")


def test_a_link_target_is_written_through_the_link(tmp_path):
    """A link to a file keeps being a link; the file it points to gets the content (a
    rename onto the link replaced the link with a file). A broken link creates its file."""
    (tmp_path / "elsewhere").mkdir()
    real = tmp_path / "elsewhere" / "out.csv"
    real.write_text("old")
    link = tmp_path / "out.csv"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    dangling = tmp_path / "later.csv"
    dangling.symlink_to(tmp_path / "elsewhere" / "later-real.csv")
    atomic_write_text(dangling, "made")
    assert dangling.is_symlink() and dangling.read_text() == "made"
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == [
        "later-real.csv",
        "out.csv",
    ]


def test_a_second_writer_of_one_target_is_refused_while_the_first_writes(tmp_path):
    """Two writers of one target at once share its temp file name: the second is refused
    while the first holds it (found in review: it removed the first's temp file, and the
    first then renamed the second's half-written file into place)."""
    target = tmp_path / "pred.csv"
    target.write_text("old, complete\n")
    first = atomic_path(target)
    tmp = first.__enter__()
    tmp.write_text("first: the whole ")
    with pytest.raises(FileExistsError, match=f"another process is writing {target}"):
        with atomic_path(target) as other:
            other.write_text("second")
    assert tmp.read_text() == "first: the whole "  # neither removed nor emptied
    with open(tmp, "a") as fh:
        fh.write("output\n")
    first.__exit__(None, None, None)
    assert target.read_text() == "first: the whole output\n"
    atomic_write_text(target, "third\n")  # the lock went with the first writer
    assert target.read_text() == "third\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.csv"]


_HOLDER = """
import os, signal, sys
from sw_mro.io.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("child: half")
    print("holding", flush=True)
    if sys.stdin.readline().strip() == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    with open(tmp, "a") as fh:
        fh.write(" and the rest")
"""


@pytest.mark.parametrize("end", ["finish", "kill"])
def test_a_writer_in_another_process_holds_its_temp_file_until_it_ends_or_dies(tmp_path, end):
    """Another process's writer holds the temp file until it renames it; one killed
    mid-write leaves its temp file, which the next writer takes over (the lock died with
    the process), and the target keeps its old content meanwhile."""
    import subprocess
    import sys

    target = tmp_path / "model.json"
    target.write_text("old")
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "holding"
        with pytest.raises(FileExistsError, match="another process is writing"):
            atomic_write_text(target, "mine")
        child.stdin.write(end + "\n")
        child.stdin.flush()
        child.wait(timeout=60)
    finally:
        child.kill()
        child.wait()
    if end == "finish":
        assert child.returncode == 0
        assert target.read_text() == "child: half and the rest"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]
        return
    assert child.returncode == -9
    assert target.read_text() == "old"
    assert temp_name(target).read_text() == "child: half"  # the killed writer's leftover
    atomic_write_text(target, "mine")
    assert target.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]
