"""Gaps in tests/test_extract_cli.py found by mutation testing of ``sw-mro extract``
(sw_mro/commands/extract.py and the parts of sw_mro/_cli_util.py it uses).

Each test names the behaviour it pins down: output naming, the JSON metadata's fields,
the progress bar and --quiet, the options that reach the config, a leftover of a killed
--overwrite, an output path taken by a folder, the output-name length limit, the
--devices workers' options. Every input is real and made here: carphone's first frames
written as H.264 with PyAV (tests/videos.py) or as PNG frames with OpenCV.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from videos import encode, write_frames

import sw_mro
from sw_mro.cli import main

ARGS = ["--window", "3", "--face-size", "64"]
FRAMES = 12


@pytest.fixture(scope="module")
def frames(carphone: str) -> np.ndarray:
    from sw_mro.io.video import open_video

    return open_video(carphone).read(range(FRAMES)).numpy()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, frames: np.ndarray) -> Path:
    """carphone's first 12 frames as H.264 (176x144): a quick real video."""
    return encode(tmp_path_factory.mktemp("clip") / "clip.mp4", list(frames))


def _folder(path: Path, frames: np.ndarray) -> Path:
    return write_frames(path, [f"img{i + 1:03d}.png" for i in range(len(frames))], frames)


def _meta(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


# --------------------------------------------------------------------------- naming


def test_a_frame_folder_with_a_dot_is_named_by_its_whole_name(
    tmp_path: Path, frames: np.ndarray, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A folder's outputs take its whole name (``s01.take2`` is not a file ``s01`` with
    suffix ``.take2``); given as a relative path, the JSON's ``input`` is absolute, and
    it says that the rate came from --fps."""
    _folder(tmp_path / "s01.take2", frames)
    monkeypatch.chdir(tmp_path)
    assert main(["extract", "s01.take2", "--out-dir", "out", *ARGS, "--fps", "200", "--quiet"]) == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["s01.take2.json", "s01.take2.npy"]
    meta = _meta(out, "s01.take2")
    assert meta["input"] == str(tmp_path / "s01.take2")
    assert (meta["source_fps"], meta["source_fps_from"]) == (200.0, "--fps")
    assert f"wrote {Path('out') / 's01.take2.npy'}" in capsys.readouterr().out


def test_a_frame_folder_without_fps_records_the_default_rate(
    tmp_path: Path, frames: np.ndarray
) -> None:
    """Without --fps a frame folder's rate is the default (30), and the JSON says so."""
    from sw_mro.io.video import DEFAULT_FOLDER_FPS

    folder = _folder(tmp_path / "f", frames)
    assert main(["extract", str(folder), "--out-dir", str(tmp_path / "o"), *ARGS, "--quiet"]) == 0
    meta = _meta(tmp_path / "o", "f")
    assert meta["source_fps"] == DEFAULT_FOLDER_FPS
    assert meta["source_fps_from"].startswith("default")


def test_an_output_name_of_exactly_255_bytes_is_written(tmp_path: Path, clip: Path) -> None:
    """``<name>.json`` of exactly 255 bytes (NAME_MAX) is a valid file name: extracted,
    not refused as too long."""
    from sw_mro.io.atomic import NAME_MAX

    stem = "n" * (NAME_MAX - len(".json"))
    video = Path(shutil.copy(clip, tmp_path / f"{stem}.mp4"))
    out = tmp_path / "o"
    assert main(["extract", str(video), "--out-dir", str(out), *ARGS, "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.json", f"{stem}.npy"]


def test_the_output_name_limit_counts_bytes_not_characters(
    tmp_path: Path, clip: Path, capsys
) -> None:
    """A name of 3-byte characters whose ``.json`` is 90 characters but 256 bytes is
    refused up front, with the byte count, like an ASCII one."""
    stem = "\u89c6" * 83 + "xx"  # 251 bytes; <stem>.mp4 is 255 bytes, <stem>.json 256
    video = Path(shutil.copy(clip, tmp_path / f"{stem}.mp4"))
    assert main(["extract", str(video), "--out-dir", str(tmp_path / "o"), *ARGS, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {video}: OutputNameError: its output {stem}.json would be a 256-byte" in err
    assert "Errno" not in err


def test_an_npy_output_path_that_is_a_folder_fails_before_any_work(
    tmp_path: Path, clip: Path, capsys
) -> None:
    """Not only ``<name>.json``: a folder at ``<name>.npy`` fails the input at once (not
    after the extraction, at the rename), naming it, and the next input goes on."""
    out = tmp_path / "o"
    (out / "clip.npy").mkdir(parents=True)
    other = Path(shutil.copy(clip, tmp_path / "other.mp4"))
    rc = main(["extract", str(clip), str(other), "--out-dir", str(out), *ARGS, "--quiet"])
    io = capsys.readouterr()
    assert rc == 1
    assert f"FAILED {clip}: IsADirectoryError: {out / 'clip.npy'} is a folder; move it" in io.err
    assert "wrote" in io.out and "1 of 2 inputs done" in io.out
    assert sorted(p.name for p in out.iterdir()) == ["clip.npy", "other.json", "other.npy"]
    assert not any((out / "clip.npy").iterdir())


# --------------------------------------------------------------------------- metadata


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("written")
    argv = ["extract", str(clip), "--out-dir", str(out), *ARGS, "--batch-size", "4", "--quiet"]
    assert main(argv) == 0
    return out, _meta(out, "clip")


def test_the_json_records_the_frame_size_and_the_rois(written: tuple[Path, dict]) -> None:
    """height and width are the video's (176 wide, 144 high: not swapped), and the ROI
    landmarks and groups are the config's, in order, all of them."""
    _, meta = written
    cfg = sw_mro.SWMROConfig(window=3, face_size=64)
    assert (meta["height"], meta["width"]) == (144, 176)
    assert meta["roi_landmarks"] == list(cfg.roi_landmarks)
    assert meta["roi_groups"] == [list(g) for g in cfg.roi_groups]
    assert len(meta["roi_landmarks"]) == meta["shape"][2] == 10 and len(meta["roi_groups"]) == 3


def test_the_json_s_frame_rate_is_frames_over_seconds(written: tuple[Path, dict]) -> None:
    """``frames_per_second`` is the extraction's rate: frames / seconds, not its inverse."""
    _, meta = written
    assert meta["seconds"] > 0
    want = meta["num_frames"] / meta["seconds"]
    assert meta["frames_per_second"] == pytest.approx(want, rel=0.02, abs=0.02)


def test_batch_size_reaches_the_config(written: tuple[Path, dict]) -> None:
    """--batch-size is the config's (and the JSON's), not the default."""
    _, meta = written
    assert meta["config"]["batch_size"] == 4
    assert meta["config"]["resolved"]["batch_size"] == 4


def test_stage_seconds_add_up_over_the_chunks() -> None:
    """Each chunk's stage times are added to the totals, not put in their place."""
    import torch

    from sw_mro.commands.extract import _write_chunk

    class Chunk:
        def __init__(self, start: int, flow: float) -> None:
            self.start, self.fallback_frames = start, [start]
            self.stats = {"flow": flow, "decode": 0.5}

    out = np.zeros((4, 3, 10, 2), np.float32)
    stages: dict[str, float] = {}
    fallback: list[int] = []
    for start, flow in ((0, 1.0), (2, 2.0)):
        host = torch.full((2, 3, 10, 2), float(start + 1))
        assert _write_chunk(out, Chunk(start, flow), host, None, fallback, stages) == 2
    assert stages == {"flow": 3.0, "decode": 1.0} and fallback == [0, 2]
    assert out[:2].min() == out[:2].max() == 1 and out[2:].min() == out[2:].max() == 3


# --------------------------------------------------------------------------- progress


def test_the_progress_bar_counts_frames_and_quiet_hides_it(
    tmp_path: Path, clip: Path, capsys
) -> None:
    """The bar is named after the output and counts frames to the video's total
    (12/12); --quiet shows none."""
    assert main(["extract", str(clip), "--out-dir", str(tmp_path / "a"), *ARGS]) == 0
    err = capsys.readouterr().err
    assert re.search(rf"clip: 100%\|[^|]*\| {FRAMES}/{FRAMES} ", err), err
    assert main(["extract", str(clip), "--out-dir", str(tmp_path / "b"), *ARGS, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "frame/s" not in err and "%|" not in err and "it/s" not in err, err


# --------------------------------------------------------------------------- options


def test_a_nested_out_dir_is_made(tmp_path: Path, clip: Path) -> None:
    """--out-dir a/b/c whose parents do not exist yet is made, parents and all."""
    out = tmp_path / "a" / "b" / "c"
    assert main(["extract", str(clip), "--out-dir", str(out), *ARGS, "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip.json", "clip.npy"]


def test_a_blank_out_dir_is_refused(clip: Path, capsys) -> None:
    """Only spaces (an unset variable in quotes with a space) is not a folder name."""
    with pytest.raises(SystemExit) as exc:
        main(["extract", str(clip), "--out-dir", "  "])
    assert exc.value.code == 2
    assert "--out-dir: empty; give a folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- overwrite


def test_a_skip_removes_the_json_a_killed_overwrite_set_aside(
    tmp_path: Path, clip: Path, capsys
) -> None:
    """--overwrite keeps the old JSON aside (``.<name>.json.old``) while the features
    are replaced; one that a killed run left is removed when the output is skipped."""
    out = tmp_path / "o"
    argv = ["extract", str(clip), "--out-dir", str(out), *ARGS, "--quiet"]
    assert main(argv) == 0
    aside = out / ".clip.json.old"
    aside.write_text((out / "clip.json").read_text())
    capsys.readouterr()
    assert main(argv) == 0 and "skipped" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["clip.json", "clip.npy"]


def test_a_failed_first_rename_reports_its_own_error(
    tmp_path: Path, clip: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The features' final rename fails where there was no output before: the error is
    that rename's (EPERM, naming the file), not one about a JSON set aside that never
    was; nothing is left behind."""
    real = os.replace

    def refuse(src, dst):  # noqa: ANN001, ANN202
        if str(src).endswith(".npy.tmp"):
            raise PermissionError(errno.EPERM, "Operation not permitted", str(src))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    out = tmp_path / "o"
    assert main(["extract", str(clip), "--out-dir", str(out), *ARGS, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {clip}: PermissionError: [Errno {errno.EPERM}] Operation not permitted" in err
    assert "FileNotFoundError" not in err
    assert sorted(p.name for p in out.iterdir()) == []


# --------------------------------------------------------------------------- --devices


def test_devices_workers_get_overwrite_and_fps(tmp_path: Path, frames: np.ndarray, capsys) -> None:
    """--devices: the workers are given --overwrite and --fps. A frame folder extracted
    at the default rate is recomputed at --fps 200 (with --overwrite), and its JSON
    records 200. The bar counts the worker's frames to the input's total (12/12)."""
    folder = _folder(tmp_path / "f", frames)
    out = tmp_path / "o"
    assert main(["extract", str(folder), "--out-dir", str(out), *ARGS, "--quiet"]) == 0
    argv = ["extract", str(folder), "--out-dir", str(out), *ARGS, "--fps", "200"]
    capsys.readouterr()
    assert main([*argv, "--overwrite", "--devices", "cpu,cpu"]) == 0
    io = capsys.readouterr()
    assert f"wrote {out / 'f.npy'}" in io.out
    assert _meta(out, "f")["source_fps"] == 200.0
    assert re.search(rf"100%\|[^|]*\| {FRAMES}/{FRAMES} ", io.err), io.err[-2000:]


# --------------------------------------------------------------------------- _cli_util


def test_a_stride_of_two_is_said_with_the_frames() -> None:
    """Frames without a face are numbered after the stride: any stride over 1 (2
    included) is said with them, stride 1 is not."""
    from sw_mro._cli_util import describe_runs, frame_runs

    runs = frame_runs([3, 4, 9])
    assert describe_runs(runs, stride=2) == "frames 3-4 and 9 at stride 2"
    assert describe_runs(runs, stride=1) == "frames 3-4 and 9"
