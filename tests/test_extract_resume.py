"""What a rerun of ``sw-mro extract`` skips, refuses or redoes (``_output_state`` and its
callers): every setting that changes the features is compared, execution-only ones
are not, an output whose ``.npy`` disagrees with its JSON or checksum is redone, a
changed input is not "done", ``--overwrite`` recomputes, and the lock is rechecked.
Found by mutation testing (2026-11-29): the end-to-end tests of ``test_extract_cli.py``
pinned few of these. Fast: no extraction, a fake input and a fake complete output."""

from __future__ import annotations

import argparse
import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import sw_mro
from sw_mro.commands import extract as E
from sw_mro.pipeline import flow_backend

SHAPE = [6, 3, 10, 2]

BACKEND = flow_backend(sw_mro.SWMROConfig(), torch.device("cpu"))  # what output_state computes
OTHER = "opencv" if BACKEND != "opencv" else "torch"  # another backend that runs on CPU


def _cfg(**kw):
    return sw_mro.SWMROConfig(**{"window": 3, "face_size": 64, **kw})


def _make(tmp_path: Path, cfg=None, *, sha=True, arr=None, **meta_over):
    src = tmp_path / "in" / "clip.mp4"
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(b"not really a video" * 100)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    npy, js = out / "clip.npy", out / "clip.json"
    np.save(npy, np.zeros(SHAPE, np.float32) if arr is None else arr)
    meta = {
        "complete": True,
        "input": str(src.resolve()),
        "input_signature": E.input_signature(src),
        "shape": SHAPE,
        "dtype": "float32",
        "features_sha256": E.file_sha256(npy) if sha else None,
        "config": (cfg or _cfg()).to_dict(),
        "flow_backend": BACKEND,
    }
    if not sha:
        del meta["features_sha256"]
    meta.update(meta_over)
    js.write_text(json.dumps(meta))
    return src, out, npy, js, meta


def _state(src, out, cfg, backend=BACKEND, folder_fps=None):
    return E._output_state(
        out / "clip.json",
        out / "clip.npy",
        cfg.to_dict(),
        backend,
        (src, E.input_signature(src)),
        folder_fps,
        True,
    )


def test_baseline_done(tmp_path):
    src, out, *_ = _make(tmp_path)
    assert _state(src, out, _cfg()) == ("done", "")


@pytest.mark.parametrize(
    "kw",
    [
        dict(window=5),
        dict(face_size=128),
        dict(stride=2),
        dict(landmarks="insightface"),
        dict(landmark_redetect=4),
        dict(crop_box="detector"),
        dict(align_from_landmarks=True),
        dict(align_tol=0.2),
        dict(roi_size=7),
        dict(winsize=11),
        dict(poly_n=5),
        dict(poly_sigma=1.1),
        dict(landmark_segment=16),
        dict(device="cuda"),
    ],
)
def test_every_feature_setting_is_compared(tmp_path, kw):
    src, out, *_ = _make(tmp_path)
    state, why = _state(src, out, _cfg(**kw))
    assert state == "conflict" and "other settings" in why, (kw, state, why)
    assert f"{next(iter(kw))} " in why  # the setting given is named, not only resolved.*


def test_execution_only_settings_and_gpu_index_are_not_compared(tmp_path):
    src, out, *_ = _make(tmp_path, _cfg(device="cuda:0"))
    assert _state(
        src, out, _cfg(device="cuda:1", batch_size=7, chunk_size=64, landmark_workers=3)
    ) == ("done", "")


def test_other_farneback_backend_is_a_conflict(tmp_path):
    src, out, *_ = _make(tmp_path)
    state, why = _state(src, out, _cfg(flow_backend=OTHER), backend=OTHER)
    assert state == "conflict" and "other settings" not in why
    assert f"{BACKEND!r} Farneback backend (this run: {OTHER!r})" in why


def test_the_backend_that_ran_is_compared_not_the_setting_that_chose_it(tmp_path):
    """Features made with flow_backend "auto" are those of the backend it chose: a run
    that names that backend takes them, and the other way round."""
    src, out, *_ = _make(tmp_path)  # made with "auto", which ran BACKEND
    assert _state(src, out, _cfg(flow_backend=BACKEND)) == ("done", "")
    src, out, *_ = _make(tmp_path, _cfg(flow_backend=BACKEND))
    assert _state(src, out, _cfg()) == ("done", "")


def test_without_a_recorded_backend_the_setting_is_compared(tmp_path):
    """Outputs written before the metadata recorded the backend: the setting is all
    there is to go by."""
    src, out, *_ = _make(tmp_path, flow_backend=None)
    assert _state(src, out, _cfg()) == ("done", "")
    state, why = _state(src, out, _cfg(flow_backend=OTHER), backend=OTHER)
    assert state == "conflict" and f"flow_backend 'auto' (this run: {OTHER!r})" in why


def test_a_resolved_value_that_alone_differs_is_a_conflict(tmp_path):
    cfg = _cfg()
    d = cfg.to_dict()
    d["resolved"]["roi_size"] += 2  # e.g. made by a version that resolved it otherwise
    src, out, *_ = _make(tmp_path, config=d)
    state, why = _state(src, out, cfg)
    assert state == "conflict" and "resolved.roi_size" in why


def test_a_setting_missing_from_the_saved_config_is_a_conflict(tmp_path):
    cfg = _cfg()
    d = cfg.to_dict()
    del d["landmark_redetect"]
    src, out, *_ = _make(tmp_path, config=d)
    assert _state(src, out, cfg)[0] == "conflict"


def test_metadata_without_config_is_a_conflict(tmp_path):
    src, out, *_ = _make(tmp_path, config=None)
    assert _state(src, out, _cfg()) == ("conflict", "its metadata has no config")


def test_a_json_not_marked_complete_is_todo(tmp_path):
    src, out, *_ = _make(tmp_path, complete=False)
    assert _state(src, out, _cfg()) == ("todo", "")


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros([SHAPE[0] - 1, *SHAPE[1:]], np.float32),  # fewer frames than the JSON says
        np.zeros([SHAPE[0], 5, *SHAPE[2:]], np.float32),  # other window
        np.zeros(SHAPE, np.float64),  # other dtype
    ],
)
def test_npy_disagreeing_with_its_json_is_todo_without_a_checksum(tmp_path, arr):
    src, out, *_ = _make(tmp_path, sha=False, arr=arr)
    state, why = _state(src, out, _cfg())
    assert state == "todo" and "is damaged" in why


def test_truncated_npy_is_todo_without_a_checksum(tmp_path):
    src, out, npy, *_ = _make(tmp_path, sha=False)
    with open(npy, "r+b") as fh:
        fh.truncate(npy.stat().st_size - 16)
    assert _state(src, out, _cfg())[0] == "todo"


def test_changed_npy_of_the_same_shape_fails_the_checksum(tmp_path):
    src, out, npy, *_ = _make(tmp_path)
    a = np.load(npy, mmap_mode="r+")
    a[1, 1, 1, 1] = 1.0
    a.flush()
    del a
    state, why = _state(src, out, _cfg())
    assert state == "todo" and "SHA-256" in why


def test_changed_or_unreadable_input_is_not_done(tmp_path):
    src, out, *_ = _make(tmp_path)
    src.write_bytes(src.read_bytes().replace(b"not", b"NOT"))  # same size, other content
    assert _state(src, out, _cfg())[0] == "conflict"
    (tmp_path / "b").mkdir()
    src2, out2, *_ = _make(tmp_path / "b")
    src2.unlink()  # no signature now: never "done"
    assert _state(src2, out2, _cfg())[0] != "done"


def _args(**kw):
    return argparse.Namespace(**{"overwrite": False, "fps": None, "quiet": True, **kw})


def test_existing_output_skips_and_overwrite_recomputes(tmp_path):
    src, out, *_ = _make(tmp_path)
    sig = E.input_signature(src)
    told, _ = E._existing_output(src, sig, out, "clip", _cfg(), _args())
    assert told and told.startswith("skipped")
    assert E._existing_output(src, sig, out, "clip", _cfg(), _args(overwrite=True)) == (None, "")
    with pytest.raises(FileExistsError, match="other settings"):
        E._existing_output(src, sig, out, "clip", _cfg(window=5), _args())


def test_locked_extraction_rechecks_and_skips_a_completed_output(tmp_path, monkeypatch):
    """Another run finished the output while this one waited for the lock."""
    src, out, *_ = _make(tmp_path)
    got = E._extract_locked(src, E.input_signature(src), out, "clip", _cfg(), _args(), None)
    assert got.startswith("skipped")


def test_a_held_lock_makes_a_second_one_busy(tmp_path):
    with E.output_lock(tmp_path, "clip") as held:
        assert held
        with pytest.raises(E.OutputBusyError):
            with E.output_lock(tmp_path, "clip"):
                pass


def test_tidy_without_file_locks_keeps_temp_files(tmp_path, monkeypatch):
    """No flock: _tidy cannot know whether another run uses the temp files: kept."""
    import fcntl

    def no_locks(*a, **k):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    tmp = E.temp_name(tmp_path / "clip.npy")
    tmp.write_bytes(b"in use")
    E._tidy(tmp_path, "clip")
    assert tmp.exists()


def test_frame_folder_rate_is_compared(tmp_path):
    folder = tmp_path / "in" / "clip"
    folder.mkdir(parents=True)
    for i in range(4):
        (folder / f"img{i + 1}.png").write_bytes(b"x" * (10 + i))
    src, out, *_ = _make(tmp_path, source_fps=200.0)
    meta_path = out / "clip.json"
    meta = json.loads(meta_path.read_text())
    meta["input"], meta["input_signature"] = str(folder.resolve()), E.input_signature(folder)
    meta_path.write_text(json.dumps(meta))
    assert _state(folder, out, _cfg(), folder_fps=200.0) == ("done", "")
    assert _state(folder, out, _cfg(), folder_fps=100.0)[0] == "conflict"
    assert _state(folder, out, _cfg(), folder_fps=None)[0] == "conflict"  # the default, 30
