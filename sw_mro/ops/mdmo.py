"""Main directional mean optical flow (MDMO), batched over any number of regions.

SPEC.md section 2.6 (precedent: ABPN/AUW-GCN feature code): bin each flow vector's
angle into ``bins`` equal sectors, choose the most populated sector, keep its top
``top`` fraction by magnitude and return the mean vector: the direction of the kept
vectors' sum with length their mean magnitude.

Decisions the precedent leaves implicit (also in docs/sw_mro.md):

- the angle is ``atan2(dy, dx)`` in ``[0, 2 pi)`` and sector ``k`` is
  ``[k, k + 1) * 2 pi / bins`` (a zero vector has angle 0, sector 0);
- ties between equally populated sectors go to the lowest sector;
- "top p" keeps ``ceil(p * n)`` of the sector's ``n`` vectors; ties in magnitude keep
  the vector that comes first in the region (stable sort);
- a kept sum of exactly zero gives the zero vector.
"""

from __future__ import annotations

import math

import torch

__all__ = ["MDMO", "mdmo"]


_FIXED = float(2**24)  # fixed-point scale of ``exact_sums``


def mdmo(
    vectors: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    bins: int = 4,
    top: float = 0.6,
    exact_sums: bool = False,
) -> torch.Tensor:
    """MDMO of each region of flow vectors.

    Args:
        vectors: ``(..., K, 2)`` flow vectors ``(dx, dy)`` of regions of ``K`` pixels.
        mask: optional ``(..., K)`` bool, which of the ``K`` vectors belong to the region
            (for regions of different sizes padded to one ``K``). A region with no
            vector gives 0.
        bins: number of equal angle sectors.
        top: fraction of the main sector's vectors kept, by magnitude, in ``(0, 1]``.
        exact_sums: sum the kept vectors and magnitudes in 64-bit fixed point (steps of
            2^-24 px), which is exact and so independent of the summation order: the
            result does not depend on ``K``, i.e. on how much masked padding a region
            has. Float sums round differently for different ``K``. The sums must stay
            under 2^39 px (``K`` times the largest kept vector); a region with a
            non-finite vector gives NaN.

    Returns:
        ``(..., 2)`` float32 main directional mean vectors.

    Examples:
        >>> v = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [0.0, -2.0]]])
        >>> mdmo(v, bins=4, top=0.6)  # sector 0 holds 2 vectors: keep ceil(1.2) = 2
        tensor([[2., 0.]])
    """
    if vectors.shape[-1] != 2 or vectors.dim() < 2:
        raise ValueError(f"vectors must be (..., K, 2); got shape {tuple(vectors.shape)}")
    if not 0 < top <= 1:
        raise ValueError(f"top must be in (0, 1]; got {top}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1; got {bins}")
    v = vectors.float()
    lead, k = v.shape[:-2], v.shape[-2]
    v = v.reshape(-1, k, 2)
    if mask is None:
        m = torch.ones(v.shape[:2], dtype=torch.bool, device=v.device)
    else:
        if mask.shape != vectors.shape[:-1]:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} != vectors shape[:-1] {tuple(vectors.shape[:-1])}"
            )
        m = mask.reshape(-1, k).to(device=v.device, dtype=torch.bool)
    dx, dy = v[..., 0], v[..., 1]
    ang = torch.atan2(dy, dx)
    ang = torch.where(ang < 0, ang + 2 * math.pi, ang)
    sector = (ang * (bins / (2 * math.pi))).floor().long().clamp_(0, bins - 1)
    counts = torch.zeros(v.shape[0], bins, device=v.device, dtype=torch.long)
    counts.scatter_add_(1, sector, m.long())
    main = counts.argmax(dim=1, keepdim=True)  # first maximum = lowest sector on ties
    sel = m & (sector == main)
    n = sel.sum(dim=1)
    keep = torch.ceil(n.double() * top).long().clamp_(min=1)
    mag = torch.sqrt(dx * dx + dy * dy)
    key = torch.where(sel, mag, torch.full_like(mag, -1.0))  # unselected sort last
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(k, device=v.device).expand_as(order).contiguous())
    kept = sel & (rank < keep[:, None])
    w = kept.float()
    n_kept = w.sum(dim=1)
    if exact_sums:
        vm = torch.cat([v, mag[..., None]], dim=-1).double()  # (n, K, 3)
        finite = torch.isfinite(vm).all(dim=-1) | ~m  # (n, K): casting NaN is undefined
        q = torch.round(torch.where(kept[..., None], vm, 0.0) * _FIXED)
        q = torch.where(torch.isfinite(q), q, 0.0).long()
        sums = (q * kept[..., None]).sum(dim=1).double() / _FIXED  # (n, 3)
        sums = torch.where(finite.all(dim=1)[:, None], sums, torch.nan)
        total, mag_sum = sums[:, :2].float(), sums[:, 2].float()
    else:
        total = (v * w[..., None]).sum(dim=1)
        mag_sum = (mag * w).sum(dim=1)
    mean_mag = mag_sum / n_kept.clamp(min=1)
    norm = torch.linalg.vector_norm(total, dim=1)
    scale = torch.where(
        norm > 0, mean_mag / norm.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(norm)
    )
    out = total * scale[:, None]
    return out.reshape(*lead, 2)


class MDMO(torch.nn.Module):
    """Module wrapper that stores ``bins`` and ``top``; see :func:`mdmo`."""

    def __init__(self, bins: int = 4, top: float = 0.6) -> None:
        super().__init__()
        self.bins, self.top = bins, top

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return mdmo(vectors, mask, bins=self.bins, top=self.top)
