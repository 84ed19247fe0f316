"""LOSO training's own logic and bookkeeping (``spotformer/train.py``): SPEC 4's
optimiser and schedule, the config's defaults and checks, the training frames, batching,
seeds, gradients, inference mode, checkpoints and ``--resume``, and the fold order.
Found by mutation testing of ``spotformer/train.py`` (2026-11-30): each test fails on a
plausible bug (a hyper-parameter dropped, the schedule stepped per batch, gradients
accumulated across steps, a checkpoint cadence off by one, ...) that ``test_train.py``
and ``test_train_honesty.py`` let through. Tiny models on fake features."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train import fake_dataset, tiny_cfg  # noqa: E402

import spotformer.train as T  # noqa: E402
from spotformer.data.labels import FrameTargets  # noqa: E402
from spotformer.data.table import Expression  # noqa: E402
from spotformer.losses import LossConfig  # noqa: E402
from spotformer.models import SpotFormer  # noqa: E402
from spotformer.postprocess import SpotParams  # noqa: E402
from spotformer.train import SpottingData, TrainConfig, TrainError, train_fold  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> SpottingData:
    return SpottingData.build(*fake_dataset())


class _Stop(Exception):
    pass


def _digest(model: torch.nn.Module) -> list[torch.Tensor]:
    return [v.detach().clone() for _, v in sorted(model.state_dict().items())]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _spy_batches(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """The frame indices of every batch's targets, in order (FrameTargets.index)."""
    seen: list[torch.Tensor] = []
    real = FrameTargets.index

    def index(self, idx):  # noqa: ANN001, ANN202
        if isinstance(idx, torch.Tensor):
            seen.append(idx.detach().clone())
        return real(self, idx)

    monkeypatch.setattr(FrameTargets, "index", index)
    return seen


# -- the configuration -----------------------------------------------------------------------


def test_train_config_defaults_are_spec_section_4() -> None:
    """SPEC 4: AdamW lr 2e-4, weight decay 0.1, betas (0.7, 0.9), ExponentialLR 0.96,
    100 epochs, batch 512; 16-frame segments (the code's), a fixed epoch (no selection),
    every frame trained on (the documented default), a checkpoint after every epoch."""
    c = TrainConfig()
    assert (c.lr, c.weight_decay, c.betas, c.lr_decay) == (2e-4, 0.1, (0.7, 0.9), 0.96)
    assert (c.epochs, c.batch_size, c.segment_frames) == (100, 512, 16)
    assert (c.selection, c.neutral_segments, c.checkpoint_every) == ("fixed", 1.0, 1)
    assert (c.seed, c.mirror, c.durations) == (0, 0.0, "spec")


@pytest.mark.parametrize(
    ("kw", "said"),
    [
        ({"mirror": -0.1}, "mirror must be a probability"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"lr": float("nan")}, "lr must be a finite number > 0"),
        ({"neutral_segments": 1.5}, "neutral_segments must be in"),
        ({"batch_size": 1}, "batch_size must be >= 2"),
    ],
)
def test_train_config_refuses_values_out_of_range(kw: dict, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        TrainConfig(**kw)


# -- training frames -------------------------------------------------------------------------


def test_training_frames_take_macro_segments_and_neutral_draws_add_to_them() -> None:
    feats = {"a/v": torch.randn(64, 17, 10, 2)}
    d = SpottingData.build(feats, [Expression("a", "a/v", 34, 38, 44, "macro")])
    gen = torch.Generator().manual_seed(0)
    assert T.training_frames(d, d.videos, 16, 0.0, gen).tolist() == list(range(32, 48))
    # A tiny neutral fraction adds (almost) nothing, and never drops the expression segment.
    for seed in range(5):
        got = T.training_frames(d, d.videos, 16, 1e-6, torch.Generator().manual_seed(seed))
        assert got.tolist() == list(range(32, 48))


# -- optimiser and schedule (SPEC 4) -----------------------------------------------------------


def test_optimizer_is_adamw_with_decay_on_weight_matrices_only() -> None:
    cfg = tiny_cfg(lr=3e-4, weight_decay=0.2, betas=(0.6, 0.8))
    model = SpotFormer(cfg.model)
    opt = T.make_optimizer(model, cfg)
    assert type(opt) is torch.optim.AdamW  # decoupled decay, not Adam's L2
    names = {id(p): n for n, p in model.named_parameters()}
    by_decay = {g["weight_decay"]: {names[id(p)] for p in g["params"]} for g in opt.param_groups}
    decayed = {n for n, p in model.named_parameters() if p.ndim >= 2} - {"pos_embed", "part_tokens"}
    assert set(by_decay) == {0.2, 0.0}
    assert by_decay[0.2] == decayed
    assert by_decay[0.0] == set(names.values()) - decayed
    assert {"pos_embed", "part_tokens", "embed.bias", "embed_norm.weight"} <= by_decay[0.0]
    for g in opt.param_groups:
        assert (g["lr"], g["betas"]) == (3e-4, (0.6, 0.8))


def test_learning_rate_decays_once_per_epoch(tmp_path: Path, data, monkeypatch) -> None:
    """ExponentialLR(lr_decay) stepped after each epoch: every step of epoch e runs at
    lr * decay**e (kills a constant rate, a schedule never stepped or stepped per batch)."""
    opts: list[torch.optim.Optimizer] = []
    real = T.make_optimizer
    monkeypatch.setattr(T, "make_optimizer", lambda m, c: opts.append(real(m, c)) or opts[-1])
    lrs: dict[int, set[float]] = {}

    def hook(subject: str, epoch: int, step: int) -> None:
        lrs.setdefault(epoch, set()).update(g["lr"] for g in opts[-1].param_groups)

    cfg = tiny_cfg(epochs=3, lr=1e-3, lr_decay=0.5, batch_size=16)
    train_fold(data, "s0", cfg, tmp_path / "f", progress=False, on_step=hook)
    assert sorted(lrs) == [0, 1, 2]
    for e, got in lrs.items():
        assert len(got) == 1 and got.pop() == pytest.approx(1e-3 * 0.5**e), e


# -- batches, gradients, loss --------------------------------------------------------------------


def test_each_epoch_trains_on_every_window_once_shuffled_in_full_batches(
    tmp_path: Path, data, monkeypatch
) -> None:
    """Every training window once per epoch, in batches of batch_size (the last one
    shorter), in a new order each epoch; the model sees the windows its targets are of;
    train_windows counts an epoch's windows."""
    seen = _spy_batches(monkeypatch)
    inputs: list[torch.Tensor] = []
    real_forward = SpotFormer.forward

    def forward(self, x):  # noqa: ANN001, ANN202
        if self.training:
            inputs.append(x.detach().clone())
        return real_forward(self, x)

    monkeypatch.setattr(SpotFormer, "forward", forward)
    cfg = tiny_cfg(epochs=2, batch_size=24)
    others = data.videos_of(["s1", "s2"])
    expected = sorted(T.training_frames(data, others, 16, 0.0, torch.Generator()).tolist())
    res = train_fold(data, "s0", cfg, tmp_path / "f", progress=False)
    n = len(expected)
    assert res.train_windows == n
    per_epoch = -(-n // 24)
    assert n % 24 >= 2 and len(seen) == 2 * per_epoch  # (fixture: no 1-window batch)
    epochs = [seen[:per_epoch], seen[per_epoch:]]
    for batches in epochs:
        assert [b.numel() for b in batches[:-1]] == [24] * (per_epoch - 1)
        assert sorted(torch.cat(batches).tolist()) == expected
    first, second = torch.cat(epochs[0]), torch.cat(epochs[1])
    assert first.tolist() != expected and first.tolist() != second.tolist()  # shuffled
    for idx, x in zip(seen, inputs, strict=True):
        assert torch.equal(x, data.features[idx])


def test_a_one_window_remainder_is_skipped(tmp_path: Path, data, monkeypatch) -> None:
    """BatchNorm statistics and SupCon need two samples: a last batch of one window is
    not a step (the others are)."""
    seen = _spy_batches(monkeypatch)
    others = data.videos_of(["s1", "s2"])
    n = T.training_frames(data, others, 16, 0.0, torch.Generator()).numel()
    train_fold(data, "s0", tiny_cfg(epochs=1, batch_size=n - 1), tmp_path / "f", progress=False)
    assert [b.numel() for b in seen] == [n - 1]


def test_each_step_uses_only_its_own_batchs_gradient(tmp_path: Path, data, monkeypatch) -> None:
    """The gradient an optimiser step applies is that of its batch's loss alone (kills
    gradients accumulated across steps: zero_grad dropped)."""
    fresh: list[list[torch.Tensor]] = []
    applied: list[list[torch.Tensor]] = []
    params: list[torch.nn.Parameter] = []
    real_opt, real_loss = T.make_optimizer, T.spotting_loss

    def make(model, cfg):  # noqa: ANN001, ANN202
        params[:] = [p for p in model.parameters() if p.requires_grad]
        opt = real_opt(model, cfg)
        opt.register_step_pre_hook(
            lambda *_: applied.append([p.grad.detach().clone() for p in params])
        )
        return opt

    def loss(out, targets, lc):  # noqa: ANN001, ANN202
        r = real_loss(out, targets, lc)
        fresh.append(list(torch.autograd.grad(r.total, params, retain_graph=True)))
        return r

    monkeypatch.setattr(T, "make_optimizer", make)
    monkeypatch.setattr(T, "spotting_loss", loss)
    train_fold(data, "s0", tiny_cfg(epochs=1, batch_size=32), tmp_path / "f", progress=False)
    assert len(applied) == len(fresh) >= 3
    for a, f in zip(applied, fresh, strict=True):
        for x, y in zip(a, f, strict=True):
            torch.testing.assert_close(x, y)


def test_the_configs_loss_weights_reach_the_loss(tmp_path: Path, data, monkeypatch) -> None:
    got: list[LossConfig] = []
    real = T.spotting_loss
    monkeypatch.setattr(T, "spotting_loss", lambda o, t, lc: got.append(lc) or real(o, t, lc))
    lc = LossConfig(macro_ratio=0.55, contrastive=0.0, micro_apex=2.5)
    train_fold(data, "s0", tiny_cfg(epochs=1, loss=lc), tmp_path / "f", progress=False)
    assert got and all(x == lc for x in got)


# -- seeds -------------------------------------------------------------------------------------------


def test_the_seed_changes_the_initial_model_and_the_batch_order(
    tmp_path: Path, data, monkeypatch
) -> None:
    inits: list[list[torch.Tensor]] = []
    real = T.SpotFormer
    monkeypatch.setattr(T, "SpotFormer", lambda c: (m := real(c), inits.append(_digest(m)))[0])
    seen = _spy_batches(monkeypatch)
    orders = []
    for seed in (0, 1):
        seen.clear()
        train_fold(data, "s0", tiny_cfg(epochs=1, seed=seed), tmp_path / str(seed), progress=False)
        orders.append(torch.cat(seen).tolist())
    assert not _same(inits[0], inits[1])
    assert sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]


# -- inference ---------------------------------------------------------------------------------------


def test_predict_logits_runs_in_eval_mode_and_restores_the_mode() -> None:
    torch.manual_seed(0)
    model = SpotFormer(tiny_cfg().model)
    x = torch.randn(40, 17, 10, 2)
    model.train()
    got = T.predict_logits(model, x, batch=16)
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        want = model(x).logits
    torch.testing.assert_close(got, want)
    model.eval()
    T.predict_logits(model, x)
    assert not model.training


def test_spot_videos_post_processes_at_each_videos_rate_with_the_configs_params(
    monkeypatch,
) -> None:
    feats = {"a/v": torch.randn(30, 17, 10, 2), "b/v": torch.randn(30, 17, 10, 2)}
    d = SpottingData.build(feats, [], subjects={"a/v": "a", "b/v": "b"},
                           fps={"a/v": 60.0, "b/v": 25.0})  # fmt: skip
    calls = []
    monkeypatch.setattr(
        T, "spot_video", lambda lg, name, fps, sp: calls.append((name, fps, sp)) or []
    )
    spot = SpotParams(apex_threshold=0.7, micro_k=12.0)
    cfg = tiny_cfg(spot=spot)
    T.spot_videos(SpotFormer(cfg.model), d, d.videos, cfg)
    assert calls == [("a/v", 60.0, spot), ("b/v", 25.0, spot)]


# -- checkpoints and --resume ----------------------------------------------------------------------


def test_checkpoints_are_written_every_checkpoint_every_epochs_and_after_the_last(
    tmp_path: Path, data, monkeypatch
) -> None:
    """checkpoint_every=2 of 3 epochs: none after epoch 1, one after epoch 2 and one
    after epoch 3 (the last, even where 2 does not divide it)."""
    ck = tmp_path / "f" / "checkpoint.pt"
    at_start: dict[int, int | None] = {}

    def hook(subject: str, epoch: int, step: int) -> None:
        if step == 0:
            at_start[epoch] = torch.load(ck, weights_only=True)["epoch"] if ck.exists() else None

    real = T.atomic_json

    def stop(obj, path) -> None:  # noqa: ANN001
        if Path(path).name == "result.json":
            raise _Stop
        real(obj, path)

    monkeypatch.setattr(T, "atomic_json", stop)
    cfg = tiny_cfg(epochs=3, checkpoint_every=2)
    with pytest.raises(_Stop):
        train_fold(data, "s0", cfg, tmp_path / "f", progress=False, on_step=hook)
    assert at_start == {0: None, 1: None, 2: 2}
    assert torch.load(ck, weights_only=True)["epoch"] == 3


def test_a_resumed_fold_ends_with_the_weights_of_an_uninterrupted_one(tmp_path: Path, data) -> None:
    """Stopped mid-epoch twice and resumed each time, a fold's model file is bit for bit
    the uninterrupted fold's: the optimiser's moments and step count, the schedule, the
    seeds and the epoch counter all continue (the predictions of the tiny models in
    test_train.py are too few to show a lost optimiser state)."""
    cfg = tiny_cfg(epochs=3, batch_size=32)
    train_fold(data, "s1", cfg, tmp_path / "ref", progress=False)
    ref = _digest(T.load_model(tmp_path / "ref" / "model.pt").model)
    for stop_at in (1, 2):

        def stop(subject: str, epoch: int, step: int, stop_at: int = stop_at) -> None:
            if (epoch, step) == (stop_at, 1):
                raise _Stop

        with pytest.raises(_Stop):
            train_fold(data, "s1", cfg, tmp_path / "f", progress=False, on_step=stop,
                       resume=stop_at > 1)  # fmt: skip
        assert torch.load(tmp_path / "f" / "checkpoint.pt", weights_only=True)["epoch"] == stop_at
    epochs: set[int] = set()
    got = train_fold(data, "s1", cfg, tmp_path / "f", progress=False, resume=True,
                     on_step=lambda s, e, i: epochs.add(e))  # fmt: skip
    assert epochs == {2} and got.epoch == 3
    assert _same(_digest(T.load_model(tmp_path / "f" / "model.pt").model), ref)


def test_a_checkpoint_of_an_impossible_epoch_is_trained_again_from_the_start(
    tmp_path: Path, data, caplog
) -> None:
    """A checkpoint whose epoch is past the run's (damaged, or a copied folder) is a
    damaged checkpoint: the fold trains from a fresh model and ends as an uninterrupted
    fold (kills keeping the loaded weights, the epoch counter, or dropping the check)."""
    cfg = tiny_cfg(epochs=2)
    ref = train_fold(data, "s1", cfg, tmp_path / "ref", progress=False)
    ref_model = _digest(T.load_model(tmp_path / "ref" / "model.pt").model)

    def stop(subject: str, epoch: int, step: int) -> None:
        if epoch == 1:
            raise _Stop

    with pytest.raises(_Stop):
        train_fold(data, "s1", cfg, tmp_path / "f", progress=False, on_step=stop)
    ck_path = tmp_path / "f" / "checkpoint.pt"
    ck = torch.load(ck_path, weights_only=True)
    ck["epoch"] = 7
    torch.save(ck, ck_path)
    with caplog.at_level("WARNING", logger="spotformer"):
        got = train_fold(data, "s1", cfg, tmp_path / "f", progress=False, resume=True)
    assert "damaged (ValueError: epoch 7 of 2)" in caplog.text
    assert _same(_digest(T.load_model(tmp_path / "f" / "model.pt").model), ref_model)
    assert (got.epoch, got.train_windows, got.intervals) == (2, ref.train_windows, ref.intervals)


def test_resume_refuses_a_run_of_other_videos(tmp_path: Path, data) -> None:
    run = tmp_path / "run"
    cfg = tiny_cfg(epochs=1)
    T.run_loso(data, cfg, run, progress=False)
    four = SpottingData.build(*fake_dataset(subjects=4))
    with pytest.raises(TrainError, match="differs from this one in subjects"):
        T.run_loso(four, cfg, run, progress=False, resume=True)
    short = SpottingData.build(
        {k: v[:150] for k, v in fake_dataset()[0].items()},
        [e for e in fake_dataset()[1] if e.offset < 150],
    )
    with pytest.raises(TrainError, match="differs from this one in videos"):
        T.run_loso(short, cfg, run, progress=False, resume=True)


# -- the run ---------------------------------------------------------------------------------------


def test_folds_run_in_subject_order_and_one_subject_is_refused(tmp_path: Path, data) -> None:
    order: list[str] = []

    def hook(subject: str, epoch: int, step: int) -> None:
        if not order or order[-1] != subject:
            order.append(subject)

    rep = T.run_loso(data, tiny_cfg(epochs=1), tmp_path / "run", progress=False, on_step=hook)
    assert order == [f.subject for f in rep.folds] == ["s0", "s1", "s2"]
    one = SpottingData.build(*fake_dataset(subjects=1))
    with pytest.raises(TrainError, match="needs at least 2 subjects"):
        T.run_loso(one, tiny_cfg(epochs=1), tmp_path / "one", progress=False)
    assert not (tmp_path / "one").exists()  # refused before writing anything
    with pytest.raises(TrainError, match="needs at least 3 subjects"):
        T.check_subjects(["a", "b"], tiny_cfg(selection="val"))


def test_predictions_and_report_pool_every_folds_intervals(
    tmp_path: Path, data, monkeypatch
) -> None:
    """predictions.csv and report.json hold every fold's intervals (the tiny models of
    test_train.py predict nothing in most folds, so a run that kept only the last fold's
    passed there). Folds replaced by canned results: one TP per fold."""
    from spotformer.metrics import read_intervals

    def fold(d, subject, cfg, folder, **kw):  # noqa: ANN001, ANN003, ANN202
        e = d.expressions[d.videos_of([subject])[0].name][0]
        iv = T.Interval(e.video, e.onset, e.offset, e.kind, 0.9, e.apex)
        folder.mkdir(parents=True, exist_ok=True)
        return T.FoldResult(subject, cfg.epochs, [iv], {}, None, 1.0, 10)

    monkeypatch.setattr(T, "train_fold", fold)
    rep = T.run_loso(data, tiny_cfg(epochs=1), tmp_path / "run", progress=False)
    preds = read_intervals(tmp_path / "run" / "predictions.csv")
    assert sorted(p.video for p in preds) == ["s0/v0", "s1/v0", "s2/v0"]
    assert rep.result.overall.tp == 3 and rep.result.overall.fp == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["overall"]["tp"] == 3 and report["seconds"] == 3.0


# -- a bug found in the review (fails until it is fixed) -----------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"lr_decay": -0.96},
        {"lr_decay": float("nan")},
        {"lr_decay": 0.0},
        {"lr_decay": 1.5},
        {"weight_decay": -0.1},
        {"weight_decay": float("inf")},
        {"betas": (0.7, 1.0)},
        {"betas": (-0.1, 0.9)},
        {"betas": (0.9,)},
    ],
)
def test_lr_decay_weight_decay_and_betas_out_of_range_are_refused(kw: dict) -> None:
    """Found in review (2026-11-30): TrainConfig checked lr but not lr_decay,
    weight_decay or betas. lr_decay -0.96 made ExponentialLR's rate negative from the
    2nd epoch on (AdamW then climbed the loss, silently); NaN made every weight NaN after
    epoch 2 and the run stopped saying to lower --lr; 0 stopped learning after epoch 1;
    a negative weight decay grew the weights; bad betas failed only when a fold started.
    Each is now a ValueError naming the field, as lr is."""
    with pytest.raises(ValueError, match=next(iter(kw))):
        TrainConfig(**kw)


def test_edge_values_of_lr_decay_weight_decay_and_betas_are_taken() -> None:
    cfg = TrainConfig(lr_decay=1.0, weight_decay=0.0, betas=(0.0, 0.999))
    assert (cfg.lr_decay, cfg.weight_decay, cfg.betas) == (1.0, 0.0, (0.0, 0.999))
