"""ROI patch pooling: gather square patches of a dense field around points, batched.

A patch of side ``size`` is centred on its point rounded to the nearest pixel
(``torch.round``: halves to even) and clamped to lie inside the image, so every ROI
always has ``size * size`` vectors (SPEC.md 2.5: 21 x 21 px at 256 px face size).
"""

from __future__ import annotations

import torch

__all__ = ["box_mask", "gather_patches", "patch_origins"]


def patch_origins(centers: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """Top-left ``(x, y)`` (int64) of ``size`` patches centred on ``(..., 2)`` points.

    Examples:
        >>> patch_origins(torch.tensor([[10.4, 0.0], [99.0, 50.6]]), 5, 64, 100)
        tensor([[ 8,  0],
                [95, 49]])
    """
    if size > height or size > width:
        raise ValueError(f"patch size {size} exceeds the image ({height} x {width})")
    c = torch.round(centers).long() - size // 2
    lo = torch.zeros(2, dtype=torch.long, device=c.device)
    hi = torch.tensor([width - size, height - size], dtype=torch.long, device=c.device)
    return torch.maximum(torch.minimum(c, hi), lo)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def gather_patches(
    field: torch.Tensor, origins: torch.Tensor, size: int | tuple[int, int]
) -> torch.Tensor:
    """Patches of a ``(N, C, H, W)`` field at ``(N, R, 2)`` origins -> ``(N, R, ph*pw, C)``.

    ``size`` is ``ph = pw`` or ``(ph, pw)``. Row-major within a patch (``y`` then ``x``),
    so index ``k`` is pixel ``(origin_y + k // pw, origin_x + k % pw)``. Origins must
    keep the patch inside the field.
    """
    if field.dim() != 4 or origins.dim() != 3 or origins.shape[0] != field.shape[0]:
        raise ValueError(
            f"gather_patches needs field (N, C, H, W) and origins (N, R, 2); got "
            f"{tuple(field.shape)} and {tuple(origins.shape)}"
        )
    n, c, h, w = field.shape
    r = origins.shape[1]
    ph, pw = _hw(size)
    o = origins.to(field.device)
    rows = o[..., 1, None, None] + torch.arange(ph, device=field.device)[:, None]  # (N,R,ph,1)
    cols = o[..., 0, None, None] + torch.arange(pw, device=field.device)[None, :]  # (N,R,1,pw)
    flat = (rows * w + cols).reshape(n, 1, r * ph * pw).expand(n, c, r * ph * pw)
    vals = torch.gather(field.reshape(n, c, h * w), 2, flat)  # (N, C, R*ph*pw)
    return vals.view(n, c, r, ph * pw).permute(0, 2, 3, 1)


def box_mask(
    boxes: torch.Tensor, origins: torch.Tensor, size: int | tuple[int, int]
) -> torch.Tensor:
    """``(N, ph*pw)`` bool: which pixels of each patch lie in its inclusive box.

    ``boxes`` ``(N, 4)`` integer ``x0, y0, x1, y1`` (inclusive) in image pixels;
    ``origins`` ``(N, 2)`` the patches' top-left corners; ``size`` as in
    :func:`gather_patches`.
    """
    ph, pw = _hw(size)
    b = boxes.long() - origins.long().repeat(1, 2)
    kx = torch.arange(pw, device=boxes.device)
    ky = torch.arange(ph, device=boxes.device)
    inx = (kx[None] >= b[:, 0, None]) & (kx[None] <= b[:, 2, None])  # (N, pw)
    iny = (ky[None] >= b[:, 1, None]) & (ky[None] <= b[:, 3, None])  # (N, ph)
    return (iny[:, :, None] & inx[:, None, :]).reshape(boxes.shape[0], ph * pw)
