"""Sub-pixel warps: batched face crops and translations (bilinear, replicated borders).

- :func:`crop_resize`: crop many boxes from each image and resize them to ``size``
  (SPEC.md 2.2). Pixel ``(u, v)`` of a ``size`` crop of box ``[x0, x1) x [y0, y1)``
  samples the image at ``x = x0 + (u + 0.5) * (x1 - x0) / size - 0.5`` (and likewise
  ``y``): the box's edges are pixel edges, as ``cv2.resize`` and
  ``grid_sample(align_corners=False)`` treat them. Outside the image the border pixel
  is replicated. No antialiasing (as ``cv2.resize(INTER_LINEAR)``).
- :func:`shift`: ``out(y, x) = img(y + dy, x + dx)``, a Kornia translation warp, i.e.
  the re-alignment of SPEC.md 2.4 that undoes a measured flow ``(dx, dy)``. An output
  window (``origin``, ``size``) samples only part of the shifted image, which is the
  same as shifting the whole image and cutting the window out.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F

__all__ = ["crop_resize", "crop_to_frame", "frame_to_crop", "shift"]


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop ``K`` boxes from each image, bilinear, resized to ``size`` x ``size``.

    Args:
        images: ``(F, H, W)`` float images.
        boxes: ``(F, K, 4)`` boxes ``x0, y0, x1, y1`` in pixels of their image
            (edges, exclusive end), any position (outside parts replicate the border).
        size: output side in pixels.

    Returns:
        ``(F, K, size, size)`` float32.

    Examples:
        >>> img = torch.arange(16.0).view(1, 4, 4)
        >>> crop_resize(img, torch.tensor([[[1.0, 1.0, 3.0, 3.0]]]), 2)[0, 0]
        tensor([[ 5.,  6.],
                [ 9., 10.]])
    """
    if (
        images.dim() != 3
        or boxes.dim() != 3
        or boxes.shape[-1] != 4
        or boxes.shape[0] != images.shape[0]
    ):
        raise ValueError(
            f"crop_resize needs images (F, H, W) and boxes (F, K, 4); got {tuple(images.shape)} "
            f"and {tuple(boxes.shape)}"
        )
    f, h, w = images.shape
    k = boxes.shape[1]
    b = boxes.to(device=images.device, dtype=torch.float64)
    t = (torch.arange(size, device=images.device, dtype=torch.float64) + 0.5) / size
    # Normalised coordinates for align_corners=False: xn = 2 * (x + 0.5) / W - 1, with
    # x + 0.5 = x0 + t * (x1 - x0). Computed in float64, then cast.
    xs = (b[..., 0, None] + t * (b[..., 2] - b[..., 0])[..., None]) * (2.0 / w) - 1.0  # (F,K,S)
    ys = (b[..., 1, None] + t * (b[..., 3] - b[..., 1])[..., None]) * (2.0 / h) - 1.0
    grid = torch.stack(
        [xs[:, :, None, :].expand(f, k, size, size), ys[:, :, :, None].expand(f, k, size, size)], -1
    )
    grid = grid.reshape(f, k * size, size, 2).to(torch.float32)
    out = F.grid_sample(
        images[:, None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.view(f, k, size, size)


def frame_to_crop(points: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Map ``(..., P, 2)`` frame pixel coordinates into crops of ``(..., 4)`` boxes."""
    scale = size / (boxes[..., 2:] - boxes[..., :2])  # (..., 2)
    return (points + 0.5 - boxes[..., None, :2]) * scale[..., None, :] - 0.5


def crop_to_frame(points: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Inverse of :func:`frame_to_crop`."""
    scale = (boxes[..., 2:] - boxes[..., :2]) / size
    return (points + 0.5) * scale[..., None, :] + boxes[..., None, :2] - 0.5


def shift(
    images: torch.Tensor,
    shifts: torch.Tensor,
    *,
    origin: torch.Tensor | None = None,
    size: int | None = None,
) -> torch.Tensor:
    """Sub-pixel translation ``out(y, x) = img(y + oy + dy, x + ox + dx)`` (Kornia warp).

    Args:
        images: ``(N, H, W)`` float.
        shifts: ``(N, 2)`` ``(dx, dy)`` in pixels.
        origin: optional ``(N, 2)`` ``(ox, oy)`` integer offset of an output window.
        size: side of the square output window (needs ``origin``); default the image.

    Returns:
        ``(N, H, W)``, or ``(N, size, size)`` with a window; bilinear, border replicated.

    Examples:
        >>> img = torch.arange(4.0).view(1, 1, 4).expand(1, 4, 4)
        >>> shift(img, torch.tensor([[0.5, 0.0]]))[0, 0]
        tensor([0.5000, 1.5000, 2.5000, 3.0000])
    """
    if images.dim() != 3 or shifts.shape != (images.shape[0], 2):
        raise ValueError(
            f"shift needs images (N, H, W) and shifts (N, 2); got {tuple(images.shape)} and "
            f"{tuple(shifts.shape)}"
        )
    n, h, w = images.shape
    d = shifts.to(device=images.device, dtype=torch.float32)
    if origin is not None:
        d = d + origin.to(device=images.device, dtype=torch.float32)
    out_hw = (h, w) if size is None else (size, size)
    # kornia's matrix maps source to destination pixels: dst = src - d.
    m = torch.zeros(n, 2, 3, device=images.device, dtype=torch.float32)
    m[:, 0, 0] = 1.0
    m[:, 1, 1] = 1.0
    m[:, :, 2] = -d
    out = kornia.geometry.transform.warp_affine(
        images[:, None].float(),
        m,
        out_hw,
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )
    return out[:, 0]
