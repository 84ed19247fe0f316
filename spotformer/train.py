"""Leave-one-subject-out training and evaluation of SpotFormer (SPEC.md sections 4-6).

The run works on **in-memory features**: a mapping ``video -> (N, w, R, 2)`` tensor on
the training device, produced once per run (by ``sw_mro.stream`` in ``spotformer
train``; by anything in tests). Nothing is written between extraction and training.

Per held-out subject (one fold, one model):

1. Training frames: the frames of the other subjects' videos that lie in a
   ``segment_frames``-frame segment (videos tiled from frame 0) holding at least one
   expression frame, plus the fraction ``neutral_segments`` of the other segments,
   redrawn each epoch. Windows are shuffled individually each epoch. The default,
   1.0, trains on every frame: a **deviation from the authors' code**, which trains on
   expression segments only (``neutral_segments=0``) and so never shows the model a
   blink or a head move as a negative (on the synthetic benchmark that drops LOSO F1
   from 0.21 to 0.05; docs/spotformer.md, "Measured figures").
2. AdamW (lr 2e-4, weight decay 0.1 on weight matrices only, betas (0.7, 0.9)),
   ExponentialLR(0.96) per epoch, ``epochs`` epochs; AMP (bfloat16 by default) on CUDA.
3. **Honest model selection** (SPEC.md section 4): ``selection="fixed"`` uses the
   last epoch; ``selection="val"`` holds out ``val_subjects`` of the *training*
   subjects, scores them every ``eval_every`` epochs, and keeps the epoch with the
   best overall F1 there. The test subject's F1 never chooses anything.
4. Inference on the held-out subject's videos, post-processing (SPEC.md section 5),
   and its intervals join ``RUN_DIR/predictions.csv``.

Determinism and resuming: epoch ``e`` of fold ``f`` seeds its shuffling and dropout
from ``(seed, f, e)``, and a checkpoint (model, optimiser, scheduler, scaler, best
state) is written atomically after every ``checkpoint_every`` epochs. A killed run
restarted with ``resume=True`` skips finished folds and continues the current one from
its last checkpoint; on CPU it ends with exactly the predictions of an uninterrupted run.

Files (all written atomically)::

    RUN_DIR/config.json                 resolved configuration of the run
    RUN_DIR/folds/<subject>/checkpoint.pt   state for --resume (removed when the fold ends)
    RUN_DIR/folds/<subject>/model.pt    the selected model, loadable by `spotformer spot`
    RUN_DIR/folds/<subject>/result.json the fold's intervals, chosen epoch and counts
    RUN_DIR/predictions.csv  RUN_DIR/ground_truth.csv  RUN_DIR/report.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from spotformer.data.labels import FrameTargets, LabelConfig, frame_targets
from spotformer.data.table import Expression, rate_scale
from spotformer.errors import SpotFormerError
from spotformer.losses import LossConfig, spotting_loss
from spotformer.metrics import EvalResult, Interval, evaluate, write_intervals
from spotformer.models import SpotFormer, SpotFormerConfig
from spotformer.postprocess import SpotParams, spot_video
from sw_mro.errors import one_line
from sw_mro.io.atomic import atomic_path, temp_name

log = logging.getLogger(__name__)


class TrainError(SpotFormerError):
    """A training run cannot start or resume; the message says why and what to do."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run's result (saved as ``RUN_DIR/config.json``)."""

    model: SpotFormerConfig = field(default_factory=SpotFormerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    spot: SpotParams = field(default_factory=SpotParams)
    epochs: int = 100
    batch_size: int = 512  # windows per step: the paper's 512 = the code's 32 segments x 16
    lr: float = 2e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.7, 0.9)
    lr_decay: float = 0.96
    segment_frames: int = 16
    neutral_segments: float = 1.0  # authors' code: 0.0 (expression segments only)
    # "spec": SPEC 5's (k, j); "train": (mean, min) duration of each type in the fold's
    # training subjects, the paper's definition of k and j (3.4), for other data sets.
    durations: Literal["spec", "train"] = "spec"
    selection: Literal["fixed", "val"] = "fixed"
    val_subjects: int = 1
    eval_every: int = 1
    seed: int = 0
    amp: bool = True  # only on CUDA
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    infer_batch: int = 1024
    checkpoint_every: int = 1
    # Probability of mirroring a training window left <-> right (ROIs swapped with their
    # mirror landmarks, dx negated); 0 = off, the authors' code.
    mirror: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.mirror <= 1.0:
            raise ValueError(f"mirror must be a probability in [0, 1], got {self.mirror}")
        for name, least in (("epochs", 1), ("batch_size", 2), ("segment_frames", 1),
                            ("val_subjects", 1), ("eval_every", 1), ("checkpoint_every", 1)):  # fmt: skip
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        # found in review: none of these was checked. A negative lr_decay turned the rate
        # negative from the 2nd epoch (the loss climbed, silently), NaN ended in "lower
        # --lr", 0 stopped learning after one epoch, a negative weight decay grew the
        # weights, and bad betas failed only when the first fold started (after the
        # features of every video were extracted).
        if not (math.isfinite(self.lr_decay) and 0 < self.lr_decay <= 1):
            raise ValueError(
                f"lr_decay must be in (0, 1] (1: a constant rate), got {self.lr_decay}"
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay}"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.selection not in ("fixed", "val"):
            raise ValueError(f"selection must be 'fixed' or 'val', got {self.selection!r}")
        if not 0.0 <= self.neutral_segments <= 1.0:
            raise ValueError(f"neutral_segments must be in [0, 1], got {self.neutral_segments}")
        if self.durations not in ("spec", "train"):
            raise ValueError(f"durations must be 'spec' or 'train', got {self.durations!r}")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"amp_dtype must be bfloat16 or float16, got {self.amp_dtype!r}")
        if self.selection != "val":  # val_subjects does nothing there: one value, so that
            # a run recorded with another one still resumes (found in review)
            object.__setattr__(self, "val_subjects", 1)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        for k in ("loss", "labels", "spot"):
            d[k] = dataclasses.asdict(d[k])
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        if "model" in d:
            d["model"] = SpotFormerConfig.from_dict(d["model"])
        for k, typ in (("loss", LossConfig), ("labels", LabelConfig), ("spot", SpotParams)):
            if k in d:
                d[k] = typ(**d[k])
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)


# -- data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    name: str
    subject: str
    fps: float
    start: int  # offset of its frames in SpottingData.features
    frames: int


@dataclass
class SpottingData:
    """All videos of a run: features and targets concatenated once, on one device."""

    videos: list[VideoInfo]
    features: Tensor  # (F, w, R, 2)
    targets: FrameTargets  # F frames
    expressions: dict[str, list[Expression]]

    @property
    def subjects(self) -> list[str]:
        return sorted({v.subject for v in self.videos})

    def videos_of(self, subjects: Sequence[str]) -> list[VideoInfo]:
        return [v for v in self.videos if v.subject in set(subjects)]

    def video_features(self, v: VideoInfo) -> Tensor:
        return self.features[v.start : v.start + v.frames]

    @classmethod
    def build(
        cls,
        features: Mapping[str, Tensor],
        expressions: Sequence[Expression],
        subjects: Mapping[str, str] | None = None,
        fps: Mapping[str, float] | float = 30.0,
        labels: LabelConfig | None = None,
    ) -> SpottingData:
        """Concatenate per-video features and build their targets.

        Args:
            features: video -> ``(N, w, R, 2)`` on the training device.
            expressions: all annotated expressions (every one must be in ``features``).
            subjects: video -> subject, needed for videos without expressions.
            fps: per-video frame rate (after subsampling), or one for all.
        """
        by_video: dict[str, list[Expression]] = {v: [] for v in features}
        subj = dict(subjects or {})
        for e in expressions:
            if e.video not in features:
                raise TrainError(
                    f"video {e.video!r} is annotated but has no features; extract it or "
                    "drop its rows from the annotation table"
                )
            by_video[e.video].append(e)
            subj.setdefault(e.video, e.subject)
        videos, parts, targets, start = [], [], [], 0
        for name in sorted(features):
            if name not in subj:
                raise TrainError(f"video {name!r}: its subject is unknown; pass subjects=...")
            x = features[name]
            r = fps if isinstance(fps, int | float) else fps[name]
            n = int(x.shape[0])
            videos.append(VideoInfo(name, subj[name], float(r), start, n))
            parts.append(x)
            targets.append(frame_targets(by_video[name], n, float(r), labels, video=name))
            start += n
        if not parts:
            raise TrainError("no videos to train on")
        device = parts[0].device
        return cls(
            videos=videos,
            features=torch.cat(parts),
            targets=FrameTargets.cat(targets).to(device),
            expressions=by_video,
        )


def training_frames(
    data: SpottingData,
    videos: Sequence[VideoInfo],
    segment: int,
    neutral: float,
    gen: torch.Generator,
) -> Tensor:
    """Global frame indices to train on: expression segments (+ a fraction of the rest)."""
    keep = []
    for v in videos:
        sl = slice(v.start, v.start + v.frames)
        expr = data.targets.micro_expr[sl] + data.targets.macro_expr[sl]
        n_seg = math.ceil(v.frames / segment)
        pad = torch.zeros(n_seg * segment, device=expr.device)
        pad[: v.frames] = expr
        has = (pad.reshape(n_seg, segment) > 0).any(1).cpu()
        if neutral > 0:
            has |= torch.rand(n_seg, generator=gen) < neutral
        seg = torch.nonzero(has).flatten()
        idx = (seg[:, None] * segment + torch.arange(segment)[None, :]).flatten()
        keep.append(idx[idx < v.frames] + v.start)
    return torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long)


# -- model, optimiser, inference -----------------------------------------------------------


# iBUG 68-point mirror pairs (0-based): the landmark at the mirrored position.
_IBUG_MIRROR = {
    **{i: 16 - i for i in range(17)},  # jaw
    **{17 + i: 26 - i for i in range(10)},  # eyebrows
    27: 27, 28: 28, 29: 29, 30: 30, 31: 35, 32: 34, 33: 33, 34: 32, 35: 31,  # nose
    36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46,  # right eye <-> left eye
    42: 39, 43: 38, 44: 37, 45: 36, 46: 41, 47: 40,
    48: 54, 49: 53, 50: 52, 51: 51, 52: 50, 53: 49, 54: 48,  # outer lips
    55: 59, 56: 58, 57: 57, 58: 56, 59: 55,
    60: 64, 61: 63, 62: 62, 63: 61, 64: 60, 65: 67, 66: 66, 67: 65,  # inner lips
}


def mirror_permutation(roi_landmarks: Sequence[int]) -> list[int]:
    """For each ROI, the index of the ROI on its mirror landmark (a left <-> right flip).

    Raises ValueError when an ROI's mirror landmark is not an ROI too.
    """
    pos = {lmk: k for k, lmk in enumerate(roi_landmarks)}
    try:
        return [pos[_IBUG_MIRROR[lmk]] for lmk in roi_landmarks]
    except KeyError as exc:
        raise ValueError(
            f"ROI landmarks {tuple(roi_landmarks)} are not closed under the left-right "
            f"mirror (landmark {exc.args[0]} has no mirrored ROI)"
        ) from None


def mirror_windows(x: Tensor, roi_landmarks: Sequence[int] | None = None) -> Tensor:
    """SW-MRO windows ``(..., w, R, 2)`` of the left-right mirrored face: ROIs swapped
    with their mirror ROIs, dx negated (SPEC 2's ROI order by default)."""
    if roi_landmarks is None:
        from sw_mro.config import SWMROConfig

        roi_landmarks = SWMROConfig().roi_landmarks
    perm = torch.as_tensor(mirror_permutation(roi_landmarks), device=x.device)
    sign = torch.tensor([-1.0, 1.0], device=x.device, dtype=x.dtype)
    return x.index_select(-2, perm) * sign


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices (Linear, Conv) only; biases, norms,
    positional embeddings and part tokens are not decayed (minGPT convention)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim >= 2 and name not in ("pos_embed", "part_tokens"):
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def _autocast_args(device: torch.device, cfg: TrainConfig) -> tuple[bool, torch.dtype]:
    """Whether training autocasts on ``device``, and to what (AMP on CUDA only)."""
    dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    return cfg.amp and device.type == "cuda", dtype


def _autocast(device: torch.device, cfg: TrainConfig):  # noqa: ANN202 - a context manager
    enabled, dtype = _autocast_args(device, cfg)
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


@torch.no_grad()
def predict_logits(model: SpotFormer, features: Tensor, batch: int = 1024) -> Tensor:
    """``(N, w, R, 2)`` -> ``(N, 10)`` float32 logits, in evaluation mode, in batches.

    Always in float32, without autocast: post-processing takes argmaxes of the onset and
    offset probabilities and compares them, and bfloat16 logits (a step of ~0.016 near
    |logit| 3) would make ties. Inference is a small part of a run's time."""
    was = model.training
    model.eval()
    out = []
    for i in range(0, features.shape[0], batch):
        out.append(model(features[i : i + batch].float()).logits.float())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, 10, device=features.device)


def spot_videos(
    model: SpotFormer, data: SpottingData, videos: Sequence[VideoInfo], cfg: TrainConfig
) -> list[Interval]:
    out: list[Interval] = []
    for v in videos:
        logits = predict_logits(model, data.video_features(v), cfg.infer_batch)
        out.extend(spot_video(logits, v.name, v.fps, cfg.spot))
    return out


def durations_from(data: SpottingData, videos: Sequence[VideoInfo], spot: SpotParams) -> SpotParams:
    """``spot`` with (k, j) = (mean, min) expression duration per type in ``videos``, in
    frames at ``spot.ref_fps`` (paper 3.4 defines k and j so); types without examples
    keep their values."""
    new: dict[str, float] = {}
    for kind in ("micro", "macro"):
        d = [
            (e.offset - e.onset + 1) / rate_scale(v.fps, spot.ref_fps)
            for v in videos
            for e in data.expressions.get(v.name, [])
            if e.kind == kind
        ]
        if d:
            new[f"{kind}_k"], new[f"{kind}_j"] = sum(d) / len(d), min(d)
    return dataclasses.replace(spot, **new)


def ground_truth(data: SpottingData, videos: Sequence[VideoInfo]) -> list[Interval]:
    """The videos' expressions as scored intervals. One that runs past a video's last
    frame is cut there, as its labels are: no proposal can reach past it (a SAMM-LV
    offset on the last source frame can round to one frame past the decoded ones)."""
    return [
        Interval(v.name, e.onset, min(e.offset, end), e.kind, 1.0, min(e.apex, end))
        for v in videos
        for end in (v.frames - 1,)
        for e in data.expressions.get(v.name, [])
    ]


# -- files ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _writing(path: Path, kept: str = "the run keeps what it saved before") -> Iterator[None]:
    """A failed write of ``path`` (a full disk) as a :class:`TrainError` naming the file
    and saying what is kept and to resume, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise TrainError(
            f"{path}: cannot write it ({exc.strerror or exc}); {kept}: fix that, then run "
            "the same command with --resume"
        ) from exc


def _atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through a temp file, fsync'ed, then renamed (no temp file is left
    behind); a failure is a :class:`TrainError` (:func:`_writing`)."""
    with _writing(path), atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def atomic_torch_save(obj: Any, path: Path) -> None:
    _atomic_write_bytes(path, lambda fh: torch.save(obj, fh))


def atomic_json(obj: Any, path: Path) -> None:
    text = (json.dumps(obj, indent=2) + "\n").encode()
    _atomic_write_bytes(path, lambda fh: fh.write(text))


def _safe(name: str) -> str:
    """``name`` with every character outside ``A-Za-z0-9_.-`` made ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def fold_name(subject: str) -> str:
    """The folder name of ``subject``'s fold under ``RUN_DIR/folds/``: the name itself
    where it is made of ``A-Za-z0-9_.-``, else those characters kept, the others ``_``,
    and a hash of the name (found in review: subjects 张三, 李四 and 王五 all became
    ``__``, so the folds overwrote each other's models and ``--resume`` took the first
    fold's result for all three)."""
    safe = _safe(subject)
    if safe == subject and subject not in (".", ".."):
        return subject
    return f"{safe}-{hashlib.sha1(subject.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def fold_dir(run: Path, subject: str) -> Path:
    """``RUN_DIR/folds/<fold_name(subject)>``, or, for a run saved before fold names
    had a hash (2026-11-29), its folder then, where a finished fold of ``subject`` is
    there (found in review: a resume trained such folds again)."""
    new = run / "folds" / fold_name(subject)
    old = run / "folds" / _safe(subject)
    if old != new and not new.exists() and (old / "result.json").is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if json.loads((old / "result.json").read_text()).get("subject") == subject:
                return old
    return new


def save_model(path: Path, model: SpotFormer, cfg: TrainConfig, extra: dict[str, Any]) -> None:
    """A self-describing model file for ``spotformer spot``."""
    atomic_torch_save(
        {
            "format": "spotformer-model-1",
            "model_config": model.config.to_dict(),
            "train_config": cfg.to_dict(),
            "state_dict": model.state_dict(),
            **extra,
        },
        path,
    )


@dataclass
class ModelFile:
    """A model file's contents: the model (eval mode) and how it was made."""

    model: SpotFormer
    config: TrainConfig
    info: dict[str, Any]  # data set and SW-MRO settings of the run that trained it
    subject: str = ""  # the held-out subject of its fold
    epoch: int = 0


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> ModelFile:
    """Load a model file written by :func:`save_model`."""
    p = Path(path)
    what = "a SpotFormer model file (RUN_DIR/folds/<subject>/model.pt)"
    if p.is_dir():
        raise TrainError(f"{p}: a folder; give {what}")
    if not p.is_file():
        raise TrainError(f"{p}: no such file; give {what}")
    try:
        ck = torch.load(p, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many kinds on junk or truncated files
        # Not torch's own text: it suggests weights_only=False, unsafe for a foreign file.
        why = "it is empty" if p.stat().st_size == 0 else f"torch.load: {type(exc).__name__}"
        raise TrainError(
            f"{p}: not {what}, or a truncated copy of one ({why})"
        ) from exc
    if not isinstance(ck, dict) or ck.get("format") != "spotformer-model-1":
        raise TrainError(f"{p}: not {what}")
    try:
        model = SpotFormer(SpotFormerConfig.from_dict(ck["model_config"])).to(device)
        model.load_state_dict(ck["state_dict"])
        if not _all_finite(model):
            raise TrainError(
                f"{p}: its weights are not all finite (NaN or inf): the run that made it "
                "diverged or the file is damaged; retrain (a lower --lr)"
            )
        return ModelFile(
            model.eval(),
            TrainConfig.from_dict(ck["train_config"]),
            dict(ck.get("info") or {}),
            str(ck.get("subject", "")),
            int(ck.get("epoch", 0)),
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise TrainError(f"{p}: a damaged or incompatible model file ({exc})") from exc


# -- one fold ---------------------------------------------------------------------------------

StepHook = Callable[[str, int, int], None]  # (subject, epoch, step) after each step


@dataclass
class FoldResult:
    subject: str
    epoch: int  # epochs the selected model was trained for
    intervals: list[Interval]
    counts: dict[str, dict[str, float]]
    val_f1: float | None = None
    seconds: float = 0.0
    train_windows: int = 0
    spot: dict[str, float] | None = None  # the post-processing numbers used

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["intervals"] = [dataclasses.asdict(i) for i in self.intervals]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FoldResult:
        d = dict(d)
        d["intervals"] = [Interval(**i) for i in d["intervals"]]
        return cls(**d)


def _seed(*parts: int) -> int:
    s = 0
    for p in parts:
        s = (s * 1_000_003 + p) % (2**62)
    return s


def _all_finite(model: torch.nn.Module) -> bool:
    """Whether every weight and buffer of ``model`` is finite (one device sync)."""
    flags = [torch.isfinite(t).all() for t in (*model.parameters(), *model.buffers())
             if t.is_floating_point()]  # fmt: skip
    return bool(torch.stack(flags).all()) if flags else True


def train_fold(
    data: SpottingData,
    test_subject: str,
    cfg: TrainConfig,
    fold_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    on_step: StepHook | None = None,
    info: Mapping[str, Any] | None = None,
) -> FoldResult:
    """Train one LOSO fold, predict the held-out subject, write ``fold_dir`` files."""
    t0 = time.perf_counter()
    fold_dir.mkdir(parents=True, exist_ok=True)
    device = data.features.device
    fold = data.subjects.index(test_subject)
    others = [s for s in data.subjects if s != test_subject]
    val: list[str] = []
    if cfg.selection == "val":
        if len(others) <= cfg.val_subjects:
            raise TrainError(
                f"selection='val' needs more than {cfg.val_subjects} training subjects; "
                f"fold {test_subject!r} has {len(others)}. Use selection='fixed'."
            )
        start = fold % len(others)  # rotate so that every subject serves as validation
        val = [others[(start + k) % len(others)] for k in range(cfg.val_subjects)]
    train_videos = data.videos_of([s for s in others if s not in val])
    if cfg.durations == "train":  # training subjects only: the test subject stays unseen
        cfg = dataclasses.replace(cfg, spot=durations_from(data, data.videos_of(others), cfg.spot))

    autocasts, amp_dtype = _autocast_args(device, cfg)

    def fresh() -> tuple:
        torch.manual_seed(_seed(cfg.seed, fold, 0))
        model = SpotFormer(cfg.model).to(device)
        opt = make_optimizer(model, cfg)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, cfg.lr_decay)
        on = autocasts and amp_dtype == torch.float16
        return model, opt, sched, torch.amp.GradScaler(device.type, enabled=on)

    model, opt, sched, scaler = fresh()
    best: dict[str, Any] | None = None
    done_epochs, n_windows, before = 0, 0, 0.0
    ck_path = fold_dir / "checkpoint.pt"
    if resume and ck_path.exists():
        try:
            ck = torch.load(ck_path, map_location=device, weights_only=True)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            scaler.load_state_dict(ck["scaler"])
            best, done_epochs = ck["best"], int(ck["epoch"])
            if not 0 <= done_epochs <= cfg.epochs:
                raise ValueError(f"epoch {done_epochs} of {cfg.epochs}")
            # The work before the stop (saved since 2026-11-29; found in an audit: a fold
            # resumed after its last epoch reported 0 windows and only the resumed seconds).
            n_windows, before = int(ck.get("windows", 0)), float(ck.get("seconds", 0.0))
        except OSError as exc:  # unreadable now (permissions, a network drive): not damaged
            raise TrainError(
                f"{ck_path}: cannot be read ({one_line(str(exc))}); fix that and resume, "
                "or delete it to train this fold again from its start"
            ) from exc
        except torch.cuda.OutOfMemoryError:  # the device's state, not the file's
            raise
        except Exception as exc:  # found in a probe: a traceback that named no file
            log.warning(
                "%s: damaged (%s); fold %r trains again from its start (the same result)",
                ck_path, one_line(f"{type(exc).__name__}: {exc}"), test_subject,
            )  # fmt: skip
            model, opt, sched, scaler = fresh()
            best, done_epochs, n_windows, before = None, 0, 0, 0.0

    from tqdm import tqdm

    bar = tqdm(
        total=cfg.epochs, initial=done_epochs, desc=f"fold {test_subject}", unit="epoch",
        disable=not progress, file=sys.stderr, dynamic_ncols=True, leave=True,
    )  # fmt: skip
    for epoch in range(done_epochs, cfg.epochs):
        gen = torch.Generator().manual_seed(_seed(cfg.seed, fold, epoch + 1))
        torch.manual_seed(_seed(cfg.seed, fold, epoch + 1, 1))  # dropout
        frames = training_frames(data, train_videos, cfg.segment_frames, cfg.neutral_segments, gen)
        if frames.numel() < 2:
            raise TrainError(
                f"fold {test_subject!r}: fewer than 2 training frames with expressions"
            )
        order = frames[torch.randperm(frames.numel(), generator=gen)].to(device)
        n_windows = order.numel()
        model.train()
        total, steps = torch.zeros((), device=device), 0
        for step, i in enumerate(range(0, order.numel(), cfg.batch_size)):
            idx = order[i : i + cfg.batch_size]
            if idx.numel() < 2:  # BN and SupCon need two samples
                continue
            x = data.features[idx]
            if cfg.mirror > 0:
                flip = (torch.rand(idx.numel(), generator=gen) < cfg.mirror).to(device)
                x = torch.where(flip[:, None, None, None], mirror_windows(x), x)
            with _autocast(device, cfg):
                out = model(x)
            loss = spotting_loss(out, data.targets.index(idx), cfg.loss)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss.total).backward()
            scaler.step(opt)
            scaler.update()
            total += loss.total.detach()  # summed on the device: no sync per step
            steps += 1
            if on_step is not None:
                on_step(test_subject, epoch, step)
        sched.step()
        if not _all_finite(model):
            raise TrainError(
                f"fold {test_subject!r}: the training diverged in epoch {epoch + 1} (the "
                f"model's weights are no longer finite; mean loss {float(total) / max(steps, 1):g}): "
                f"lower --lr (this run: {cfg.lr:g}) and start a new run (another --out)"
            )
        if cfg.selection == "val" and (
            (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
        ):
            vids = data.videos_of(val)
            f1 = evaluate(spot_videos(model, data, vids, cfg), ground_truth(data, vids)).overall.f1
            if best is None or f1 > best["f1"]:
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best = {"epoch": epoch + 1, "f1": f1, "state": state}
        bar.set_postfix(loss=f"{float(total) / max(steps, 1):.4f}", refresh=False)
        bar.update(1)
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
            atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(),
                    "best": best,
                    "epoch": epoch + 1,
                    "windows": n_windows,
                    "seconds": before + time.perf_counter() - t0,
                },
                ck_path,
            )
    bar.close()

    chosen, val_f1 = cfg.epochs, None
    if cfg.selection == "val" and best is not None:
        model.load_state_dict(best["state"])
        chosen, val_f1 = int(best["epoch"]), float(best["f1"])
    test_videos = data.videos_of([test_subject])
    intervals = spot_videos(model, data, test_videos, cfg)
    counts = evaluate(intervals, ground_truth(data, test_videos)).to_dict()
    extra = {"subject": test_subject, "epoch": chosen, "info": dict(info or {})}
    save_model(fold_dir / "model.pt", model, cfg, extra)
    result = FoldResult(
        test_subject, chosen, intervals, counts, val_f1, before + time.perf_counter() - t0,
        n_windows,
        dataclasses.asdict(cfg.spot),
    )  # fmt: skip
    atomic_json(result.to_dict(), fold_dir / "result.json")
    ck_path.unlink(missing_ok=True)
    return result


# -- the run ----------------------------------------------------------------------------------


@dataclass
class RunReport:
    result: EvalResult
    folds: list[FoldResult]
    path: Path

    def table(self) -> str:
        return self.result.table()


def _same_run(saved: Mapping[str, Any], resolved: Mapping[str, Any]) -> list[str]:
    """Which parts of a saved run's ``config.json`` differ from this run's (compared as
    JSON). The training config is compared after filling in fields that older versions
    did not save with their defaults, and ``info`` on the keys both have, so a run saved
    by an older version resumes."""

    def js(x: Any) -> Any:
        return json.loads(json.dumps(x))

    diff = []
    for key, mine in resolved.items():
        theirs = saved.get(key)
        if key == "train" and isinstance(theirs, dict):
            try:
                theirs = TrainConfig.from_dict(theirs).to_dict()
            except (TypeError, ValueError):
                pass
        if key == "info" and isinstance(theirs, dict) and isinstance(mine, dict):
            common = theirs.keys() & mine.keys()
            if theirs.get("source_fps") is None:  # not recorded before 2026-11-29 where a
                common.discard("source_fps")  # CSV gave no rate: the videos' own now
            common.discard("threads")  # another count is warned about, not refused
            if "labels_sha1" in common:  # the labels pin the file, not how it was typed
                common.discard("annotations")  # (review: relative paths from elsewhere)
            theirs = {k: theirs[k] for k in common}
            mine = {k: mine[k] for k in common}
        theirs, mine = js(theirs), js(mine)
        if theirs == mine:
            continue
        if isinstance(theirs, dict) and isinstance(mine, dict):
            fields = _field_diffs(key, theirs, mine)
            diff.append(f"{key} ({'; '.join(fields[:3])}{'; ...' if len(fields) > 3 else ''})")
        else:
            diff.append(key)
    return diff


def _field_diffs(path: str, theirs: Mapping[str, Any], mine: Mapping[str, Any]) -> list[str]:
    """``path.field 'saved' (this run: 'new')`` for each differing leaf, nested dicts
    (the loss, labels and model configs) named down to the field."""
    out = []
    for k in sorted(theirs.keys() | mine.keys()):
        a, b = theirs.get(k), mine.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _field_diffs(f"{path}.{k}", a, b)
        elif k == "labels_sha1":
            out.append(f"{path}.{k} (the annotations' labels changed since the run started)")
        elif k == "supcon_form" and a == "khosla" and b == "authors":
            out.append(
                f"{path}.{k} {a!r} (this run: {b!r}; --supcon authors is the authors' "
                "loss exactly since 2026-11-28, a run started before trained with the "
                "earlier form: start a new --out)"
            )
        else:
            out.append(f"{path}.{k} {a!r} (this run: {b!r})")
    return out


def check_subjects(subjects: Sequence[str], cfg: TrainConfig) -> None:
    """Leave-one-subject-out needs 2 subjects, and ``selection="val"`` ``val_subjects``
    more (raises :class:`TrainError` before any work, naming the subjects found)."""
    need = 2 + (cfg.val_subjects if cfg.selection == "val" else 0)
    found = sorted(set(subjects))
    if len(found) < need:
        why = (
            f" (selection 'val' holds out {cfg.val_subjects} more per fold; "
            "--selection fixed needs 2)"
            if cfg.selection == "val"
            else ""
        )
        raise TrainError(
            f"leave-one-subject-out needs at least {need} subjects{why}; the data has "
            f"{len(found)}: {', '.join(map(repr, found[:5])) or 'none'}"
        )


def check_run_dir(
    run_dir: str | os.PathLike,
    cfg: TrainConfig,
    *,
    resume: bool = False,
    info: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
) -> None:
    """What can be checked of a run folder: it is not a file; without ``resume`` it is
    new or empty; with ``resume``, a saved run has the same training configuration and,
    if given, the same ``info`` (the data set record, known before any extraction) and
    ``data`` (the subjects and videos, which :func:`run_loso` passes).

    Raises:
        TrainError: the folder cannot take this run.
    """
    run = Path(run_dir)
    if run.exists() and not run.is_dir():
        raise TrainError(f"{run} is a file; --out must be a folder")
    for parent in run.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TrainError(f"{run}: {parent} is a file, not a folder")
            break
    conf_path = run / "config.json"
    if conf_path.is_file():
        if not resume:
            raise TrainError(
                f"{run} already holds a run; pass --resume to continue it or choose a new --out"
            )
        try:
            saved = json.loads(conf_path.read_text())
        except (OSError, ValueError) as exc:
            raise TrainError(f"{conf_path}: unreadable ({exc}); choose a new --out") from exc
        if not isinstance(saved, dict):
            raise TrainError(f"{conf_path}: not a run's config; choose a new --out")
        mine = {"train": cfg.to_dict(), **({"info": dict(info)} if info is not None else {})}
        mine.update(data or {})
        diff = _same_run(saved, mine)
        if diff:
            raise TrainError(
                f"{conf_path}: the saved run differs from this one in {', '.join(diff)}; "
                "resume with the same options and data, or choose a new --out"
            )
    elif run.is_dir() and any(run.iterdir()):
        # A run killed as it wrote its config.json leaves only that temp file (review).
        temp = temp_name(conf_path).name
        left = sorted(p.name for p in run.iterdir() if p.name != temp)
        if resume and left:  # found in a probe: its folds were taken into a new run as they were
            raise TrainError(
                f"{run} has no config.json but is not empty (e.g. {left[0]!r}): not a run "
                "that --resume can continue (its folds' options are unknown); choose a new --out"
            )
        if not resume:
            raise TrainError(f"{run} is not empty; choose a new --out")


#: Everything a run writes in its folder (``--out``): ``spotformer demo`` replaces a
#: folder that holds only these (and their temp files).
RUN_ENTRIES = frozenset(
    {"config.json", "folds", "predictions.csv", "ground_truth.csv", "report.json"}
)


def run_record(videos: Mapping[str, tuple[str, float, int]]) -> dict[str, Any]:
    """The data part of a run's ``config.json``: its subjects and, per video id, the
    subject, fps and frame count (after any stride). ``--resume`` needs the same."""
    return {
        "subjects": sorted({subject for subject, _, _ in videos.values()}),
        "videos": {
            name: {"subject": subject, "fps": float(fps), "frames": int(frames)}
            for name, (subject, fps, frames) in sorted(videos.items())
        },
    }


def labels_digest(expressions: Sequence[Expression]) -> str:
    """SHA-1 of a run's labels (subject, video, onset, apex, offset, type of every
    expression, in a fixed order): recorded in ``config.json``, so that ``--resume``
    refuses annotations edited since the run started."""
    import hashlib

    rows = sorted((e.video, e.onset, e.apex, e.offset, e.kind, e.subject) for e in expressions)
    return hashlib.sha1(json.dumps(rows).encode()).hexdigest()


def finished_run(run_dir: str | os.PathLike) -> RunReport | None:
    """The run in ``run_dir`` if it finished (its ``report.json``, every fold's
    ``result.json``, ``predictions.csv`` and ``ground_truth.csv`` are there and readable),
    scored again from those files; None otherwise. Whether it was made with the same
    options and data is :func:`check_run_dir`'s question."""
    from spotformer.metrics import read_intervals

    run = Path(run_dir)
    try:
        saved = json.loads((run / "config.json").read_text())
        if not (run / "report.json").is_file():
            return None
        folds = [
            FoldResult.from_dict(
                json.loads((fold_dir(run, s) / "result.json").read_text())
            )
            for s in saved["subjects"]
        ]
        preds = read_intervals(run / "predictions.csv")
        gts = read_intervals(run / "ground_truth.csv")
    except (OSError, ValueError, KeyError, TypeError, SpotFormerError):
        return None
    return RunReport(evaluate(preds, gts), folds, run)


def run_loso(
    data: SpottingData,
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    info: Mapping[str, Any] | None = None,
    on_step: StepHook | None = None,
) -> RunReport:
    """Train one model per held-out subject and evaluate all predictions together.

    Args:
        data: the run's videos (see :meth:`SpottingData.build`).
        cfg: the training configuration.
        run_dir: output folder; it must be new or empty unless ``resume``.
        resume: continue a run that stopped (finished folds are reused).
        info: extra facts to record in ``config.json`` (data set, root, extraction).
        on_step: called after every optimiser step (progress, tests).
    """
    check_subjects(data.subjects, cfg)
    run = Path(run_dir)
    conf_path = run / "config.json"
    record = run_record({v.name: (v.subject, v.fps, v.frames) for v in data.videos})
    check_run_dir(run, cfg, resume=resume, info=dict(info or {}), data=record)
    resolved = {"train": cfg.to_dict(), "info": dict(info or {}), **record}
    run.mkdir(parents=True, exist_ok=True)
    atomic_json(resolved, conf_path)

    folds: list[FoldResult] = []
    for subject in data.subjects:
        folder = fold_dir(run, subject)
        done = folder / "result.json"
        if resume and done.exists():
            try:
                result = FoldResult.from_dict(json.loads(done.read_text()))
                if result.subject != subject:
                    raise ValueError(f"it is subject {result.subject!r}'s")
            except OSError as exc:  # unreadable now: not damaged (found in review)
                raise TrainError(
                    f"{done}: cannot be read ({one_line(str(exc))}); fix that and resume"
                ) from exc
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                log.warning(  # found in a probe: a traceback that named no file
                    "%s: damaged (%s); fold %r is trained again", done,
                    one_line(f"{type(exc).__name__}: {exc}"), subject,
                )  # fmt: skip
            else:
                folds.append(result)
                # A stop between the result and the checkpoint's removal left it behind.
                (folder / "checkpoint.pt").unlink(missing_ok=True)
                continue
        folds.append(
            train_fold(
                data,
                subject,
                cfg,
                folder,
                resume=resume,
                progress=progress,
                on_step=on_step,
                info=info,
            )  # fmt: skip
        )
    preds = [i for f in folds for i in f.intervals]
    gts = ground_truth(data, data.videos)
    result = evaluate(preds, gts)
    for intervals, name in ((preds, "predictions.csv"), (gts, "ground_truth.csv")):
        with _writing(run / name, "every fold is saved"):  # a full disk after the last fold
            write_intervals(intervals, run / name)
    report = {
        **result.to_dict(),
        "selection": cfg.selection,
        "folds": [{k: v for k, v in f.to_dict().items() if k != "intervals"} for f in folds],
        "seconds": sum(f.seconds for f in folds),
        "config": "config.json",
    }
    atomic_json(report, run / "report.json")
    return RunReport(result, folds, run)
