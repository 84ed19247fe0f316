"""LOSO's honesty (SPEC 4, "Honest model selection"; SPEC 6): nothing of the held-out
subject reaches its fold, validation picks the first best epoch and tests with its
weights, seeds differ by fold, a fold alone equals that fold in the full run, and the
table pools every video's counts. Found by a leakage review with mutation testing
(2026-11-29): each test fails on a plausible bug that ``test_train.py``'s fast tests let
through (a split by video, shared seeds, a later epoch on a tie, the best weights not
loaded, a resume that forgets the best so far, ...). Tiny models on fake features."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train import fake_dataset, tiny_cfg  # noqa: E402

import spotformer.train as T  # noqa: E402
from spotformer.data.table import Expression  # noqa: E402
from spotformer.metrics import read_intervals  # noqa: E402
from spotformer.train import SpottingData, run_loso, train_fold  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _build(feats, exprs):
    return SpottingData.build(feats, exprs, subjects={n: n.split("/")[0] for n in feats})


def _digest(model) -> str:
    h = hashlib.sha1()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def _key(intervals):
    return [(i.video, i.onset, i.offset, i.kind, i.apex, round(i.score, 9)) for i in intervals]


def test_no_frame_of_any_test_video_is_trained_on_with_two_videos_per_subject(
    tmp_path, monkeypatch
):
    """Kills a split by video (only one of the test subject's videos held out)."""
    d = _build(*fake_dataset(subjects=3, videos=2))
    owner = {}
    for v in d.videos:
        for i in range(v.start, v.start + v.frames):
            owner[i] = v.subject
    drawn: list[set[str]] = []
    real = T.training_frames

    def spy(*a, **k):
        out = real(*a, **k)
        drawn.append({owner[int(i)] for i in out})
        return out

    monkeypatch.setattr(T, "training_frames", spy)
    train_fold(d, "s1", tiny_cfg(epochs=1, neutral_segments=1.0), tmp_path / "f", progress=False)
    assert drawn == [{"s0", "s2"}]


def test_test_subjects_labels_change_nothing_of_its_fold_but_its_counts(tmp_path):
    """Q1: plant distinctive labels only in the test subject: model, chosen epoch, val F1,
    (k, j) and the test predictions must be identical (kills durations or validation
    from the test subject, selection by test F1)."""
    feats, exprs = fake_dataset(subjects=4, videos=1)
    other = [e for e in exprs if e.subject != "s0"]
    planted = other + [Expression("s0", "s0/v0", 20, 70, 150, "macro"),
                       Expression("s0", "s0/v0", 5, 6, 7, "micro")]  # fmt: skip
    cfg = tiny_cfg(epochs=2, selection="val", durations="train", mirror=0.5)
    out = []
    for i, ex in enumerate((exprs, planted)):
        r = train_fold(_build(feats, ex), "s0", cfg, tmp_path / str(i), progress=False)
        model = T.load_model(tmp_path / str(i) / "model.pt").model
        out.append((_digest(model), r.epoch, r.val_f1, r.spot, r.train_windows, _key(r.intervals)))
    assert out[0] == out[1]


def _scripted_val(monkeypatch, f1s):
    """Validation F1 returned in order from ``f1s``; records the model's digest at every
    spot_videos call with the subjects it predicts."""
    calls: list[tuple[set[str], str]] = []
    real_spot, real_eval = T.spot_videos, T.evaluate
    it = iter(f1s)

    def spot(model, d, videos, cfg):
        calls.append(({v.subject for v in videos}, _digest(model)))
        return real_spot(model, d, videos, cfg)

    def evaluate(preds, gts, *a, **k):
        res = real_eval(preds, gts, *a, **k)
        if len(calls) and calls[-1][0] != {"s0"}:  # a validation pass
            return types.SimpleNamespace(overall=types.SimpleNamespace(f1=next(it)))
        return res

    monkeypatch.setattr(T, "spot_videos", spot)
    monkeypatch.setattr(T, "evaluate", evaluate)
    return calls


def test_val_selection_keeps_the_first_best_epoch_and_its_weights(tmp_path, monkeypatch):
    """Kills: chosen epoch off by one, later epoch on a tie, best weights not loaded."""
    d = _build(*fake_dataset(subjects=3))
    calls = _scripted_val(monkeypatch, [0.2, 0.5, 0.5, 0.1])
    r = train_fold(d, "s0", tiny_cfg(epochs=4, selection="val"), tmp_path / "f", progress=False)
    assert (r.epoch, r.val_f1) == (2, 0.5)
    assert [s for s, _ in calls] == [{"s1"}] * 4 + [{"s0"}]
    assert calls[-1][1] == calls[1][1]  # the test subject is predicted with epoch 2's weights
    saved = T.load_model(tmp_path / "f" / "model.pt")
    assert _digest(saved.model) == calls[1][1] and saved.epoch == 2


def test_val_selection_scores_the_last_epoch_too(tmp_path, monkeypatch):
    """Kills: the last epoch not evaluated when eval_every does not divide epochs."""
    d = _build(*fake_dataset(subjects=3))
    calls = _scripted_val(monkeypatch, [0.1, 0.3])
    r = train_fold(d, "s0", tiny_cfg(epochs=3, selection="val", eval_every=2), tmp_path / "f",
                   progress=False)  # fmt: skip
    assert (r.epoch, r.val_f1) == (3, 0.3) and len(calls) == 3


def test_validation_subject_rotates_with_the_fold_and_is_never_the_test(tmp_path, monkeypatch):
    d = _build(*fake_dataset(subjects=3))
    seen: list[set[str]] = []
    real = T.spot_videos
    monkeypatch.setattr(
        T,
        "spot_videos",
        lambda m, dd, vids, c: (seen.append({v.subject for v in vids}), real(m, dd, vids, c))[1],
    )  # noqa: E501
    for s in d.subjects:
        seen.clear()
        train_fold(d, s, tiny_cfg(epochs=1, selection="val"), tmp_path / s, progress=False)
        others = [x for x in d.subjects if x != s]
        assert seen == [{others[d.subjects.index(s) % 2]}, {s}]


def test_fold_seeds_differ_between_folds(tmp_path, monkeypatch):
    """Kills seeds shared across folds (init and batch order/flips)."""
    d = _build(*fake_dataset(subjects=3))
    inits, gens = {}, {}
    real_frames, real_model = T.training_frames, T.SpotFormer

    def frames(data, videos, seg, neutral, gen):
        gens.setdefault(cur[0], gen.initial_seed())
        return real_frames(data, videos, seg, neutral, gen)

    def model(cfg):
        m = real_model(cfg)
        inits.setdefault(cur[0], _digest(m))
        return m

    monkeypatch.setattr(T, "training_frames", frames)
    monkeypatch.setattr(T, "SpotFormer", model)
    cur = [""]
    for s in ("s0", "s1"):
        cur[0] = s
        train_fold(d, s, tiny_cfg(epochs=1), tmp_path / s, progress=False)
    assert inits["s0"] != inits["s1"] and gens["s0"] != gens["s1"]


def test_a_fold_alone_equals_that_fold_in_the_full_run_and_the_table_pools_all_folds(tmp_path):
    """Q2 + Q3: one fold trained alone (fresh folder, no other folds) gives the full run's
    intervals for it; the table is the pooled TP/FP/FN of every video, every annotated
    expression scored exactly once; per-fold counts sum to it."""
    feats, exprs = fake_dataset(subjects=3)
    d = _build(feats, exprs)
    cfg = tiny_cfg(epochs=1)
    rep = run_loso(d, cfg, tmp_path / "run", progress=False)
    alone = train_fold(d, "s2", cfg, tmp_path / "alone" / "s2", progress=False)
    full = {f.subject: f for f in rep.folds}
    assert _key(alone.intervals) == _key(full["s2"].intervals)
    gts = read_intervals(tmp_path / "run" / "ground_truth.csv")
    assert sorted((g.video, g.onset, g.offset, g.kind) for g in gts) == sorted(
        (e.video, e.onset, e.offset, e.kind) for e in exprs
    )
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    for kind in ("macro", "micro"):
        for c in ("tp", "fp", "fn"):
            assert sum(f["counts"][kind][c] for f in report["folds"]) == report[kind][c]
    assert report["macro"]["tp"] + report["macro"]["fn"] + report["micro"]["tp"] + report["micro"][
        "fn"
    ] == len(exprs)
    preds = read_intervals(tmp_path / "run" / "predictions.csv")
    assert len(preds) == sum(len(f.intervals) for f in rep.folds)
    assert report["macro"]["tp"] + report["macro"]["fp"] + report["micro"]["tp"] + report["micro"][
        "fp"
    ] == len(preds)


class _Crash(Exception):
    pass


def test_val_resume_mid_fold_keeps_the_best_so_far(tmp_path, monkeypatch):
    """Kills a resume that forgets the best-so-far (or repeats/skips an epoch)."""
    d = _build(*fake_dataset(subjects=3))
    ref = _scripted_val(monkeypatch, [0.9, 0.1, 0.1])
    a = train_fold(d, "s0", tiny_cfg(epochs=3, selection="val"), tmp_path / "a", progress=False)
    monkeypatch.undo()
    _scripted_val(monkeypatch, [0.9, 0.1, 0.1])
    steps = []

    def crash(subject, epoch, step):
        steps.append(epoch)
        if epoch == 2:
            raise _Crash

    with pytest.raises(_Crash):
        train_fold(d, "s0", tiny_cfg(epochs=3, selection="val"), tmp_path / "b", progress=False,
                   on_step=crash)  # fmt: skip
    monkeypatch.undo()
    calls = _scripted_val(monkeypatch, [0.1])  # only epoch 3 is evaluated after the resume
    b = train_fold(d, "s0", tiny_cfg(epochs=3, selection="val"), tmp_path / "b", progress=False,
                   resume=True)  # fmt: skip
    assert (a.epoch, a.val_f1) == (b.epoch, b.val_f1) == (1, 0.9)
    assert calls[-1][1] == ref[-1][1]  # same weights predict the test subject
    assert _key(a.intervals) == _key(b.intervals)
