"""Rendering for the synthetic benchmark (:mod:`spotformer.data.synthetic`).

Everything here is pure numpy/OpenCV on one frame or one video at a time; the planning
of events lives in ``synthetic_plan.py``, the files and the manifest in ``synthetic.py``.

Coordinates: every event is defined in **rest coordinates**, the pixel coordinates of
frame ``t`` when the head is at its rest pose (no drift, no move). The rest image is a
*plate*, the subject's face image with a margin of ``margin`` px on every side so that
rigid motion never samples outside it. Frame ``t`` is rendered by one ``cv2.remap`` of
the plate with the composed backward map

    q (frame t)  --pose_t^-1-->  p (rest)  --minus local fields-->  p' (rest)  -> plate(p' + margin)

where ``pose_t`` is the rigid head pose (translation, in-plane rotation and scale about
the face centre) and the local fields are the planted expressions and the blinks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from sw_mro.io.samples import astronaut, carphone_path

SOURCES: tuple[str, ...] = ("astronaut", "grace_hopper", "carphone")
# Frames of carphone_pristine.mp4 whose face dlib finds (frame 119 it does not).
CARPHONE_FRAMES: tuple[int, ...] = (0, 30, 60, 90)
CARPHONE_UPSCALE = 3  # the clip is 176x144; the face is found reliably at 3x

# SW-MRO ROIs (SPEC.md 2.5): centres on these landmarks, in this order.
ROI_LANDMARKS: tuple[int, ...] = (18, 19, 20, 23, 24, 25, 48, 51, 54, 57)

__all__ = [
    "CARPHONE_FRAMES",
    "INTERPOLATION",
    "ROI_LANDMARKS",
    "SOURCES",
    "Site",
    "add_noise",
    "add_texture",
    "blink_site",
    "brow_site",
    "build_plate",
    "colour_transform",
    "detect_landmarks",
    "face_axes",
    "mouth_site",
    "pose_matrix",
    "render_frame",
    "source_image",
]


# --------------------------------------------------------------------------- sources


def _grace_hopper() -> np.ndarray:
    """Grace Hopper's portrait (600x512 RGB), a sample image that matplotlib ships."""
    import matplotlib.cbook as cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{path} cannot be read; reinstall matplotlib")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _carphone_frame(index: int) -> np.ndarray:
    import av

    with av.open(str(carphone_path())) as container:
        for k, frame in enumerate(container.decode(video=0)):
            if k == index:
                rgb = frame.to_ndarray(format="rgb24")
                break
        else:
            raise ValueError(f"carphone_pristine.mp4 has no frame {index}")
    return cv2.resize(
        rgb, None, fx=CARPHONE_UPSCALE, fy=CARPHONE_UPSCALE, interpolation=cv2.INTER_CUBIC
    )


@lru_cache(maxsize=8)
def source_image(name: str, frame: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A real face image and its 68 dlib landmarks: ``(rgb (H, W, 3) uint8, (68, 2))``.

    ``name`` is one of :data:`SOURCES`; ``frame`` picks the carphone frame.
    """
    if name == "astronaut":
        rgb = astronaut()
    elif name == "grace_hopper":
        rgb = _grace_hopper()
    elif name == "carphone":
        rgb = _carphone_frame(frame)
    else:
        raise ValueError(f"unknown face source {name!r}: use one of {SOURCES}")
    res = detect_landmarks(rgb)
    if res is None:
        raise RuntimeError(f"no face found in the {name} sample image (frame {frame})")
    rgb.setflags(write=False)
    return rgb, res[1]


@lru_cache(maxsize=1)
def _landmarker():
    from sw_mro.io.landmarks import make_landmarker

    # Loading dlib's 100 MB shape predictor takes ~2 s: do it once per process.
    return make_landmarker("dlib", track=False, fill_missing=False)


def detect_landmarks(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The largest face's dlib box ``(4,)`` and 68 landmarks ``(68, 2)``, or None."""
    lm = _landmarker()
    lm.reset()
    res = lm.detect(rgb)
    if not bool(res.found[0]):
        return None
    return res.boxes[0].astype(np.float64), res.points[0].astype(np.float64)


# --------------------------------------------------------------------------- identities


def colour_transform(
    rgb: np.ndarray, gains: tuple[float, float, float], gamma: float, saturation: float
) -> np.ndarray:
    """float32 image after saturation, white balance (per-channel gains) and gamma."""
    img = rgb.astype(np.float32)
    gray = img @ np.float32([0.299, 0.587, 0.114])
    img = gray[..., None] + np.float32(saturation) * (img - gray[..., None])
    img *= np.asarray(gains, np.float32)
    np.clip(img, 0.0, 255.0, out=img)
    return (255.0 * (img / 255.0) ** np.float32(gamma)).astype(np.float32)


def build_plate(
    rgb: np.ndarray,
    src_centre: tuple[float, float],
    scale: float,
    *,
    size: tuple[int, int],
    margin: int,
    centre: tuple[float, float],
    rotation_deg: float,
    flip: bool,
) -> np.ndarray:
    """Place a source face in a ``(H + 2m, W + 2m, 3)`` float32 plate.

    The source point ``src_centre`` lands at ``centre`` (frame coordinates, i.e. plate
    minus ``margin``), scaled by ``scale``, rotated by ``rotation_deg`` and mirrored
    when ``flip``. Outside the source, the image is reflected (BORDER_REFLECT_101).
    """
    w, h = size
    scx, scy = (float(v) for v in src_centre)
    s = float(scale)
    a = math.radians(rotation_deg)
    flip_x = -1.0 if flip else 1.0
    # plate = T(dst) . R(a) . S(s) . F . T(-src centre)
    lin = (
        s
        * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        @ np.diag([flip_x, 1.0])
    )
    dst = np.array([centre[0] + margin, centre[1] + margin])
    mat = np.hstack([lin, (dst - lin @ np.array([scx, scy]))[:, None]])
    return cv2.warpAffine(
        rgb.astype(np.float32),
        mat,
        (w + 2 * margin, h + 2 * margin),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def add_texture(plate: np.ndarray, rng: np.random.Generator, amount: float, scale: float) -> None:
    """Add static fine texture (band-limited noise, ``amount`` grey levels std) in place.

    The sources are upscaled 1.2-5x, so at video resolution they lack the skin detail
    a camera resolves, and optical flow underestimates motion on such smooth regions
    (measured: a 1.7 px move read as 1.35 px on the 5x-upscaled carphone face). The
    texture lives on the plate, so it moves with the face and with every planted field.
    """
    if amount <= 0:
        return
    h, w = plate.shape[:2]
    tex = rng.standard_normal((h, w), dtype=np.float32)
    tex = cv2.GaussianBlur(tex, (0, 0), scale)
    tex *= np.float32(amount / max(float(tex.std()), 1e-6))
    plate += tex[..., None]


# --------------------------------------------------------------------------- geometry


def face_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (ex: image left eye -> image right eye, ey: down the face)."""
    ex = points[45] - points[36]
    ex = ex / np.linalg.norm(ex)
    return ex, np.array([-ex[1], ex[0]])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class Site:
    """One anisotropic Gaussian displacement field in rest coordinates.

    u(p) = amp(t) * vector * exp(-0.5 (a^2 / s_a^2 + c^2 / s_c^2)), where (a, c) are the
    coordinates of p - centre along ``axis`` and across it. For a blink the across
    sigma differs above (``sigma_up``) and below (``sigma_across``) the centre, and the
    field is used directly as the backward map (``invert=False``).
    """

    centre: tuple[float, float]
    vector: tuple[float, float]  # displacement at amp = 1, px
    axis: tuple[float, float]  # unit vector "along"
    sigma_along: float
    sigma_across: float
    sigma_up: float | None = None  # across sigma on the -ey side (blinks)
    invert: bool = True  # solve v(q) = u(q - v(q)) so content moves by exactly u

    def weight(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        dx, dy = px - self.centre[0], py - self.centre[1]
        ax, ay = self.axis
        along = dx * ax + dy * ay
        across = -dx * ay + dy * ax  # positive = down the face when axis = ex
        sc: float | np.ndarray = self.sigma_across
        if self.sigma_up is not None:
            sc = np.where(across < 0, self.sigma_up, self.sigma_across)
        return np.exp(-0.5 * ((along / self.sigma_along) ** 2 + (across / sc) ** 2))

    def extent(self) -> float:
        """Radius beyond which the field is below 1e-4 of its peak (4.3 sigma)."""
        return 4.3 * max(self.sigma_along, self.sigma_across, self.sigma_up or 0.0)

    def gain_at(self, point: np.ndarray) -> float:
        return float(self.weight(np.float64(point[0]), np.float64(point[1])))

    def to_json(self) -> dict:
        out = {
            "centre": [round(v, 3) for v in self.centre],
            "vector": [round(v, 5) for v in self.vector],
            "axis": [round(v, 5) for v in self.axis],
            "sigma_along": round(self.sigma_along, 3),
            "sigma_across": round(self.sigma_across, 3),
        }
        if self.sigma_up is not None:
            out["sigma_up"] = round(self.sigma_up, 3)
        return out


def brow_site(points: np.ndarray, side: str, action: str, peak: float, across: float = 0.5) -> Site:
    """An eyebrow field centred on landmark 19 (left) or 24 (right).

    It is elongated along the brow (sigma = |18 - 20|, so ROIs 18 and 20 see 0.88 of
    the peak) and narrower across it (``across`` x |18 - 20|; 0.5 moves the upper
    eyelid skin with the brow, as AU1+2 does, and is broad enough for Farneback's
    15 px window to resolve). ``raise`` (AU1+2) moves the brow up
    the face; ``lower`` (AU4) moves it down and towards the midline.
    """
    a, c, b = (18, 19, 20) if side == "left" else (23, 24, 25)
    ex, ey = face_axes(points)
    span = float(np.linalg.norm(points[b] - points[a]))
    inward = ex if side == "left" else -ex
    direction = -ey if action == "raise" else _unit(0.8 * ey + 0.6 * inward)
    axis = _unit(points[b] - points[a])
    return Site(
        centre=tuple(float(v) for v in points[c]),
        vector=tuple(float(v) for v in peak * direction),
        axis=tuple(float(v) for v in axis),
        sigma_along=span,
        sigma_across=across * span,
    )


def mouth_site(
    points: np.ndarray, side: str, action: str, peak: float, sigma: float = 0.18
) -> Site:
    """A mouth-corner field centred on landmark 48 (left) or 54 (right).

    Isotropic, sigma = ``sigma`` x |48 - 54| (0.18: ROIs 51 and 57, the lip centres, see
    about 2 % of the peak). ``smile`` (AU12) pulls the corner up and out, ``depress`` (AU15) down.
    """
    k = 48 if side == "left" else 54
    ex, ey = face_axes(points)
    width = float(np.linalg.norm(points[54] - points[48]))
    outward = -ex if side == "left" else ex
    direction = (
        _unit(-0.6 * ey + 0.8 * outward) if action == "smile" else _unit(0.9 * ey + 0.3 * outward)
    )
    return Site(
        centre=tuple(float(v) for v in points[k]),
        vector=tuple(float(v) for v in peak * direction),
        axis=tuple(float(v) for v in ex),
        sigma_along=sigma * width,
        sigma_across=sigma * width,
    )


def blink_site(points: np.ndarray, side: str) -> Site:
    """An eyelid field for one eye (landmarks 36-41 left, 42-47 right).

    The backward map samples skin from above the eye into the eye opening, so the upper
    lid appears to slide down over it: displacement 1.1 x the eye opening down the face,
    a Gaussian along the eye (sigma 0.45 x eye width) and, across it, sigma 0.7 x the
    opening above the eye centre and 0.25 x below (the lower lid barely moves). With
    these numbers the field is below 1 % of its peak at the eyebrow landmarks.
    """
    idx = np.arange(36, 42) if side == "left" else np.arange(42, 48)
    eye = points[idx]
    ex, ey = face_axes(points)
    width = float(np.linalg.norm(eye[3] - eye[0]))
    opening = float((np.linalg.norm(eye[5] - eye[1]) + np.linalg.norm(eye[4] - eye[2])) / 2)
    opening = max(opening, 0.25 * width)  # a squinting source still gets a visible blink
    return Site(
        centre=tuple(float(v) for v in eye.mean(axis=0)),
        vector=tuple(float(v) for v in 1.1 * opening * ey),
        axis=tuple(float(v) for v in ex),
        sigma_along=0.45 * width,
        sigma_across=0.25 * opening,
        sigma_up=0.7 * opening,
        invert=False,
    )


# --------------------------------------------------------------------------- rendering


def pose_matrix(pose: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """The 2x3 rest -> frame map of a pose ``(tx, ty, theta_deg, scale)``.

    q = c + scale * R(theta) (p - c) + (tx, ty), with c the face centre.
    """
    tx, ty, theta, scale = (float(v) for v in pose)
    a = math.radians(theta)
    lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = np.asarray(centre, np.float64)
    return np.hstack([lin, (c + np.array([tx, ty]) - lin @ c)[:, None]])


def _apply_site(
    mx: np.ndarray, my: np.ndarray, site: Site, amp: float, fwd: np.ndarray, margin: int
) -> None:
    """Subtract the backward displacement of ``site`` from the maps, in place.

    ``mx, my`` hold rest coordinates + ``margin`` for every frame pixel; ``fwd`` is the
    2x3 rest -> frame map, used only to find the frame pixels the field can reach.
    """
    h, w = mx.shape
    r = site.extent() + math.hypot(*site.vector) * abs(amp)
    cx, cy = fwd[:, :2] @ np.asarray(site.centre) + fwd[:, 2]
    rr = r * max(1.0, float(np.abs(fwd[:, :2]).sum(axis=1).max()))
    x0, x1 = max(0, int(cx - rr)), min(w, int(cx + rr) + 2)
    y0, y1 = max(0, int(cy - rr)), min(h, int(cy + rr) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    px, py = mx[y0:y1, x0:x1] - margin, my[y0:y1, x0:x1] - margin
    vx0, vy0 = (amp * v for v in site.vector)
    wgt = site.weight(px, py)
    vx, vy = vx0 * wgt, vy0 * wgt
    if site.invert:
        # Content at p moves to p + u(p): the backward map needs v(q) = u(q - v(q)).
        # Fixed-point iteration; |grad u| <= 0.4 for the planted fields, so 4 steps
        # leave < 1e-3 px of error.
        for _ in range(4):
            wgt = site.weight(px - vx, py - vy)
            vx, vy = vx0 * wgt, vy0 * wgt
    mx[y0:y1, x0:x1] -= vx
    my[y0:y1, x0:x1] -= vy


INTERPOLATION = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def render_frame(
    plate: np.ndarray,
    margin: int,
    fwd: np.ndarray,
    fields: list[tuple[Site, float]],
    grid: tuple[np.ndarray, np.ndarray],
    interpolation: str = "linear",
) -> np.ndarray:
    """One float32 ``(H, W, 3)`` frame: the plate under pose ``fwd`` and the local fields.

    ``fields`` are ``(site, amplitude)`` pairs active in this frame; ``grid`` is
    ``(arange(W), arange(H))`` as float32.
    """
    xs, ys = grid
    inv = cv2.invertAffineTransform(fwd).astype(np.float64)
    (a, b, c), (d, e, f) = inv.tolist()  # python floats keep the maps float32
    # Rest coordinates of every frame pixel (+ margin: plate pixels), separable.
    mx = (a * xs)[None, :] + (b * ys + (c + margin))[:, None]
    my = (d * xs)[None, :] + (e * ys + (f + margin))[:, None]
    for site, amp in fields:
        if amp != 0.0:
            _apply_site(mx, my, site, amp, fwd, margin)
    return cv2.remap(plate, mx, my, INTERPOLATION[interpolation], borderMode=cv2.BORDER_REFLECT_101)


@lru_cache(maxsize=4)
def _gauss_lut(sigma: float) -> np.ndarray:
    """256 quantiles of N(0, sigma^2): a uniform byte through it is Gaussian noise."""
    from scipy.special import ndtri

    return (sigma * ndtri((np.arange(256) + 0.5) / 256)).astype(np.float32)


def add_noise(frame: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """uint8 frame = round(frame + N(0, sigma^2) per pixel and channel), saturated.

    The Gaussian is drawn as random bytes through a quantile table (tails cut at 2.9
    sigma): 5-10x faster than ``standard_normal`` at 640x480x3 and deterministic.
    """
    if sigma <= 0:
        return cv2.add(frame, 0.0, dtype=cv2.CV_8U)  # round and saturate
    u8 = np.frombuffer(rng.bytes(frame.size), np.uint8).reshape(frame.shape)
    return cv2.add(frame, cv2.LUT(u8, _gauss_lut(float(sigma))), dtype=cv2.CV_8U)
