"""Per-frame training targets from annotated expressions (SPEC.md section 4).

For each expression type ("micro" = ME, "macro" = MaE) and every frame of a video:

- ``onoff``: class 0 (onset) on frames within +-r of an onset, class 1 (offset) within
  +-r of an offset, class 2 (none) elsewhere; r = 1 for ME and 3 for MaE. Where an
  onset range and an offset range overlap (very short expressions, or one expression
  ending where the next starts) the offset wins, as in the authors' code.
- ``apex``: 1 at the apex and exp(-j^2 / 32) at distance j <= r (a normal pdf with
  variance 16, normalised to 1 at 0: 0.969, 0.882, 0.755 for j = 1, 2, 3); 0 elsewhere.
  Where two expressions' ranges overlap the larger value is kept.
- ``expr``: 1 on [onset, offset] (inclusive), 0 elsewhere.

and ``contrast``, the supervised-contrastive class: 0 neutral, 1 MaE, 2 ME (a frame
inside both an MaE and an ME is MaE, as in the authors' code).

**Frame rates.** SPEC's ranges and the Gaussian are in frames at 30 fps. Within 5 % of
30 fps (29.97, and SAMM-LV's 200/7 ~ 28.6 fps after subsampling, as in the authors'
code) they apply as they are, so these give exactly SPEC's numbers. For another frame
rate the ranges become ``r * fps / 30`` frames, rounded halves up, and the Gaussian is evaluated at
``j * 30 / fps`` (its width stays the same in seconds); see
:func:`spotformer.data.table.rate_scale`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from spotformer.data.table import KINDS, Expression, Kind, rate_scale
from spotformer.errors import SpotFormerError

ONSET, OFFSET, NONE = 0, 1, 2  # the same class order as the model head
NEUTRAL, MACRO, MICRO = 0, 1, 2  # contrastive classes


class LabelError(SpotFormerError):
    """An annotation does not fit the video it labels."""


def lies_outside(e: Expression, n: int) -> bool:
    """True when expression ``e`` has no frame in a video of ``n`` frames (one that only
    runs past the end is clipped instead)."""
    return e.onset >= n or e.offset < 0


@dataclass(frozen=True)
class LabelConfig:
    """Label ranges, in frames at ``ref_fps`` (SPEC.md section 4)."""

    micro_range: int = 1
    macro_range: int = 3
    apex_variance: float = 16.0  # exp(-j^2 / (2 * 16)) = exp(-j^2 / 32)
    ref_fps: float = 30.0

    def range_frames(self, kind: Kind, fps: float) -> int:
        r = self.micro_range if kind == "micro" else self.macro_range
        # Halves up, as the annotation loaders round (found in review: round() took 25
        # fps's MaE range of 2.5 frames to 2, and 15 fps's ME range of 0.5 to 0).
        return math.floor(r * rate_scale(fps, self.ref_fps) + 0.5)

    def apex_weight(self, j: int, fps: float) -> float:
        """Apex target at ``j`` frames from the apex, at ``fps``."""
        jr = j / rate_scale(fps, self.ref_fps)
        return math.exp(-(jr**2) / (2.0 * self.apex_variance))


@dataclass
class FrameTargets:
    """Targets for N frames. Float tensors are float32, class tensors int64, all ``(N,)``."""

    micro_onoff: Tensor
    macro_onoff: Tensor
    micro_apex: Tensor
    macro_apex: Tensor
    micro_expr: Tensor
    macro_expr: Tensor
    contrast: Tensor

    def __len__(self) -> int:
        return int(self.contrast.shape[0])

    def onoff(self, kind: Kind) -> Tensor:
        return getattr(self, f"{kind}_onoff")

    def apex(self, kind: Kind) -> Tensor:
        return getattr(self, f"{kind}_apex")

    def expr(self, kind: Kind) -> Tensor:
        return getattr(self, f"{kind}_expr")

    def _map(self, fn) -> FrameTargets:  # noqa: ANN001 - a tensor -> tensor callable
        return FrameTargets(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str) -> FrameTargets:
        return self._map(lambda t: t.to(device))

    def index(self, idx: Tensor | slice) -> FrameTargets:
        """The targets of a subset of frames (any index that tensors accept)."""
        return self._map(lambda t: t[idx])

    @staticmethod
    def cat(parts: Sequence[FrameTargets]) -> FrameTargets:
        names = [f.name for f in fields(FrameTargets)]
        return FrameTargets(**{n: torch.cat([getattr(p, n) for p in parts]) for n in names})


def frame_targets(
    expressions: Iterable[Expression],
    n_frames: int,
    fps: float = 30.0,
    config: LabelConfig | None = None,
    video: str = "",
) -> FrameTargets:
    """Build the per-frame targets of one video.

    Args:
        expressions: the video's expressions (0-based frame numbers in its decoded frames).
        n_frames: number of frames N of the video's feature tensor.
        fps: the video's frame rate after any subsampling.
        config: label ranges; SPEC.md's by default.
        video: the video's name, for error messages.

    Raises:
        LabelError: an expression starts outside the video.

    Examples:
        >>> e = Expression("s1", "v", onset=4, apex=6, offset=8, kind="micro")
        >>> t = frame_targets([e], 12)
        >>> t.micro_onoff.tolist()
        [2, 2, 2, 0, 0, 0, 2, 1, 1, 1, 2, 2]
        >>> [round(v, 3) for v in t.micro_apex.tolist()[4:9]]
        [0.0, 0.969, 1.0, 0.969, 0.0]
        >>> t.contrast.tolist()
        [0, 0, 0, 0, 2, 2, 2, 2, 2, 0, 0, 0]
    """
    cfg = config or LabelConfig()
    if n_frames <= 0:
        raise LabelError(f"video {video!r}: need at least one frame, got {n_frames}")
    if not (math.isfinite(fps) and fps > 0):
        raise LabelError(f"video {video!r}: fps must be a finite number > 0, got {fps}")
    n = n_frames
    onoff = {k: torch.full((n,), NONE, dtype=torch.int64) for k in KINDS}
    apex = {k: torch.zeros(n) for k in KINDS}
    expr = {k: torch.zeros(n) for k in KINDS}
    contrast = torch.zeros(n, dtype=torch.int64)
    by_kind: dict[str, list[Expression]] = {k: [] for k in KINDS}
    for e in expressions:
        if lies_outside(e, n):
            raise LabelError(
                f"video {video or e.video!r}: expression {e.onset}-{e.offset} ({e.kind}"
                f"{', ' + e.where if e.where else ''}) lies outside its {n} frames; check the "
                "annotation's frame numbering (0-based, after any subsampling)"
            )
        by_kind[e.kind].append(e)

    for kind in KINDS:
        r = cfg.range_frames(kind, fps)
        gauss = torch.tensor([cfg.apex_weight(j, fps) for j in range(-r, r + 1)])
        # Onsets first, then offsets, so that offsets win where the ranges overlap.
        for cls, attr in ((ONSET, "onset"), (OFFSET, "offset")):
            for e in by_kind[kind]:
                c = getattr(e, attr)
                onoff[kind][max(c - r, 0) : min(c + r + 1, n)] = cls
        for e in by_kind[kind]:
            lo, hi = max(e.apex - r, 0), min(e.apex + r + 1, n)
            if lo < hi:
                g = gauss[lo - (e.apex - r) : hi - (e.apex - r)]
                apex[kind][lo:hi] = torch.maximum(apex[kind][lo:hi], g)
            expr[kind][max(e.onset, 0) : min(e.offset + 1, n)] = 1.0
    contrast[expr["micro"] > 0] = MICRO
    contrast[expr["macro"] > 0] = MACRO  # MaE over ME where both are present
    return FrameTargets(
        micro_onoff=onoff["micro"],
        macro_onoff=onoff["macro"],
        micro_apex=apex["micro"],
        macro_apex=apex["macro"],
        micro_expr=expr["micro"],
        macro_expr=expr["macro"],
        contrast=contrast,
    )
