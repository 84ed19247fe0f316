"""dlib's shape predictor, read from its ``.dat`` file and run in numba.

dlib's 68-point landmark model is a cascade of regression-tree ensembles (Kazemi and
Sullivan, 2014): 15 cascades of 500 trees of depth 4, each leaf a 136-value shape update.
:class:`ShapeModel` reads the trees from the file that ``dlib.shape_predictor`` loads
(dlib's own serialization: integers as a control byte and little-endian bytes, floats as
an integer mantissa and exponent) and evaluates them as ``dlib::shape_predictor`` does
(``dlib/image_processing/shape_predictor.h``):

1. The shape starts as the model's mean shape, in coordinates where the face box runs
   from (0, 0) to (1, 1).
2. Per cascade: the similarity transform from the mean shape to the current shape
   (Umeyama's least squares, in double; for 2-D points it is the closed form
   ``[[a + d, b - c], [c - b, a + d]] / var`` of the centred covariance ``[[a, b], [c,
   d]]``, the same matrix dlib takes from an SVD), cast to float; each feature pixel is
   its anchor landmark plus that transform times its offset, mapped into the box, rounded
   half up (``floor(v + 0.5)``) and read as ``(r + g + b) // 3``, or 0 outside the image;
   each tree goes left where ``pixel[i] - pixel[j] > threshold``; the leaves are added to
   the shape in tree order, in float32.
3. The landmarks are the shape mapped into the box, rounded half up.

The landmarks equal dlib's on every frame of the tests' clips and on boxes moved and
resized at random, partly outside the frame (tests/test_shape_model.py; 4,300 faces in
the session that wrote this, and 20,000 boxes of 60-300 px in a review). The arithmetic
that differs from dlib's is the transform's 2x2 SVD (closed form here; rounding at 1e-16
relative, before the cast to float) and dlib's ``find_affine_transform`` for the box
(exact here; dlib's has rounding noise of ~1e-16). So a value that lands exactly on a
pixel's half can round the other way: found in review with boxes of a power-of-two size
crossing the frame's top or left edge (negative coordinates), where dlib's noise pushes
such halves down: 2 of 4,000 such boxes differed, one by a point moved 1 px, one by a
feature pixel whose change moved all 68 points by up to 14 px. In extraction a box
crosses the frame's edge only where the face does; a difference there comes from
dlib's own rounding noise, not from a better or worse fit. Coordinates beyond 2^24 px
differ by 1-2 px (dlib turns the box's corners to float). On the dev VM one face
takes 0.65-0.74 ms against 1.23-1.47 ms for dlib's own with its Python wrapper
(benchmarks/bench_landmarks.py), and the numba code releases the GIL.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sw_mro._numba import njit

__all__ = ["ShapeModel", "ShapeModelFormatError", "load_shape_model"]


class ShapeModelFormatError(ValueError):
    """The file is not a dlib shape predictor whose trees all have one shape."""


# dlib's float_details exponents of the special values (dlib/float_details.h).
_IS_INF, _IS_NINF, _IS_NAN = 32000, 32001, 32002


@njit(nogil=True)
def _int(buf: np.ndarray, pos: int) -> tuple[int, int]:
    """One dlib integer at ``pos``: ``(value, next pos)``, next pos -1 if malformed."""
    if pos < 0 or pos >= buf.size:
        return 0, -1
    ctrl = buf[pos]
    size = ctrl & 0x0F
    if size == 0 or size > 8 or pos + 1 + size > buf.size:
        return 0, -1
    v = np.int64(0)
    for i in range(size - 1, -1, -1):
        v = (v << 8) | np.int64(buf[pos + 1 + i])
    if ctrl & 0x80:
        v = -v
    return v, pos + 1 + size


@njit(nogil=True)
def _float(buf: np.ndarray, pos: int) -> tuple[np.float32, int]:
    """One dlib float (mantissa, exponent; ``ldexp((float)mantissa, exponent)``)."""
    mantissa, pos = _int(buf, pos)
    exponent, pos = _int(buf, pos)
    if pos < 0:
        return np.float32(0.0), -1
    if exponent == _IS_INF:
        return np.float32(np.inf), pos
    if exponent == _IS_NINF:
        return np.float32(-np.inf), pos
    if exponent >= _IS_NAN:
        return np.float32(np.nan), pos
    # One rounding of the exact value, as float(mantissa) then an exact ldexp.
    return np.float32(np.float64(mantissa) * 2.0**exponent), pos


@njit(nogil=True)
def _sizes(buf: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """(version, shape values, cascades, trees, splits, leaf values), read from the
    headers of the first tree; -1 where malformed (found in review: a random file was
    read for minutes before its version was checked)."""
    version, pos = _int(buf, 0)
    nr, pos = _int(buf, pos)
    nc, pos = _int(buf, pos)
    dims = abs(nr) * abs(nc)
    if version != 1 or pos < 0 or dims > buf.size:  # a float takes at least 4 bytes
        return version, dims, -1, -1, -1, -1
    for _ in range(dims):
        _, pos = _float(buf, pos)
        if pos < 0:
            return version, dims, -1, -1, -1, -1
    cascades, pos = _int(buf, pos)
    trees, pos = _int(buf, pos)
    splits, pos = _int(buf, pos)
    if pos < 0 or cascades < 1 or trees < 1 or splits < 1 or splits > buf.size:
        return version, dims, -1, -1, -1, -1
    for _ in range(splits):
        _, pos = _int(buf, pos)
        _, pos = _int(buf, pos)
        _, pos = _float(buf, pos)
        if pos < 0:
            return version, dims, -1, -1, -1, -1
    _, pos = _int(buf, pos)  # leaves
    lr, pos = _int(buf, pos)
    lc, pos = _int(buf, pos)
    if pos < 0:
        return version, dims, -1, -1, -1, -1
    return version, dims, cascades, trees, splits, abs(lr) * abs(lc)


@njit(nogil=True)
def _fill_trees(buf, initial, splits, thresh, leaves) -> int:
    """Reads the mean shape and the trees into the arrays; returns the position after
    them, or -1 where the file does not have the arrays' shapes (trees of other sizes,
    a short file)."""
    _, pos = _int(buf, 0)
    _, pos = _int(buf, pos)
    _, pos = _int(buf, pos)
    for i in range(initial.size):
        initial[i], pos = _float(buf, pos)
    n_casc, n_trees, n_splits = splits.shape[0], splits.shape[1], splits.shape[2]
    n, pos = _int(buf, pos)
    if n != n_casc:
        return -1
    for c in range(n_casc):
        n, pos = _int(buf, pos)
        if n != n_trees:
            return -1
        for t in range(n_trees):
            n, pos = _int(buf, pos)
            if n != n_splits:
                return -1
            for s in range(n_splits):
                a, pos = _int(buf, pos)
                b, pos = _int(buf, pos)
                thresh[c, t, s], pos = _float(buf, pos)
                splits[c, t, s, 0], splits[c, t, s, 1] = a, b
            n, pos = _int(buf, pos)
            if n != n_splits + 1:
                return -1
            for leaf in range(n_splits + 1):
                nr, pos = _int(buf, pos)
                nc, pos = _int(buf, pos)
                if abs(nr) * abs(nc) != leaves.shape[3]:
                    return -1
                for k in range(leaves.shape[3]):
                    leaves[c, t, leaf, k], pos = _float(buf, pos)
            if pos < 0:
                return -1
    return pos


@njit(nogil=True)
def _fill_pixels(buf, pos, anchors, deltas) -> int:
    """Reads the feature pixels (each cascade's anchor landmarks, then their offsets)
    from ``pos``; returns the end position, or -1 as :func:`_fill_trees`."""
    n_casc, n_pix = anchors.shape
    n, pos = _int(buf, pos)
    if n != n_casc:
        return -1
    for c in range(n_casc):
        n, pos = _int(buf, pos)
        if n != n_pix:
            return -1
        for i in range(n_pix):
            anchors[c, i], pos = _int(buf, pos)
    n, pos = _int(buf, pos)
    if n != n_casc:
        return -1
    for c in range(n_casc):
        n, pos = _int(buf, pos)
        if n != n_pix:
            return -1
        for i in range(n_pix):
            deltas[c, i, 0], pos = _float(buf, pos)
            deltas[c, i, 1], pos = _float(buf, pos)
    return pos


@njit(nogil=True)
def _transform(initial: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """The similarity transform (2x2, float32) that maps the mean shape onto ``shape``,
    least squares (dlib's ``find_similarity_transform``, in double)."""
    k = initial.size // 2
    mfx = mfy = mtx = mty = 0.0
    for i in range(k):
        mfx += initial[2 * i]
        mfy += initial[2 * i + 1]
        mtx += shape[2 * i]
        mty += shape[2 * i + 1]
    mfx /= k
    mfy /= k
    mtx /= k
    mty /= k
    var = a = b = c = d = 0.0
    for i in range(k):
        fx, fy = initial[2 * i] - mfx, initial[2 * i + 1] - mfy
        tx, ty = shape[2 * i] - mtx, shape[2 * i + 1] - mty
        var += fx * fx + fy * fy
        a += tx * fx
        b += tx * fy
        c += ty * fx
        d += ty * fy
    var /= k
    a, b, c, d = a / k, b / k, c / k, d / k
    out = np.empty(4, np.float32)
    if var == 0:  # dlib: scale 1, rotation from the SVD (a degenerate mean shape)
        out[0], out[1], out[2], out[3] = 1.0, 0.0, 0.0, 1.0
        return out
    out[0] = np.float32((a + d) / var)
    out[1] = np.float32((b - c) / var)
    out[2] = np.float32((c - b) / var)
    out[3] = np.float32((a + d) / var)
    return out


@njit(nogil=True)
def _predict(img, left, top, right, bottom, initial, splits, thresh, leaves, anchors, deltas):
    h, w = img.shape[0], img.shape[1]
    sx, sy = float(right - left), float(bottom - top)
    shape = initial.copy()
    n_casc, n_trees, n_splits = splits.shape[0], splits.shape[1], splits.shape[2]
    n_pix = anchors.shape[1]
    pixels = np.empty(n_pix, np.float32)
    for c in range(n_casc):
        m = _transform(initial, shape)
        for i in range(n_pix):
            j = anchors[c, i]
            dx, dy = deltas[c, i, 0], deltas[c, i, 1]
            px = np.float32(np.float32(m[0] * dx) + np.float32(m[1] * dy)) + shape[2 * j]
            py = np.float32(np.float32(m[2] * dx) + np.float32(m[3] * dy)) + shape[2 * j + 1]
            x = np.int64(np.floor(np.float64(px) * sx + left + 0.5))
            y = np.int64(np.floor(np.float64(py) * sy + top + 0.5))
            if 0 <= x < w and 0 <= y < h:
                v = np.int32(img[y, x, 0]) + np.int32(img[y, x, 1]) + np.int32(img[y, x, 2])
                pixels[i] = np.float32(v // 3)
            else:
                pixels[i] = 0.0
        for t in range(n_trees):
            node = 0
            while node < n_splits:
                i, j = splits[c, t, node, 0], splits[c, t, node, 1]
                if pixels[i] - pixels[j] > thresh[c, t, node]:
                    node = 2 * node + 1
                else:
                    node = 2 * node + 2
            leaf = leaves[c, t, node - n_splits]
            for k in range(shape.size):
                shape[k] += leaf[k]
    out = np.empty((shape.size // 2, 2), np.float32)
    for i in range(shape.size // 2):
        out[i, 0] = np.floor(np.float64(shape[2 * i]) * sx + left + 0.5)
        out[i, 1] = np.floor(np.float64(shape[2 * i + 1]) * sy + top + 0.5)
    return out


@dataclass(frozen=True, eq=False)
class ShapeModel:
    """The trees of a dlib shape predictor (see the module docstring).

    Attributes: ``initial`` ``(2K,)`` the mean shape (x, y interleaved, box units);
    ``splits`` ``(C, T, S, 2)`` the feature pixels each split compares; ``thresh``
    ``(C, T, S)``; ``leaves`` ``(C, T, S + 1, 2K)``; ``anchors`` ``(C, P)`` each feature
    pixel's landmark and ``deltas`` ``(C, P, 2)`` its offset from it in the mean shape.
    """

    path: Path
    initial: np.ndarray
    splits: np.ndarray
    thresh: np.ndarray
    leaves: np.ndarray
    anchors: np.ndarray
    deltas: np.ndarray

    @property
    def num_parts(self) -> int:
        return self.initial.size // 2

    @classmethod
    def read(cls, path: str | Path) -> ShapeModel:
        """Reads a dlib ``shape_predictor`` file (``ShapeModelFormatError`` if it is not
        one, or if its trees differ in size, which dlib's trainer never writes)."""
        path = Path(path)
        buf = np.fromfile(path, np.uint8)
        version, dims, n_casc, n_trees, n_splits, leaf_size = _sizes(buf)
        if version != 1 or dims < 2 or dims % 2 or n_casc < 1 or leaf_size != dims:
            raise ShapeModelFormatError(
                f"{path}: not a dlib shape predictor (version {version}, "
                f"{dims} shape values, {n_casc} cascades, leaves of {leaf_size})"
            )
        if n_splits & (n_splits + 1):
            raise ShapeModelFormatError(f"{path}: trees of {n_splits} splits are not full")
        if n_casc * n_trees * (n_splits + 1) * dims * 4 > buf.size:  # 4+ bytes a value
            raise ShapeModelFormatError(
                f"{path}: not a dlib shape predictor ({n_casc} cascades of {n_trees} trees "
                f"do not fit in {buf.size} bytes)"
            )
        arrays = [
            np.empty(dims, np.float32),
            np.empty((n_casc, n_trees, n_splits, 2), np.int32),
            np.empty((n_casc, n_trees, n_splits), np.float32),
            np.empty((n_casc, n_trees, n_splits + 1, dims), np.float32),
        ]
        pos = _fill_trees(buf, *arrays)
        _, after = _int(buf, pos)  # the number of pixel lists, then the first one's size
        n_pix, _ = _int(buf, after)
        end = -1
        if pos >= 0 and after >= 0 and 0 < n_casc * n_pix * 6 <= buf.size:  # 2+ bytes an int
            anchors = np.empty((n_casc, n_pix), np.int32)
            deltas = np.empty((n_casc, n_pix, 2), np.float32)
            end = _fill_pixels(buf, pos, anchors, deltas)
        if end != buf.size:
            raise ShapeModelFormatError(
                f"{path}: not a dlib shape predictor with trees of one size "
                f"(read to byte {end} of {buf.size})"
            )
        model = cls(path, *arrays, anchors, deltas)
        if (
            (model.splits < 0).any()
            or (model.splits >= n_pix).any()
            or (model.anchors < 0).any()
            or (model.anchors >= dims // 2).any()
        ):
            raise ShapeModelFormatError(f"{path}: an index out of range in the trees")
        return model

    def predict(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """The landmarks ``(K, 2)`` float32 (whole pixels, as dlib's) of the face in
        ``box`` ``(left, top, right, bottom)``, whole pixels as ``dlib.rectangle``, in
        the uint8 RGB image ``rgb`` ``(H, W, 3)``."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(
                f"the shape predictor needs a uint8 (H, W, 3) image, got {rgb.dtype} {rgb.shape}"
            )
        left, top, right, bottom = (operator.index(v) for v in box)  # as dlib.rectangle
        return _predict(
            np.ascontiguousarray(rgb),
            left,
            top,
            right,
            bottom,
            self.initial,
            self.splits,
            self.thresh,
            self.leaves,
            self.anchors,
            self.deltas,
        )


def load_shape_model(path: str) -> ShapeModel:
    """:meth:`ShapeModel.read`, once per process and path (~65 MB for the 68-point model);
    a file it cannot read raises the same error again without being read again (found
    in review: each landmarker re-read a file that falls back to dlib's own predictor)."""
    out = _read_once(path)
    if isinstance(out, str):
        raise ShapeModelFormatError(out)
    return out


@functools.cache
def _read_once(path: str) -> ShapeModel | str:
    """The model, or the error's message: a new error is raised each time (a cached
    exception object would keep the frames of every raise alive: the file's bytes, the
    callers' locals; found in review)."""
    try:
        return ShapeModel.read(path)
    except ShapeModelFormatError as exc:
        return str(exc)
