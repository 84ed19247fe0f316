"""From per-frame probabilities to expression intervals (paper 3.4, SPEC.md section 5).

The stages, per video and per expression type, each a function of its own:

1. :func:`frame_probabilities` - softmax / sigmoid of the model's logits;
2. :func:`apex_candidates` - frames whose apex probability exceeds ``apex_threshold``;
3. :func:`candidate_intervals` - for each apex l: onset = argmax P_onset over
   [l - k/2, l - j/2], offset = argmax P_offset over [l + j/2, l + k/2]; keep the
   proposal only if P_onset > P_offset at the onset and P_onset < P_offset at the
   offset; score = P_onset(onset) x P_apex(l) x P_offset(offset);
4. :func:`nms` - greedy: keep the best-scoring proposal, drop those whose IoU with it
   exceeds ``nms_iou``, repeat, at most ``top_k`` kept.

(k, j) = (16, 5) frames for ME and (59, 16) for MaE at 30 fps. Within 5 % of 30 fps
(29.97, and SAMM-LV's 200/7 ~ 28.6 fps after subsampling, as in the authors' code) they
apply as they are; at another frame rate both scale by fps / 30
(:func:`spotformer.data.table.rate_scale`). k/2 and j/2 are rounded down, as in the
authors' code (ME offsets 2..8 frames from the apex, MaE 8..29). Windows are clipped to
the video. Where several frames share the maximum, the one nearest the apex wins.
The IoU in NMS is the inclusive-frame IoU of the MEGC protocol (SPEC.md section 6);
the authors' code used end - start lengths there (a difference of one frame).

**Expression-segment mode** (an option per type, ``SpotParams.macro_mode`` /
``micro_mode = "expression"``; SPEC's apex mode stays the default). An expression that
is longer than the window is held near its apex, and there a window sees no motion, so
the apex head has little to go on; the expression ("action") head still marks its rise
and its fall. :func:`expression_segments` thresholds the moving average of P_expression,
merges segments separated by short gaps, drops short ones, widens the rest and scores
each by its mean P_expression; NMS and ``top_k`` then apply as above. Its numbers
(``expr_*``) are frames at ``ref_fps`` and scale with fps like (k, j).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from spotformer.data.table import rate_scale
from spotformer.metrics import Interval, iou_matrix
from spotformer.models.spotformer import APEX_INDEX, EXPR_INDEX, OFFSET, ONOFF_SLICE, ONSET

Kind = Literal["macro", "micro"]
Mode = Literal["apex", "expression"]


@dataclass(frozen=True)
class SpotParams:
    """Post-processing numbers (SPEC.md section 5); durations in frames at ``ref_fps``."""

    apex_threshold: float = 0.5
    micro_k: float = 16.0  # average ME duration
    micro_j: float = 5.0  # minimum ME duration
    macro_k: float = 59.0
    macro_j: float = 16.0
    ref_fps: float = 30.0
    nms_iou: float = 0.5
    top_k: int = 5
    macro_mode: Mode = "apex"  # "apex": SPEC section 5; "expression": expression_segments
    micro_mode: Mode = "apex"
    # Expression mode (frames at ref_fps). Defaults chosen on a development set (synthetic
    # seed 1, 3 training seeds), never on the data they are reported on (docs/spotformer.md).
    expr_threshold: float = 0.55  # P_expression (moving average) above this
    expr_smooth: float = 9.0  # moving-average width
    expr_gap: float = 30.0  # merge segments separated by at most this many frames
    expr_min_len: float = 20.0  # drop merged segments shorter than this
    expr_extend: float = 0.0  # widen each kept segment by this on both sides

    def __post_init__(self) -> None:
        for name in ("macro_mode", "micro_mode"):
            if getattr(self, name) not in ("apex", "expression"):
                raise ValueError(
                    f"{name} must be 'apex' or 'expression'; got {getattr(self, name)!r}"
                )
        for name in ("micro_k", "micro_j", "macro_k", "macro_j", "ref_fps"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0; got {v}")
        for kind in ("micro", "macro"):
            k, j = getattr(self, f"{kind}_k"), getattr(self, f"{kind}_j")
            if j > k * (1 + 1e-9):  # rounding: a mean of equal durations may sit an ulp under
                raise ValueError(
                    f"{kind}_j (the shortest duration, {j}) must not exceed {kind}_k (the "
                    f"average, {k})"
                )
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1]; got {self.nms_iou}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"top_k must be an int >= 1; got {self.top_k!r}")
        if not 0.0 <= self.apex_threshold < 1.0:  # P_apex > 1 never happens
            raise ValueError(f"apex_threshold must be in [0, 1); got {self.apex_threshold}")
        if not 0.0 < self.expr_threshold < 1.0:
            raise ValueError(f"expr_threshold must be in (0, 1); got {self.expr_threshold}")
        for name in ("expr_smooth", "expr_gap", "expr_min_len", "expr_extend"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")

    def mode(self, kind: Kind) -> Mode:
        return self.micro_mode if kind == "micro" else self.macro_mode

    def frames(self, value: float, fps: float) -> int:
        """A duration in frames at ``ref_fps`` -> whole frames at ``fps`` (rounded down;
        unscaled within 5 % of ``ref_fps``)."""
        return int(value * rate_scale(fps, self.ref_fps))

    def search_range(self, kind: Kind, fps: float) -> tuple[int, int]:
        """(j/2, k/2) in frames at ``fps``: how far from the apex onsets/offsets are sought."""
        k = self.micro_k if kind == "micro" else self.macro_k
        j = self.micro_j if kind == "micro" else self.macro_j
        s = rate_scale(fps, self.ref_fps)
        lo, hi = int(j * s / 2), int(k * s / 2)
        return max(lo, 0), max(hi, lo)


@dataclass(frozen=True)
class FrameProbabilities:
    """Per-frame probabilities of one video, each ``(N,)``, for one expression type."""

    onset: Tensor
    offset: Tensor
    none: Tensor
    apex: Tensor
    expression: Tensor


def frame_probabilities(logits: Tensor, kind: Kind) -> FrameProbabilities:
    """``(N, 10)`` logits -> probabilities of one type (softmax over onset/offset/none)."""
    onoff = torch.softmax(logits[:, ONOFF_SLICE[kind]].float(), dim=1)
    return FrameProbabilities(
        onset=onoff[:, ONSET],
        offset=onoff[:, OFFSET],
        none=onoff[:, 2],
        apex=torch.sigmoid(logits[:, APEX_INDEX[kind]].float()),
        expression=torch.sigmoid(logits[:, EXPR_INDEX[kind]].float()),
    )


@dataclass(frozen=True)
class Proposals:
    """Candidate intervals of one video and type, each field ``(P,)``; frames inclusive."""

    onset: Tensor
    apex: Tensor
    offset: Tensor
    score: Tensor

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def select(self, idx: Tensor) -> Proposals:
        return Proposals(self.onset[idx], self.apex[idx], self.offset[idx], self.score[idx])


def apex_candidates(p_apex: Tensor, threshold: float = 0.5) -> Tensor:
    """Frames with ``p_apex > threshold`` (``(L,)`` int64, ascending)."""
    return torch.nonzero(p_apex > threshold).flatten()


def candidate_intervals(probs: FrameProbabilities, apex: Tensor, lo: int, hi: int) -> Proposals:
    """Onset/offset search and validity check for every apex candidate, vectorised.

    Args:
        probs: the video's probabilities for one type.
        apex: ``(L,)`` apex frames.
        lo, hi: the onset is sought at apex - d and the offset at apex + d, d in [lo, hi].
    """
    n = probs.apex.shape[0]
    d = torch.arange(lo, hi + 1, device=apex.device)
    on_idx = (apex[:, None] - d[None, :]).clamp(min=0)  # (L, K), nearest to the apex first
    off_idx = (apex[:, None] + d[None, :]).clamp(max=n - 1)
    # argmax returns the first maximum: the one nearest to the apex.
    onset = on_idx.gather(1, probs.onset[on_idx].argmax(1, keepdim=True)).squeeze(1)
    offset = off_idx.gather(1, probs.offset[off_idx].argmax(1, keepdim=True)).squeeze(1)
    valid = (probs.onset[onset] > probs.offset[onset]) & (
        probs.onset[offset] < probs.offset[offset]
    )
    score = probs.onset[onset] * probs.apex[apex] * probs.offset[offset]
    return Proposals(onset[valid], apex[valid], offset[valid], score[valid])


def nms(proposals: Proposals, iou_threshold: float = 0.5, top_k: int = 5) -> Proposals:
    """Greedy NMS: best score first; drop proposals with IoU > ``iou_threshold`` with a kept one.

    Ties in score keep the earlier proposal. Returns at most ``top_k``, best first.
    """
    if len(proposals) == 0 or top_k <= 0:
        return proposals.select(torch.zeros(0, dtype=torch.long, device=proposals.score.device))
    order = torch.argsort(proposals.score, descending=True, stable=True)
    p = proposals.select(order)
    iou = iou_matrix(p.onset, p.offset, p.onset, p.offset)
    alive = torch.ones(len(p), dtype=torch.bool, device=p.score.device)
    keep: list[int] = []
    # At most top_k passes over a vectorised IoU row: cheap for any number of candidates.
    while len(keep) < top_k:
        left = torch.nonzero(alive).flatten()
        if left.numel() == 0:
            break
        i = int(left[0])
        keep.append(i)
        alive &= iou[i] <= iou_threshold
        alive[i] = False
    return p.select(torch.tensor(keep, dtype=torch.long, device=p.score.device))


def moving_average(x: Tensor, width: int) -> Tensor:
    """Centred moving average of ``(N,)`` over ``width`` frames (odd; shrinks at the ends)."""
    if width <= 1 or x.numel() == 0:
        return x
    width |= 1
    return torch.nn.functional.avg_pool1d(
        x[None, None], width, stride=1, padding=width // 2, count_include_pad=False
    )[0, 0]


def expression_segments(
    probs: FrameProbabilities, fps: float = 30.0, params: SpotParams | None = None
) -> Proposals:
    """Expression-segment proposals of one video and type (see the module docstring).

    Frames whose moving-average P_expression exceeds ``expr_threshold`` form runs; runs
    separated by at most ``expr_gap`` frames merge; merged runs shorter than
    ``expr_min_len`` frames are dropped; the rest are widened by ``expr_extend`` frames
    on both sides (clipped to the video). Score: the mean smoothed P_expression over the
    run before widening. Apex: the run's frame of highest P_apex. Vectorised.
    """
    prm = params or SpotParams()
    p = moving_average(probs.expression.float(), prm.frames(prm.expr_smooth, fps))
    n = p.shape[0]
    dev = p.device
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    none = Proposals(empty, empty, empty, torch.zeros(0, device=dev))
    above = p > prm.expr_threshold
    if n == 0 or not bool(above.any()):
        return none
    edge = torch.diff(above.to(torch.int8), prepend=above.new_zeros(1, dtype=torch.int8),
                      append=above.new_zeros(1, dtype=torch.int8))  # fmt: skip
    starts = torch.nonzero(edge == 1).flatten()
    ends = torch.nonzero(edge == -1).flatten() - 1  # inclusive
    gap = starts[1:] - ends[:-1] - 1
    group = torch.cat([empty.new_zeros(1), torch.cumsum(gap > prm.frames(prm.expr_gap, fps), 0)])
    g = int(group[-1]) + 1
    on = torch.full((g,), n, dtype=torch.long, device=dev).scatter_reduce(0, group, starts, "amin")
    off = torch.full((g,), -1, dtype=torch.long, device=dev).scatter_reduce(0, group, ends, "amax")
    keep = off - on + 1 >= max(prm.frames(prm.expr_min_len, fps), 1)
    on, off = on[keep], off[keep]
    if on.numel() == 0:
        return none
    csum = torch.cat([p.new_zeros(1, dtype=torch.float64), torch.cumsum(p.double(), 0)])
    score = ((csum[off + 1] - csum[on]) / (off - on + 1)).float()  # float64 sums: long videos
    # Apex: the first frame of the highest P_apex in each run, in O(N) (no run x frame
    # matrix: a noisy curve can give thousands of runs on a long video).
    frame = torch.arange(n, device=dev)
    run = torch.searchsorted(on, frame, right=True) - 1  # the last run starting <= frame
    inside = (run >= 0) & (frame <= off[run.clamp(min=0)])
    rid, fr = run[inside], frame[inside]
    pa = probs.apex.float()[fr]
    best = torch.full_like(score, -1.0).scatter_reduce(0, rid, pa, "amax")
    hit = pa == best[rid]
    apex = torch.full_like(on, n).scatter_reduce(0, rid[hit], fr[hit], "amin")
    ext = prm.frames(prm.expr_extend, fps)
    return Proposals((on - ext).clamp(min=0), apex, (off + ext).clamp(max=n - 1), score)


def spot_type(
    probs: FrameProbabilities, kind: Kind, fps: float = 30.0, params: SpotParams | None = None
) -> Proposals:
    """All stages for one video and one type: SPEC 5's apex search, or expression segments
    when ``params.mode(kind) == "expression"``; then NMS."""
    prm = params or SpotParams()
    if prm.mode(kind) == "expression":
        return nms(expression_segments(probs, fps, prm), prm.nms_iou, prm.top_k)
    lo, hi = prm.search_range(kind, fps)
    apex = apex_candidates(probs.apex, prm.apex_threshold)
    return nms(candidate_intervals(probs, apex, lo, hi), prm.nms_iou, prm.top_k)


def spot_video(
    logits: Tensor, video: str, fps: float = 30.0, params: SpotParams | None = None
) -> list[Interval]:
    """``(N, 10)`` logits of one video -> its MaE and ME intervals, best first per type."""
    if logits.ndim != 2 or logits.shape[1] != 10:
        raise ValueError(
            f"{video}: logits must be (N, 10) (one video's frames x SpotFormer's outputs); "
            f"got {tuple(logits.shape)}"
        )
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"{video}: fps must be a finite number > 0; got {fps}")
    out: list[Interval] = []
    for kind in ("macro", "micro"):
        p = spot_type(frame_probabilities(logits, kind), kind, fps, params)
        for on, ap, off, s in zip(
            p.onset.tolist(), p.apex.tolist(), p.offset.tolist(), p.score.tolist(), strict=True
        ):
            out.append(Interval(video, int(on), int(off), kind, float(s), int(ap)))
    return out
