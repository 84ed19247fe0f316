"""Per-frame half of Farneback in PyTorch: pyramid levels and polynomial expansion.

For every frame and pyramid level (note 2 of SPEC.md section 2): Gaussian smoothing of
the full-resolution image with reflect-101 borders, a linear resize, then the
polynomial expansion with replicate borders (note 4). The result is shared by every
pair that uses the frame.

All filters are separable and applied as GEMMs, because depthwise ``conv2d`` is very
slow on CPU (tens of ms per frame here):

- along rows (y), :func:`_filter_rows` stacks the frames into one tall buffer with
  their padding and multiplies tiles of :data:`_TILE` output rows by a small banded
  (Toeplitz) matrix in one ``bmm``;
- along columns (x), :func:`_filter_cols` multiplies overlapping column windows by the
  banded matrix, also in one ``bmm``;
- a level that is resized uses dense (blur then resize) operators, one per axis.

Borders are folded into the padding (or into the dense operators) exactly.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from sw_mro.ops._farneback_kernels import (
    XX,
    XY,
    YY,
    FarnebackParams,
    Level,
    Y,
    border_index,
    correlation_matrix,
    gaussian_kernel_1d,
    linear_resize_matrix,
    plan_levels,
    poly_kernels,
)

__all__ = ["expand_frames", "poly_expand", "pyramid_level"]

_TILE = 64  # output rows / columns per banded GEMM tile


def _tile_for(size: int, r: int) -> int:
    """Tile of output rows/columns: up to _TILE, a multiple of 8, and at least 2r."""
    return max(min(_TILE, -(-size // 8) * 8), -(-2 * r // 8) * 8)


@functools.lru_cache(maxsize=128)
def _band(taps: bytes, k: int, width: int, tile: int, device: str) -> torch.Tensor:
    """(k, tile, tile + width - 1) banded matrices: row o of kernel j is taps_j at offset o."""
    kern = np.frombuffer(taps, dtype=np.float32).reshape(k, width)
    band = np.zeros((k, tile, tile + width - 1), dtype=np.float32)
    for o in range(tile):
        band[:, o, o : o + width] = kern
    return torch.from_numpy(band).to(device)


@functools.lru_cache(maxsize=64)
def _pad_index(size: int, r: int, border: str, device: str) -> torch.Tensor:
    idx = [border_index(i, size, border) for i in range(-r, size + r)]
    return torch.tensor(idx, dtype=torch.long, device=device)


def _filter_rows(x: torch.Tensor, taps: np.ndarray, border: str) -> list[torch.Tensor]:
    """Correlate (N, H, W) along y with each row of ``taps`` (k, 2r+1): k views (N, H, W)."""
    n, height, width = x.shape
    k, klen = taps.shape
    r = klen // 2
    t = _tile_for(height, r)
    tiles = -(-height // t)
    block = -(-(tiles * t + 2 * r) // t) * t  # rows per frame in the tall buffer
    tall = x.new_zeros(n * block + t, width)
    frames = tall[: n * block].view(n, block, width)
    frames[:, : height + 2 * r] = x.index_select(1, _pad_index(height, r, border, str(x.device)))
    # (n * block / t, t + 2r, W), a view; [:...]: with r = 0 (a 1-tap Gaussian window,
    # winsize 1) the spare t rows made one window more (found in review: a reshape error)
    u = tall.unfold(0, t + 2 * r, t)[: n * block // t].transpose(-1, -2)
    band = _band(np.ascontiguousarray(taps, np.float32).tobytes(), k, klen, t, str(x.device))
    out = []
    for j in range(k):
        y = torch.bmm(band[j].expand(u.shape[0], -1, -1), u)  # (tiles_all, t, W)
        y = y.view(n, block // t, t, width)[:, :tiles].reshape(n, tiles * t, width)
        out.append(y[:, :height])
    return out


def _filter_cols(x: torch.Tensor, taps: np.ndarray, border: str) -> torch.Tensor:
    """Correlate (N, H, W) along x with each row of ``taps`` (k, 2r+1): (k, N, H, W)."""
    n, height, width = x.shape
    k, klen = taps.shape
    r = klen // 2
    t = _tile_for(width, r)
    tiles = -(-width // t)
    xp = x.new_zeros(n * height, tiles * t + 2 * r)
    xp[:, : width + 2 * r] = x.reshape(n * height, width).index_select(
        1, _pad_index(width, r, border, str(x.device))
    )
    u = xp.unfold(1, t + 2 * r, t).permute(1, 0, 2)  # (tiles, N H, t + 2r), a view
    band = _band(np.ascontiguousarray(taps, np.float32).tobytes(), k, klen, t, str(x.device))
    bt = band.permute(2, 0, 1).reshape(t + 2 * r, k * t)  # (t + 2r, k t)
    y = torch.bmm(u, bt.expand(tiles, -1, -1))  # (tiles, N H, k t)
    y = y.view(tiles, n * height, k, t).permute(2, 1, 0, 3).reshape(k, n, height, tiles * t)
    return y[..., :width]


@functools.lru_cache(maxsize=32)
def _resize_operator(src: int, dst: int, ksize: int, sigma: float, device: str) -> torch.Tensor:
    """(dst, src) float32: Gaussian blur (reflect-101) then linear resize, along one axis."""
    blur = correlation_matrix(src, gaussian_kernel_1d(ksize, sigma), "reflect101")
    return torch.from_numpy((linear_resize_matrix(src, dst) @ blur).astype(np.float32)).to(device)


def pyramid_level(frames: torch.Tensor, level: Level) -> torch.Tensor:
    """Level image (F, h, w) of float32 frames (F, H, W) (note 2)."""
    n, height, width = frames.shape
    if (level.height, level.width) == (height, width):
        g = gaussian_kernel_1d(level.smooth_size, level.sigma)[None]
        (v,) = _filter_rows(frames, g, "reflect101")
        return _filter_cols(v, g, "reflect101")[0]
    dev = str(frames.device)
    ly = _resize_operator(height, level.height, level.smooth_size, level.sigma, dev)
    lx = _resize_operator(width, level.width, level.smooth_size, level.sigma, dev)
    v = torch.bmm(ly.expand(n, -1, -1), frames)  # (F, h, W)
    return (v.reshape(-1, width) @ lx.T).reshape(n, level.height, level.width)


def poly_expand(img: torch.Tensor, n: int, sigma: float) -> torch.Tensor:
    """Polynomial expansion (N, h, w) -> (N, 5, h, w), planes Y, X, YY, XY, XX (note 4).

    OpenCV filters vertically first (g, xg, xxg along y), then horizontally in double,
    and combines the six products with the inverse moment constants:
    y = ig11 g_x xg_y, x = ig11 xg_x g_y, yy = g_x (ig03 g + ig33 xxg)_y,
    xx = (ig03 g + ig33 xxg)_x g_y, xy = ig55 xg_x xg_y. The filters are separable, so
    we go horizontally first with g, xg and c = ig03 g + ig33 xxg, and then need only five
    vertical passes.
    """
    kern = poly_kernels(n, sigma)
    g, xg, xxg = (a.astype(np.float64) for a in (kern.g, kern.xg, kern.xxg))
    c = kern.ig03 * g + kern.ig33 * xxg
    hg, hxg, hc = _filter_cols(img, np.stack([g, xg, c]), "replicate")
    out = img.new_empty(img.shape[0], 5, *img.shape[1:])
    y, yy = _filter_rows(hg, np.stack([kern.ig11 * xg, c]), "replicate")
    x, xy = _filter_rows(hxg, np.stack([kern.ig11 * g, kern.ig55 * xg]), "replicate")
    (xx,) = _filter_rows(hc, g[None], "replicate")
    for plane, value in ((Y, y), (1, x), (YY, yy), (XY, xy), (XX, xx)):
        out[:, plane] = value
    return out


def expand_frames(frames: torch.Tensor, params: FarnebackParams) -> list[torch.Tensor]:
    """Expansions of float32 frames (F, H, W) per level: list of (F, 5, h, w), finest first."""
    height, width = frames.shape[-2:]
    return [
        poly_expand(pyramid_level(frames, level), params.poly_n, params.poly_sigma)
        for level in plan_levels(height, width, params)
    ]
