"""LOSO training on in-memory features: files, honest selection, resuming a killed run."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import spotformer.train as T
import sw_mro
from spotformer.data.table import Expression
from spotformer.metrics import Interval, evaluate, read_intervals
from spotformer.models import SpotFormer, SpotFormerConfig
from spotformer.train import (
    SpottingData,
    TrainConfig,
    TrainError,
    check_run_dir,
    load_model,
    predict_logits,
    run_loso,
    save_model,
    train_fold,
    training_frames,
)

HERE = Path(__file__).resolve().parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- SW-MRO-like features with planted expressions ------------------------------------------


def _profile(t: torch.Tensor, on: int, ap: int, off: int) -> torch.Tensor:
    up = ((t - on) / max(ap - on, 1)).clamp(0, 1)
    down = ((off - t) / max(off - ap, 1)).clamp(0, 1)
    return torch.where(
        t <= ap, 0.5 - 0.5 * torch.cos(math.pi * up), 0.5 - 0.5 * torch.cos(math.pi * down)
    )


def fake_video(n: int, exprs: list[Expression], gen: torch.Generator, w: int = 17) -> torch.Tensor:
    """Window features as SW-MRO defines them: o_i^s = d(i - w//2 + s) - d(i - w//2),
    where d is a per-ROI displacement (ME 1 px, MaE 3 px, brows or mouth), plus noise."""
    t = torch.arange(n, dtype=torch.float32)
    disp = torch.zeros(n, 10, 2)
    for e in exprs:
        amp = 1.0 if e.kind == "micro" else 3.0
        rois = slice(6, 10) if e.onset % 2 else slice(0, 6)
        disp[:, rois, 1] += amp * _profile(t, e.onset, e.apex, e.offset)[:, None]
    idx = (torch.arange(n)[:, None] - w // 2 + torch.arange(w)[None, :]).clamp(0, n - 1)
    clip = disp[idx]
    feat = clip - clip[:, :1] + 0.15 * torch.randn(n, w, 10, 2, generator=gen)
    feat[:, 0] = 0.0
    return feat


def fake_dataset(subjects: int = 3, videos: int = 1, n: int = 160, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    feats, exprs = {}, []
    for s in range(subjects):
        for v in range(videos):
            name = f"s{s}/v{v}"
            es, f = [], 10
            while True:
                kind = "micro" if torch.rand(1, generator=gen) < 0.5 else "macro"
                lo, hi = (6, 14) if kind == "micro" else (20, 50)
                ln = int(torch.randint(lo, hi, (1,), generator=gen))
                on = f + int(torch.randint(10, 30, (1,), generator=gen))
                if on + ln + 10 >= n:
                    break
                es.append(Expression(f"s{s}", name, on, on + ln // 3, on + ln - 1, kind))  # type: ignore[arg-type]
                f = on + ln
            feats[name] = fake_video(n, es, gen)
            exprs += es
    return feats, exprs


def tiny_cfg(**kw) -> TrainConfig:
    base = {
        "model": SpotFormerConfig(dim=16, heads=2, head_dim=8, mlp_dim=16),
        "epochs": 2,
        "batch_size": 64,
        "neutral_segments": 0.0,  # expression segments only: fewer windows, faster tests
    }
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data() -> SpottingData:
    feats, exprs = fake_dataset()
    return SpottingData.build(feats, exprs)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory, data) -> Path:
    """An uninterrupted run of tiny_cfg(), to compare resumed runs with."""
    ref = tmp_path_factory.mktemp("ref") / "run"
    torch.set_num_threads(1)
    run_loso(data, tiny_cfg(), ref, progress=False)
    return ref


# -- data -----------------------------------------------------------------------------------


def test_training_frames_are_the_expression_segments() -> None:
    feats = {"a/v": torch.randn(50, 17, 10, 2)}
    e = Expression("a", "a/v", 20, 22, 25, "micro")
    d = SpottingData.build(feats, [e])
    got = training_frames(d, d.videos, 16, 0.0, torch.Generator())
    assert got.tolist() == list(range(16, 32))
    # The last, partial segment (48, 49) is kept when it holds expression frames.
    d2 = SpottingData.build(feats, [Expression("a", "a/v", 46, 47, 49, "micro")])
    assert training_frames(d2, d2.videos, 16, 0.0, torch.Generator()).tolist() == list(
        range(32, 50)
    )
    allseg = training_frames(d, d.videos, 16, 1.0, torch.Generator())
    assert sorted(allseg.tolist()) == list(range(50))


def test_build_checks_videos_and_subjects() -> None:
    with pytest.raises(TrainError, match="has no features"):
        SpottingData.build({}, [Expression("a", "a/v", 1, 2, 3, "micro")])
    with pytest.raises(TrainError, match="subject is unknown"):
        SpottingData.build({"x": torch.randn(5, 17, 10, 2)}, [])
    d = SpottingData.build({"x": torch.randn(5, 17, 10, 2)}, [], subjects={"x": "s9"}, fps=25.0)
    assert d.subjects == ["s9"] and d.videos[0].fps == 25.0


def test_config_round_trip() -> None:
    c = tiny_cfg(selection="val", betas=(0.5, 0.8))
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"epoch": 3})


# -- a run ----------------------------------------------------------------------------------


def _report(run: Path) -> dict:
    r = json.loads((run / "report.json").read_text())
    for f in r["folds"]:
        f.pop("seconds")
    r.pop("seconds")
    return r


def test_subjects_that_differ_only_in_other_characters_get_their_own_folds(
    tmp_path: Path,
) -> None:
    """Found in review: subjects 张三, 李四 and 王五 all had the fold folder ``__``, so
    the folds overwrote each other's models, and ``--resume`` after a kill took the
    first fold's result for all three (its predictions.csv listed one video 3 times)."""
    import dataclasses

    from spotformer.train import fold_name

    names = {"s0": "张三", "s1": "李四", "s2": "王五"}
    feats, exprs = fake_dataset()
    exprs = [dataclasses.replace(e, subject=names[e.subject]) for e in exprs]
    run = tmp_path / "run"
    rep = run_loso(SpottingData.build(feats, exprs), tiny_cfg(epochs=1), run, progress=False)
    dirs = sorted((run / "folds").iterdir())
    assert len(dirs) == 3 and all((d / "model.pt").is_file() for d in dirs)
    held = {json.loads((d / "result.json").read_text())["subject"]: d.name for d in dirs}
    assert held == {n: fold_name(n) for n in names.values()}
    assert sorted(f.subject for f in rep.folds) == sorted(names.values())
    # Names of the safe characters keep their folders (runs before stay resumable).
    assert [fold_name(n) for n in ("s15", "006", "a_b.c-1")] == ["s15", "006", "a_b.c-1"]
    assert len({fold_name(n) for n in ("a b", "a_b", "a/b", "..")}) == 4
    assert fold_name("..") != ".." and "/" not in fold_name("a/b")
    # A run saved before the hash (folders `__`...) keeps its finished folds on resume
    # where the folder's result names the subject (found in review: retrained). Here
    # the last subject's fold is in `__`, as the old names left it; the others train.
    from spotformer.train import finished_run

    last = max(names.values())
    for d in dirs:
        if d.name != fold_name(last):
            shutil.rmtree(d)
    (run / "folds" / fold_name(last)).rename(run / "folds" / "__")
    (run / "report.json").unlink()
    assert finished_run(run) is None
    before = (run / "folds" / "__" / "model.pt").stat().st_mtime_ns
    rep2 = run_loso(
        SpottingData.build(feats, exprs), tiny_cfg(epochs=1), run, progress=False, resume=True
    )
    assert (run / "folds" / "__" / "model.pt").stat().st_mtime_ns == before  # reused
    assert not (run / "folds" / fold_name(last)).exists()
    assert sorted(p.name for p in (run / "folds").iterdir()) == sorted(
        ["__", *(fold_name(n) for n in names.values() if n != last)]
    )
    assert finished_run(run) is not None and len(rep2.folds) == 3


def test_run_writes_files_and_its_report_agrees_with_evaluate(tmp_path: Path, data) -> None:
    run = tmp_path / "run"
    rep = run_loso(data, tiny_cfg(), run, progress=False, info={"dataset": "fake"})
    for name in ("config.json", "report.json", "predictions.csv", "ground_truth.csv"):
        assert (run / name).is_file()
    assert sorted(p.name for p in (run / "folds").iterdir()) == ["s0", "s1", "s2"]
    assert not list(run.rglob("checkpoint.pt")) and not list(run.rglob("*.tmp"))
    again = evaluate(
        read_intervals(run / "predictions.csv"), read_intervals(run / "ground_truth.csv")
    )
    report = json.loads((run / "report.json").read_text())
    for kind in ("macro", "micro", "overall"):
        assert report[kind] == pytest.approx(again.to_dict()[kind])
    assert report[kind]["fn"] + report[kind]["tp"] == len(read_intervals(run / "ground_truth.csv"))
    assert rep.result.to_dict() == again.to_dict()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["info"] == {"dataset": "fake"} and cfg["train"]["lr"] == 2e-4
    # The fold's model file reproduces its logits.
    mf = load_model(run / "folds" / "s1" / "model.pt")
    model = mf.model
    assert mf.config == tiny_cfg() and mf.subject == "s1" and mf.epoch == 2
    assert mf.info == {"dataset": "fake"}
    v = data.videos_of(["s1"])[0]
    logits = predict_logits(model, data.video_features(v))
    assert logits.shape == (v.frames, 10) and torch.isfinite(logits).all()


def test_existing_run_needs_resume_and_the_same_config(tmp_path: Path, data) -> None:
    run = tmp_path / "run"
    run_loso(data, tiny_cfg(epochs=1), run, progress=False)
    with pytest.raises(TrainError, match="--resume"):
        run_loso(data, tiny_cfg(epochs=1), run, progress=False)
    with pytest.raises(TrainError, match="differs from this one in train"):
        run_loso(data, tiny_cfg(epochs=2), run, progress=False, resume=True)
    # A run saved by an older version (a loss field and an info key it did not know)
    # still resumes: missing training fields take their defaults, info is compared on
    # the keys both have. A config that is not an object is a clean error.
    info = {"dataset": "fake", "stride": 1}
    run2 = tmp_path / "run2"
    run_loso(data, tiny_cfg(epochs=1), run2, progress=False, info=info)
    conf = json.loads((run2 / "config.json").read_text())
    del conf["train"]["loss"]["base_temperature"]
    del conf["info"]["stride"]
    (run2 / "config.json").write_text(json.dumps(conf))
    check_run_dir(run2, tiny_cfg(epochs=1), resume=True, info=info)
    rep = run_loso(data, tiny_cfg(epochs=1), run2, progress=False, resume=True, info=info)
    assert len(rep.folds) == len(data.subjects)
    with pytest.raises(TrainError, match="in info"):
        check_run_dir(run2, tiny_cfg(epochs=1), resume=True, info={"dataset": "other"})
    # A rate not recorded (a CSV without fps, before 2026-11-29) resumes with the
    # videos' own rate; a recorded one must match.
    conf["info"]["source_fps"] = None
    (run2 / "config.json").write_text(json.dumps(conf))
    check_run_dir(run2, tiny_cfg(epochs=1), resume=True, info={**info, "source_fps": 25.0})
    conf["info"]["source_fps"] = 30.0
    (run2 / "config.json").write_text(json.dumps(conf))
    with pytest.raises(TrainError, match="in info"):
        check_run_dir(run2, tiny_cfg(epochs=1), resume=True, info={**info, "source_fps": 25.0})
    # A run started with the earlier --supcon authors (no supcon_form saved: Khosla's
    # form on raw features) is refused with the field and why, not two whole dicts.
    old_authors = tiny_cfg(epochs=1)
    old_authors = dataclasses.replace(
        old_authors,
        loss=dataclasses.replace(old_authors.loss, normalize_features=False, base_temperature=0.07),
    )
    conf["train"] = old_authors.to_dict()
    del conf["train"]["loss"]["supcon_form"]
    (run2 / "config.json").write_text(json.dumps(conf))
    new_authors = dataclasses.replace(
        old_authors, loss=dataclasses.replace(old_authors.loss, supcon_form="authors")
    )
    with pytest.raises(TrainError) as err:
        check_run_dir(run2, new_authors, resume=True, info=info)
    msg = str(err.value)
    assert "train.loss.supcon_form 'khosla' (this run: 'authors'; --supcon authors" in msg
    assert "start a new --out" in msg and "normalize_features" not in msg
    # val_subjects only counts with selection 'val' (found in review: a run given
    # --val-subjects 2 with the default selection refused a --resume without it).
    conf["train"] = {**tiny_cfg(epochs=1).to_dict(), "val_subjects": 2}  # as saved then
    (run2 / "config.json").write_text(json.dumps(conf))
    check_run_dir(run2, tiny_cfg(epochs=1), resume=True, info=info)
    conf["train"] = tiny_cfg(epochs=1, selection="val", val_subjects=2).to_dict()
    (run2 / "config.json").write_text(json.dumps(conf))
    with pytest.raises(TrainError, match="val_subjects 2 .this run: 1"):
        check_run_dir(run2, tiny_cfg(epochs=1, selection="val"), resume=True, info=info)
    (run2 / "config.json").write_text("[]")
    with pytest.raises(TrainError, match="not a run's config"):
        check_run_dir(run2, tiny_cfg(epochs=1), resume=True)
    # Found in a probe: a folder of folds without its config.json was "resumed" as a new
    # run that took the old folds (other epochs and learning rate) as they were.
    (run2 / "config.json").unlink()
    assert (run2 / "folds").is_dir()
    with pytest.raises(TrainError, match=r"has no config.json but is not empty \(e.g. 'folds'\)"):
        check_run_dir(run2, tiny_cfg(epochs=1), resume=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    check_run_dir(empty, tiny_cfg(epochs=1), resume=True)  # a new run starts there
    (empty / ".config.json.tmp").write_text("{")  # a kill as it wrote its config
    check_run_dir(empty, tiny_cfg(epochs=1), resume=True)
    with pytest.raises(TrainError, match="is not empty; choose a new --out"):
        check_run_dir(empty, tiny_cfg(epochs=1))


def test_amp_option_sets_autocast_on_cuda_only() -> None:
    from spotformer.train import _autocast_args

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert _autocast_args(cuda, TrainConfig()) == (True, torch.bfloat16)
    assert _autocast_args(cuda, TrainConfig(amp_dtype="float16")) == (True, torch.float16)
    assert _autocast_args(cuda, TrainConfig(amp=False))[0] is False
    assert _autocast_args(cpu, TrainConfig())[0] is False


class Crash(Exception):
    pass


def test_resume_after_a_crash_mid_fold_gives_the_uninterrupted_result(
    tmp_path: Path, data, reference_run: Path
) -> None:
    cfg, ref = tiny_cfg(), reference_run

    run = tmp_path / "run"
    steps: list[tuple[str, int, int]] = []

    def crash(subject: str, epoch: int, step: int) -> None:
        steps.append((subject, epoch, step))
        if subject == "s1" and epoch == 1 and step == 1:
            raise Crash

    with pytest.raises(Crash):
        run_loso(data, cfg, run, progress=False, on_step=crash)
    assert (run / "folds" / "s0" / "result.json").exists()  # fold 1 finished
    assert (run / "folds" / "s1" / "checkpoint.pt").exists()  # fold 2 after epoch 1
    assert not (run / "folds" / "s1" / "result.json").exists()

    resumed: list[tuple[str, int, int]] = []
    run_loso(data, cfg, run, progress=False, resume=True, on_step=lambda *a: resumed.append(a))
    assert {s for s, _, _ in resumed} == {"s1", "s2"}  # s0 was not retrained
    assert min(e for s, e, _ in resumed if s == "s1") == 1  # s1 continued at epoch 1
    assert (run / "predictions.csv").read_text() == (ref / "predictions.csv").read_text()
    assert _report(run) == _report(ref)


def test_resume_after_a_stop_between_the_last_epoch_and_the_result(
    tmp_path: Path, data, reference_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in an audit: a fold stopped after its last epoch's checkpoint and before its
    result.json resumed with no epoch to run and reported 0 training windows and only
    the resumed part's seconds. A checkpoint left by a stop after the result goes."""
    import spotformer.train as T

    run, real = tmp_path / "run", T.atomic_json

    def stop_at_s1(obj, path) -> None:  # noqa: ANN001
        if Path(path).name == "result.json" and Path(path).parent.name == "s1":
            raise Crash
        real(obj, path)

    monkeypatch.setattr(T, "atomic_json", stop_at_s1)
    with pytest.raises(Crash):
        run_loso(data, tiny_cfg(), run, progress=False)
    ck = torch.load(run / "folds" / "s1" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == tiny_cfg().epochs and ck["windows"] > 0 and ck["seconds"] > 0
    monkeypatch.setattr(T, "atomic_json", real)
    stale = run / "folds" / "s0" / "checkpoint.pt"
    stale.write_bytes(b"left by a stop after s0's result.json")
    run_loso(data, tiny_cfg(), run, progress=False, resume=True)
    assert _report(run) == _report(reference_run)  # train_windows included
    s1 = json.loads((run / "folds" / "s1" / "result.json").read_text())
    assert s1["seconds"] >= ck["seconds"]
    assert not stale.exists() and not (run / "folds" / "s1" / "checkpoint.pt").exists()


def test_resume_retrains_folds_whose_saved_state_is_damaged(
    tmp_path: Path, data, reference_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in a probe: a truncated checkpoint.pt or a damaged result.json stopped a
    resumed run (after the data set's extraction) with a traceback that named no file.
    Such a fold is trained again from its start, with a warning naming the file: the
    run ends as an uninterrupted one."""
    import logging

    run = tmp_path / "run"

    def crash(subject: str, epoch: int, step: int) -> None:
        if subject == "s1" and epoch == 1 and step == 1:
            raise Crash

    with pytest.raises(Crash):
        run_loso(data, tiny_cfg(), run, progress=False, on_step=crash)
    ck, result = run / "folds" / "s1" / "checkpoint.pt", run / "folds" / "s0" / "result.json"
    ck.write_bytes(ck.read_bytes()[:1000])  # truncated
    result.write_text("{}")
    with caplog.at_level(logging.WARNING, logger="spotformer"):
        run_loso(data, tiny_cfg(), run, progress=False, resume=True)
    said = caplog.text
    assert f"{ck}: damaged (" in said and "fold 's1' trains again from its start" in said
    assert f"{result}: damaged (KeyError: 'intervals'); fold 's0' is trained again" in said
    assert (run / "predictions.csv").read_text() == (reference_run / "predictions.csv").read_text()
    assert _report(run) == _report(reference_run)
    # A result.json of another subject (a copied folder) is not taken either.
    other = json.loads((run / "folds" / "s1" / "result.json").read_text())
    result.write_text(json.dumps(other))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spotformer"):
        run_loso(data, tiny_cfg(), run, progress=False, resume=True)
    assert "it is subject 's1'" in caplog.text and _report(run) == _report(reference_run)
    # Unreadable (here a folder in its place; permissions, a network drive) is not
    # damaged: the run stops, naming it, and the fold's progress is kept (found in review).
    (run / "report.json").unlink()
    result.unlink()
    (run / "folds" / "s0" / "checkpoint.pt").mkdir()
    with pytest.raises(TrainError, match=r"s0.checkpoint\.pt: cannot be read \("):
        run_loso(data, tiny_cfg(), run, progress=False, resume=True)


KILLER = """
import os, signal, sys, torch
sys.path.insert(0, {here!r})
torch.set_num_threads(1)
from test_train import fake_dataset, tiny_cfg
from spotformer.train import SpottingData, run_loso
feats, exprs = fake_dataset()
data = SpottingData.build(feats, exprs)
def kill(subject, epoch, step):
    if subject == "s2" and epoch == 1 and step == 2:
        os.kill(os.getpid(), signal.SIGKILL)
run_loso(data, tiny_cfg(), {run!r}, progress=False, on_step=kill)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_resume_after_sigkill_of_a_real_process(tmp_path: Path, data, reference_run: Path) -> None:
    ref, run = reference_run, tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = KILLER.format(here=str(HERE), run=str(run))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (run / "folds" / "s2" / "checkpoint.pt").exists()
    assert not (run / "report.json").exists()
    run_loso(data, tiny_cfg(), run, progress=False, resume=True)
    assert (run / "predictions.csv").read_text() == (ref / "predictions.csv").read_text()
    assert _report(run) == _report(ref)


def test_val_selection_never_looks_at_the_test_subject(tmp_path: Path, data, monkeypatch) -> None:
    calls: list[set[str]] = []
    real = T.spot_videos

    def spy(model, d, videos, cfg):
        calls.append({v.subject for v in videos})
        return real(model, d, videos, cfg)

    monkeypatch.setattr(T, "spot_videos", spy)
    cfg = tiny_cfg(selection="val", epochs=3)
    res = train_fold(data, "s0", cfg, tmp_path / "f", progress=False)
    # 3 validation passes on a training subject, then one prediction of the test subject.
    assert calls[:-1] == [{"s1"}] * 3 and calls[-1] == {"s0"}
    assert res.val_f1 is not None and 1 <= res.epoch <= 3
    two = SpottingData.build(*fake_dataset(subjects=2))
    with pytest.raises(TrainError, match="selection='fixed'"):
        train_fold(two, "s0", cfg, tmp_path / "g", progress=False)


def test_training_batches_hold_only_the_training_subjects(tmp_path: Path, monkeypatch) -> None:
    """LOSO: every frame a fold's batches are cut from belongs to a training subject,
    never to the held-out subject nor, with ``selection="val"``, to the validation
    subject (only ever predicted), and every training subject is trained on; neutral segments on, so frames outside the expressions are drawn too. Checked on
    the indices the batches are cut from, mapped to subjects through the videos'
    frame ranges."""
    four = SpottingData.build(*fake_dataset(subjects=4))
    owner = [""] * int(four.features.shape[0])
    for v in four.videos:
        owner[v.start : v.start + v.frames] = [v.subject] * v.frames
    drawn: list[set[str]] = []
    predicted: list[set[str]] = []
    real_frames, real_spot = T.training_frames, T.spot_videos

    def frames_spy(*args, **kwargs):
        out = real_frames(*args, **kwargs)
        drawn.append({owner[int(i)] for i in out})
        return out

    def spot_spy(model, d, videos, cfg):
        predicted.append({v.subject for v in videos})
        return real_spot(model, d, videos, cfg)

    monkeypatch.setattr(T, "training_frames", frames_spy)
    monkeypatch.setattr(T, "spot_videos", spot_spy)
    for selection, test in (("fixed", "s1"), ("val", "s2")):
        drawn.clear(), predicted.clear()
        cfg = tiny_cfg(selection=selection, epochs=2, neutral_segments=0.5)
        train_fold(four, test, cfg, tmp_path / selection, progress=False)
        assert len(drawn) == 2 and predicted[-1] == {test}  # 2 epochs; then the test
        val = set().union(*predicted[:-1])  # the validation passes' subjects, if any
        assert len(val) == (selection == "val") and test not in val
        expected = set(four.subjects) - {test} - val
        assert drawn == [expected, expected], (selection, drawn, val)


def test_training_lowers_the_loss(tmp_path: Path, data, monkeypatch) -> None:
    losses: list[float] = []
    real = T.spotting_loss

    def record(out, targets, lc):
        r = real(out, targets, lc)
        losses.append(float(r.total.detach()))
        return r

    monkeypatch.setattr(T, "spotting_loss", record)
    train_fold(data, "s2", tiny_cfg(epochs=6, lr=1e-3), tmp_path / "f", progress=False)
    per_epoch = len(losses) // 6
    first, last = losses[:per_epoch], losses[-per_epoch:]
    assert sum(last) / len(last) < 0.8 * sum(first) / len(first)


@pytest.mark.slow
def test_learns_planted_expressions(tmp_path: Path) -> None:
    """End to end on planted expressions: the issue's targets (overall F1 >= 0.6, ME >= 0.4).

    Small and short (~35 s on one core), so a higher learning rate than the paper's."""
    feats, exprs = fake_dataset(subjects=3, videos=1, n=300, seed=3)
    d = SpottingData.build(feats, exprs)
    cfg = TrainConfig(
        model=SpotFormerConfig(dim=32, heads=4, head_dim=8, mlp_dim=32),
        epochs=5,
        batch_size=64,
        lr=1e-3,
    )
    rep = run_loso(d, cfg, tmp_path / "run", progress=False)
    assert rep.result.overall.f1 >= 0.6, rep.table()
    assert rep.result.micro.f1 >= 0.4, rep.table()


@pytest.mark.cuda
@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
def test_fold_on_cuda_with_amp(tmp_path: Path, amp_dtype: str) -> None:
    feats, exprs = fake_dataset()
    d = SpottingData.build({k: v.cuda() for k, v in feats.items()}, exprs)
    res = train_fold(d, "s0", tiny_cfg(amp_dtype=amp_dtype), tmp_path / "f", progress=False)
    assert all(math.isfinite(i.score) for i in res.intervals)


@pytest.mark.cuda
def test_cuda_inference_is_float32_and_matches_cpu() -> None:
    """Inference runs without autocast: bfloat16 logits (a step of ~0.016 near |3|) would
    tie the onset/offset argmaxes of post-processing."""
    torch.manual_seed(0)
    model = SpotFormer(SpotFormerConfig(dim=32, heads=4, head_dim=8, mlp_dim=32)).eval()
    x = torch.randn(300, 17, 10, 2) * 3
    cpu = predict_logits(model, x, batch=128)
    gpu = predict_logits(model.cuda(), x.cuda(), batch=128)
    assert gpu.dtype == torch.float32
    # bfloat16 autocast is ~1e-2 off; float32 (cuDNN may use TF32 in the conv) ~1e-3.
    assert torch.allclose(gpu.cpu(), cpu, atol=2e-3, rtol=0), (gpu.cpu() - cpu).abs().max()


# -- the commands (feature extraction replaced by the fake features) --------------------------


@pytest.fixture()
def csv_dataset(tmp_path: Path, monkeypatch) -> Path:
    import spotformer.features as F

    feats, exprs = fake_dataset()
    path = tmp_path / "ann.csv"
    rows = ["subject,video,onset,apex,offset,type,path,fps"]
    rows += [
        f"{e.subject},{e.video},{e.onset},{e.apex},{e.offset},{e.kind},x.mp4,30" for e in exprs
    ]
    path.write_text("\n".join(rows) + "\n")

    def fake_features(table, config=None, progress=True, **_):
        assert config.device == "cpu" and config.window == 17
        subjects = {e.video: e.subject for e in table.expressions}
        return F.FeatureSet(dict(feats), {k: 30.0 for k in feats}, subjects, extract_seconds=0.1)

    def fake_plan(table, window):  # what opening the videos would find: the fake features
        subjects = {e.video: e.subject for e in table.expressions}
        return {
            name: F.PlannedVideo(  # a CSV without fps: the containers' rate, 25 here
                table.sources[name],
                subjects[name],
                int(x.shape[0]),
                30.0,
                table.sources[name].fps or 25.0,
            )
            for name, x in sorted(feats.items())
        }

    monkeypatch.setattr(F, "dataset_features", fake_features)
    monkeypatch.setattr(F, "plan_videos", fake_plan)

    def fake_video_features(*args, bar=None, **kwargs):  # a whole video, for spot's bar
        if bar is not None:
            bar.update(bar.total)
        return feats["s1/v0"], 30.0

    monkeypatch.setattr(F, "video_features", fake_video_features)
    return path


def _tiny_video(path: Path, fps: float = 30.0, n: int = 20) -> Path:
    """A real ``n``-frame file for ``spot`` to open (its features are the fixture's)."""
    from sw_mro.io.writer import write_video

    frames = np.random.default_rng(0).integers(0, 255, (n, 48, 64, 3), dtype=np.uint8)
    return write_video(path, frames, fps=fps)


def test_spot_names_a_frame_folder_by_its_name(tmp_path: Path, csv_dataset: Path, capsys) -> None:
    """Found in review: a frame folder ``take.v2/`` was spotted as video ``take`` (its
    stem), so `evaluate` against ground truth for ``take.v2`` scored nothing."""
    import cv2

    from spotformer.cli import main
    from spotformer.metrics import read_intervals

    run = tmp_path / "run"
    argv = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--out", str(run)]
    assert main([*argv, "--epochs", "1", "--dim", "16", "--no-progress"]) == 0
    folder = tmp_path / "take.v2"
    folder.mkdir()
    for i in range(20):
        cv2.imwrite(str(folder / f"img{i + 1}.png"), np.full((48, 64, 3), i, np.uint8))
    capsys.readouterr()
    out = tmp_path / "iv.csv"
    spot = ["spot", str(folder), "--checkpoint", str(run / "folds" / "s1" / "model.pt")]
    assert main([*spot, "--out", str(out)]) == 0
    io = capsys.readouterr()
    assert io.out.startswith("take.v2: ")
    # A progress bar over the video's frames (found in a probe: none, minutes of silence).
    assert re.search(r"SW-MRO: 100%\|[^|]*\| 20/20 ", io.err), io.err[-800:]
    assert main([*spot, "--out", str(out), "--no-progress"]) == 0
    assert "SW-MRO:" not in capsys.readouterr().err
    assert {i.video for i in read_intervals(out)} <= {"take.v2"}
    # Ctrl-C while the plot is drawn: the CSV is whole, no plot, and the line says so.
    import spotformer.commands.spot as spot_cmd

    def interrupted(*a, **k):  # noqa: ANN002, ANN003
        raise KeyboardInterrupt

    written = out.read_bytes()
    out.unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spot_cmd, "plot_curves", interrupted)
        plot = tmp_path / "curves.png"
        assert main([*spot, "--out", str(out), "--plot", str(plot), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "spotformer spot: interrupted; --out and --plot are each written whole" in err, err
    assert out.read_bytes() == written and not plot.exists()
    # A file is still named by its stem.
    video = _tiny_video(tmp_path / "clip.v3.mp4")
    assert main(["spot", str(video), *spot[2:], "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("clip.v3: ")


def test_one_file_listed_as_two_videos_is_refused(tmp_path: Path) -> None:
    """Found in a probe: one file under two ids (and two subjects) was accepted, so a
    leave-one-subject-out fold tested a video it had trained on."""
    import spotformer.features as F
    from spotformer.data.table import AnnotationTable, VideoRef

    a = _tiny_video(tmp_path / "a.mp4", n=30)
    b = _tiny_video(tmp_path / "b.mp4", n=30)
    link = tmp_path / "same.mp4"
    link.symlink_to(a)
    refs = {"s1/a": VideoRef(a, subject="s1"), "s2/b": VideoRef(b, subject="s2")}
    exprs = [Expression("s1", "s1/a", 3, 5, 8, "micro")]
    assert set(F.plan_videos(AnnotationTable(exprs, sources=refs), 17)) == {"s1/a", "s2/b"}
    refs["s3/a"] = VideoRef(link, subject="s3")
    with pytest.raises(F.DatasetError) as err:
        F.plan_videos(AnnotationTable(exprs, sources=refs), 17)
    assert f"1 file(s) listed as more than one video: {a.resolve()} as 's1/a' and 's3/a'" in str(
        err.value
    )


def test_an_expression_outside_its_video_names_the_annotation_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found in a probe: the refusal named the video and frames but not the file and line
    of the annotation that gave them (a data set's CSV has hundreds of rows)."""
    import spotformer.features as F
    from spotformer.data.annotations import load_csv
    from spotformer.data.labels import LabelError, frame_targets

    _tiny_video(tmp_path / "a.mp4", n=30)
    csv = tmp_path / "ann.csv"
    csv.write_text(
        "subject,video,onset,apex,offset,type,path\n"
        "s1,a,2,4,6,micro,a.mp4\ns1,a,25,27,31,macro,a.mp4\ns1,a,35,37,40,micro,a.mp4\n"
    )
    table = load_csv(csv)
    with pytest.raises(F.DatasetError) as err:
        F.plan_videos(table, 17)
    assert f"micro expression 35-40 ({csv} line 4) lies outside it" in str(err.value)
    F.plan_videos(dataclasses.replace(table, expressions=table.expressions[:2]), 17)
    assert f"macro expression 25-31 ({csv} line 3) runs past its last frame 29" in (
        capsys.readouterr().err
    )
    with pytest.raises(LabelError, match=rf"35-40 \(micro, {re.escape(str(csv))} line 4\) lies"):
        frame_targets(table.expressions, 30, video="a")
    # Where is not part of an expression's identity: equal rows stay equal.
    assert table.expressions[2] == Expression("s1", "a", 35, 37, 40, "micro")


def test_dataset_annotations_are_checked_before_extraction(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """An expression outside its video, or an annotated video shorter than the window,
    fails before any extraction (listing every problem); a short video without
    annotations is left out with a warning, and an expression that runs past its
    video's end is named in a warning (it is cut there)."""
    import spotformer.features as F
    from spotformer.data.table import AnnotationTable, VideoRef

    a = _tiny_video(tmp_path / "a.mp4", n=30)
    b = _tiny_video(tmp_path / "b.mp4", n=20)
    extracted = []

    def fake_video_features(path, config=None, *, stride=1, fps=None, bar=None, **_):
        extracted.append(Path(path).name)
        return torch.zeros(20, 17, 10, 2), 30.0

    monkeypatch.setattr(F, "video_features", fake_video_features)
    refs = {"s1/a": VideoRef(a, subject="s1"), "s2/b": VideoRef(b, subject="s2")}
    bad = AnnotationTable(
        [Expression("s1", "s1/a", 35, 37, 40, "micro"), Expression("s2", "s2/b", 19, 19, 40, "macro")],
        sources=refs,
    )  # fmt: skip
    with pytest.raises(F.DatasetError) as err:
        F.dataset_features(bad, sw_mro.SWMROConfig(window=17), progress=False)
    msg = str(err.value)
    assert "found before extraction" in msg and "micro expression 35-40 lies outside it" in msg
    assert "s2/b" not in msg and extracted == []  # 19-40 overlaps b's 20 frames: clipped
    with pytest.raises(F.DatasetError, match="shorter than the window of 21, but annotated"):
        F.dataset_features(bad, sw_mro.SWMROConfig(window=21), progress=False)
    # b is short for window 21 and not annotated: left out; a is extracted.
    capsys.readouterr()
    ok = AnnotationTable(
        [Expression("s1", "s1/a", 2, 4, 6, "micro"), Expression("s1", "s1/a", 25, 27, 31, "macro")],
        sources=refs,
    )  # fmt: skip
    got = F.dataset_features(ok, sw_mro.SWMROConfig(window=21), progress=False)
    assert list(got.features) == ["s1/a"] and extracted == ["a.mp4"]
    err = capsys.readouterr().err
    assert "macro expression 25-31 runs past its last frame 29" in err
    assert "2-4" not in err and "2-6" not in err
    assert "check the annotation" not in err  # 31 of 30 frames: a late offset, no hint
    # Far past the end (over 1.2x the frames): more likely a wrong stride or fps, said.
    far = AnnotationTable([Expression("s1", "s1/a", 25, 27, 40, "macro")], sources=refs)
    F.dataset_features(far, sw_mro.SWMROConfig(window=21), progress=False)
    err = capsys.readouterr().err
    assert "25-40 runs past its last frame 29 (after stride 1); cut there for training and " in err
    assert "scoring; 40 is 1.3x its 30 frames: check the annotation's stride and fps" in err
    # Videos that do not exist: all named at once, before any is opened (found in a
    # walk-through: a CSV with wrong paths failed on the first, then on the next).
    lost = {**refs, "s3/c": VideoRef(tmp_path / "c.mp4", subject="s3"),
            "s4/d": VideoRef(tmp_path / "sub" / "d", subject="s4")}  # fmt: skip
    import sw_mro.io.video as V

    monkeypatch.setattr(V, "open_video", lambda *a, **k: pytest.fail("a video was opened"))
    with pytest.raises(F.DatasetError) as err:
        F.dataset_features(AnnotationTable([], sources=lost), sw_mro.SWMROConfig(), progress=False)
    assert str(err.value) == (
        f"2 of the 4 videos do not exist: 's3/c' ({tmp_path / 'c.mp4'}), 's4/d' "
        f"({tmp_path / 'sub' / 'd'}) (a CSV data set's paths are relative to the CSV's "
        "folder; docs/io.md, 'Generic CSV')"
    )


def test_ground_truth_is_cut_at_the_last_frame_like_the_labels() -> None:
    """An expression past the end (a SAMM-LV offset on the last source frame rounds to
    one frame past the decoded ones) is scored as labelled, [onset, last frame]: the best
    proposal matches it (found in review: it scored tp 0, fp 1, fn 1)."""
    data = SpottingData.build(
        {"v": torch.zeros(30, 17, 10, 2)}, [Expression("s", "v", 20, 25, 45, "macro")]
    )
    (gt,) = T.ground_truth(data, data.videos)
    assert (gt.onset, gt.offset, gt.apex) == (20, 29, 25)
    assert data.targets.macro_expr[20:].sum().item() == 10  # labels: the same frames
    best = [Interval("v", 20, 29, "macro")]
    assert evaluate(best, [gt]).macro.tp == 1
    with pytest.raises(ValueError, match="0 <= onset"):
        Expression("s", "v", -5, 0, 3, "micro")  # before frame 0: refused, not wrapped


def test_spot_finds_the_ground_truth_id(tmp_path: Path) -> None:
    from spotformer.commands.spot import ground_truth_id

    cas = tmp_path / "15_0101disgustingteeth"
    cas.mkdir()
    ids = {"s15/15_0101", "s15/15_0102", "s16/16_0101"}
    assert ground_truth_id(cas, ids) == "s15/15_0101"
    samm = tmp_path / "006_1"
    samm.mkdir()
    assert ground_truth_id(samm, {"006_1", "006_2"}) == "006_1"
    assert ground_truth_id(samm, {"007_1"}) is None
    f = _tiny_video(tmp_path / "v10.mp4")
    assert ground_truth_id(f, {"s1/v1", "s1/v10"}) == "s1/v10"  # the longest match
    assert ground_truth_id(f, {"a/v10", "b/v10"}) is None  # ambiguous
    assert ground_truth_id(f, {"v10"}) == "v10"
    # A prefix counts only where a token ends: not inside a number or a word.
    clip12 = _tiny_video(tmp_path / "clip12.mp4")
    assert ground_truth_id(clip12, {"clip1", "clip10"}) is None
    # Nor where a word goes on with a number (found in review: clip2 was scored as clip).
    assert ground_truth_id(clip12, {"clip"}) is None
    astro40 = _tiny_video(tmp_path / "astro40.mp4")
    assert ground_truth_id(astro40, {"astro", "astro4"}) is None
    assert ground_truth_id(_tiny_video(tmp_path / "astro-40.mp4"), {"astro"}) == "astro"
    april = _tiny_video(tmp_path / "april_session.mp4")
    assert ground_truth_id(april, {"a", "b"}) is None
    assert ground_truth_id(april, {"april", "apr"}) == "april"  # "apr|il" is inside a word
    take = _tiny_video(tmp_path / "006_1-take2.mp4")
    assert ground_truth_id(take, {"006_1", "006_10"}) == "006_1"


def test_spot_names_an_unannotated_casme2_video_as_training_does(tmp_path: Path) -> None:
    """A CAS(ME)^2 video with no expressions is not in the workbook: its id comes from
    the data set's layout, as training gives it (found in review: the folder name, and
    a note suggesting the id was wrong)."""
    from spotformer.commands.spot import casme2_layout_id

    for kind in ("rawpic", "rawvideo"):
        assert casme2_layout_id(tmp_path / kind / "s16" / "16_0401girlcrashing") == "s16/16_0401"
    assert casme2_layout_id(tmp_path / "rawpic" / "s16" / "16_0401girlcrashing.mp4") == (
        "s16/16_0401"
    )
    assert casme2_layout_id(tmp_path / "s16" / "16_0401girlcrashing") is None  # no rawpic/
    assert casme2_layout_id(tmp_path / "rawpic" / "x16" / "16_0401x") is None
    assert casme2_layout_id(tmp_path / "rawpic" / "s16" / "clip") is None


def test_spot_opens_videos_at_the_models_training_rate(tmp_path: Path) -> None:
    """A SAMM-LV model (200 fps folders, stride 7): a 30 fps file is read whole, a 200 fps
    folder at stride 7; a CAS(ME)^2-style model (stride 1, rate unknown = 30) takes every
    frame of a 30 fps file and every 2nd of a 60 fps one; --stride / --fps win."""
    import cv2

    from spotformer.commands.spot import open_like_training

    samm = {"stride": 7, "source_fps": 200.0}
    cas = {"stride": 1, "source_fps": None}
    v30, v60 = _tiny_video(tmp_path / "a.mp4"), _tiny_video(tmp_path / "b.mp4", fps=60.0)
    folder = tmp_path / "006_1"
    folder.mkdir()
    for i in range(20):
        cv2.imwrite(str(folder / f"006_1_{i + 1:04d}.png"), np.zeros((48, 64, 3), np.uint8))
    # 30 fps is SAMM-LV's 200/7 within 5 % either way (found in review: 30 / (200/7) is
    # 1.05 plus a rounding error, and a note said the rates differ).
    assert open_like_training(v30, samm, None, None) == (1, None, "")
    stride, fps, note = open_like_training(folder, samm, None, None)
    assert (stride, fps) == (7, 200.0) and "stride 7" in note
    # A folder's rate is the model's data's guess: how to give the real one (found in
    # review: a SAMM-LV model on a 30 fps CAS(ME)^2 folder read it as 200 fps).
    assert "give its real rate with --fps (CAS(ME)^2's: --fps 30)" in note
    assert "--fps (CAS" not in open_like_training(folder, samm, None, 200.0)[2]
    # With --fps given, only --stride is left to override the choice (found in review:
    # "--stride and --fps override this" to a user who had given --fps).
    for rate, stride_want in ((400.0, 14), (25.0, 1)):
        stride, _, note = open_like_training(folder, samm, None, rate)
        assert stride == stride_want and "--stride overrides this" in note, note
        assert "--fps override" not in note
    assert "--stride and --fps override this" in open_like_training(v60, samm, None, None)[2]
    assert open_like_training(v30, cas, None, None) == (1, None, "")
    assert open_like_training(v60, cas, None, None)[:2] == (2, None)
    # --stride wins; a rate other than the model's is said, with how to score it (found
    # in review: `spot --stride 1` on SAMM-LV, then `evaluate` at stride 7 gave 0 TP).
    stride, fps, note = open_like_training(folder, samm, 3, 100.0)
    assert (stride, fps) == (3, 100.0)
    assert "100 fps at --stride 3 is 33.33 fps, not the 28.57 fps of the model's" in note
    assert "spotformer evaluate --stride 3" in note
    # ... and only where it works (found in review: it was advised for CAS(ME)^2 too).
    assert "CAS(ME)^2 workbook only at stride 1" in note
    assert open_like_training(folder, samm, 7, 200.0) == (7, 200.0, "")  # the model's rate
    assert open_like_training(v60, {}, None, None) == (1, None, "")  # an older model
    # Runs record the rate after the strides (found in a probe: 30 fps files with 60 fps
    # ones at stride 2 recorded neither stride nor rate, and a 60 fps video was read at
    # stride 1; mixed rates were taken for 30 fps and a 60 fps video read at stride 2).
    strided = {"stride": None, "source_fps": None, "fps": 30.0}
    assert open_like_training(v60, strided, None, None)[:2] == (2, None)
    assert open_like_training(v30, strided, None, None) == (1, None, "")
    mixed = {"stride": 1, "source_fps": None, "fps": None}
    stride, fps, note = open_like_training(v60, mixed, None, None)
    assert (stride, fps) == (1, None) and "trained on videos of mixed frame rates" in note
    assert open_like_training(v60, mixed, 2, None) == (2, None, "")
    samm_now = {**samm, "fps": 200.0 / 7}  # the same choices as from the older record
    assert open_like_training(folder, samm_now, None, None)[:2] == (7, 200.0)
    assert open_like_training(v30, samm_now, None, None) == (1, None, "")
    # A folder at the model's rate and stride 1: the note says which rate it assumed.
    stride, fps, note = open_like_training(folder, {"stride": 1, "source_fps": 30.0}, None, None)
    assert (stride, fps) == (1, 30.0) and "read as 30 fps" in note and "stride" not in note
    # Where no whole stride gives the model's rate (found in review: 25 fps said nothing,
    # 50 fps was "25.00 fps, the rate of the model's training data (30.00 fps)").
    v25, v50 = _tiny_video(tmp_path / "c.mp4", fps=25.0), _tiny_video(tmp_path / "d.mp4", fps=50.0)
    stride, fps, note = open_like_training(v25, cas, None, None)
    assert (stride, fps) == (1, None) and note.startswith(
        f"{v25}: 25 fps at stride 1 is 25.00 fps, not the 30.00 fps"
    ), note
    assert "the model sees each motion over 0.83x the frames" in note
    assert "Its intervals count" not in note  # stride 1: every frame, nothing to convert
    stride, fps, note = open_like_training(v50, cas, None, None)
    assert stride == 2 and "50 fps at stride 2 is 25.00 fps, not the 30.00 fps" in note, note
    assert "the rate of the model's" not in note and "count frames at stride 2" in note
    # --stride 1 on the 25 fps file: no advice to leave it out (that gives stride 1 too).
    note = open_like_training(v25, cas, 1, None)[2]
    assert "no whole stride of 25 fps gives it" in note and "leave out" not in note, note
    assert "leave out --stride to match it (stride 2)" in open_like_training(v60, cas, 1, None)[2]
    # A 60 fps file at the chosen stride 2: the note says the intervals count stride-2
    # frames (found in review: the CSV's frames were stride-2 frames, unsaid).
    note = open_like_training(v60, cas, None, None)[2]
    assert "is 30.00 fps, the rate of the model's training data" in note
    assert "Its intervals count frames at stride 2" in note


def test_spot_cuts_the_ground_truth_to_the_video(capsys) -> None:
    """Found in review: a clip scored against its video's whole annotation counted the
    expressions past its end as misses, unsaid (training refuses or cuts them). Spot
    cuts one that runs past the last frame extracted there, as training does, leaves out
    one that starts after it, and says so. A 20-frame clip: frames 0-19."""
    from spotformer.commands.spot import _within_the_video
    from spotformer.metrics import Interval

    inside = Interval("v", 2, 8, "micro", apex=5)
    gts = [inside, Interval("v", 15, 30, "macro", apex=25), Interval("v", 25, 40, "macro")]
    got = _within_the_video(gts, 19, "v", 1)
    assert got == [inside, Interval("v", 15, 19, "macro", apex=19)]
    err = capsys.readouterr().err
    assert err == (
        "spotformer spot: warning: v: of its 3 ground-truth expressions, 1 starts after the "
        "video's last frame (19, at stride 1) and is not scored, and 1 runs past it and is "
        "cut there, as training cuts them; is --gt this very video's, at this stride?\n"
    )
    assert _within_the_video([inside], 19, "v", 1) == [inside]
    assert capsys.readouterr().err == ""
    # At stride 2 the clip has 10 frames: 15-30 starts after its last frame, 9.
    assert _within_the_video(gts, 9, "v", 2) == [inside]
    assert (
        "2 start after the video's last frame (9, at stride 2) and are not"
        in capsys.readouterr().err
    )


def test_spot_plot_names_the_ground_truth_only_where_given(tmp_path: Path, monkeypatch) -> None:
    """Found in review: the plot's title said "ground truth (red bars)" without --gt."""
    import matplotlib.axes

    from spotformer.commands.spot import plot_curves
    from spotformer.metrics import Interval

    titles: list[str] = []
    real = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes, "set_title", lambda ax, t, *a, **k: titles.append(t) or real(ax, t)
    )
    logits = torch.zeros(40, 10)
    found = [Interval("v", 5, 20, "macro", 0.9, apex=10)]
    plot_curves(tmp_path / "a.png", logits, 30.0, found, None, "v")
    plot_curves(tmp_path / "b.png", logits, 30.0, found, [Interval("v", 4, 21, "macro")], "v")
    assert titles == ["v: predicted (green)", "v: predicted (green), ground truth (red bars)"]
    assert (tmp_path / "a.png").stat().st_size > 10_000
    # Intervals are inclusive: each frame spans half a frame either side of its point
    # (found in a probe: drawn a frame short, and a one-frame interval not at all).
    spans: list[tuple[float, float]] = []
    monkeypatch.setattr(
        matplotlib.axes.Axes, "axvspan", lambda ax, a, b, *x, **k: spans.append((a, b))
    )
    plot_curves(
        tmp_path / "c.png", logits, 30.0, found + [Interval("v", 30, 30, "macro")], None, "v"
    )
    assert spans == [(4.5, 20.5), (29.5, 30.5)]


def test_train_notes_and_records_mixed_frame_rates(
    tmp_path: Path, csv_dataset: Path, monkeypatch, capsys
) -> None:
    """Found in a probe: videos at 25, 30 and 60 fps trained without a word, and `spot`
    then took the model for a 30 fps one. The run says so and records no rate."""
    import spotformer.features as F
    from spotformer.cli import main

    planned = F.plan_videos

    def mixed(table, window):  # noqa: ANN001, ANN202
        plan = planned(table, window)
        first = sorted(plan)[0]
        plan[first] = dataclasses.replace(plan[first], fps=60.0, source_fps=60.0)
        return plan

    monkeypatch.setattr(F, "plan_videos", mixed)
    run = tmp_path / "run"
    argv = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--out", str(run)]
    assert main([*argv, "--epochs", "1", "--dim", "16", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "the videos' frame rates after their strides differ (30, 60 fps)" in err, err
    assert "holds no run to resume" not in err
    # --resume into a folder without a run (a typo?) says that a new run starts.
    other = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--out", str(tmp_path / "r2")]
    assert main([*other, "--epochs", "1", "--dim", "16", "--no-progress", "--resume"]) == 0
    assert f"--resume: {tmp_path / 'r2'} holds no run to resume" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["info"]["fps"] is None


def test_train_and_spot_commands(tmp_path: Path, csv_dataset: Path, capsys) -> None:
    from spotformer.cli import main
    from sw_mro.io import landmark_pool

    run = tmp_path / "run"
    argv = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--out", str(run)]
    argv += ["--epochs", "1", "--dim", "16", "--batch-size", "64", "--no-progress"]
    # The landmark worker pool that extraction leaves (on a GPU host; the features are
    # fake here): training closes it once the features are extracted.
    pool = landmark_pool.shared_pool(1)
    pool.run(np.zeros((2, 64, 64, 3), np.uint8), [(0, 2, None)])  # its worker, started
    workers = list(pool._pool._processes.values())
    assert workers and all(p.is_alive() for p in workers)
    assert main(argv) == 0
    assert pool not in landmark_pool._POOLS.values() and not any(p.is_alive() for p in workers)
    out = capsys.readouterr().out
    assert "LOSO over 3 subjects" in out and "Overall" in out
    assert "Data: 3 videos, 3 annotated (" in out and ", 0 without annotations" in out
    report = json.loads((run / "report.json").read_text())
    table_line = next(ln for ln in out.splitlines() if ln.startswith("Overall")).split()
    assert [int(x) for x in table_line[1:4]] == [report["overall"][k] for k in ("tp", "fp", "fn")]
    saved = json.loads((run / "config.json").read_text())
    assert saved["info"]["dataset"] == "csv"
    assert saved["info"]["fps"] == 30.0  # the rate after the strides, for `spot`
    # Every frame is trained on by default (the authors' code: expression segments only).
    assert saved["train"]["neutral_segments"] == 1.0
    assert saved["train"]["spot"]["apex_threshold"] == 0.5
    # Running again into the same folder without --resume is refused, with exit code 2.
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err

    video = _tiny_video(tmp_path / "video.mp4", n=40)  # 20 frames at stride 2: the window
    spot = ["spot", str(video), "--checkpoint", str(run / "folds" / "s1" / "model.pt")]
    spot += ["--out", str(tmp_path / "iv.csv"), "--plot", str(tmp_path / "c.png")]
    spot += ["--gt", str(csv_dataset), "--video-id", "s1/v0"]
    assert main(spot) == 0
    out = capsys.readouterr().out
    assert "s1/v0: 160 frames" in out and "Overall" in out
    # The printed count is the file's, and every interval is of the given video id.
    got = read_intervals(tmp_path / "iv.csv")
    n = len(got)
    assert f"s1/v0: 160 frames at 30.00 fps, {n} interval{'s' * (n != 1)}" in out
    assert {i.video for i in got} <= {"s1/v0"}
    # An id that --gt does not have: said on stderr before the extraction; every
    # interval counts as an FP.
    other = [*spot[: spot.index("--video-id")], "--video-id", "s9/none"]
    assert main(other) == 0
    io = capsys.readouterr()
    assert "note: no ground truth for video 's9/none'" in io.err and "'s1/v0'" in io.err
    assert "Overall" in io.out
    assert (tmp_path / "c.png").stat().st_size > 10_000
    # A CAS(ME)^2 workbook counts every frame: at stride 2 spot refuses it before
    # extracting, instead of scoring frames of two scales against each other.
    from test_annotations import write_casme2

    cas = write_casme2(tmp_path / "CAS(ME)^2code_final.xlsx")
    at2 = [a for a in spot if a != str(csv_dataset)]
    at2[at2.index("--gt") + 1 : at2.index("--gt") + 1] = [str(cas)]
    assert main([*at2, "--stride", "2"]) == 2
    out, err = capsys.readouterr()
    assert "stride 1" in err and str(cas) in err and "frames at" not in out
    assert "count every 2nd frame" in err
    assert saved["train"]["spot"]["macro_mode"] == "apex"  # SPEC's, unless asked
    # Overriding the model file's post-processing: with a threshold of 0.01 the whole
    # 160-frame video is one expression segment.
    spot[spot.index("--out") + 1] = str(tmp_path / "iv2.csv")
    assert main([*spot, "--macro-spotting", "expression", "--expr-threshold", "0.01"]) == 0
    macro = [i for i in read_intervals(tmp_path / "iv2.csv") if i.kind == "macro"]
    assert [(i.onset, i.offset) for i in macro] == [(0, 159)]


@pytest.mark.parametrize(
    ("argv", "face_size"),
    [(["--dataset", "samm"], 320), (["--dataset", "casme2"], 256),
     (["--dataset", "samm", "--face-size", "256"], 256)],
)  # fmt: skip
def test_train_face_size_default_per_dataset(tmp_path: Path, monkeypatch, argv, face_size) -> None:
    """SPEC 2.2: 256 px by default, 320 for SAMM-LV as in the paper's precedent."""
    import types

    import spotformer.features as F
    from spotformer.cli import main

    seen = {}

    def stop(table, config=None, progress=True, **_):
        seen["config"] = config
        raise F.DatasetError("stop here")

    from spotformer.data.table import VideoRef

    two = {v: VideoRef(tmp_path / v, subject=s) for v, s in (("a", "s1"), ("b", "s2"))}
    table = types.SimpleNamespace(dropped=[], sources=two, expressions=[])
    monkeypatch.setattr(F, "load_dataset", lambda *a: table)
    monkeypatch.setattr(F, "plan_videos", lambda *a: {})  # the videos are not there
    monkeypatch.setattr(F, "dataset_features", stop)
    assert main(["train", *argv, "--root", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert seen["config"].face_size == face_size


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
        (["--batch-size", "1"], "--batch-size must be >= 2, got 1"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (
            ["--face-size", "16"],
            "--face-size 16: must be an integer in 32..1024 px (SPEC: 256; 320 for SAMM-LV)",
        ),
        (
            ["--face-size", "4096"],
            "--face-size 4096: must be an integer in 32..1024 px (SPEC: 256; 320 for SAMM-LV)",
        ),
        (["--macro-ratio", "2"], "--macro-ratio (m) must be in [0, 1], got 2.0"),
        (["--expr-threshold", "1"], "--expr-threshold must be in (0, 1); got 1.0"),
        (["--dim", "30"], "--dim must be a multiple of 4 (4 attention heads of D/4), got 30"),
        (["--dim", "0"], "--dim must be a multiple of 4 (4 attention heads of D/4), got 0"),
    ],
)
def test_bad_values_are_named_as_options(tmp_path: Path, capsys, argv, said) -> None:
    """Found in review: config field names ("batch_size", "SWMROConfig.face_size=16"),
    and --dim 30 silently built one attention head of 30."""
    from spotformer.cli import main

    base = ["train", "--dataset", "csv", "--root", str(tmp_path), "--out", str(tmp_path / "r")]
    assert main([*base, *argv]) == 2
    assert capsys.readouterr().err == f"spotformer train: {said}\n"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("subjects", "argv", "ok"),
    [(["s1"], [], False), (["s1", "s2"], [], True),
     (["s1", "s2"], ["--selection", "val"], False), (["s1", "s2", "s3"], ["--selection", "val"], True)],
)  # fmt: skip
def test_train_needs_two_subjects_before_extraction(
    tmp_path: Path, monkeypatch, capsys, subjects: list[str], argv: list[str], ok: bool
) -> None:
    """Leave-one-subject-out with one subject (3 with validation) is refused before the
    features are extracted, not after (found in review: a one-subject CAS(ME)^2 folder
    was extracted, then failed with "fewer than 2 training frames"). A subject known
    only from its video's expressions counts too."""
    import types

    import spotformer.features as F
    from spotformer.cli import main
    from spotformer.data.table import VideoRef

    calls = []

    def stop(table, config=None, progress=True, **_):
        calls.append(1)
        raise F.DatasetError("stop here")

    refs = {f"v{i}": VideoRef(tmp_path / f"v{i}", subject=s) for i, s in enumerate(subjects)}
    refs["v0"] = VideoRef(tmp_path / "v0", subject=None)  # its subject from its expression
    exprs = [Expression(subjects[0], "v0", 1, 2, 3, "micro")]
    table = types.SimpleNamespace(dropped=[], sources=refs, expressions=exprs)
    monkeypatch.setattr(F, "load_dataset", lambda *a: table)
    monkeypatch.setattr(F, "plan_videos", lambda *a: {})  # the videos are not there
    monkeypatch.setattr(F, "dataset_features", stop)
    out = ["--dataset", "casme2", "--root", str(tmp_path), "--out", str(tmp_path / "r")]
    assert main(["train", *out, *argv]) == 2
    err = capsys.readouterr().err
    assert calls == ([1] if ok else [])
    if not ok:
        need = 2 + ("--selection" in argv)
        assert f"needs at least {need} subjects" in err
        assert f"the data has {len(subjects)}: {repr(subjects[0])}" in err


def test_val_subjects_is_ignored_without_val_selection(tmp_path: Path, capsys) -> None:
    """--val-subjects with another selection is a note and is not recorded (found in
    review: it was recorded silently, then refused a --resume without it)."""
    import argparse

    from spotformer.cli import main
    from spotformer.commands import train as train_cmd

    taken = tmp_path / "a_file"
    taken.write_text("")  # --out is refused right after the options are read
    argv = ["train", "--dataset", "csv", "--root", str(tmp_path), "--out", str(taken)]
    assert main([*argv, "--val-subjects", "2"]) == 2
    note = "--val-subjects applies only with --selection val; ignored"
    assert note in capsys.readouterr().err
    assert main([*argv, "--val-subjects", "2", "--selection", "val"]) == 2
    assert note not in capsys.readouterr().err

    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    base = ["--dataset", "csv", "--root", "r", "--out", "o"]
    cfg, _ = train_cmd.configs(parser.parse_args([*base, "--val-subjects", "2"]))
    assert cfg.selection == "fixed" and cfg.val_subjects == 1
    cfg, _ = train_cmd.configs(
        parser.parse_args([*base, "--val-subjects", "2", "--selection", "val"])
    )
    assert cfg.val_subjects == 2


def test_train_supcon_options_reach_the_run(tmp_path: Path, csv_dataset: Path) -> None:
    from spotformer.cli import main

    run = tmp_path / "run"
    argv = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--out", str(run)]
    argv += ["--epochs", "1", "--dim", "16", "--batch-size", "64", "--no-progress"]
    assert main([*argv, "--supcon", "authors", "--supcon-weight", "0.01"]) == 0
    loss = json.loads((run / "config.json").read_text())["train"]["loss"]
    got = [loss[k] for k in ("contrastive", "normalize_features", "base_temperature")]
    assert [*got, loss["supcon_form"]] == [0.01, False, 0.07, "authors"]
    train = json.loads((run / "config.json").read_text())["train"]
    assert (train["amp"], train["amp_dtype"]) == (True, "bfloat16")  # the default
    for amp, want in (("off", (False, "bfloat16")), ("float16", (True, "float16"))):
        run_b = tmp_path / f"run_{amp}"
        argv_b = [*argv[:6], str(run_b), *argv[7:]]
        assert main([*argv_b, "--amp", amp]) == 0
        train = json.loads((run_b / "config.json").read_text())["train"]
        assert (train["amp"], train["amp_dtype"]) == want


def test_train_refuses_a_bad_out_before_extracting(
    tmp_path: Path, csv_dataset: Path, monkeypatch, capsys
) -> None:
    """--out that is a file, or that holds a run, is refused before any extraction
    (on a real data set that is hours)."""
    import spotformer.features as F
    from spotformer.cli import main

    def no_extraction(*a, **k):
        raise AssertionError("extracted before checking --out")

    monkeypatch.setattr(F, "dataset_features", no_extraction)
    afile = tmp_path / "afile"
    afile.write_text("x")
    base = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--epochs", "1"]
    for out, needle in ((afile, "is a file"), (afile / "sub", "is a file, not a folder")):
        assert main([*base, "--out", str(out)]) == 2
        assert needle in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"epochs": 2}}))
    assert main([*base, "--out", str(run)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert main([*base, "--out", str(run), "--resume"]) == 2
    assert "differs from this one in train" in capsys.readouterr().err


def test_a_run_resumes_at_its_own_thread_count(
    tmp_path: Path, csv_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found in an audit: `--threads` was not recorded, and a run started with
    `--threads 1` and resumed without it trained on torch's default (other float sums,
    other weights and F1) without a word. The count is in config.json now; a resume
    without `--threads` takes it (with a note), one with another count is warned about."""
    from spotformer.cli import main

    run = tmp_path / "run"
    argv = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--out", str(run)]
    argv += ["--epochs", "1", "--dim", "16", "--batch-size", "64", "--no-progress"]
    before = torch.get_num_threads()
    try:
        assert main([*argv, "--threads", "1"]) == 0
        assert json.loads((run / "config.json").read_text())["info"]["threads"] == 1
        torch.set_num_threads(2)  # torch's default on a 2-core machine
        capsys.readouterr()
        assert main([*argv, "--resume"]) == 0  # finished: reported again
        out, err = capsys.readouterr()
        assert "--resume: training on the run's 1 CPU thread(s), as it started" in err
        assert "holds a finished run with these options and data" in out
        # Another count (another machine): allowed, with a warning (found in review: a
        # refusal kept a run saved on 64 threads from resuming on 8 CPUs but at 64).
        assert main([*argv, "--resume", "--threads", "2"]) == 0
        err = capsys.readouterr().err
        assert "warning: --resume: the run started on 1 CPU thread(s); on 2 its remaining" in err
    finally:
        torch.set_num_threads(before)


def test_resume_takes_the_annotations_by_their_labels_not_by_how_the_path_was_typed(
    tmp_path: Path, csv_dataset: Path, monkeypatch, capsys
) -> None:
    """Found in review: ``--annotations`` was recorded as typed, so a resume from
    another folder (or with the absolute path of the same file) was refused as another
    run. It is recorded resolved, and a resume compares the labels' digest instead, so a
    run recorded with a relative path resumes too."""
    from spotformer.cli import main

    run = tmp_path / "run"
    opts = ["--out", str(run), "--epochs", "1", "--dim", "16", "--batch-size", "64"]
    argv = ["train", "--dataset", "csv", "--root", str(tmp_path), *opts, "--no-progress"]
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--annotations", csv_dataset.name]) == 0
    info = json.loads((run / "config.json").read_text())["info"]
    assert info["annotations"] == str(csv_dataset.resolve())
    monkeypatch.chdir(tmp_path.parent)
    capsys.readouterr()
    assert main([*argv, "--resume", "--annotations", f"{tmp_path.name}/{csv_dataset.name}"]) == 0
    assert "holds a finished run with these options and data" in capsys.readouterr().out
    saved = json.loads((run / "config.json").read_text())
    saved["info"]["annotations"] = csv_dataset.name  # as versions before recorded it
    (run / "config.json").write_text(json.dumps(saved))
    assert main([*argv, "--resume", "--annotations", str(csv_dataset)]) == 0
    assert "holds a finished run with these options and data" in capsys.readouterr().out
    # other labels at the same path are still another run
    rows = csv_dataset.read_text().splitlines()
    first = rows[1].split(",")
    first[4] = str(int(first[4]) + 1)  # one offset a frame later
    csv_dataset.write_text("\n".join([rows[0], ",".join(first), *rows[2:]]) + "\n")
    assert main([*argv, "--resume", "--annotations", str(csv_dataset)]) == 2
    assert "the annotations' labels changed since the run started" in capsys.readouterr().err


def test_resume_of_a_finished_run_reports_it_without_extracting(
    tmp_path: Path, csv_dataset: Path, monkeypatch, capsys
) -> None:
    """``train --resume`` on a run that finished prints its results again and extracts
    nothing (found in review: it extracted the whole data set, then had nothing to
    train). Data that changed since (a video's frame count) is refused before
    extraction; a run without its report goes on to extraction and training."""
    import spotformer.features as F
    from spotformer.cli import main

    run = tmp_path / "run"
    argv = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--out", str(run)]
    argv += ["--epochs", "1", "--dim", "16", "--batch-size", "64", "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    extracted = []

    def no_extraction(*a, **k):
        extracted.append(1)
        raise F.DatasetError("extraction started")

    real_features = F.dataset_features
    monkeypatch.setattr(F, "dataset_features", no_extraction)
    assert main([*argv, "--resume"]) == 0
    again = capsys.readouterr().out
    assert "holds a finished run with these options and data" in again and extracted == []

    def table(text: str) -> list[str]:
        lines = text.splitlines()
        at = next(i for i, ln in enumerate(lines) if ln.startswith("LOSO over"))
        end = next(i for i, ln in enumerate(lines) if ln.startswith("Overall"))
        return lines[at : end + 1]

    assert table(again) == table(first) and "LOSO over 3 subjects" in table(again)[0]
    # Other data: one video with a frame more than the run saw.
    real_plan = F.plan_videos

    def longer(table, window):
        plan = real_plan(table, window)
        name = next(iter(plan))
        plan[name] = dataclasses.replace(plan[name], frames=plan[name].frames + 1)
        return plan

    monkeypatch.setattr(F, "plan_videos", longer)
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "differs from this one in videos" in err and "frames" in err and extracted == []
    monkeypatch.setattr(F, "plan_videos", real_plan)
    # Edited labels (one offset a frame later): refused before extraction too (found in
    # review: a resumed fold trained on the new labels, the finished ones on the old).
    text = csv_dataset.read_text()
    head, row0, *rest = text.splitlines()
    row = row0.split(",")  # subject,video,onset,apex,offset,type,path,fps
    row[4] = str(int(row[4]) + 1)
    csv_dataset.write_text("\n".join([head, ",".join(row), *rest]) + "\n")
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "info.labels_sha1 (the annotations' labels changed since the run started)" in err
    assert extracted == []
    csv_dataset.write_text(text)
    # Not finished (no report): extraction and training go on, and finish the run.
    (run / "report.json").unlink()
    assert main([*argv, "--resume"]) == 2
    assert "extraction started" in capsys.readouterr().err and extracted == [1]
    monkeypatch.setattr(F, "dataset_features", real_features)
    assert main([*argv, "--resume"]) == 0
    assert table(capsys.readouterr().out) == table(first) and (run / "report.json").is_file()


def test_a_full_disk_is_a_train_error_naming_the_file(tmp_path: Path) -> None:
    """Out of space for a checkpoint or report: a :class:`TrainError` that names the file
    and says how to go on, and no temp file left (found in review: a traceback from
    ``_atomic_write_bytes`` and a ``checkpoint.pt.tmp`` taking the space)."""
    from mounts import private_tmpfs

    small = tmp_path / "small"
    small.mkdir()
    prefix = private_tmpfs(str(small), "8k")
    if prefix is None:
        pytest.skip("needs `unshare -m` and mount (root) for a private 8 kB file system")
    code = (
        "import sys; from pathlib import Path; from spotformer.train import TrainError, "
        "atomic_json\ntry:\n    atomic_json({'x': 'y' * 100_000}, Path(sys.argv[1]))\n"
        "except TrainError as exc:\n    print('TrainError:', exc)"
    )
    script = f'{sys.executable} -c "$0" {small / "report.json"}; ls -a {small}'
    proc = subprocess.run(
        [*prefix, "sh", "-c", script, code], capture_output=True, text=True, timeout=120
    )
    assert f"TrainError: {small / 'report.json'}: cannot write it (No space left on device)" in (
        proc.stdout
    ), proc.stdout + proc.stderr
    assert (
        "--resume" in proc.stdout
        and ".tmp" not in proc.stdout
        and "report.json\n" not in proc.stdout
    )


def test_csv_root_folder_without_annotations_csv_names_the_csv_it_holds(tmp_path: Path) -> None:
    import spotformer.features as F

    (tmp_path / "my annots.csv").write_text("subject,video,onset,apex,offset,type,path,fps\n")
    with pytest.raises(F.DatasetError) as err:
        F.load_dataset("csv", tmp_path)
    assert str(err.value) == (
        f"{tmp_path}: no annotations.csv in this folder; it holds 1 .csv file(s) (my "
        "annots.csv): pass one as --root (or --annotations)"
    )
    for name in ("b.csv", "c.csv", "d.csv"):
        (tmp_path / name).write_text("x\n")
    with pytest.raises(
        F.DatasetError, match=r"holds 4 \.csv file\(s\) \(b\.csv, c\.csv, d\.csv, \.\.\.\)"
    ):
        F.load_dataset("csv", tmp_path)


def test_a_missing_annotations_file_is_named_as_given(tmp_path: Path) -> None:
    """Found in review: `--annotations nope.csv` with the synthetic data set said "no
    annotation CSV; run `spotformer make-synthetic --out DIR` first", though the user
    had named a file. A missing --annotations file is said to be one; the synthetic
    folder without its CSV keeps the hint."""
    import spotformer.features as F

    nope = tmp_path / "nope.csv"
    for dataset in ("synthetic", "csv"):
        with pytest.raises(F.DatasetError) as err:
            F.load_dataset(dataset, tmp_path, nope)
        assert str(err.value) == f"{nope}: --annotations: no such file"
    with pytest.raises(F.DatasetError) as err:
        F.load_dataset("synthetic", tmp_path)
    assert str(err.value) == (
        f"{tmp_path / 'annotations.csv'}: no annotation CSV; run `spotformer make-synthetic "
        "--out DIR` first"
    )


def test_csv_without_paths_says_where_the_videos_go(tmp_path: Path) -> None:
    """A CSV without a path column: its videos cannot be found, and the error says to
    give them there (found in review: it said to check --root, which is the CSV)."""
    import spotformer.features as F

    csv = tmp_path / "mine.csv"
    csv.write_text("subject,video,onset,apex,offset,type\nalice,alice1,10,20,30,macro\n")
    with pytest.raises(F.DatasetError) as err:
        F.load_dataset("csv", csv)
    assert str(err.value) == (
        f"{csv}: 1 annotated video(s) have no video file or frame folder, e.g. 'alice1'; give "
        "each one in the CSV's path column (relative to the CSV's folder; docs/io.md, "
        "'Generic CSV')"
    )


def test_a_workbook_under_another_name_is_found_by_its_sheets(tmp_path: Path, capsys) -> None:
    """Found in a probe: with no CAS(ME)^2code_final.xlsx, the first .xlsx by name was
    taken (aaa_notes.xlsx, then called the other data set's workbook), and a right one
    was taken without a word."""
    from test_annotations import write_casme2, write_samm

    import spotformer.features as F

    root = tmp_path / "cas"
    (root / "rawpic" / "s15" / "15_0101disgust").mkdir(parents=True)
    write_samm(root / "aaa_notes.xlsx")  # another workbook, first by name
    write_casme2(root / "CAS(ME)^2code_final (1).xlsx")
    with pytest.raises(F.DatasetError, match="annotated videos? not found"):
        F.load_dataset("casme2", root)  # the workbook was read: its videos are looked for
    assert f"spotformer: annotations: {root / 'CAS(ME)^2code_final (1).xlsx'}" in (
        capsys.readouterr().err
    )
    write_casme2(root / "copy.xlsx")
    with pytest.raises(F.DatasetError) as err:
        F.load_dataset("casme2", root)
    assert str(err.value) == (
        f"{root}: 2 CAS(ME)^2 workbooks ('CAS(ME)^2code_final (1).xlsx', 'copy.xlsx'); "
        "pass one with --annotations"
    )
    from spotformer.errors import AnnotationError

    with pytest.raises(AnnotationError, match="no videos found"):
        F.load_dataset("samm", root)  # the one SAMM-LV workbook, aaa_notes.xlsx, was read
    (root / "aaa_notes.xlsx").unlink()
    with pytest.raises(F.DatasetError) as err:
        F.load_dataset("samm", root)
    assert str(err.value).startswith(
        f"{root}: none of its .xlsx files is a SAMM-LV workbook ('CAS(ME)^2code_final (1).xlsx'"
    )


def test_casme2_videos_not_found_are_listed_with_near_misses(tmp_path: Path) -> None:
    """Found in a probe: subject folders named S16 or sub16 gave "1 annotated video(s)
    not found, e.g. 's16/16_0101'; check --root", though --root was right and the
    videos had been found under those names."""
    from test_annotations import write_casme2

    import spotformer.features as F

    root = tmp_path / "cas"
    root.mkdir()
    write_casme2(root / "CAS(ME)^2code_final.xlsx")
    for folder in ("s15/15_0101disgust", "s15/15_0502happy", "S16/16_0102worms", "sub16/16_0401a"):
        (root / "rawpic" / folder).mkdir(parents=True)
    with pytest.raises(F.DatasetError) as err:
        F.load_dataset("casme2", root)
    assert str(err.value) == (
        f"{root}: 3 annotated videos not found: 's16/16_0102' (rawpic/s16/16_0102*), "
        "'s16/16_0401' (rawpic/s16/16_0401*), 's16/16_0502' (rawpic/s16/16_0502*). Found "
        "under another name: 'S16/16_0102' for 's16/16_0102', 'sub16/16_0401' for "
        "'s16/16_0401'; name the folders as naming rule1's subject folders (s15, s16, ...), "
        "or give the videos in a CSV (docs/io.md, 'Generic CSV')"
    )
    for folder in ("S16", "sub16"):
        (root / "rawpic" / folder).rename(root / "rawpic" / f"x{folder}")
        (root / "rawpic" / f"x{folder}").rename(tmp_path / folder)  # out of the data set
    with pytest.raises(F.DatasetError) as err:
        F.load_dataset("casme2", root)
    assert str(err.value).endswith(
        "(rawpic/s16/16_0502*); check --root (the folder holding the frames or videos)"
    )


@pytest.mark.parametrize(
    "dataset, name, holds",
    [
        ("casme2", "CAS(ME)^2code_final.xlsx", "rawpic/"),
        ("samm", "SAMM_x.xlsx", "SAMM_longvideos/"),
    ],
)
def test_a_workbook_as_root_says_root_is_the_folder(tmp_path: Path, dataset, name, holds) -> None:
    """Found in review: the workbook as --root was "no CAS(ME)^2 xlsx found" in it."""
    import shlex

    import spotformer.features as F

    book = tmp_path / name
    book.write_bytes(b"")
    with pytest.raises(F.DatasetError) as err:
        F.load_dataset(dataset, book)
    msg = str(err.value)
    assert msg.startswith(f"{book}: --root is the data set's folder") and holds in msg
    assert msg.endswith(
        f"--root {shlex.quote(str(tmp_path))} --annotations {shlex.quote(str(book))}"
    )


def test_a_failed_write_of_the_run_csvs_is_a_train_error(tmp_path: Path, data, monkeypatch) -> None:
    """After the last fold, predictions.csv on a full disk: a TrainError naming it (found
    in review: an OSError traceback from write_intervals)."""
    import errno

    def full(intervals, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(T, "write_intervals", full)
    run = tmp_path / "run"
    with pytest.raises(TrainError) as err:
        run_loso(data, tiny_cfg(epochs=1), run, progress=False)
    assert str(err.value).startswith(
        f"{run / 'predictions.csv'}: cannot write it (No space left on device); every fold is saved"
    )
    assert all((run / "folds" / s / "result.json").is_file() for s in data.subjects)


def test_train_uses_matching_extract_outputs_instead_of_extracting(tmp_path: Path, capsys) -> None:
    """``--features DIR`` (a ``sw-mro extract --out-dir``): a video whose features there
    were made from that file with the run's SW-MRO settings is not extracted again, and
    the run is the same as one that extracts everything (byte-identical predictions);
    features made with other settings are not used, with the reason."""
    from spotformer.cli import main
    from spotformer.data.synthetic import SyntheticConfig, make_synthetic
    from sw_mro.cli import main as sw_mro_main

    cfg = SyntheticConfig(subjects=2, videos_per_subject=1, seconds=6, macro_per_video=1,
                          micro_per_video=1, seed=0)  # fmt: skip
    data = tmp_path / "syn"
    manifest = make_synthetic(data, cfg, progress=False)
    first = data / manifest["videos"][0]["path"]
    train = ["train", "--dataset", "synthetic", "--root", str(data), "--epochs", "1"]
    train += ["--dim", "16", "--face-size", "64", "--no-progress", "--threads", "2"]
    # This 1-epoch model's probabilities stay near 0.5: expression segments at 0.3 give
    # intervals (scores of every video) to compare.
    train += ["--macro-spotting", "expression", "--micro-spotting", "expression"]
    train += ["--expr-threshold", "0.3"]
    assert main([*train, "--out", str(tmp_path / "a")]) == 0
    assert {i.video for i in read_intervals(tmp_path / "a" / "predictions.csv")} == {
        "s15/15_0101", "s16/16_0101",
    }  # fmt: skip
    feats = tmp_path / "feats"
    extract = ["extract", str(first), "--out-dir", str(feats), "--quiet"]
    assert sw_mro_main([*extract, "--face-size", "64"]) == 0
    capsys.readouterr()
    assert main([*train, "--out", str(tmp_path / "b"), "--features", str(feats)]) == 0
    said = capsys.readouterr()
    err = said.err
    assert f"reused the features of 1 of 2 videos from {feats}; extracted 1, e.g. " in err
    # The rate is the extracted video's alone (found in a probe: reused frames counted).
    n = cfg.num_frames
    assert (
        f"SW-MRO: 2 videos, {2 * n} frames: 1 video ({n} frames) reused, {n} frames extracted in "
    ) in said.out
    assert "no complete" in err
    assert (tmp_path / "b" / "predictions.csv").read_bytes() == (
        tmp_path / "a" / "predictions.csv"
    ).read_bytes()
    # Made at another face size: not used, and why.
    assert sw_mro_main([*extract, "--face-size", "128", "--overwrite"]) == 0
    capsys.readouterr()
    assert main([*train, "--out", str(tmp_path / "d"), "--features", str(feats)]) == 0
    err = capsys.readouterr().err
    assert "reused the features of 0 of 2" in err and "face_size 128 (this run: 64)" in err
    # ... and the extract line that makes files it reuses (found in a probe: the reasons
    # named extract's options only; a SAMM-LV run's re-extracted a whole data set).
    assert f"Files this run reuses come from `sw-mro extract VIDEOS --out-dir {feats} " in err
    made = err.split("come from `")[1].split("`")[0].split()
    assert made[made.index("--face-size") + 1] == "64", made
    fps = manifest["videos"][0].get("fps")
    assert ("--fps" in made) == (first.is_dir() and fps is not None), (made, first)
    assert main([*train, "--out", str(tmp_path / "e"), "--features", str(tmp_path / "no")]) == 2
    assert "--features" in capsys.readouterr().err


def test_finished_run_needs_every_file(tmp_path: Path, data) -> None:
    """A run counts as finished only with its report, every fold's result and both
    interval files; the re-scored result is the one the run reported."""
    run = tmp_path / "run"
    rep = run_loso(data, tiny_cfg(epochs=1), run, progress=False)
    again = T.finished_run(run)
    assert again is not None and again.result.to_dict() == rep.result.to_dict()
    assert [f.subject for f in again.folds] == [f.subject for f in rep.folds]
    for gone in ["predictions.csv", f"folds/{rep.folds[0].subject}/result.json", "report.json"]:
        copy = tmp_path / gone.replace("/", "_")
        shutil.copytree(run, copy)
        (copy / gone).unlink()
        assert T.finished_run(copy) is None, gone
    assert T.finished_run(tmp_path / "nothing") is None


def test_train_align_from_landmarks_reaches_sw_mro(
    tmp_path: Path, csv_dataset: Path, monkeypatch, capsys
) -> None:
    """--align-from-landmarks goes into the SW-MRO config of the extraction (whose
    ``to_dict()`` the run records and `spotformer spot` reads back)."""
    import spotformer.features as F
    from spotformer.cli import main

    seen = []

    def capture(table, config=None, progress=True, **_):
        seen.append(config)
        raise F.DatasetError("stopped by the test")

    monkeypatch.setattr(F, "dataset_features", capture)
    base = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--epochs", "1"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    assert main([*base, "--out", str(tmp_path / "b"), "--align-from-landmarks"]) == 2
    assert "stopped by the test" in capsys.readouterr().err
    assert [c.align_from_landmarks for c in seen] == [False, True]


def test_dataset_features_name_the_videos_whose_heads_move_too_far(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Videos where over 1 % of the frame pairs moved the nose beyond its reach are named
    once, after extraction, with the advice to use --align-from-landmarks (not when it
    is on); the others are not. So are videos with no face in over 10 % of their
    frames, and videos whose face spans under 64 grey levels, at the median or in two or
    more sampled frames."""
    import spotformer.features as F
    import sw_mro
    from spotformer.data.table import AnnotationTable, VideoRef

    def fake_video_features(
        path,
        config=None,
        *,
        stride=1,
        fps=None,
        bar=None,
        motion=None,
        fallback=None,
        contrast=None,
    ):
        m = np.zeros((20, 17), np.float32)
        if Path(path).stem == "still":
            contrast.add(np.array([np.nan, 41.0]))
        else:  # median 64 (not under 64), with a dim stretch at frames 32-64
            spans = np.full(160, np.nan)  # one sample per 32-frame segment
            spans[::32] = [64.0, 50.0, 55.0, 200.0, 190.0]
            contrast.add(spans)
        if Path(path).stem == "shaky":
            m[:4, 16] = 30.0  # 4 of 320 pairs: 1.25 %
            m[4, 16] = 200.0  # and one over half the 256 px crop: the face jumped
            fallback.extend([0, 1])  # 2 of 20 frames without a face: 10 %, not over
        else:
            m[:3, 16] = 30.0  # 3 of 320 pairs: 0.94 %, under the share
            fallback.extend([5, 6, 7])  # 15 %
        motion.add(m)
        return torch.zeros(20, 17, 10, 2), 30.0

    monkeypatch.setattr(F, "video_features", fake_video_features)
    refs = {
        "s1/shaky": VideoRef(_tiny_video(tmp_path / "shaky.mp4", n=20), subject="s1"),
        "s2/still": VideoRef(_tiny_video(tmp_path / "still.mp4", n=20), subject="s2"),
    }
    table = AnnotationTable([Expression("s1", "s1/shaky", 2, 4, 6, "micro")], sources=refs)
    capsys.readouterr()
    F.dataset_features(table, sw_mro.SWMROConfig(window=17), progress=False)
    err = capsys.readouterr().err
    moved = next(ln for ln in err.splitlines() if "nose landmarks moved" in ln)
    assert "in 1 of 2 videos" in moved and "s1/shaky (1.2 %, up to 200 px)" in moved
    jumped = next(ln for ln in err.splitlines() if "tracked face" in ln)
    assert jumped.startswith("spotformer: warning: in 1 of 2 videos the tracked face changed")
    assert "s1/shaky (frame 12)" in jumped and "s2/still" not in jumped  # window 4 + 16 - 8
    assert "--align-from-landmarks" in moved and "s2/still" not in moved
    faceless = next(ln for ln in err.splitlines() if "no face" in ln)
    assert "no face in over 10 % of the frames of 1 of 2 videos: s2/still (15 %)" in faceless
    assert "s1/shaky" not in faceless
    dim = next(ln for ln in err.splitlines() if "grey levels" in ln)
    assert dim.startswith("spotformer: warning: in 2 of 2 videos the face spans fewer than 64")
    assert "s2/still (median 41)" in dim  # and 64 is not under 64, but a stretch is:
    assert "s1/shaky (2 consecutive sampled frames, frames 32-64)" in dim, dim
    F.dataset_features(
        table, sw_mro.SWMROConfig(window=17, align_from_landmarks=True), progress=False
    )
    assert "align-from-landmarks" not in capsys.readouterr().err


def test_reused_features_give_the_warnings_extracting_gives(
    tmp_path: Path, carphone: str, monkeypatch, capsys
) -> None:
    """``--features DIR``: the dim-video, face-jump and head-motion warnings of a reused
    video come from its recorded ``face_contrast`` and ``nose_motion`` (found in review:
    reused features were never warned about, while the docs said train warns)."""
    import spotformer.features as F
    import sw_mro
    from spotformer.data.table import AnnotationTable, VideoRef
    from sw_mro.cli import main as sw_mro_main
    from sw_mro.io.video import open_video
    from sw_mro.io.writer import write_video

    frames = open_video(carphone).read(range(20)).numpy()  # 176x144
    dim = write_video(tmp_path / "dim.mp4", np.round(frames * 0.3).astype(np.uint8))
    canvas = np.zeros((20, 144, 528, 3), np.uint8)  # the face moves a face's width away
    canvas[:10, :, :176] = frames[:10]
    canvas[10:, :, 352:] = frames[10:]
    jump = write_video(tmp_path / "jump.mp4", canvas)
    feats = tmp_path / "feats"
    argv = ["extract", str(dim), str(jump), "--out-dir", str(feats), "--quiet"]
    assert sw_mro_main([*argv, "--window", "9", "--face-size", "64"]) == 0
    said = capsys.readouterr().err
    assert "grey levels" in said and "tracked face changed" in said  # as extracted

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted, though its features are in --features")

    monkeypatch.setattr(F, "video_features", no_extraction)
    refs = {"s1/dim": VideoRef(dim, subject="s1"), "s2/jump": VideoRef(jump, subject="s2")}
    table = AnnotationTable([Expression("s1", "s1/dim", 2, 4, 6, "micro")], sources=refs)
    cfg = sw_mro.SWMROConfig(window=9, face_size=64)
    got = F.dataset_features(table, cfg, progress=False, features_dir=feats)
    assert got.summary("cpu") == f"SW-MRO: 2 videos, {got.frames} frames: all reused"
    err = capsys.readouterr().err
    assert "reused the features of 2 of 2 videos" in err
    low = next(ln for ln in err.splitlines() if "grey levels" in ln)
    assert low.startswith("spotformer: warning: in 1 of 2 videos the face spans fewer than 64")
    assert "s1/dim (" in low and "s2/jump" not in low
    jumped = next(ln for ln in err.splitlines() if "tracked face" in ln)
    assert "in 1 of 2 videos" in jumped and "s2/jump (frame 11)" in jumped
    # A JSON from before these records (or with them cut) warns of nothing, and reads.
    for name in ("dim", "jump"):
        meta = json.loads((feats / f"{name}.json").read_text())
        del meta["face_contrast"], meta["nose_motion"]
        (feats / f"{name}.json").write_text(json.dumps(meta))
    F.dataset_features(table, cfg, progress=False, features_dir=feats)
    err = capsys.readouterr().err
    assert "reused the features of 2 of 2 videos" in err
    assert "grey levels" not in err and "tracked face" not in err
    # A CSV's rate for a file (25 for these 30 fps files) relabels its frames: the file's
    # features are reused, at that rate (found in review: never reused, and the
    # `sw-mro extract` line offered made the same files again). A folder's must match.
    relabelled = AnnotationTable([], sources={"s1/dim": VideoRef(dim, fps=25.0, subject="s1")})
    got = F.extracted_features(feats, F.plan_videos(relabelled, 9)["s1/dim"], cfg)
    assert not isinstance(got, str) and got[1] == 25.0, got
    # A malformed record is unreadable (extracted again), not a crash (found in review).
    meta = json.loads((feats / "dim.json").read_text())
    (feats / "dim.json").write_text(json.dumps({**meta, "landmark_fallback_frames": None}))
    why = F.extracted_features(feats, F.plan_videos(table, 9)["s1/dim"], cfg)
    assert isinstance(why, str) and why.startswith("unreadable"), why


def test_spot_checks_its_outputs_first_and_reads_bad_models_cleanly(
    tmp_path: Path, csv_dataset: Path, capsys, monkeypatch
) -> None:
    import spotformer.features as F
    from spotformer.cli import main

    run = tmp_path / "run"
    argv = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--out", str(run)]
    assert main([*argv, "--epochs", "1", "--dim", "16", "--batch-size", "64", "--no-progress"]) == 0
    model = run / "folds" / "s1" / "model.pt"
    info = load_model(model).info
    assert (info["stride"], info["source_fps"]) == (1, 30.0)  # what spot opens videos with
    # Without the CSV's fps the rate recorded is the one the videos were opened at, their
    # containers' (found in review: None, so spot took a 25 fps model for a 30 fps one).
    text = csv_dataset.read_text().replace(",30\n", ",\n")
    assert text.count(",x.mp4,\n") > 3
    csv_dataset.write_text(text)
    assert main([*argv[:-1], str(tmp_path / "r25"), "--epochs", "1", "--dim", "16"]) == 0
    info = load_model(tmp_path / "r25" / "folds" / "s1" / "model.pt").info
    assert (info["stride"], info["source_fps"]) == (1, 25.0)
    capsys.readouterr()
    video = _tiny_video(tmp_path / "video.mp4")
    spot = ["spot", str(video), "--checkpoint", str(model)]
    (tmp_path / "adir").mkdir()
    assert main([*spot, "--out", str(tmp_path / "adir")]) == 2
    assert "--out" in capsys.readouterr().err
    # A folder that cannot be written in (root cannot write in /sys either): refused
    # before the extraction (found in review: after it, with a matplotlib traceback).
    fake = F.video_features
    monkeypatch.setattr(F, "video_features", lambda *a, **k: pytest.fail("extracted"))
    for opt, name in (("--out", "iv.csv"), ("--plot", "c.png")):
        other = "--plot" if opt == "--out" else "--out"
        argv = [*spot, opt, f"/sys/{name}", other, str(tmp_path / f"x{Path(name).suffix}")]
        assert main(argv) == 2
        err = capsys.readouterr().err
        # Permission denied, or a read-only file system where a container mounts /sys so
        assert f"{opt} /sys/{name}: cannot write in /sys (" in err and "Traceback" not in err
    # Outputs that would replace an input, or each other: refused before the extraction
    # (found in a probe: --out naming the video replaced it with the CSV).
    before = video.read_bytes()
    (tmp_path / "link.mp4").symlink_to(video)
    for extra, says in [
        (["--out", str(video)], f"--out {video} is the video, which it would replace"),
        (["--out", str(tmp_path / "link.mp4")], "is the video, which it would replace"),
        (["--out", str(tmp_path / "o.csv"), "--plot", str(model)],
         f"--plot {model} is --checkpoint, which it would replace"),
        (["--out", str(tmp_path / "a.png"), "--plot", str(tmp_path / "a.png")],
         "--out and --plot name one file"),
    ]:  # fmt: skip
        assert main([*spot, *extra]) == 2
        assert says in capsys.readouterr().err
    assert video.read_bytes() == before
    # A stride or rate that cannot work: refused first (--stride 0 was a ZeroDivisionError).
    for extra, says in [
        (["--stride", "0"], "--stride must be an int >= 1, got 0"),
        (["--stride", "-1"], "--stride must be an int >= 1, got -1"),
        (["--fps", "0"], "--fps must be a positive frame rate, got 0.0"),
        (["--fps", "nan"], "--fps must be a positive frame rate, got nan"),
        # named as options, not SpotParams fields (found in review)
        (["--expr-gap", "-1"], "spotformer spot: --expr-gap must be >= 0; got -1.0"),
        (["--apex-threshold", "1"], "spotformer spot: --apex-threshold must be in [0, 1)"),
    ]:
        assert main([*spot, "--out", str(tmp_path / "s.csv"), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and "fps at" not in err, (extra, err)
    monkeypatch.setattr(F, "video_features", fake)
    # Too short for the model's window: no --window to advise (spot has none). The
    # pipeline's own refusal (the fixture fakes the features).
    import sw_mro

    monkeypatch.setattr(F, "video_features", lambda p, config=None, **k: sw_mro.extract(p, config))
    short = _tiny_video(tmp_path / "short.mp4", n=5)
    assert (
        main(["spot", str(short), "--checkpoint", str(model), "--out", str(tmp_path / "t.csv")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.rstrip().endswith("use a video of >= 17 frames (the window is the model's)"), err
    # --stride over (or near) the video's frames: said before the note on the stride, with
    # the strides that would do (found in a probe: the note, then "it would keep only the
    # first"). 20 frames: stride 1 keeps the 17-frame window.
    for stride in (2, 50):
        argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(tmp_path / "t.csv")]
        assert main([*argv, "--stride", str(stride)]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"spotformer spot: {video}: {-(-20 // stride)} frame{'s' * (stride == 2)} (after "
            f"stride {stride}) is shorter than the window of 17 frames; use a video of >= "
            f"{16 * stride + 1} frames at this stride or a stride <= 1 (the window is the "
            "model's)\n"
        ), err
    monkeypatch.setattr(F, "video_features", fake)
    # Folders of --out and --plot are made.
    out, plot = tmp_path / "new" / "iv.csv", tmp_path / "plots" / "c.png"
    seen = {}

    def recording(path, config=None, **k):
        seen.update(path=path, config=config, stride=k.get("stride"), fps=k.get("fps"))
        return fake(path, config, **k)

    monkeypatch.setattr(F, "video_features", recording)
    # This 1-epoch model's probabilities stay near 0.5: expression segments at 0.3.
    low = ["--macro-spotting", "expression", "--micro-spotting", "expression"]
    low += ["--expr-threshold", "0.3"]
    assert main([*spot, "--out", str(out), "--plot", str(plot), *low]) == 0
    assert out.is_file() and plot.read_bytes().startswith(b"\x89PNG")
    assert not list(plot.parent.glob(".*.tmp"))  # the image is written atomically
    assert "warning" not in capsys.readouterr().err
    # What spot extracts with: the model's SW-MRO settings, the video opened as training
    # opened its videos; and what it writes: the model's intervals on those features.
    from spotformer.commands.spot import _sw_config, open_like_training
    from spotformer.postprocess import spot_video

    mf = load_model(model)
    assert seen["path"] == video and seen["config"] == _sw_config(mf.info, "cpu")
    assert (seen["stride"], seen["fps"]) == open_like_training(video, mf.info, None, None)[:2]
    feats, fps = fake(video)
    logits = predict_logits(mf.model, feats, mf.config.infer_batch)
    params = dataclasses.replace(
        mf.config.spot, macro_mode="expression", micro_mode="expression", expr_threshold=0.3
    )
    want = spot_video(logits, video.stem, fps, params)
    got = read_intervals(out)
    assert want, "the model spots nothing here: nothing to compare"
    assert [(i.video, i.onset, i.offset, i.kind) for i in got] == [
        (i.video, i.onset, i.offset, i.kind) for i in want
    ]
    assert [i.score for i in got] == pytest.approx([i.score for i in want], rel=1e-5)
    monkeypatch.setattr(F, "video_features", fake)
    # A video whose head moved beyond the alignment's reach is named, with what it means.

    def shaky(*a, motion=None, **k):
        motion.add(np.full((20, 17), 30.0, np.float32))
        return fake(*a, **k)

    monkeypatch.setattr(F, "video_features", shaky)
    assert main([*spot, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    limit = sw_mro.config.LARGE_NOSE_MOTION_PX
    assert f"warning: {video}: the nose landmarks moved more than {limit:g} px" in err
    assert "in 100.0 % of the frame pairs" in err and "--align-from-landmarks" in err
    assert "no face" not in err

    def faceless(*a, fallback=None, **k):  # frames 0-39 of 160 without a face: 25 %
        fallback.extend(range(40))
        return fake(*a, **k)

    monkeypatch.setattr(F, "video_features", faceless)
    assert main([*spot, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {video}: no face in 40 of its 160 frames (frames 0-39); their" in err
    assert "grey levels" not in err

    def dim(*a, contrast=None, **k):  # a face spanning 30 grey levels
        contrast.add(np.array([30.0, np.nan]))
        return fake(*a, **k)

    monkeypatch.setattr(F, "video_features", dim)
    assert main([*spot, "--out", str(out)]) == 0
    assert f"warning: {video}: the face spans only 30 grey levels" in capsys.readouterr().err
    junk = tmp_path / "bad.pt"
    junk.write_bytes(b"junk\n" * 10)
    for bad in (junk, run / "config.json", tmp_path / "missing.pt"):
        assert main(["spot", str(video), "--checkpoint", str(bad), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert str(bad) in err and "Traceback" not in err
    with pytest.raises(TrainError, match="no such file"):
        load_model(tmp_path / "missing.pt")


def test_spot_says_when_top_k_cut_intervals(
    tmp_path: Path, csv_dataset: Path, capsys, monkeypatch
) -> None:
    """Found in a probe: a long video got at most 5 intervals per type (SPEC's top_k), with
    no word and no option. Spot says when more passed and --top-k keeps more: 8 ME apex
    peaks 20 frames apart, each with its onset and offset 4 frames away, the later ones
    higher (so the best are not the first); no MaE."""
    import spotformer.train as T
    from spotformer.cli import main
    from spotformer.metrics import write_intervals

    run = tmp_path / "run"
    argv = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--out", str(run)]
    assert main([*argv, "--epochs", "1", "--dim", "16", "--batch-size", "64", "--no-progress"]) == 0
    model = run / "folds" / "s1" / "model.pt"
    logits = torch.zeros(160, 10)
    logits[:, 6:8] = -10.0  # P_apex ~ 0 but at the peaks
    peaks = list(range(10, 160, 20))
    logits[peaks, 6] = torch.linspace(1.0, 4.5, len(peaks))  # the last peak is the best
    logits[[p - 4 for p in peaks], 0] = 2.0  # P_onset > P_offset 4 frames before
    logits[[p + 4 for p in peaks], 1] = 2.0  # and P_offset > P_onset 4 frames after
    monkeypatch.setattr(T, "predict_logits", lambda *a, **k: logits)
    video = _tiny_video(tmp_path / "video.mp4")
    spot = ["spot", str(video), "--checkpoint", str(model), "--no-progress"]  # notes alone
    capsys.readouterr()
    out = tmp_path / "iv.csv"
    for extra, kept in (
        ([], 5),
        (["--top-k", "6"], 6),
        (["--top-k", "8"], 8),
        (["--top-k", "20"], 8),
    ):
        assert main([*spot, "--out", str(out), *extra]) == 0, extra
        got = read_intervals(out)
        assert {i.kind for i in got} == {"micro"}, extra
        # The best: the last `kept` peaks, best first (the CSV has no apex column).
        assert [i.onset for i in got] == [p - 4 for p in peaks[::-1][:kept]], got
        err = capsys.readouterr().err
        said = f"note: more than {kept} ME intervals passed the post-processing; the best {kept} are kept"
        assert (said in err) == (kept < 8), (extra, err)
        assert ("SPEC's 5" in err) == (kept == 5) and "MaE" not in err, err
    assert main([*spot, "--out", str(out), "--top-k", "1"]) == 0
    assert "note: more than 1 ME interval passed the post-processing; the best 1 is kept" in (
        capsys.readouterr().err
    )
    assert main([*spot, "--out", str(out), "--top-k", "0"]) == 2
    assert "spotformer spot: --top-k must be an int >= 1; got 0" in capsys.readouterr().err
    # Scored against ground truth with another cap than the protocol's 5: said.
    gt = tmp_path / "gt.csv"
    write_intervals([Interval("video", 66, 74, "micro")], gt)
    for extra, noted in (([], False), (["--top-k", "8"], True)):
        assert main([*spot, "--out", str(out), "--gt", str(gt), *extra]) == 0
        err = capsys.readouterr().err
        assert ("note: scored with --top-k 8 intervals per type; the evaluation protocol "
                "(SPEC 6, MEGC) keeps 5" in err) == noted, err  # fmt: skip
    # Intervals whose windows (8 frames each side) reach frames without a face are named,
    # in time order (found in a probe: a face that left the picture gave intervals there,
    # unflagged); 6 of 160 frames: under the share that warns.
    import spotformer.features as F

    fake = F.video_features
    gone: list[int] = []

    def faceless(*a, fallback=None, **k):
        fallback.extend(gone)
        return fake(*a, **k)

    monkeypatch.setattr(F, "video_features", faceless)
    gone[:] = range(60, 66)
    assert main([*spot, "--out", str(out), "--top-k", "8"]) == 0
    err = capsys.readouterr().err
    assert err == (
        "spotformer spot: note: 2 of the 8 intervals reach frames without a face (frames "
        "60-65): ME 46-54, ME 66-74; a face lost or found again moves the image as an "
        "expression does, so check them in the video\n"
    ), err
    gone[:] = [0]  # only the first interval's first window reaches frame 0
    assert main([*spot, "--out", str(out), "--top-k", "8"]) == 0
    err = capsys.readouterr().err
    assert "note: 1 of the 8 intervals reaches frames without a face (frame 0): ME 6-14;" in err


def test_spot_warns_when_the_fold_trained_on_the_video(tmp_path: Path) -> None:
    """Found in a probe: a CAS(ME)^2 video of s16 scored with the fold that held out s15
    (trained on s16) gave F1 0.80, unsaid. The warning names the fold to use."""
    from types import SimpleNamespace

    from spotformer.commands.spot import _trained_on

    folds = tmp_path / "run" / "folds"
    for s in ("s15", "s16", "006"):
        (folds / s).mkdir(parents=True)
        (folds / s / "model.pt").write_bytes(b"")
    cas = SimpleNamespace(info={"dataset": "casme2"}, subject="s15")
    ck = folds / "s15" / "model.pt"
    assert _trained_on("s15/15_0101", cas, ck) == ""
    got = _trained_on("s16/16_0101", cas, ck)
    assert got == (
        "video 's16/16_0101' is subject s16's, and this model's fold held out s15: s16 was "
        "among the subjects it trained on, so its score on this video is not a held-out one "
        f"(LOSO scores each video with its own subject's fold; use {folds / 's16' / 'model.pt'})"
    )
    assert _trained_on("s17/17_0101", cas, ck).endswith("use the fold that held out s17)")
    samm = SimpleNamespace(info={"dataset": "samm"}, subject="006")
    assert _trained_on("006_1", samm, folds / "006" / "model.pt") == ""
    assert "video '007_2' is subject 007's" in _trained_on("007_2", samm, ck)
    # Other data sets: subjects cannot be told from the id.
    assert _trained_on("s16/v0", SimpleNamespace(info={"dataset": "csv"}, subject="s15"), ck) == ""


def test_train_says_what_it_trains_and_scores_on() -> None:
    """Found in a probe: videos without annotations (each interval there a false
    positive) and dropped rows were counted nowhere a researcher could compare."""
    from spotformer.commands.train import data_summary
    from spotformer.data.table import AnnotationTable, DroppedRow

    exprs = [Expression("a", "a/1", 5, 6, 9, "micro"), Expression("a", "a/1", 20, 30, 50, "macro"),
             Expression("b", "b/1", 5, 6, 9, "macro"), Expression("c", "c/9", 1, 2, 3, "micro")]  # fmt: skip
    table = AnnotationTable(exprs, [DroppedRow("x.xlsx", 4, "two missing")])
    assert data_summary(table, {"a/1", "b/1", "b/2", "d/1"}) == (
        "Data: 4 videos, 2 annotated (3 expressions: 2 MaE, 1 ME), 2 without annotations "
        "(their intervals count as false positives); 1 annotation row dropped (warned above)"
    )
    assert data_summary(AnnotationTable(exprs[:1]), {"a/1"}).endswith("0 without annotations "
                                                                       "(their intervals count as false positives)")  # fmt: skip


def test_which_intervals_reach_frames_without_a_face() -> None:
    """Window i spans frames i - w//2 .. i + w//2 (and is cropped with the first one's
    landmarks): an interval 20-30 at w 17 reaches frames 12-38, not 11 or 39."""
    from spotformer.commands.spot import _near_no_face

    iv = Interval("v", 20, 30, "micro")
    for frame, near in ((11, False), (12, True), (25, True), (38, True), (39, False)):
        assert _near_no_face([iv], [frame], 8) == ([iv] if near else []), frame
    assert _near_no_face([iv], [0, 5, 11, 39, 60], 8) == []
    assert _near_no_face([iv], [], 8) == []


def test_spotting_options_round_trip() -> None:
    import argparse

    from spotformer.commands._spot_args import (
        add_spotting_arguments,
        spot_params_from,
        spotting_argv,
    )
    from spotformer.postprocess import SpotParams

    parser = argparse.ArgumentParser()
    add_spotting_arguments(parser)
    args = parser.parse_args(["--macro-spotting", "expression", "--expr-gap", "12"])
    got = spot_params_from(args, SpotParams(apex_threshold=0.4))
    assert (got.macro_mode, got.micro_mode, got.expr_gap) == ("expression", "apex", 12.0)
    assert got.apex_threshold == 0.4 and got.expr_threshold == SpotParams().expr_threshold
    # The demo passes its options on to train as words; they parse back to the same.
    again = spot_params_from(parser.parse_args(spotting_argv(args)), SpotParams())
    assert dataclasses.replace(got, apex_threshold=0.5) == again
    # For `spot`, options not given keep the model file's values.
    over = argparse.ArgumentParser()
    add_spotting_arguments(over, override=True)
    base = SpotParams(macro_mode="expression", expr_threshold=0.7)
    assert spot_params_from(over.parse_args([]), base) == base
    demo = argparse.ArgumentParser()
    add_spotting_arguments(demo, macro_default="expression")
    assert demo.parse_args([]).macro_spotting == "expression"


def test_train_command_errors(tmp_path: Path, capsys) -> None:
    from spotformer.cli import main

    argv = [
        "train",
        "--dataset",
        "casme2",
        "--root",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    assert "no such file or folder" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*argv, "--gpu"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_spot_uses_the_sw_mro_settings_the_model_was_trained_with() -> None:
    import sw_mro
    from spotformer.commands.spot import _sw_config

    trained = sw_mro.SWMROConfig(face_size=128, align_tol=0.2)
    saved = json.loads(json.dumps({"sw_mro": trained.to_dict()}))
    assert _sw_config(saved, "cpu") == trained
    assert _sw_config({}, "cpu") == sw_mro.SWMROConfig()
    # A model trained before 2026-11-27 recorded equal MDMO sectors from 0 degrees: its
    # features are made the same way, not with today's sectors.
    old = {k: v for k, v in saved["sw_mro"].items() if k not in ("mdmo_edges", "nose_edges")}
    got = _sw_config({"sw_mro": {**old, "mdmo_bins": 4, "nose_bins": 4}}, "cpu")
    assert got.mdmo_edges == got.nose_edges == (0.0, 90.0, 180.0, 270.0)
    assert got.replace(mdmo_edges=trained.mdmo_edges, nose_edges=trained.nose_edges) == trained
    # A model whose settings name the CuPy engine (trained on a GPU), spotted on CPU.
    gpu = {"sw_mro": {**saved["sw_mro"], "flow_backend": "cupy", "device": "cuda"}}
    assert _sw_config(gpu, "cpu") == trained.replace(flow_backend="auto")
    assert _sw_config(gpu, "cuda:0").flow_backend == "cupy"


def test_durations_from_the_training_subjects(tmp_path: Path) -> None:
    from spotformer.postprocess import SpotParams
    from spotformer.train import durations_from

    feats = {n: torch.randn(200, 17, 10, 2) for n in ("a/v", "b/v", "c/v")}
    exprs = [
        Expression("a", "a/v", 10, 12, 16, "micro"),  # 7 frames
        Expression("a", "a/v", 50, 60, 89, "macro"),  # 40 frames
        Expression("b", "b/v", 10, 12, 22, "micro"),  # 13 frames
        Expression("c", "c/v", 10, 60, 109, "macro"),  # 100 frames: the test subject's
    ]
    d = SpottingData.build(feats, exprs, fps={"a/v": 30.0, "b/v": 30.0, "c/v": 60.0})
    got = durations_from(d, d.videos_of(["a", "b"]), SpotParams())
    assert (got.micro_k, got.micro_j, got.macro_k, got.macro_j) == (10.0, 7.0, 40.0, 40.0)
    # At 60 fps, 100 frames are 50 frames at the 30 fps reference; at SAMM-LV's 200/7
    # fps (within 5 % of 30) frames are taken as they are, as post-processing does.
    assert durations_from(d, d.videos_of(["c"]), SpotParams()).macro_k == 50.0
    d2 = SpottingData.build(feats, exprs, fps={"a/v": 30.0, "b/v": 30.0, "c/v": 200 / 7})
    assert durations_from(d2, d2.videos_of(["c"]), SpotParams()).macro_k == 100.0
    res = train_fold(d, "c", tiny_cfg(epochs=1, durations="train"), tmp_path / "f", progress=False)
    assert (res.spot["micro_k"], res.spot["macro_k"]) == (10.0, 40.0)  # not the test subject's


# -- mirror augmentation ------------------------------------------------------------------


def test_mirror_permutation_of_the_spec_rois() -> None:
    # 18 19 20 | 23 24 25 | 48 51 54 57: each brow maps onto the other, 48 <-> 54.
    assert T.mirror_permutation((18, 19, 20, 23, 24, 25, 48, 51, 54, 57)) == [
        5, 4, 3, 2, 1, 0, 8, 7, 6, 9,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="mirror"):
        T.mirror_permutation((18, 19, 48))  # 25, 24 and 54 are missing
    x = torch.randn(4, 17, 10, 2)
    assert torch.equal(T.mirror_windows(T.mirror_windows(x)), x)
    with pytest.raises(ValueError, match="probability"):
        tiny_cfg(mirror=1.5)


def test_mirror_windows_equal_the_features_of_the_mirrored_video(carphone: str, tmp_path) -> None:
    """SW-MRO of the left-right flipped video ~ mirror_windows of the original's."""
    import numpy as np

    import sw_mro
    from sw_mro.io.video import open_video
    from sw_mro.io.writer import write_video

    frames = open_video(carphone).read(range(60)).numpy()
    a = write_video(tmp_path / "a.mp4", frames, crf=10)
    b = write_video(tmp_path / "b.mp4", np.ascontiguousarray(frames[:, :, ::-1]), crf=10)
    cfg = sw_mro.SWMROConfig(window=9, face_size=128)
    fa, fb = sw_mro.extract(a, cfg), sw_mro.extract(b, cfg)
    m, fa, fb = T.mirror_windows(fa).numpy(), fa.numpy(), fb.numpy()

    def corr(u: np.ndarray, v: np.ndarray) -> float:
        return float(np.corrcoef(u.flatten(), v.flatten())[0, 1])

    # Landmarks and codec noise differ between the two videos, so they are not equal.
    # Measured at the defaults: 0.89 in all, 0.92 for x. Left as they are, the x
    # components do not correlate (-0.05; a flip negates them), while the y components
    # correlate anyway (0.50; 0.84 with the opt-in alignment from the landmarks, where
    # the x components gave -0.61).
    assert corr(m, fb) > 0.6, corr(m, fb)
    x_mirrored, x_plain = corr(m[..., 0], fb[..., 0]), corr(fa[..., 0], fb[..., 0])
    assert x_mirrored > 0.6 and x_plain < x_mirrored - 0.4, (x_mirrored, x_plain)


def test_mirror_augmentation_trains_and_is_deterministic(tmp_path: Path, data) -> None:
    cfg = tiny_cfg(epochs=2, mirror=0.5)
    a = train_fold(data, "s1", cfg, tmp_path / "a", progress=False)
    b = train_fold(data, "s1", cfg, tmp_path / "b", progress=False)
    train_fold(data, "s1", tiny_cfg(epochs=2), tmp_path / "c", progress=False)
    sa = load_model(tmp_path / "a" / "model.pt").model.state_dict()
    sb = load_model(tmp_path / "b" / "model.pt").model.state_dict()
    sc = load_model(tmp_path / "c" / "model.pt").model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)  # the flips changed training
    assert a.counts == b.counts


def test_a_diverged_run_stops_and_a_non_finite_model_is_refused(tmp_path: Path, data) -> None:
    """A fold whose weights stop being finite ends the run with what to do, instead of
    a table of zeros; a model file with NaN weights is refused by load_model."""
    with pytest.raises(TrainError, match=r"fold 's0': the training diverged in epoch 1 .*--lr"):
        train_fold(data, "s0", tiny_cfg(lr=1e30), tmp_path / "f", progress=False)
    model = SpotFormer(tiny_cfg().model)
    path = tmp_path / "model.pt"
    save_model(path, model, tiny_cfg(), {"subject": "s0", "epoch": 1})
    assert load_model(path).model is not None  # finite: loads
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    save_model(path, model, tiny_cfg(), {"subject": "s0", "epoch": 1})
    with pytest.raises(TrainError, match="not all finite"):
        load_model(path)


def test_bad_training_and_spotting_values_are_refused_before_extraction(
    tmp_path: Path, csv_dataset: Path, capsys
) -> None:
    from spotformer.cli import main

    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        tiny_cfg(epochs=0)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        tiny_cfg(lr=float("nan"))
    base = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--out", str(tmp_path / "r")]
    for extra, says in [
        (["--lr", "-1"], "train: --lr must be a finite number > 0, got -1.0"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--apex-threshold", "1.5"], "--apex-threshold must be in [0, 1)"),
        (["--macro-ratio", "-1"], "--macro-ratio (m) must be in [0, 1]"),
        (["--selection", "val", "--val-subjects", "0"], "--val-subjects must be >= 1, got 0"),
        (["--val-subjects", "0"], "--val-subjects must be >= 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be >= 2, got 0"),
    ]:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "r").exists()  # refused before anything was made


def test_spot_plot_name_and_model_file_messages(tmp_path: Path, capsys, monkeypatch) -> None:
    from spotformer.cli import main

    video = _tiny_video(tmp_path / "video.mp4")
    model = tmp_path / "model.pt"
    save_model(model, SpotFormer(tiny_cfg().model), tiny_cfg(), {"subject": "s0", "epoch": 1})
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(tmp_path / "iv.csv")]
    assert main([*argv, "--plot", str(tmp_path / "p.txt")]) == 2
    err = capsys.readouterr().err
    assert "--plot" in err and ".png" in err and not (tmp_path / "iv.csv").exists()
    # Post-processing values are checked before extracting (video_features not called).
    import spotformer.features as F

    def no_extraction(*a, **k):
        raise AssertionError("extracted before checking the options")

    monkeypatch.setattr(F, "video_features", no_extraction)
    assert main([*argv, "--apex-threshold", "1.0"]) == 2
    assert "spot: --apex-threshold must be in [0, 1)" in capsys.readouterr().err
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk\n" * 10)
    for bad, says in [(empty, "it is empty"), (junk, "torch.load"), (tmp_path, "a folder")]:
        with pytest.raises(TrainError) as exc:
            load_model(bad)
        assert says in str(exc.value) and "weights_only" not in str(exc.value)


def test_interrupted_train_says_how_to_continue(
    tmp_path: Path, csv_dataset: Path, capsys, monkeypatch
) -> None:
    from spotformer.cli import main

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "run_loso", stop)
    argv = ["train", "--dataset", "csv", "--root", str(csv_dataset), "--out", str(tmp_path / "r")]
    assert main([*argv, "--epochs", "1", "--no-progress"]) == 130
    assert "interrupted; run the same command with --resume" in capsys.readouterr().err
