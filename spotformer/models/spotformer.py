"""SpotFormer (paper section 3.2, Fig. 4) and the variants of paper 4.4.1 (Fig. 6).

Input: one SW-MRO clip feature per frame, ``(B, w=17, R=10, 2)``. Output: the 10 logits
of SPEC.md section 3 and the D-dim contrastive feature (the vector the head reads).
The output type is the same in training and evaluation mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from spotformer.models.blocks import (
    FACE_PARTS,
    FLGP,
    Groups,
    SpatialAttention,
    TemporalAttention,
    TemporalDownsample,
    TemporalFuse,
    check_shape,
)

Variant = Literal["simul-st", "seq-st", "paral-st", "simul-ts"]
VARIANTS: tuple[str, ...] = get_args(Variant)
ExprKind = Literal["macro", "micro"]

# Head layout (SPEC.md section 3). "micro" is ME, "macro" is MaE.
ONOFF_SLICE: dict[str, slice] = {"micro": slice(0, 3), "macro": slice(3, 6)}
APEX_INDEX: dict[str, int] = {"micro": 6, "macro": 7}
EXPR_INDEX: dict[str, int] = {"micro": 8, "macro": 9}
ONSET, OFFSET, NONE = 0, 1, 2  # classes of each onset/offset/none softmax
NUM_OUTPUTS = 10


def paddings_for(window: int, stages: int | None = None) -> tuple[int, ...] | None:
    """The first temporal paddings (each 0 or 1; ``stages`` of them, or the fewest from 2
    on) that take ``window`` frames to one, e.g. 17 -> (0, 0, 0) (the model's default,
    (0, 0, 1, 1), is another), 5 -> (0, 1); None when there are none."""
    import itertools

    for n in [stages] if stages else range(2, 9):
        for pads in itertools.product((0, 1), repeat=n):
            t = window
            for p in pads:
                t = TemporalDownsample.out_len(t, p)
            if t == 1:
                return pads
    return None


@dataclass(frozen=True)
class SpotFormerOutput:
    """What SpotFormer returns, in training and in evaluation mode alike.

    Attributes:
        logits: ``(B, 10)``: 0-2 ME onset/offset/none, 3-5 MaE onset/offset/none,
            6/7 ME/MaE apex, 8/9 ME/MaE expression (SPEC.md section 3). Raw scores:
            apply softmax to each onset/offset/none triple and sigmoid to the rest.
        feature: ``(B, D)``: the vector before the head, used by the contrastive loss.
    """

    logits: Tensor
    feature: Tensor

    def onoff(self, kind: ExprKind) -> Tensor:
        """``(B, 3)`` onset/offset/none logits of one expression type."""
        return self.logits[:, ONOFF_SLICE[kind]]

    def apex(self, kind: ExprKind) -> Tensor:
        """``(B,)`` apex logit of one expression type."""
        return self.logits[:, APEX_INDEX[kind]]

    def expression(self, kind: ExprKind) -> Tensor:
        """``(B,)`` expression ("action") logit of one expression type."""
        return self.logits[:, EXPR_INDEX[kind]]


@dataclass(frozen=True)
class SpotFormerConfig:
    """Hyper-parameters; defaults from SPEC.md section 3 (the authors' code)."""

    variant: Variant = "simul-st"
    dim: int = 256
    heads: int = 4
    head_dim: int = 64
    mlp_dim: int = 256
    dropout: float = 0.1
    window: int = 17
    rois: int = 10
    parts: Groups = FACE_PARTS
    paddings: tuple[int, ...] = (0, 0, 1, 1)
    in_chans: int = 2

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.dim <= 0 or self.heads <= 0 or self.head_dim <= 0 or self.mlp_dim <= 0:
            raise ValueError("dim, heads, head_dim and mlp_dim must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        covered = sorted(i for a, b in self.parts for i in range(a, b))
        if covered != list(range(self.rois)):
            raise ValueError(
                f"parts {self.parts} must split the {self.rois} ROI nodes into "
                "contiguous, non-overlapping groups"
            )
        if len(self.paddings) < 2:
            raise ValueError("need at least two temporal stages (two FLGP scales)")
        t = self.window
        for p in self.paddings:
            t = TemporalDownsample.out_len(t, p)
            if t < 1:
                break
        if t != 1:
            fits = paddings_for(self.window, len(self.paddings)) or paddings_for(self.window)
            hint = f"for {self.window}: paddings={fits}" if fits else "17 -> (0, 0, 1, 1)"
            raise ValueError(
                f"temporal paddings {self.paddings} take a window of {self.window} frames to "
                f"{t}, not 1; choose paddings that end at one frame ({hint})"
            )

    def temporal_lengths(self) -> list[int]:
        """Window length before each temporal stage and after the last, e.g. [17, 8, 3, 2, 1]."""
        out = [self.window]
        for p in self.paddings:
            out.append(TemporalDownsample.out_len(out[-1], p))
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parts"] = [list(g) for g in self.parts]
        d["paddings"] = list(self.paddings)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpotFormerConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SpotFormer config keys: {sorted(unknown)}")
        d = dict(d)
        if "parts" in d:
            d["parts"] = tuple(tuple(g) for g in d["parts"])
        if "paddings" in d:
            d["paddings"] = tuple(d["paddings"])
        return cls(**d)


class SpotFormer(nn.Module):
    """Multi-scale spatio-temporal transformer for facial expression spotting.

    Args:
        config: hyper-parameters; keyword overrides are applied on top
            (``SpotFormer(variant="seq-st", dim=32)``).

    Shapes:
        input ``(B, w, R, 2)``; :meth:`forward_features` -> ``(B, D)``;
        :meth:`forward_head` -> ``(B, 10)``.

    Variants (paper 4.4.1): ``simul-st`` (default; spatial then temporal attention in
    each block, then FLGP and temporal downsampling), ``simul-ts`` (temporal first),
    ``seq-st`` (both spatial layers and FLGPs first, then all temporal stages) and
    ``paral-st`` (a temporal branch per graph scale, fused into the next coarser one).
    The first three have exactly the same parameters; ``paral-st`` has more.

    Examples:
        >>> m = SpotFormer(dim=32).eval()
        >>> out = m(torch.randn(4, 17, 10, 2))
        >>> tuple(out.logits.shape), tuple(out.feature.shape)
        ((4, 10), (4, 32))
    """

    def __init__(self, config: SpotFormerConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = config or SpotFormerConfig()
        if overrides:
            cfg = SpotFormerConfig.from_dict({**cfg.to_dict(), **overrides})
        self.config = cfg
        d = cfg.dim
        n_stages = len(cfg.paddings)
        layer = {"heads": cfg.heads, "head_dim": cfg.head_dim, "mlp_dim": cfg.mlp_dim}
        layer["dropout"] = cfg.dropout  # type: ignore[assignment]

        # 3.2.1-3.2.3: node embedding + BN, temporal positions, facial-part tokens.
        self.embed = nn.Linear(cfg.in_chans, d)
        self.embed_norm = nn.BatchNorm1d(d)
        self.pos_embed = nn.Parameter(torch.randn(cfg.window, d))
        self.part_tokens = nn.Parameter(torch.randn(len(cfg.parts), d))
        part_of_node = [i for i, (a, b) in enumerate(cfg.parts) for _ in range(a, b)]
        self.register_buffer("part_index", torch.tensor(part_of_node), persistent=False)
        self.embed_drop = nn.Dropout(cfg.dropout)

        # Two spatial scales: R nodes -> len(parts) nodes -> 1 node.
        self.spatial = nn.ModuleList([SpatialAttention(d, **layer) for _ in range(2)])
        self.flgp = nn.ModuleList([FLGP(d, cfg.parts), FLGP(d, ((0, len(cfg.parts)),))])
        branches = 3 if cfg.variant == "paral-st" else 1
        self.temporal = nn.ModuleList(
            nn.ModuleList([TemporalAttention(d, **layer) for _ in range(n_stages)])
            for _ in range(branches)
        )
        # Paral-ST: the finer branches end in the last fusion, so they skip the last
        # downsampling; the coarsest branch (the last) goes down to one frame.
        self.tdown = nn.ModuleList(
            nn.ModuleList(
                [
                    TemporalDownsample(d, p)
                    for p in cfg.paddings[: None if g == branches - 1 else -1]
                ]
            )
            for g in range(branches)
        )
        if cfg.variant == "paral-st":
            self.fuse = nn.ModuleList(
                nn.ModuleList([TemporalFuse(d, g) for _ in range(n_stages)])
                for g in (cfg.parts, ((0, len(cfg.parts)),))
            )
        self.head = nn.Linear(d, NUM_OUTPUTS)

    # -- stages -------------------------------------------------------------------------

    def _embed(self, x: Tensor) -> Tensor:
        z = self.embed(x)  # (B, T, V, D)
        z = self.embed_norm(z.reshape(-1, z.shape[-1])).reshape(z.shape)
        z = z + self.pos_embed[None, :, None, :] + self.part_tokens[self.part_index][None, None]
        return self.embed_drop(z)

    def _simul(self, z: Tensor, spatial_first: bool) -> Tensor:
        temporal, tdown = self.temporal[-1], self.tdown[-1]
        for s in range(len(temporal)):
            if s < 2:  # spatio-temporal blocks while there is more than one node
                if spatial_first:
                    z = temporal[s](self.spatial[s](z))
                else:
                    z = self.spatial[s](temporal[s](z))
                z = self.flgp[s](z)
            else:  # one node left: temporal attention and downsampling only
                z = temporal[s](z)
            z = tdown[s](z)
        return z

    def _seq(self, z: Tensor) -> Tensor:
        for s in range(2):
            z = self.flgp[s](self.spatial[s](z))
        for attn, down in zip(self.temporal[-1], self.tdown[-1], strict=True):
            z = down(attn(z))
        return z

    def _paral(self, z: Tensor) -> Tensor:
        y1 = self.spatial[0](z)
        y2 = self.spatial[1](self.flgp[0](y1))
        ys = [y1, y2, self.flgp[1](y2)]
        for s in range(len(self.temporal[0])):
            zs: list[Tensor] = []
            for g in range(3):
                inp = ys[g] if g == 0 else ys[g] + self.fuse[g - 1][s](zs[-1])
                zs.append(self.temporal[g][s](inp))
            if s == len(self.temporal[0]) - 1:
                return self.tdown[2][s](zs[2])
            ys = [self.tdown[g][s](zs[g]) for g in range(3)]
        raise AssertionError("unreachable: the loop returns at its last stage")

    # -- public API ---------------------------------------------------------------------

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, w, R, C)`` SW-MRO clips -> ``(B, D)`` per-frame features."""
        cfg = self.config
        check_shape(x, "B T V C", T=cfg.window, V=cfg.rois, C=cfg.in_chans)
        dtype = next(self.parameters()).dtype
        if x.dtype != dtype:  # autocast casts inside; the input must match the weights
            raise ValueError(
                f"SpotFormer: x is {x.dtype}, the model's weights {dtype}; x.to({dtype})"
            )
        if x.shape[0] == 0:
            return x.new_zeros(0, cfg.dim)
        z = self._embed(x)
        if cfg.variant == "simul-st":
            z = self._simul(z, spatial_first=True)
        elif cfg.variant == "simul-ts":
            z = self._simul(z, spatial_first=False)
        elif cfg.variant == "seq-st":
            z = self._seq(z)
        else:
            z = self._paral(z)
        assert z.shape[1:3] == (1, 1), z.shape  # internal invariant: T = V = 1
        return z.reshape(z.shape[0], -1)

    def forward_head(self, feature: Tensor) -> Tensor:
        """``(B, D)`` -> ``(B, 10)`` logits (paper 3.2.7)."""
        return self.head(feature)

    def forward(self, x: Tensor) -> SpotFormerOutput:
        feature = self.forward_features(x)
        return SpotFormerOutput(logits=self.forward_head(feature), feature=feature)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
