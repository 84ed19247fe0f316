"""``spotformer.features``: frame counts and rates at a stride, and which saved features
are reused. Found by mutation testing (2026-11-29): each test fails on a plausible bug
that the slower end-to-end tests of ``test_train.py`` let through (every one of those
uses stride 1)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

import spotformer.features as F
from spotformer.data import AnnotationTable, Expression, VideoRef


def _frames(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(1, n + 1):
        cv2.imwrite(str(folder / f"img{k}.png"), rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    return folder


def test_plan_warns_for_an_offset_one_past_the_end(tmp_path: Path, capsys) -> None:
    """A SAMM-LV offset on the last source frame can round to n; 36 of 30 frames is past
    the end but not by enough for the stride hint."""
    refs = {"v": VideoRef(_frames(tmp_path / "v", 30), 30.0, 1, "s")}
    F.plan_videos(AnnotationTable([Expression("s", "v", 25, 27, 30, "macro")], sources=refs), 17)
    assert "25-30 runs past its last frame 29" in capsys.readouterr().err
    F.plan_videos(AnnotationTable([Expression("s", "v", 25, 27, 36, "macro")], sources=refs), 17)
    err = capsys.readouterr().err
    assert "25-36 runs past" in err and "check the annotation's stride" not in err


def test_plan_keeps_an_annotated_video_exactly_one_window_long(tmp_path: Path) -> None:
    ref = VideoRef(_frames(tmp_path / "v", 17), 30.0, 1, "s")
    table = AnnotationTable([Expression("s", "v", 2, 3, 4, "micro")], sources={"v": ref})
    assert F.plan_videos(table, 17)["v"].frames == 17


def test_plan_counts_frames_after_the_stride(tmp_path: Path) -> None:
    """30 source frames at stride 7 are 5 frames at 200 / 7 fps."""
    ref = VideoRef(_frames(tmp_path / "v", 30), 200.0, 7, "s")
    table = AnnotationTable([Expression("s", "v", 0, 1, 2, "micro")], sources={"v": ref})
    planned = F.plan_videos(table, 3)["v"]
    assert planned.frames == 5 and planned.fps == pytest.approx(200 / 7)


def test_dataset_features_passes_the_stride(tmp_path: Path, monkeypatch) -> None:
    seen = {}

    def fake(path, config=None, *, stride=1, fps=None, **_):
        seen.update(stride=stride, fps=fps)
        return torch.zeros(5, 17, 10, 2), 200 / 7

    monkeypatch.setattr(F, "video_features", fake)
    ref = VideoRef(tmp_path / "v", 200.0, 7, "s")
    plan = {"v": F.PlannedVideo(ref, "s", 5, 200 / 7, 200.0)}
    F.dataset_features(AnnotationTable([], sources={"v": ref}), progress=False, plan=plan)
    assert seen == {"stride": 7, "fps": 200.0}


def test_video_features_decodes_at_the_stride_and_gives_its_rate(
    tmp_path: Path, monkeypatch
) -> None:
    import sw_mro

    def fake_stream(src, cfg):
        return iter([SimpleNamespace(features=torch.zeros(len(src), 17, 10, 2))])

    monkeypatch.setattr(sw_mro, "stream", fake_stream)
    x, fps = F.video_features(_frames(tmp_path / "v", 30), stride=7, fps=200.0)
    assert x.shape[0] == 5 and fps == pytest.approx(200 / 7)


def test_saved_features_of_another_frame_count_are_not_reused(tmp_path: Path, monkeypatch) -> None:
    """Features saved by `sw-mro extract` are reused only with the planned frame count,
    and their settings are compared at the video's own stride."""
    import sw_mro
    import sw_mro.commands.extract as E

    seen: dict = {}

    def state(path, folder, cfg, folder_fps=None):
        seen.update(stride=cfg.stride, folder_fps=folder_fps)
        return "done", ""

    monkeypatch.setattr(E, "output_state", state)
    out = tmp_path / "out"
    out.mkdir()
    (out / "v.json").write_text(json.dumps({"num_frames": 4, "fps": 200 / 7}))
    np.save(out / "v.npy", np.zeros((4, 17, 10, 2), np.float32))
    ref = VideoRef(_frames(tmp_path / "v", 3), 200.0, 7, "s")
    got = F.extracted_features(
        out, F.PlannedVideo(ref, "s", 5, 200 / 7, 200.0), sw_mro.SWMROConfig()
    )
    assert isinstance(got, str) and "4 frames" in got
    assert seen == {"stride": 7, "folder_fps": 200.0}
    ok = F.extracted_features(
        out, F.PlannedVideo(ref, "s", 4, 200 / 7, 200.0), sw_mro.SWMROConfig()
    )
    assert isinstance(ok, tuple) and ok[0].shape[0] == 4


def test_the_newest_release_workbook_is_taken(tmp_path: Path) -> None:
    for v in (1, 2):
        (tmp_path / f"SAMM_LongVideos_V{v}_Release.xlsx").write_bytes(b"")
    got = F._one(tmp_path, ["SAMM_LongVideos_V*_Release.xlsx", "*.xlsx"], "SAMM-LV", "samm")
    assert got.name == "SAMM_LongVideos_V2_Release.xlsx"
