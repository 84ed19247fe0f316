"""MEGC spotting evaluation (SPEC.md section 6), on intervals from memory or from CSV files.

- IoU on inclusive frame intervals: inter = min(e1, e2) - max(s1, s2) + 1 (at least 0),
  union = (e1 - s1 + 1) + (e2 - s2 + 1) - inter.
- A proposal and a ground truth can match when they are in the same video, have the
  same type and IoU >= the threshold (0.5). Each ground truth gives at most one TP and
  each proposal is at most one TP.
- FP = proposals - TP, FN = ground truths - TP, per type; "overall" pools the counts.
  precision = TP / proposals, recall = TP / ground truths, F1 = 2 TP / (proposals + gts).

**Matching.** Within each (video, type) the TPs are a *maximum-cardinality* one-to-one
matching of the eligible pairs (ties between maximum matchings go to the larger total
IoU). Greedy matching (best IoU first) can undercount: a proposal that overlaps two
ground truths may take the one that a second proposal was the only match for. The
maximum is the count the protocol's one-to-one rule allows, it does not depend on the
order of rows in a file, and it equals greedy whenever no proposal is eligible for two
ground truths (the usual case: MEGC ground truths rarely overlap).

**The authors' protocol** (``protocol="authors"``, ``spotformer evaluate --protocol
authors``), for comparing with figures their scripts computed (``post_process.py``'s
``iou_with_anchors`` and ``iou_for_find``): IoU from end - start lengths (one frame
less on each side: an inclusive IoU of exactly 0.5 falls below it, a one-frame interval
never matches), and each ground truth, in file order, takes the remaining proposal of
highest IoU (of equals, the higher score) if that IoU >= the threshold. Never more TPs than the
MEGC protocol, often fewer.
"""

from __future__ import annotations

import csv
import logging
import math
import operator
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from spotformer.data.table import (
    FRAME_LIMIT,
    RepeatCheck,
    frame_too_large,
    parse_kind,
    read_csv_records,
)
from spotformer.errors import SpotFormerError
from sw_mro.io.atomic import atomic_path

log = logging.getLogger(__name__)

Kind = Literal["macro", "micro"]


class EvaluationError(SpotFormerError):
    """A prediction or ground-truth file cannot be read; the message names it."""


@dataclass(frozen=True)
class Interval:
    """One expression interval; ``onset`` and ``offset`` are inclusive 0-based frames."""

    video: str
    onset: int
    offset: int
    kind: Kind
    score: float = 1.0
    apex: int = -1

    def __post_init__(self) -> None:
        for name in ("onset", "offset", "apex"):  # whole frames (numpy ints too)
            v = getattr(self, name)
            try:
                object.__setattr__(self, name, operator.index(v))
            except TypeError:
                raise ValueError(
                    f"{self.video}: {name} must be a whole frame index, got {v!r}"
                ) from None
        if self.kind not in ("macro", "micro"):
            raise ValueError(
                f"{self.video}: kind must be 'macro' or 'micro', got {self.kind!r} "
                "(read_intervals also accepts MaE / ME)"
            )
        if not 0 <= self.onset <= self.offset:
            raise ValueError(
                f"{self.video}: need 0 <= onset <= offset (inclusive 0-based frames), got "
                f"{self.onset}, {self.offset}"
            )
        if self.offset >= FRAME_LIMIT or self.apex >= FRAME_LIMIT:
            column = "offset" if self.offset >= FRAME_LIMIT else "apex"
            raise ValueError(f"{self.video}: {frame_too_large(column, getattr(self, column))}")


def iou(s1: int, e1: int, s2: int, e2: int) -> float:
    """Inclusive-frame IoU of [s1, e1] and [s2, e2].

    >>> iou(0, 9, 0, 4)  # 5 shared frames of 10
    0.5
    >>> iou(0, 4, 5, 9)  # touching, no shared frame
    0.0
    """
    inter = max(min(e1, e2) - max(s1, s2) + 1, 0)
    union = (e1 - s1 + 1) + (e2 - s2 + 1) - inter
    return inter / union


def iou_matrix(s1: Tensor, e1: Tensor, s2: Tensor, e2: Tensor) -> Tensor:
    """Inclusive-frame IoU of every pair: ``(P,)`` x ``(G,)`` -> ``(P, G)`` float64."""
    s1, e1 = s1.double()[:, None], e1.double()[:, None]
    s2, e2 = s2.double()[None, :], e2.double()[None, :]
    inter = (torch.minimum(e1, e2) - torch.maximum(s1, s2) + 1).clamp(min=0)
    return inter / ((e1 - s1 + 1) + (e2 - s2 + 1) - inter)


def match(
    preds: Sequence[Interval], gts: Sequence[Interval], iou_threshold: float = 0.5
) -> list[tuple[int, int]]:
    """One-to-one TP pairs ``(pred index, gt index)`` between intervals of one video and type.

    Maximum-cardinality matching of the pairs with IoU >= ``iou_threshold``; see the
    module docstring for why.
    """
    if not preds or not gts:
        return []
    ps = np.array([[p.onset, p.offset] for p in preds], dtype=np.int64)
    gs = np.array([[g.onset, g.offset] for g in gts], dtype=np.int64)
    m = iou_matrix(*map(torch.from_numpy, (ps[:, 0], ps[:, 1], gs[:, 0], gs[:, 1]))).numpy()
    eligible = m >= iou_threshold
    if not eligible.any():
        return []
    # Weight 1 + small IoU bonus per eligible pair: any matching with c eligible pairs
    # weighs in [c, c + 1), so the heaviest one has the most pairs.
    bonus = m / (min(len(preds), len(gts)) + 1)
    weight = np.where(eligible, 1.0 + bonus, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if eligible[r, c]]


def iou_end_minus_start(s1: int, e1: int, s2: int, e2: int) -> float:
    """IoU with lengths ``end - start``, as the authors' scripts compute it (0 where the
    union is empty, two one-frame intervals).

    >>> iou_end_minus_start(0, 9, 0, 4)  # 4 / 9, where the inclusive IoU is 5 / 10
    0.4444444444444444
    """
    inter = max(min(e1, e2) - max(s1, s2), 0)
    union = (e1 - s1) + (e2 - s2) - inter
    return inter / union if union > 0 else 0.0


def match_authors(
    preds: Sequence[Interval], gts: Sequence[Interval], iou_threshold: float = 0.5
) -> list[tuple[int, int]]:
    """TP pairs ``(pred index, gt index)`` by the authors' rule (module docstring): each
    ground truth in order takes the unmatched proposal of highest end - start IoU; among
    equal IoUs the higher score wins, then the earlier row (their proposals come out of
    NMS best score first)."""
    free = sorted(range(len(preds)), key=lambda i: -preds[i].score)  # stable
    pairs: list[tuple[int, int]] = []
    for j, g in enumerate(gts):
        if not free:
            break
        ious = [
            iou_end_minus_start(preds[i].onset, preds[i].offset, g.onset, g.offset) for i in free
        ]
        best = max(range(len(free)), key=ious.__getitem__)  # the first of equals
        if ious[best] >= iou_threshold:
            pairs.append((free.pop(best), j))
    return pairs


Protocol = Literal["megc", "authors"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)


@dataclass
class Counts:
    """TP / FP / FN of one type (or pooled) and the figures derived from them."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def n_pred(self) -> int:
        return self.tp + self.fp

    @property
    def n_gt(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_gt if self.n_gt else 0.0

    @property
    def f1(self) -> float:
        """2 TP / (proposals + ground truths); 0 when both are empty."""
        total = self.n_pred + self.n_gt
        return 2 * self.tp / total if total else 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def to_dict(self) -> dict[str, float]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


@dataclass
class EvalResult:
    """Counts per type and pooled, plus which proposal matched which ground truth."""

    macro: Counts
    micro: Counts
    matches: list[tuple[Interval, Interval]] = field(default_factory=list)

    @property
    def overall(self) -> Counts:
        return self.macro + self.micro

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {
            "macro": self.macro.to_dict(),
            "micro": self.micro.to_dict(),
            "overall": self.overall.to_dict(),
        }

    def table(self) -> str:
        """A plain-text TP/FP/FN/precision/recall/F1 table for MaE, ME and overall."""
        head = f"{'':<8}{'TP':>6}{'FP':>6}{'FN':>6}{'Precision':>11}{'Recall':>9}{'F1':>9}"
        rows = [head]
        for name, c in (("MaE", self.macro), ("ME", self.micro), ("Overall", self.overall)):
            rows.append(
                f"{name:<8}{c.tp:>6}{c.fp:>6}{c.fn:>6}"
                f"{c.precision:>11.4f}{c.recall:>9.4f}{c.f1:>9.4f}"
            )
        return "\n".join(rows)


def evaluate(
    preds: Iterable[Interval],
    gts: Iterable[Interval],
    iou_threshold: float = 0.5,
    protocol: Protocol = "megc",
) -> EvalResult:
    """Score proposals against ground truths with the MEGC protocol (SPEC.md section 6),
    or with the authors' (``protocol="authors"``; module docstring)."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1]; got {iou_threshold}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}")
    matcher = match if protocol == "megc" else match_authors
    groups: dict[tuple[str, str], tuple[list[Interval], list[Interval]]] = defaultdict(
        lambda: ([], [])
    )
    for p in preds:
        groups[(p.video, p.kind)][0].append(p)
    for g in gts:
        groups[(g.video, g.kind)][1].append(g)
    counts = {"macro": Counts(), "micro": Counts()}
    matched: list[tuple[Interval, Interval]] = []
    for (_, kind), (ps, gs) in sorted(groups.items()):
        pairs = matcher(ps, gs, iou_threshold)
        tp = len(pairs)
        counts[kind] = counts[kind] + Counts(tp, len(ps) - tp, len(gs) - tp)
        matched.extend((ps[i], gs[j]) for i, j in pairs)
    return EvalResult(macro=counts["macro"], micro=counts["micro"], matches=matched)


def _frame(value: str, path: Path, line: int, column: str) -> int:
    try:
        f = float(value)
    except ValueError:
        f = math.nan
    if not math.isfinite(f) or f != int(f):
        raise EvaluationError(
            f"{path}: line {line}: {column} = {value!r} is not a whole frame number; "
            "write 0-based integer frames"
        )
    if f >= FRAME_LIMIT:
        raise EvaluationError(f"{path}: line {line}: {frame_too_large(column, value)}")
    return int(f)


def read_intervals(path: str | os.PathLike, *, videos: set[str] | None = None) -> list[Interval]:
    """Read ``video,onset,offset,type[,score]`` rows (other columns are ignored).

    ``type`` is ``macro`` or ``micro`` (also accepted, in any case: MaE / ME,
    macro-expression / micro-expression); frames are inclusive, 0-based and below 2**31.
    A file with only the header holds no intervals, and neither does a row whose onset,
    offset and type are all empty (how the annotation CSV lists a video without
    expressions). ``videos``, when given, receives every video the file names, with or
    without intervals. Rows are kept as they are, repeats included (a repeated proposal
    is a false positive; :func:`read_ground_truth` also keeps a repeated ground truth,
    with a warning).

    Raises:
        EvaluationError: the file is missing, lacks a column, names a column twice, has
            a row with too many or too few fields, or has a bad value; the message names
            the file and the line (the header is line 1).
    """
    return [i for _, i in _read_lines(Path(path), videos)]


def _read_lines(p: Path, videos: set[str] | None = None) -> list[tuple[int, Interval]]:
    """The intervals of a CSV with the line each comes from (see :func:`read_intervals`)."""
    records = read_csv_records(
        p,
        ("video", "onset", "offset", "type"),
        ("score",),
        EvaluationError,
        "give a CSV with the header video,onset,offset,type (an annotation workbook: load it "
        "with spotformer.data and write it with AnnotationTable.to_csv)",
    )
    out: list[tuple[int, Interval]] = []
    for line, row in records:
        if videos is not None and row["video"]:
            videos.add(row["video"])
        if not (row["onset"] or row["offset"] or row["type"]):
            # A video listed with no expression (how the annotation CSV lists videos
            # without ground truth): no interval.
            continue
        kind = parse_kind(row["type"])
        if kind is None:
            raise EvaluationError(
                f"{p}: line {line}: type = {row['type']!r}; use macro or micro (or MaE / ME)"
            )
        if not row["video"]:
            raise EvaluationError(f"{p}: line {line}: video is empty")
        on = _frame(row["onset"], p, line, "onset")
        off = _frame(row["offset"], p, line, "offset")
        if on < 0:
            raise EvaluationError(f"{p}: line {line}: onset {on} is negative; frames are 0-based")
        if off < on:
            raise EvaluationError(
                f"{p}: line {line}: offset {off} is before onset {on}; "
                "intervals are [onset, offset], inclusive"
            )
        score = 1.0
        if row.get("score"):
            try:
                score = float(row["score"])
            except ValueError:
                score = math.nan
            if not math.isfinite(score):
                raise EvaluationError(
                    f"{p}: line {line}: score = {row['score']!r} is not a finite number"
                )
        out.append((line, Interval(row["video"], on, off, kind, score)))
    return out


def read_ground_truth(
    path: str | os.PathLike, *, videos: set[str] | None = None, stride: int | None = None
) -> list[Interval]:
    """Ground-truth intervals from an interval CSV (:func:`read_intervals`) or from a
    data set's annotation workbook: CAS(ME)^2's ``CAS(ME)^2code_final.xlsx`` or
    SAMM-LV's ``SAMM_LongVideos_V*_Release.xlsx``, read as training reads them
    (:func:`spotformer.data.load_annotations`: frames 0-based, SAMM-LV's divided by 7,
    rows it cannot use dropped with a warning). ``videos``, when given, receives every
    video the file names (a workbook names only videos with expressions).

    A row that repeats an earlier one (same video, onset, offset and type) is kept and
    counted, as the MEGC protocol counts every annotation row, with a logged warning
    naming the file and both lines (rows), as training's loaders do
    (:class:`~spotformer.data.table.RepeatCheck`). A ground truth with no intervals at
    all (only a header, or every row dropped) is returned empty with a logged warning:
    every proposal is then a false positive.

    ``stride``: the stride of the frames the predictions count (``spotformer spot``'s);
    None means the data set's own (SAMM-LV 7, CAS(ME)^2 1). A SAMM-LV workbook is
    converted to it; CAS(ME)^2's frames are its videos' every frame, so any other stride
    is refused. A CSV is taken as it is: its frames are the caller's.

    Raises:
        EvaluationError: the file is missing or malformed, or a CAS(ME)^2 workbook with a
            stride other than 1 (the message names the file).
    """
    from spotformer.data.annotations import is_workbook

    p = Path(path)
    if not is_workbook(p):
        gts: list[Interval] = []
        repeats = RepeatCheck(str(p), "line")
        for line, g in _read_lines(p, videos):
            warning = repeats.check(line, g.video, g.onset, g.offset, g.kind)
            if warning is not None:
                log.warning("%s", warning)
            gts.append(g)
        if not gts:
            _warn_empty(p, "no row has an onset, offset and type")
        return gts
    from spotformer.data.annotations import SAMM_SUBSAMPLE, load_casme2, load_samm, workbook_kind
    from spotformer.errors import AnnotationError

    if stride is not None and (
        isinstance(stride, bool) or not isinstance(stride, int) or stride < 1
    ):
        raise ValueError(f"stride must be an int >= 1 or None, got {stride!r}")
    try:
        kind = workbook_kind(p)  # its sheet names: the workbook is read once more, below
        if stride not in (None, 1) and kind == "casme2":
            raise EvaluationError(
                f"{p}: CAS(ME)^2's frames count every frame of its videos (stride 1), but "
                f"the predictions count every {_ordinal(stride)} frame; score them at stride "
                "1, or against a ground-truth CSV in their frames"
            )
        table = (
            load_casme2(p) if kind == "casme2" else load_samm(p, subsample=stride or SAMM_SUBSAMPLE)
        )
    except AnnotationError as exc:
        raise EvaluationError(str(exc)) from exc
    if videos is not None:
        videos.update(e.video for e in table.expressions)
    if not table.expressions:
        n = len(table.dropped)
        why = f"{n} row(s) dropped, none kept" if n else "no expression rows"
        _warn_empty(p, why)
    return [Interval(e.video, e.onset, e.offset, e.kind, apex=e.apex) for e in table.expressions]


def _warn_empty(p: Path, why: str) -> None:
    log.warning(
        "%s: the ground truth holds no expression (%s); every proposal counts as a false "
        "positive and all scores are 0",
        p,
        why,
    )


def write_intervals(intervals: Iterable[Interval], path: str | os.PathLike) -> Path:
    """Write ``video,onset,offset,type,score,apex`` atomically (readable by :func:`read_intervals`)."""
    p = Path(path)
    with atomic_path(p) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")  # csv's own "\r\n" ends `cut -d, -f6` in "\r"
        w.writerow(["video", "onset", "offset", "type", "score", "apex"])
        for i in intervals:
            w.writerow([i.video, i.onset, i.offset, i.kind, f"{i.score:.6g}", i.apex])
    return p


def _ordinal(n: int) -> str:
    """``2`` -> ``2nd``, ``7`` -> ``7th``, ``11`` -> ``11th``, ``23`` -> ``23rd``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
