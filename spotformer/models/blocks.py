"""Building blocks of SpotFormer (paper section 3.2, SPEC.md section 3).

Tensors inside the model are laid out ``(B, T, V, D)``: batch, time (the w frames of a
sliding window, then fewer after each temporal downsampling), graph nodes (10 ROIs,
then 3 facial parts, then 1) and channels.

Each block is pre-norm with **BatchNorm** over the channel axis, as paper eq. (2) and
the authors' code have it: ``z = MHSA(BN(z)) + z``, ``z = MLP(BN(z)) + z``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Groups = tuple[tuple[int, int], ...]

#: SPEC.md section 2.5 / 3: ROI nodes [0:3], [3:6], [6:10] are one eyebrow, the other
#: eyebrow and the mouth.
FACE_PARTS: Groups = ((0, 3), (3, 6), (6, 10))


def check_shape(x: Tensor, pattern: str, **sizes: int) -> None:
    """Raise ``ValueError`` unless ``x`` has ``len(pattern.split())`` dims and the named sizes.

    >>> check_shape(torch.zeros(2, 17, 10, 2), "B T V C", T=17, V=10, C=2)
    """
    names = pattern.split()
    if x.dim() != len(names) or any(x.shape[names.index(k)] != v for k, v in sizes.items()):
        want = " ".join(str(sizes.get(n, n)) for n in names)
        raise ValueError(f"expected a tensor of shape ({want}), got {tuple(x.shape)}")


class TokenNorm(nn.Module):
    """BatchNorm over the last (channel) axis of a tensor of any rank.

    The paper and the authors' code normalise tokens with BN rather than LayerNorm;
    every token of the batch (all frames and nodes) contributes to the statistics.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of ``(N, L, D)``."""

    def __init__(self, dim: int, heads: int = 4, head_dim: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, head_dim, dropout
        inner = heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        n, length, _ = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # SDPA: softmax(q k^T / sqrt(d)) v with dropout on the attention weights; its
        # fused kernels keep the softmax in float32 under autocast.
        out = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], dropout_p=self.dropout if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(n, length, self.heads * self.head_dim)
        return self.proj_drop(self.proj(out))


class FeedForward(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TransformerLayer(nn.Module):
    """Paper eq. (2) on a ``(N, L, D)`` sequence: pre-BN MHSA and MLP, each residual."""

    def __init__(
        self, dim: int, heads: int = 4, head_dim: int = 64, mlp_dim: int = 256, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.norm1 = TokenNorm(dim)
        self.attn = Attention(dim, heads, head_dim, dropout)
        self.norm2 = TokenNorm(dim)
        self.mlp = FeedForward(dim, mlp_dim, dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SpatialAttention(TransformerLayer):
    """Spatial graph attention: attends over the V nodes of each frame. ``(B, T, V, D)``."""

    def forward(self, x: Tensor) -> Tensor:
        b, t, v, d = x.shape
        return super().forward(x.reshape(b * t, v, d)).reshape(b, t, v, d)


class TemporalAttention(TransformerLayer):
    """Temporal node attention: attends over the T frames of each node. ``(B, T, V, D)``."""

    def forward(self, x: Tensor) -> Tensor:
        b, t, v, d = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * v, t, d))
        return y.reshape(b, v, t, d).transpose(1, 2)


def flgp(x: Tensor, groups: Sequence[tuple[int, int]]) -> Tensor:
    """Facial local graph pooling (paper 3.2.5): max over each node group.

    Args:
        x: ``(B, T, V, D)``.
        groups: half-open node ranges, e.g. ``((0, 3), (3, 6), (6, 10))``.

    Returns:
        ``(B, T, len(groups), D)``.

    >>> flgp(torch.arange(4.0).reshape(1, 1, 4, 1), ((0, 1), (1, 4))).flatten().tolist()
    [0.0, 3.0]
    """
    return torch.stack([x[:, :, a:b].amax(dim=2) for a, b in groups], dim=2)


class FLGP(nn.Module):
    """BatchNorm then :func:`flgp` (the authors' code normalises before pooling)."""

    def __init__(self, dim: int, groups: Groups) -> None:
        super().__init__()
        self.groups = groups
        self.norm = TokenNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return flgp(self.norm(x), self.groups)


class TemporalDownsample(nn.Module):
    """BatchNorm then Conv1d(k=3, stride 2) over time, per node. ``(B, T, V, D) -> (B, T', V, D)``.

    ``T' = floor((T + 2 padding - 3) / 2) + 1``; with paddings (0, 0, 1, 1) a 17-frame
    window goes 17 -> 8 -> 3 -> 2 -> 1 (SPEC.md section 3).
    """

    def __init__(self, dim: int, padding: int) -> None:
        super().__init__()
        self.norm = TokenNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=padding, bias=False)

    @staticmethod
    def out_len(t: int, padding: int) -> int:
        return (t + 2 * padding - 3) // 2 + 1

    def forward(self, x: Tensor) -> Tensor:
        b, t, v, d = x.shape
        y = self.norm(x).permute(0, 2, 3, 1).reshape(b * v, d, t)
        y = self.conv(y)
        return y.reshape(b, v, d, -1).permute(0, 3, 1, 2)


class TemporalFuse(nn.Module):
    """Paral-ST fusion (paper 4.4.1): pool a lower graph scale to the next one's nodes,
    then a temporal Conv1d (k=3, same length) and BN, to be added to that scale."""

    def __init__(self, dim: int, groups: Groups) -> None:
        super().__init__()
        self.groups = groups
        self.conv = nn.Conv1d(dim, dim, kernel_size=3, padding=1, bias=False)
        self.norm = TokenNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        y = flgp(x, self.groups)
        b, t, v, d = y.shape
        y = self.conv(y.permute(0, 2, 3, 1).reshape(b * v, d, t))
        return self.norm(y.reshape(b, v, d, t).permute(0, 3, 1, 2))
