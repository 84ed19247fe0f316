"""Sub-pixel warps: batched face crops and translations (bilinear, replicated borders).

- :func:`crop_resize`: crop many boxes from each image and resize them to ``size``
  (SPEC.md 2.2). Pixel ``(u, v)`` of a ``size`` crop of box ``[x0, x1) x [y0, y1)``
  samples the image at ``x = x0 + (u + 0.5) * (x1 - x0) / size - 0.5`` (and likewise
  ``y``): the box's edges are pixel edges, as ``cv2.resize`` and
  ``grid_sample(align_corners=False)`` treat them. Outside the image the border pixel
  is replicated. No antialiasing (as ``cv2.resize(INTER_LINEAR)``). Separable: rows
  blended in y, then columns in x, with the taps found in float64 frame pixels.
- :func:`shift`: ``out(y, x) = img(y + dy, x + dx)``, a Kornia translation warp, i.e.
  the re-alignment of SPEC.md 2.4 that undoes a measured flow ``(dx, dy)``. An output
  window (``origin``, ``size``) samples only part of the shifted image, which is the
  same as shifting the whole image and cutting the window out.
"""

from __future__ import annotations

import kornia
import torch

__all__ = ["crop_resize", "crop_to_frame", "frame_to_crop", "shift"]


def _taps(
    lo: torch.Tensor,
    hi: torch.Tensor,
    size: int,
    offset: int,
    limit: int,
    extent: int,
    check: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis for boxes ``[lo, hi)`` (``(...,)`` float64, absolute
    pixels): the ``size`` sample positions ``lo + (u + 0.5) (hi - lo) / size - 0.5``,
    their two source indices clamped to ``[0, limit)`` (replicated border) and made
    relative to ``offset`` (clamped to ``[0, extent)``), and the float32 weight of the
    second index. ``check``: raise if a tap inside the frame falls outside the window."""
    t = (torch.arange(size, device=lo.device, dtype=torch.float64) + 0.5) / size
    pos = lo[..., None] + t * (hi - lo)[..., None] - 0.5  # (..., size)
    base = torch.floor(pos)
    frac = (pos - base).to(torch.float32)
    i0 = base.long()
    a = i0.clamp(0, limit - 1) - offset
    b = (i0 + 1).clamp(0, limit - 1) - offset
    if check and bool(((a < 0) | (b >= extent)).any()):  # on CPU only: no device sync
        raise ValueError(
            "crop_resize: a box samples the frame outside the window given by origin "
            f"({offset} + [0, {extent}) px on this axis)"
        )
    return a.clamp_(0, extent - 1), b.clamp_(0, extent - 1), frac


def crop_resize(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: int,
    *,
    origin: tuple[int, int] = (0, 0),
    frame_size: tuple[int, int] | None = None,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop ``K`` boxes from each image, bilinear, resized to ``size`` x ``size``.

    The sample positions are computed in float64 in the frame's own pixels and split
    into integer taps and float32 weights there, so a crop does not depend on which part
    of the frame ``images`` holds (the pipeline passes the union of a batch's boxes):
    the features do not depend on the batch size.

    Args:
        images: ``(F, H, W)`` float images, or a window of the frames starting at
            ``origin`` (with ``index``: ``(N, H, W)``, any ``N``).
        boxes: ``(F, K, 4)`` boxes ``x0, y0, x1, y1`` in pixels of the frame (edges,
            exclusive end), any position (outside parts replicate the frame's border).
        size: output side in pixels.
        origin: ``(x, y)`` of ``images[:, 0, 0]`` in the frame (default: the images are
            the frames).
        frame_size: ``(H, W)`` of the frame whose border is replicated (default: that
            of ``images``). Samples must fall inside the window or outside the frame
            (checked on CPU; on a GPU the check would cost a device sync).
        index: optional ``(F, K)`` integer tensor: crop ``(f, k)`` comes from image
            ``index[f, k]`` instead of image ``f``, so that crops of many images with
            their own boxes take one call (the same values as one call per image set).

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
        or (index is None and boxes.shape[0] != images.shape[0])
        or (index is not None and tuple(index.shape) != tuple(boxes.shape[:2]))
    ):
        raise ValueError(
            f"crop_resize needs images (F, H, W) and boxes (F, K, 4) (with index: (F, K)); "
            f"got {tuple(images.shape)}, {tuple(boxes.shape)}"
            + ("" if index is None else f" and index {tuple(index.shape)}")
        )
    h, w = images.shape[1:]
    f, k = boxes.shape[:2]
    if index is not None:
        if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
            raise ValueError(f"crop_resize: index must be an integer tensor; got {index.dtype}")
        if index.device.type == "cpu" and index.numel():  # on a GPU: a device sync
            lo, hi = int(index.min()), int(index.max())
            if lo < 0 or hi >= images.shape[0]:
                raise ValueError(
                    f"crop_resize: index values must be in [0, {images.shape[0]}); got {lo}..{hi}"
                )
    fh, fw = frame_size if frame_size is not None else (h, w)
    b = boxes.to(device=images.device, dtype=torch.float64)
    check = images.device.type == "cpu" and (tuple(origin) != (0, 0) or frame_size is not None)
    x0, x1, fx = _taps(b[..., 0], b[..., 2], size, origin[0], fw, w, check)  # (F, K, S)
    y0, y1, fy = _taps(b[..., 1], b[..., 3], size, origin[1], fh, h, check)
    img = images.float()
    # Rows first: the two source rows of every output row, blended in y ...
    if index is None:
        rows = torch.arange(f, device=img.device)[:, None, None]
    else:
        rows = index.to(device=img.device, dtype=torch.long)[:, :, None]
    top, bottom = img[rows, y0], img[rows, y1]  # (F, K, S, W)
    fy = fy[..., None]
    col = top + fy * (bottom - top)
    # ... then the two source columns of every output column, blended in x.
    left = col.gather(3, x0[:, :, None, :].expand(f, k, size, size))
    right = col.gather(3, x1[:, :, None, :].expand(f, k, size, size))
    return left + fx[:, :, None, :] * (right - left)


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
    src = images[:, None].float()
    if images.device.type != "cpu" or n <= 1:
        return _warp(src, m, out_hw)[:, 0]
    # On CPU kornia builds the whole batch's sampling grid (eight float passes over it)
    # before sampling: 256 crops of 256 px are ~0.5 GB of grid traffic. Warping ~1 M output
    # pixels at a time keeps it in cache, 2.5x faster (same bits: each image is warped
    # alone either way).
    step = max(1, SHIFT_CHUNK_PIXELS // (out_hw[0] * out_hw[1]))
    out = src.new_empty(n, 1, *out_hw)  # float32, on the images' device
    for i in range(0, n, step):
        out[i : i + step] = _warp(src[i : i + step], m[i : i + step], out_hw)
    return out[:, 0]


SHIFT_CHUNK_PIXELS = 1 << 20
"""Output pixels per Kornia warp on CPU (:func:`shift`)."""


def _warp(src: torch.Tensor, m: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    return kornia.geometry.transform.warp_affine(
        src, m, out_hw, mode="bilinear", padding_mode="border", align_corners=True
    )
