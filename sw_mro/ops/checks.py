"""Boundary checks shared by the ops: one helper per kind of input, ValueError on misuse."""

from __future__ import annotations

import numpy as np
import torch


def as_tensor(x: object, name: str) -> torch.Tensor:
    """A torch tensor from a tensor or numpy array (no copy where possible)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ValueError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def gray_batch(x: object, name: str) -> torch.Tensor:
    """Grayscale images as (B, H, W): accepts (H, W), (B, H, W) or (B, 1, H, W).

    The dtype must be uint8 or floating point (values in 0..255); it is kept as is. A
    3-D shape whose last side is 1, 3 or 4 is refused as an (H, W, C) image (found in a
    probe: a colour frame was taken as H images W x 3 px, where cv2 refuses it); a batch
    of frames that narrow is given as (B, 1, H, W).
    """
    t = as_tensor(x, name)
    if t.dim() == 3 and t.shape[-1] in (1, 3, 4):
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} looks like an (H, W, C) image; give it as "
            "gray (H, W) (cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)), or a batch of frames "
            f"{t.shape[-1]} px wide as (B, 1, H, W)"
        )
    if t.dim() == 2:
        t = t[None]
    elif t.dim() == 4 and t.shape[1] == 1:
        t = t[:, 0]
    elif t.dim() != 3:
        raise ValueError(
            f"{name} must be grayscale (H, W), (B, H, W) or (B, 1, H, W); got shape "
            f"{tuple(t.shape)}. Convert colour images to gray first."
        )
    if t.dtype != torch.uint8 and not t.is_floating_point():
        raise ValueError(
            f"{name} must be uint8 or floating point with values in 0..255; got {t.dtype}"
        )
    if t.shape[-1] < 1 or t.shape[-2] < 1 or t.shape[0] < 1:
        raise ValueError(f"{name} has an empty dimension: shape {tuple(t.shape)}")
    return t


def index_vector(
    x: object, name: str, upper: int, device: torch.device, *, check: bool = True
) -> torch.Tensor:
    """A 1-D int64 index tensor on ``device`` with every value in [0, upper).

    The range is checked where the indices are (on a GPU that is one device sync);
    ``check=False`` skips it for indices a caller built itself. Host indices go to the
    device without blocking.
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        arr = np.asarray(x)
        # An empty list is float64 to numpy; as indices it is simply none.
        t = torch.as_tensor(arr.astype(np.int64) if arr.size == 0 else arr)
    if t.dim() != 1:
        raise ValueError(f"{name} must be a 1-D index tensor; got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must hold integers; got {t.dtype}")
    t = t.to(dtype=torch.int64)
    if check and t.numel() and bool(((t < 0) | (t >= upper)).any()):
        raise ValueError(
            f"{name} has values outside [0, {upper}): min {int(t.min())}, max {int(t.max())}"
        )
    return t.to(device=device, non_blocking=True)
