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

(k, j) = (16, 5) frames for ME and (59, 16) for MaE at 30 fps; at another frame rate
both scale by fps / 30. k/2 and j/2 are rounded down, as in the authors' code
(at 30 fps: ME offsets 2..8 frames from the apex, MaE 8..29). Windows are clipped to
the video. Where several frames share the maximum, the one nearest the apex wins.
The IoU in NMS is the inclusive-frame IoU of the MEGC protocol (SPEC.md section 6);
the authors' code used end - start lengths there (a difference of one frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from spotformer.metrics import Interval, iou_matrix
from spotformer.models.spotformer import APEX_INDEX, EXPR_INDEX, OFFSET, ONOFF_SLICE, ONSET

Kind = Literal["macro", "micro"]


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

    def search_range(self, kind: Kind, fps: float) -> tuple[int, int]:
        """(j/2, k/2) in frames at ``fps``: how far from the apex onsets/offsets are sought."""
        k = self.micro_k if kind == "micro" else self.macro_k
        j = self.micro_j if kind == "micro" else self.macro_j
        s = fps / self.ref_fps
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


def spot_type(
    probs: FrameProbabilities, kind: Kind, fps: float = 30.0, params: SpotParams | None = None
) -> Proposals:
    """All four stages for one video and one type."""
    prm = params or SpotParams()
    lo, hi = prm.search_range(kind, fps)
    apex = apex_candidates(probs.apex, prm.apex_threshold)
    return nms(candidate_intervals(probs, apex, lo, hi), prm.nms_iou, prm.top_k)


def spot_video(
    logits: Tensor, video: str, fps: float = 30.0, params: SpotParams | None = None
) -> list[Interval]:
    """``(N, 10)`` logits of one video -> its MaE and ME intervals, best first per type."""
    out: list[Interval] = []
    for kind in ("macro", "micro"):
        p = spot_type(frame_probabilities(logits, kind), kind, fps, params)
        for on, ap, off, s in zip(
            p.onset.tolist(), p.apex.tolist(), p.offset.tolist(), p.score.tolist(), strict=True
        ):
            out.append(Interval(video, int(on), int(off), kind, float(s), int(ap)))
    return out
