"""A slow, obviously-correct SW-MRO reference (SPEC.md section 2): one window at a time.

Written to be read, not to be fast: a Python loop over windows and pairs,
``cv2.calcOpticalFlowFarneback`` for every flow, numpy for crops, shifts and MDMO.
It follows the same documented decisions as ``sw_mro.pipeline`` (SWMROConfig's
docstring) but shares no code with it except the landmark detector, so that
``extract`` can be checked against it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from sw_mro.config import SWMROConfig
from sw_mro.io.landmarks import make_landmarker


def gray_cv2(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def bilinear(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Sample ``img`` at float coordinates (pixel centres at integers), border replicated."""
    h, w = img.shape
    x = np.clip(xs, 0, w - 1)
    y = np.clip(ys, 0, h - 1)
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    im = img.astype(np.float64)
    top = im[y0, x0] * (1 - fx) + im[y0, x1] * fx
    bot = im[y1, x0] * (1 - fx) + im[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def crop(img: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Box ``[x0, x1) x [y0, y1)`` (pixel edges) resized to ``size`` bilinearly."""
    x0, y0, x1, y1 = box
    t = (np.arange(size) + 0.5) / size
    xs = x0 + t * (x1 - x0) - 0.5
    ys = y0 + t * (y1 - y0) - 0.5
    return bilinear(img, xs[None, :].repeat(size, 0), ys[:, None].repeat(size, 1))


def shift(img: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``out(y, x) = img(y + dy, x + dx)``."""
    h, w = img.shape
    ys, xs = np.mgrid[:h, :w].astype(np.float64)
    return bilinear(img, xs + d[0], ys + d[1])


def mdmo(vectors: np.ndarray, edges: tuple[float, ...], top: float) -> np.ndarray:
    """MDMO of ``(K, 2)`` vectors (SPEC 2.6) as the precedent bins them: region ``k`` is
    the angles in [edges[k], edges[k+1]) degrees, the last one those >= edges[-1] or
    < edges[0]; the vectors go to the first region that holds their angle, and the
    first of the most populated regions wins."""
    if len(vectors) == 0:
        return np.zeros(2, np.float32)
    v = vectors.astype(np.float32)
    ang = np.arctan2(v[:, 1] + 0.0, v[:, 0] + 0.0)  # a zero vector, -0.0 too, has angle 0
    ang = np.where(ang < 0, ang + np.float32(2 * math.pi), ang)
    e = [np.float32(math.radians(x)) for x in edges]
    regions = [(ang >= lo) & (ang < hi) for lo, hi in zip(e[:-1], e[1:], strict=True)]
    regions.append((ang >= e[-1]) | (ang < e[0]))
    main = int(np.argmax([r.sum() for r in regions]))  # first maximum
    chosen = v[regions[main]]
    mag = np.sqrt(chosen[:, 0] * chosen[:, 0] + chosen[:, 1] * chosen[:, 1])
    keep = max(1, math.ceil(len(chosen) * top))
    order = np.argsort(-mag, kind="stable")[:keep]
    total = chosen[order].astype(np.float64).sum(axis=0)
    norm = np.hypot(*total)
    if norm == 0:
        return np.zeros(2, np.float32)
    return (total / norm * mag[order].astype(np.float64).mean()).astype(np.float32)


def flow_cv2(a: np.ndarray, b: np.ndarray, cfg: SWMROConfig) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(
        a, b, None, cfg.pyr_scale, cfg.levels, cfg.winsize, cfg.iterations, cfg.poly_n,
        cfg.poly_sigma, 0,
    )  # fmt: skip


def detections(frames: np.ndarray, cfg: SWMROConfig) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks ``(T, 68, 2)`` and detector boxes ``(T, 4)`` of every frame
    (SWMROConfig: tracked within segments of ``landmark_segment`` frames); a frame
    without a face takes the last good points and box, frames before the first face
    take its points and box."""
    found, pts, boxes = [], [], []
    seg = cfg.landmark_segment
    for a in range(0, len(frames), seg):
        res = make_landmarker(cfg.landmarks, fill_missing=False).detect(frames[a : a + seg])
        found += list(res.found)
        pts += list(res.points)
        boxes += list(res.boxes)
    pts, boxes = np.array(pts), np.array(boxes)
    first = found.index(True)
    for i in range(len(pts)):
        if i < first:
            pts[i], boxes[i] = pts[first], boxes[first]
        elif not found[i]:
            pts[i], boxes[i] = pts[i - 1], boxes[i - 1]
    return pts, boxes


def landmarks(frames: np.ndarray, cfg: SWMROConfig) -> np.ndarray:
    """Landmarks of every frame, as :func:`detections`."""
    return detections(frames, cfg)[0]


def face_box(points: np.ndarray, cfg: SWMROConfig, det_box: np.ndarray | None = None) -> np.ndarray:
    """Square crop box ``x0, y0, x1, y1`` around the landmarks' bounding box, or around
    the detector's box ``det_box`` when ``cfg.crop_box == "detector"``: side
    ``box_scale`` x its larger extent, centre moved up by ``box_shift`` x the side."""
    if cfg.crop_box == "detector":
        lo, hi = det_box[:2].astype(np.float64), det_box[2:].astype(np.float64)
    else:
        lo, hi = points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)
    side = max(cfg.box_scale * (hi - lo).max(), 8.0)
    cx, cy = (lo + hi) / 2
    cy -= cfg.box_shift * side
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def window_feature(
    crops: list[np.ndarray], pts: np.ndarray, cfg: SWMROConfig, noses: list | None = None
) -> np.ndarray:
    """``(w, R, 2)`` feature of one clip from its crops and first-frame crop landmarks;
    ``noses``: each clip frame's mean nose landmark in crop pixels, from which a pair
    whose nose moved by more than ``cfg.align_init_min_px`` starts its alignment."""
    s = cfg.face_size
    w = len(crops)
    out = np.zeros((w, cfg.num_rois, 2), np.float32)
    # Nose region (SPEC 2.3) and its patch.
    nose = pts[list(cfg.nose_landmarks)]
    m = cfg.nose_margin_px
    nx0, ny0 = np.clip(np.floor(nose.min(axis=0) - m + 0.5), 0, s - 1).astype(int)
    nx1, ny1 = np.clip(np.floor(nose.max(axis=0) + m + 0.5), 0, s - 1).astype(int)
    p = cfg.nose_patch_px
    px = int(np.clip(np.round((nx0 + nx1) / 2) - p // 2, 0, s - p))
    py = int(np.clip(np.round((ny0 + ny1) / 2) - p // 2, 0, s - p))
    in_nose = np.zeros((p, p), bool)
    in_nose[max(ny0 - py, 0) : ny1 - py + 1, max(nx0 - px, 0) : nx1 - px + 1] = True
    ref = crops[0]
    ref_patch = np.ascontiguousarray(ref[py : py + p, px : px + p])
    r = cfg.roi_size_px

    def align(tgt: np.ndarray, d: np.ndarray) -> np.ndarray:
        for it in range(cfg.align_max_iter):  # SPEC 2.4: re-align on the nose
            aligned = tgt if it == 0 and not d.any() else shift(tgt, d)
            patch = np.ascontiguousarray(aligned[py : py + p, px : px + p])
            fl = flow_cv2(ref_patch, patch, cfg)
            resid = mdmo(fl[in_nose], cfg.nose_edges, cfg.nose_top)
            if np.hypot(*resid.astype(np.float64)) <= cfg.align_tol:
                break
            d = d + resid
        return d

    def patch_error(tgt: np.ndarray, d: np.ndarray) -> float:
        moved = shift(tgt, d.astype(np.float32))[py : py + p, px : px + p]
        return float(np.abs(moved.astype(np.float64) - ref_patch).mean())

    for k in range(1, w):
        tgt = crops[k]
        d = align(tgt, np.zeros(2))
        if noses is not None and cfg.align_from_landmarks and cfg.align_max_iter > 0:
            moved = noses[k] - noses[0]  # a large head motion: also try the landmarks'
            if np.hypot(*moved) > cfg.align_init_min_px:
                d_lm = align(tgt, moved.astype(np.float32).astype(np.float64))
                if patch_error(tgt, d_lm) < patch_error(tgt, d):  # the better match wins
                    d = d_lm
        aligned = tgt if not d.any() else shift(tgt, d.astype(np.float32))
        fl = flow_cv2(ref, aligned, cfg)
        for j, lmk in enumerate(cfg.roi_landmarks):  # SPEC 2.5-2.6
            cx, cy = pts[lmk]
            x0 = int(np.clip(np.round(cx) - r // 2, 0, s - r))
            y0 = int(np.clip(np.round(cy) - r // 2, 0, s - r))
            out[k, j] = mdmo(
                fl[y0 : y0 + r, x0 : x0 + r].reshape(-1, 2), cfg.mdmo_edges, cfg.mdmo_top
            )
    return out


def reference_features(frames_rgb: np.ndarray, cfg: SWMROConfig) -> np.ndarray:
    """SW-MRO features ``(N, w, R, 2)`` of a whole video given as RGB frames."""
    n = len(frames_rgb)
    w, h = cfg.window, cfg.window // 2
    pts_all, boxes_all = detections(frames_rgb, cfg)
    gray = [gray_cv2(f) for f in frames_rgb]
    out = np.zeros((n, w, cfg.num_rois, 2), np.float32)
    for i in range(n):
        first = min(max(i - h, 0), n - 1)
        box = face_box(pts_all[first], cfg, boxes_all[first])
        idx = [min(max(i - h + s, 0), n - 1) for s in range(w)]  # SPEC 2.1 padding
        crops = [crop(gray[j], box, cfg.face_size) for j in idx]
        scale = cfg.face_size / (box[2] - box[0])
        pts = (pts_all[first].astype(np.float64) + 0.5 - box[:2]) * scale - 0.5
        # Every clip frame's nose (mean of the nose landmarks) in this clip's crop.
        noses = [
            (pts_all[j][list(cfg.nose_landmarks)].astype(np.float64).mean(axis=0) + 0.5 - box[:2])
            * scale
            - 0.5
            for j in idx
        ]
        out[i] = window_feature(crops, pts, cfg, noses)
    return out
