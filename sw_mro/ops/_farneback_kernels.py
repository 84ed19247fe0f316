"""Farneback constants shared by every backend: parameters, pyramid plan and kernels.

These are numpy/python facts about OpenCV's CPU ``optflowgf.cpp`` (OpenCV 5.0) that
both the PyTorch and the CuPy engines use. SPEC.md section 2, "Farneback exactness
notes", lists the details that matter; ``note N`` below refers to that list.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

MIN_LEVEL_SIZE = 32  # note 1: OpenCV drops levels whose width or height is under 32 px
BORDER_WEIGHTS = (0.14, 0.14, 0.4472, 0.4472, 0.4472)  # note 5
DET_EPS = 1e-3  # note 6

#: Order of the 5 expansion planes inside our engines. OpenCV stores y, x, yy, xx, xy;
#: we keep xy between yy and xx so that the 2x2 matrix [[yy, xy], [xy, xx]] is two
#: overlapping channel slices ([yy, xy] and [xy, xx]), which halves the op count of
#: update-matrices. Index names: the linear terms Y, X; the quadratic terms YY, XY, XX.
Y, X, YY, XY, XX = range(5)


@dataclass(frozen=True)
class FarnebackParams:
    """The parameters of ``cv2.calcOpticalFlowFarneback`` (flags split into booleans)."""

    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 5
    poly_n: int = 7
    poly_sigma: float = 1.5
    gaussian: bool = False


@dataclass(frozen=True)
class Level:
    """One pyramid level: its index (0 = full resolution), size and smoothing."""

    k: int
    height: int
    width: int
    scale: float
    sigma: float
    smooth_size: int


def cv_round(value: float) -> int:
    """``cvRound``: nearest integer, halves to even (Python's ``round`` does the same)."""
    return int(round(value))


def plan_levels(height: int, width: int, params: FarnebackParams) -> list[Level]:
    """The pyramid levels OpenCV uses for an image of this size, finest first."""
    # note 1: cap the number of levels so that the smallest one is >= 32 px.
    count, scale = 0, 1.0
    while count < params.levels:
        scale *= params.pyr_scale
        if width * scale < MIN_LEVEL_SIZE or height * scale < MIN_LEVEL_SIZE:
            break
        count += 1
    levels = []
    for k in range(count + 1):
        scale = 1.0
        for _ in range(k):  # repeated products, exactly as OpenCV forms the scale
            scale *= params.pyr_scale
        sigma = (1.0 / scale - 1.0) * 0.5  # note 2
        smooth_size = max(cv_round(sigma * 5) | 1, 3)
        levels.append(
            Level(k, cv_round(height * scale), cv_round(width * scale), scale, sigma, smooth_size)
        )
    return levels


# --------------------------------------------------------------------------- kernels


def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """``cv::getGaussianKernel(size, sigma, CV_32F)`` as float32 (note 2).

    With ``sigma <= 0`` and a size of 3, OpenCV uses the fixed table [1/4, 1/2, 1/4].
    """
    if sigma <= 0 and size == 3:
        return np.array([0.25, 0.5, 0.25], dtype=np.float32)
    if sigma <= 0:
        sigma = ((size - 1) * 0.5 - 1) * 0.3 + 0.8
    x = np.arange(size, dtype=np.float64) - (size - 1) * 0.5
    taps = np.exp(-0.5 / (sigma * sigma) * x * x).astype(np.float32)
    total = 1.0 / float(np.sum(taps.astype(np.float64)))
    return (taps.astype(np.float64) * total).astype(np.float32)


@dataclass(frozen=True)
class PolyKernels:
    """Separable kernels and inverse-moment constants of the polynomial expansion."""

    g: np.ndarray  # (2n+1,) float32, Gaussian applicability
    xg: np.ndarray  # x * g
    xxg: np.ndarray  # x^2 * g
    ig11: float
    ig03: float
    ig33: float
    ig55: float


def poly_kernels(n: int, sigma: float) -> PolyKernels:
    """Kernels of the polynomial expansion of half-size ``n`` (note 4).

    The taps are rounded to float32 where OpenCV rounds them, normalised in double;
    the 6x6 moment matrix is built in double from those float taps and inverted by
    Cholesky, as OpenCV does.
    """
    if sigma < np.finfo(np.float32).eps:
        sigma = n * 0.3
    x = np.arange(-n, n + 1, dtype=np.float64)
    g = np.exp(-x * x / (2 * sigma * sigma)).astype(np.float32)
    g = (g.astype(np.float64) * (1.0 / float(np.sum(g.astype(np.float64))))).astype(np.float32)
    xg = (x * g).astype(np.float32)
    xxg = (x * x * g).astype(np.float32)

    gd = g.astype(np.float64)
    gy, gx = np.meshgrid(gd, gd, indexing="ij")
    yy, xx = np.meshgrid(x, x, indexing="ij")
    w = gy * gx
    m = np.zeros((6, 6))
    m[0, 0] = w.sum()
    m[1, 1] = (w * xx * xx).sum()
    m[3, 3] = (w * xx**4).sum()
    m[5, 5] = (w * xx * xx * yy * yy).sum()
    m[2, 2] = m[0, 3] = m[0, 4] = m[3, 0] = m[4, 0] = m[1, 1]
    m[4, 4] = m[3, 3]
    m[3, 4] = m[4, 3] = m[5, 5]
    if degenerate(m):  # as cv2: its inverse is all zeros, and so is every flow
        return PolyKernels(g, xg, xxg, 0.0, 0.0, 0.0, 0.0)
    chol = np.linalg.cholesky(m)
    inv_chol = np.linalg.inv(chol)
    inv = inv_chol.T @ inv_chol
    return PolyKernels(g, xg, xxg, inv[1, 1], inv[0, 3], inv[3, 3], inv[5, 5])


@functools.lru_cache(maxsize=64)
def degenerate_expansion(n: int, sigma: float) -> bool:
    """Whether the expansion of half-size ``n`` at ``sigma`` is degenerate (every flow 0,
    as in cv2): ``sigma`` from 1.2e-7 (under float32 epsilon cv2 takes ``0.3 n``) to
    about 0.1635 at ``poly_n`` 5 and 7."""
    return poly_kernels(n, sigma).ig11 == 0.0


def degenerate(m: np.ndarray) -> bool:
    """Whether OpenCV's Cholesky gives up on the moment matrix ``m``: a pivot under
    double epsilon (``cv::invert(DECOMP_CHOLESKY)`` then returns zeros). Found in a
    probe: ``poly_sigma`` 1.2e-7 to 0.069 at ``poly_n`` 5 or 7 raised numpy's
    ``LinAlgError`` here, where cv2 returns a zero flow."""
    n = m.shape[0]
    low = np.zeros_like(m)
    for i in range(n):
        for j in range(i):
            low[i, j] = (m[i, j] - low[i, :j] @ low[j, :j]) / low[j, j]
        pivot = m[i, i] - low[i, :i] @ low[i, :i]
        if not pivot >= np.finfo(np.float64).eps:
            return True
        low[i, i] = math.sqrt(pivot)
    return False


def window_kernel(winsize: int) -> np.ndarray:
    """The 1-D Gaussian window of ``OPTFLOW_FARNEBACK_GAUSSIAN`` (note 6), float32.

    Half-size m = winsize // 2, sigma = 0.3 m; taps normalised in double, stored float.
    """
    m = winsize // 2
    sigma = m * 0.3
    half = [1.0] + [
        float(np.float32(math.exp(-i * i / (2 * sigma * sigma)))) for i in range(1, m + 1)
    ]
    total = half[0] + 2 * sum(half[1:])
    half = [float(np.float32(t * (1.0 / total))) for t in half]
    return np.array(half[:0:-1] + half, dtype=np.float32)


def border_ramp(size: int) -> np.ndarray:
    """Squared border attenuation along one axis (note 5), float32; 1 inside.

    OpenCV multiplies r2..r6 by the product of the x and y factors; every entry of the
    matrices M is a product of two of those, so M scales by the square.
    """
    r = np.ones(size, dtype=np.float32)
    for i, b in enumerate(BORDER_WEIGHTS[: min(len(BORDER_WEIGHTS), size)]):
        r[i] *= np.float32(b)
        r[size - 1 - i] *= np.float32(b)
    return r * r


def area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of OpenCV's area resize along one axis (downscale or copy)."""
    m = np.zeros((dst, src))
    scale = src / dst
    for d in range(dst):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, src - f1)
        s1 = min(math.ceil(f1), src - 1)
        s2 = min(math.floor(f2), src - 1)
        s1 = min(s1, s2)
        if s1 - f1 > 1e-3:
            m[d, s1 - 1] = (s1 - f1) / cell
        for s in range(s1, s2):
            m[d, s] = 1.0 / cell
        if f2 - s2 > 1e-3:
            m[d, s2] = min(min(f2 - s2, 1.0), cell) / cell
    return m


# Coefficients that turn (R0, sampled R1) into (r2, r3, r4, r5, r6) of OpenCV's
# update-matrices: r2 = (R0 - s) / 2 for the linear planes y, x; r4 = (R0 + s) / 2,
# r5 = (R0 + s) / 2, r6 = (R0 + s) / 4 for yy, xx, xy. Scaling by powers of two is exact,
# so R0 * a + s * b reproduces (R0 -+ s) * c bit for bit.
_R0_COEF = (0.5, 0.5, 0.5, 0.5, 0.25)
_S_COEF = (-0.5, -0.5, 0.5, 0.5, 0.25)
# Out of bounds, R1 is not used: r2 = R0 / 2, r4 = R0, r5 = R0, r6 = R0 / 2 (note 5).
_R0_ONLY_COEF = (0.5, 0.5, 1.0, 1.0, 0.5)


def linear_resize_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of ``cv::resize(..., INTER_LINEAR)`` along one axis.

    Source coordinate (d + 0.5) * src / dst - 0.5 in float, clamped to the image; weights
    1 - fx and fx (OpenCV's float path; the exact-2x INTER_AREA shortcut has the same
    weights).
    """
    m = np.zeros((dst, src))
    scale = 1.0 / (dst / src)
    for d in range(dst):
        fx = float(np.float32((d + 0.5) * scale - 0.5))
        sx = math.floor(fx)
        fx -= sx
        if sx < 0:
            sx, fx = 0, 0.0
        if sx >= src - 1:
            sx, fx = src - 1, 0.0
        fx = float(np.float32(fx))
        m[d, sx] += float(np.float32(1.0 - fx))
        if fx:
            m[d, sx + 1] += fx
    return m


def correlation_matrix(size: int, taps: np.ndarray, border: str) -> np.ndarray:
    """(size, size) matrix of a 1-D correlation with ``taps`` under a border rule.

    ``border`` is ``"reflect101"`` (OpenCV's default, ``gfedcb|abcdefgh|gfedcba``) or
    ``"replicate"`` (``aaaaaa|abcdefgh|hhhhhhh``).
    """
    r = len(taps) // 2
    m = np.zeros((size, size))
    for i in range(size):
        for j, t in enumerate(taps):
            m[i, border_index(i + j - r, size, border)] += float(t)
    return m


def border_index(i: int, size: int, border: str) -> int:
    """Source index of position ``i`` (possibly outside 0..size-1) under a border rule."""
    if border == "replicate" or size == 1:
        return min(max(i, 0), size - 1)
    period = 2 * (size - 1)
    i %= period
    return period - i if i >= size else i
