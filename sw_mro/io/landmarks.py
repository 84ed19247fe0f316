"""Face boxes and 68 facial landmarks (iBUG 300-W order), one interface for every backend.

``make_landmarker(name)`` returns a :class:`Landmarker`: ``detect(frames)`` takes uint8
RGB frames ``(T, H, W, 3)`` (or one frame ``(H, W, 3)``, or gray ``(T, H, W)``), as numpy
arrays or torch tensors, and returns a :class:`LandmarkResult` with

- ``boxes``  ``(T, 4)`` float32, the detector's face box ``x0, y0, x1, y1`` in frame pixels,
- ``points`` ``(T, 68, 2)`` float32, ``(x, y)`` in frame pixels, 0-based iBUG order,
- ``found``  ``(T,)`` bool, whether this frame's face was detected.

A landmarker is stateful across calls, so a video can be fed chunk by chunk:

- **Fallback.** A frame where no face is found reuses the last good box and landmarks
  (``found`` is False there, so callers can record it). Before any face has been seen
  the box and points are NaN; ``fill_missing=False`` gives NaN for every miss (for
  unrelated still images). :meth:`Landmarker.reset` forgets the state.
- **Largest face wins** when a frame has several and no face was tracked into it (the
  first frame, or after the face was lost). A tracked face keeps its place: the face
  nearest its last box wins, among those found in the region around it or, where it
  left that region, those of the whole-frame scan within one face side; with only
  farther faces, the frame is a miss for up to :data:`TRACK_PATIENCE` frames before the
  largest takes over. So a larger face that appears later does not take over while the
  tracked one is in view (in the pipeline, a tracking segment of 32 frames that starts
  on another face of similar size is run again from the last face's box, and a clearly
  larger face takes over there: ``sw_mro.pipeline._Landmarks``).

Backends:

- ``"dlib"`` (default, offline): dlib's HOG frontal face detector and the 68-point shape
  predictor of face-recognition-models, whose trees :mod:`sw_mro.io.shape_model` reads
  and runs in numba (dlib's landmarks exactly, about twice as fast as dlib's own
  predictor, without holding the GIL; a file it cannot read runs in dlib). For speed
  the detector first searches a region 1.6x the previous face's size around the
  previous box, resized so that the face is ~90 px (the HOG detector finds faces of >=
  ~80 px); only when that fails does it scan
  the whole frame (downscaled to at most ``detect_max_side`` px, then at 2x upsampling
  for small faces, then at full size, then 2x upsampled at up to
  :data:`SMALL_FACE_MAX_SIDE` px: faces from ~40 px). ``track=False`` always scans the whole frame. With ``redetect=N``
  (N > 1) the detector runs only every N-th frame of a track; the frames between take
  the last detection's box moved by the landmarks' motion since, and run the shape
  predictor alone (about 1.9x faster landmarks at N = 4 on the dev VM; the landmarks move by
  about as much as full-frame detection differs from the tracked search: docs/sw_mro.md).
  The limit: the predictor alone does not follow a face that moves by a quarter of its
  box or more from one frame to the next; the next detection finds it again.
- ``"insightface"``: the user's buffalo_l models (``det_10g.onnx``, the SCRFD detector,
  and ``1k3d68.onnx``, 68 3-D landmarks) run with onnxruntime directly (no insightface
  package), on CUDA when ``device`` is a CUDA device. Pre- and post-processing follow
  insightface 0.7 (``scrfd.py``, ``landmark.py``): 640x640 letterboxed detector input,
  score threshold 0.5, NMS 0.4, landmark crop 1.5x the box at 192 px.

Examples:
    >>> from sw_mro.io.samples import astronaut
    >>> res = make_landmarker("dlib").detect(astronaut())
    >>> res.points.shape, bool(res.found[0])
    ((1, 68, 2), True)
"""

from __future__ import annotations

import functools
import math
import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import cv2
import numpy as np

from sw_mro.errors import ModelLoadError, ModelNotFoundError

__all__ = [
    "DEFAULT_INSIGHTFACE_ROOT",
    "INSIGHTFACE_FILES",
    "DlibLandmarker",
    "InsightFaceLandmarker",
    "LandmarkResult",
    "Landmarker",
    "check_insightface_models",
    "insightface_models",
    "make_landmarker",
]

BackendName = Literal["dlib", "insightface"]
NUM_POINTS = 68
INSIGHTFACE_FILES = ("det_10g.onnx", "1k3d68.onnx")
DEFAULT_INSIGHTFACE_ROOT = Path("~/.insightface/models/buffalo_l")


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int]:
    """The ``(height, width)`` a frame is resized to in insightface's square ``size``
    detector input, with its floating-point steps (scrfd.py 0.7: ``int(size / (h / w))``,
    which is 423, not 424, for 424x640: found in review, 335 portrait sizes differed).

    Examples:
        >>> letterbox_size(640, 424, 640), letterbox_size(480, 640, 640)
        ((640, 423), (480, 640))
    """
    ratio = float(height) / width
    if ratio > 1.0:  # the model's input is square: its ratio is 1
        return size, int(size / ratio)
    return int(size * ratio), size


def insightface_models(root: str | os.PathLike | None = None) -> Path:
    """The insightface model folder (``root``, else ``$INSIGHTFACE_ROOT``, else
    ``~/.insightface/models/buffalo_l``) once both model files are found there.

    Raises:
        ModelNotFoundError: a file is missing; the message says where to put it.
    """
    folder = Path(root or os.environ.get("INSIGHTFACE_ROOT", DEFAULT_INSIGHTFACE_ROOT))
    folder = folder.expanduser()
    missing = [f for f in INSIGHTFACE_FILES if not (folder / f).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"insightface models missing: {', '.join(str(folder / f) for f in missing)}. "
            f"Download buffalo_l.zip from the insightface model zoo and unzip it so that "
            f"{folder / INSIGHTFACE_FILES[0]} and {folder / INSIGHTFACE_FILES[1]} exist, or pass "
            f"--insightface-root DIR (a folder holding both files)."
        )
    return folder


@dataclass(frozen=True)
class LandmarkResult:
    """Per-frame detections: ``boxes (T, 4)``, ``points (T, 68, 2)``, ``found (T,)``."""

    boxes: np.ndarray
    points: np.ndarray
    found: np.ndarray

    def __len__(self) -> int:
        return int(self.found.shape[0])


@runtime_checkable
class Landmarker(Protocol):
    """What every backend provides."""

    def detect(self, frames: np.ndarray) -> LandmarkResult: ...

    def reset(self) -> None: ...


def _as_frames(frames: object) -> np.ndarray:
    """uint8 numpy ``(T, H, W, 3)`` RGB from numpy/torch, one frame or many, RGB or gray."""
    if hasattr(frames, "detach"):  # torch tensor, possibly on a GPU
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise ValueError(f"landmark detection needs uint8 frames, got {arr.dtype}")
    if arr.ndim == 2:  # one gray frame
        arr = arr[None]
    if arr.ndim == 3 and arr.shape[-1] == 3:  # one RGB frame (a 3-px-wide gray video is not)
        arr = arr[None]
    if arr.ndim == 3:  # (T, H, W) gray
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) RGB or (T, H, W) gray, got {arr.shape}")
    return arr


class _Base:
    """Shared fallback bookkeeping; subclasses implement ``_detect_one``."""

    def __init__(self, *, fill_missing: bool = True) -> None:
        self.fill_missing = fill_missing
        self.reset()

    def reset(self) -> None:
        self._last_box = np.full(4, np.nan, np.float32)
        self._last_points = np.full((NUM_POINTS, 2), np.nan, np.float32)

    def _detect_one(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        raise NotImplementedError

    def detect(self, frames: np.ndarray) -> LandmarkResult:
        arr = _as_frames(frames)
        t = arr.shape[0]
        boxes = np.empty((t, 4), np.float32)
        points = np.empty((t, NUM_POINTS, 2), np.float32)
        found = np.zeros(t, bool)
        for k in range(t):  # one face per frame; detectors are per-image calls
            hit = self._detect_one(np.ascontiguousarray(arr[k]))
            if hit is not None:
                self._last_box, self._last_points = hit
                found[k] = True
                boxes[k], points[k] = hit
            elif self.fill_missing:
                boxes[k], points[k] = self._last_box, self._last_points
            else:
                boxes[k], points[k] = np.nan, np.nan
        return LandmarkResult(boxes=boxes, points=points, found=found)


def _largest(rects: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
    return max(rects, key=lambda r: (r[2] - r[0]) * (r[3] - r[1]))


def centre_distance(box: Sequence[float], other: Sequence[float]) -> float:
    """Distance between the centres of two ``x0, y0, x1, y1`` boxes."""
    return math.hypot(
        (other[0] + other[2] - box[0] - box[2]) / 2, (other[1] + other[3] - box[1] - box[3]) / 2
    )


def _nearest(
    rects: list[tuple[float, float, float, float]], box: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    """The rect whose centre is nearest ``box``'s."""
    return min(rects, key=lambda r: centre_distance(box, r))


_THREAD = threading.local()
_IDLE_DETECTORS: list = []  # detectors whose threads have ended, for the next thread
_IDLE_LOCK = threading.Lock()


class _HeldDetector:
    """A thread's detector; when the thread ends (and its ``threading.local`` data goes),
    a finalizer hands the detector to the next thread that needs one."""

    __slots__ = ("det", "__weakref__")

    def __init__(self, det: Any) -> None:
        self.det = det


def _idle_again(det: Any) -> None:
    with _IDLE_LOCK:
        _IDLE_DETECTORS.append(det)


def _dlib_detector():
    """dlib's HOG face detector of the calling thread.

    Building one takes ~0.3 s (measured on the 2-core dev VM), about 60 tracked frames'
    worth, and one detector must not be called from two threads at once, so each thread
    keeps its own, and a new thread takes one whose thread has ended: every extraction
    runs its landmarks in a new thread, and built one each time (0.3 s of the 6.5 s of the
    48-frame benchmark clip; per video of a data set).
    """
    held = getattr(_THREAD, "dlib_detector", None)
    if held is None:
        with _IDLE_LOCK:
            det = _IDLE_DETECTORS.pop() if _IDLE_DETECTORS else None
        if det is None:
            import dlib

            det = dlib.get_frontal_face_detector()
        held = _THREAD.dlib_detector = _HeldDetector(det)
        weakref.finalize(held, _idle_again, det)
    return held.det


@functools.cache
def _dlib_predictor(path: str):
    """dlib's own shape predictor, loaded once per process (100 MB, ~0.5 s to parse):
    the fallback for a model file :mod:`sw_mro.io.shape_model` cannot read, and the
    tests' reference."""
    import dlib

    return dlib.shape_predictor(path)


def _dlib_points(predictor, rgb: np.ndarray, box: tuple[int, ...]) -> np.ndarray:  # noqa: ANN001
    """dlib's own ``predictor`` (``dlib.shape_predictor``) on ``box``: (K, 2) float32."""
    import dlib

    shape = predictor(rgb, dlib.rectangle(*box))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def _shape_predictor(path: str):
    """``predict(rgb, (left, top, right, bottom)) -> (K, 2)`` float32 for a model file:
    :class:`sw_mro.io.shape_model.ShapeModel` (dlib's landmarks, ~2x faster, the GIL
    released), or dlib's own predictor where the file has trees of mixed sizes."""
    from sw_mro.io.shape_model import ShapeModelFormatError, load_shape_model

    try:
        return load_shape_model(path).predict
    except ShapeModelFormatError:
        return functools.partial(_dlib_points, _dlib_predictor(path))


class DlibLandmarker(_Base):
    """dlib HOG detector + 68-point shape predictor, tracking the previous box for speed."""

    def __init__(
        self,
        predictor_path: str | os.PathLike | None = None,
        *,
        track: bool = True,
        detect_max_side: int = 320,
        track_face_px: int = 90,
        track_margin: float = 0.8,
        redetect: int = 1,
        fill_missing: bool = True,
    ) -> None:
        from sw_mro.io.samples import dlib_shape_predictor_path

        path = Path(predictor_path) if predictor_path else dlib_shape_predictor_path()
        if not path.is_file():
            raise ModelNotFoundError(
                f"dlib shape predictor {path} is missing: pip install face-recognition-models"
            )
        self._predict = _shape_predictor(str(path))
        self.track = track
        self.detect_max_side = detect_max_side
        self.track_face_px = track_face_px
        self.track_margin = track_margin
        if isinstance(redetect, bool) or not isinstance(redetect, int) or redetect < 1:
            raise ValueError(
                f"redetect must be an int >= 1 (1: detect every frame); got {redetect!r}"
            )
        self.redetect = redetect
        super().__init__(fill_missing=fill_missing)

    def reset(self) -> None:
        super().reset()
        self._prev: tuple[float, float, float, float] | None = None
        # redetect > 1: the last detection's box, landmark centre and landmark width, the
        # last frame's landmark centre, and the frames since that detection.
        self._anchor: tuple[tuple[float, ...], tuple[float, float], float] | None = None
        self._centre: tuple[float, float] | None = None
        self._since = 0
        self._fit: np.ndarray | None = None  # the last frame's landmarks (redetect > 1)
        self._misses = 0  # frames the tracked face has been missed in, others in view

    @property
    def tracking_state(self) -> tuple | None:
        """The tracker's whole state after ``reset()`` (a picklable tuple, or None for a
        fresh tracker), so that a segment can be continued in another process."""
        if self._prev is None:
            return None
        return (self._prev, self._anchor, self._centre, self._since, self._fit, self._misses)

    @tracking_state.setter
    def tracking_state(self, state: tuple | None) -> None:
        if state is None:
            self._prev, self._anchor, self._centre, self._since = None, None, None, 0
            self._fit, self._misses = None, 0
        else:
            self._prev, self._anchor, self._centre, self._since, self._fit, self._misses = state

    @property
    def tracking_box(self) -> tuple[float, float, float, float] | None:
        """The box the next frame's search starts from (None: scan the whole frame).

        With ``redetect=1`` this and ``reset()`` are the tracker's whole state; with
        ``redetect > 1`` use :attr:`tracking_state` to continue a segment elsewhere
        (setting the box alone makes the next frame a detection).
        """
        return self._prev

    @tracking_box.setter
    def tracking_box(self, box: tuple[float, float, float, float] | None) -> None:
        self._prev = None if box is None else tuple(float(v) for v in box)  # type: ignore[assignment]
        self._anchor, self._centre, self._since = None, None, 0  # detect on the next frame
        self._fit, self._misses = None, 0

    def _run(self, img: np.ndarray, scale: float, ox: float, oy: float, up: int) -> list:
        """Detector on ``img`` (a resized crop); boxes mapped back to frame pixels."""
        rects = _dlib_detector()(img, up)
        return [
            (
                r.left() / scale + ox,
                r.top() / scale + oy,
                r.right() / scale + ox,
                r.bottom() / scale + oy,
            )
            for r in rects
        ]

    def _near(self, rgb: np.ndarray) -> list:
        assert self._prev is not None
        x0, y0, x1, y1 = self._prev
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        h, w = rgb.shape[:2]
        half = self.track_margin * side
        rx0, ry0 = int(max(0, cx - half)), int(max(0, cy - half))
        rx1, ry1 = int(min(w, cx + half)), int(min(h, cy + half))
        if rx1 - rx0 < 8 or ry1 - ry0 < 8:
            return []
        scale = self.track_face_px / max(side, 1.0)
        crop = rgb[ry0:ry1, rx0:rx1]
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        small = cv2.resize(
            crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        )
        return self._run(small, scale, rx0, ry0, 0)

    def _full(self, rgb: np.ndarray, small_faces: bool = True) -> list:
        h, w = rgb.shape[:2]
        small, scale = _at_most(rgb, self.detect_max_side)
        rects = self._run(small, scale, 0.0, 0.0, 0)
        if not rects:  # small faces: dlib's 2x pyramid upsampling
            rects = self._run(small, scale, 0.0, 0.0, 1)
        if not rects and scale < 1.0:
            rects = self._run(rgb, 1.0, 0.0, 0.0, 0)
        # Last, faces of 40-80 px in frames over detect_max_side (found in review: a
        # 50 px face was found at 480x360, not at 640x480): 2x upsampling of the frame at
        # most SMALL_FACE_MAX_SIDE px long. It runs only where every pass above found
        # nothing and no face was tracked into this frame (``small_faces``): a tracked
        # face that is missed for a frame (a hand, a turn) falls back to its last
        # landmarks, as before, instead of jumping to a small face in the background
        # (found in review). A frame without a face pays it (640x480: +107 ms on the dev
        # VM, after 60 ms for the passes above).
        if (
            small_faces
            and not rects
            and scale < 1.0
            and max(h, w) < 2 * SMALL_FACE_MAX_SIDE  # else no gain over the full-size pass
        ):
            mid, scale2 = _at_most(rgb, SMALL_FACE_MAX_SIDE)
            rects = self._run(mid, scale2, 0.0, 0.0, 1)
        return rects

    def _tracked_or_largest(self, rects: list) -> tuple[float, float, float, float] | None:
        """The whole-frame scan's face for a frame that a face was tracked into, after the
        search near its last box found nothing: the nearest face within one face side of
        that box (it moved out of the search region: a camera shake; found in review: the
        larger of two faces side by side took over there); None (a miss) while others
        are farther, for up to :data:`TRACK_PATIENCE` frames (the tracked face hidden by
        a hand or turned away, found in review: one missed frame handed the video to a
        bystander for good), then the largest."""
        assert self._prev is not None
        side = self._prev[2] - self._prev[0]
        close = [r for r in rects if centre_distance(self._prev, r) <= side]
        if close:
            return _nearest(close, self._prev)
        self._misses += 1
        return None if self._misses <= TRACK_PATIENCE else _largest(rects)

    def _shape(self, rgb: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
        return self._predict(rgb, tuple(round(v) for v in box))

    def _predict_only(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """redetect > 1, between detections: the last detection's box moved by the
        landmarks' motion since, and the shape predictor alone. None (detect instead)
        when it is time to detect, or when the fit is non-finite, jumps or changes size
        by more than a quarter of the box. A face that jumped that far usually leaves
        the fit near the old box, which these checks cannot see: the next detection,
        at most ``redetect - 1`` frames later, corrects it."""
        if not self.track or self.redetect == 1 or self._anchor is None:
            return None
        if self._since >= self.redetect:
            return None
        (box0, c0, extent0), c = self._anchor, self._centre
        assert c is not None
        dx, dy = c[0] - c0[0], c[1] - c0[1]
        box = (box0[0] + dx, box0[1] + dy, box0[2] + dx, box0[3] + dy)
        pts = self._shape(rgb, box)
        side = box0[2] - box0[0]
        centre = (float(pts[:, 0].mean()), float(pts[:, 1].mean()))
        extent = float(np.ptp(pts[:, 0]))
        if (
            not np.isfinite(pts).all()
            or abs(centre[0] - c[0]) > 0.25 * side
            or abs(centre[1] - c[1]) > 0.25 * side
            or abs(extent - extent0) > 0.25 * extent0
            or _shape_change(pts, self._fit) > SHAPE_CHANGE_LIMIT * side
        ):
            return None
        self._since += 1
        self._centre = centre
        self._prev = box
        self._fit = pts
        return np.asarray(box, np.float32), pts

    def _detect_one(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        hit = self._predict_only(rgb)
        if hit is not None:
            return hit
        tracked = self.track and self._prev is not None
        rects = self._near(rgb) if tracked else []
        if rects:
            box = _nearest(rects, self._prev)
        else:  # the small-face pass only where no face was tracked into this frame
            # (found in review: ``self._prev is None`` here skipped it with ``track=False``
            # after every frame with a face, so a small face was found every other frame)
            rects = self._full(rgb, small_faces=not tracked)
            if not rects:
                box = None
            elif tracked:
                box = self._tracked_or_largest(rects)
            else:
                box = _largest(rects)
        if box is None:
            self._anchor, self._centre, self._since = None, None, 0
            self._fit = None
            if not (tracked and rects):  # else a miss within the patience: keep the box
                self._prev, self._misses = None, 0  # lost: the next frame scans the whole frame
            return None
        self._prev, self._misses = box, 0
        pts = self._shape(rgb, box)
        if self.redetect > 1:
            centre = (float(pts[:, 0].mean()), float(pts[:, 1].mean()))
            extent = float(np.ptp(pts[:, 0]))
            self._anchor, self._centre, self._since = (tuple(box), centre, extent), centre, 1
            self._fit = pts
        return np.asarray(box, np.float32), pts


#: Frames that a tracked face may be missed in, while other faces are in view far from
#: its last box, before the largest of them takes over: a hand over the face, a turn, a
#: blurred frame (those frames fall back to its last landmarks).
TRACK_PATIENCE = 8

# redetect > 1: a predictor-only fit whose shape (translation removed) moved by more than
# this fraction of the box from the last frame's goes to the detector instead. The shape
# predictor fits a face-like shape to anything, e.g. a frame with no face (found in
# review). Measured with per-frame detection: consecutive real faces change by 0.020 of
# the box at the median and 0.024 at most (carphone, 50 px faces; 0.007 on the 640x480
# benchmark clip), the fit on a blank frame by 0.049. A false alarm only costs a
# detection.
SHAPE_CHANGE_LIMIT = 0.035


def _at_most(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """``rgb`` downscaled (area) so that its long side is at most ``side``, and the scale."""
    h, w = rgb.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale == 1.0:
        return rgb, scale
    size = (round(w * scale), round(h * scale))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


#: The whole-frame scan's last pass upsamples frames of at most this long side (or
#: the frame downscaled to it) 2x: faces from ~40 px (frames up to this size) are found,
#: ~40 x side / this px above it. 1280 px up 2x took 322 ms on the dev VM, so larger
#: frames are downscaled: a 1920x1080 frame's pass finds faces from ~60 px.
SMALL_FACE_MAX_SIDE = 1280


def _shape_change(pts: np.ndarray, prev: np.ndarray | None) -> float:
    """Median landmark displacement from ``prev`` after removing the median translation
    (0 without ``prev``)."""
    if prev is None:
        return 0.0
    d = pts - prev
    d = d - np.median(d, axis=0)
    return float(np.median(np.linalg.norm(d, axis=1)))


# --------------------------------------------------------------------------- insightface


def _insightface_runtime():
    """onnxruntime (and onnx, which reads the landmark model's first layers), or a
    ModelLoadError that says what to install."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        raise ModelLoadError(
            f"--landmarks insightface needs onnxruntime and onnx ({exc}): pip install "
            '"spotformer-toolkit[insightface]" (onnxruntime-gpu instead of onnxruntime '
            "for --gpu)"
        ) from None
    return onnxruntime


def _onnx_session(path: Path, device: str):
    ort = _insightface_runtime()

    providers: list = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        # The GPU of ``device`` ("cuda:1"), not onnxruntime's default GPU 0.
        index = int(str(device).partition(":")[2] or 0)
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime's own types (InvalidProtobuf, Fail, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"{path}: onnxruntime cannot load this model ({first}). If it is a truncated "
            f"download or another file under this name, download buffalo_l.zip again and "
            f"unzip it into {path.parent}"
        ) from None


def check_insightface_models(root: str | os.PathLike | None = None) -> Path:
    """:func:`insightface_models`, then each model loaded once with onnxruntime on CPU, so
    that a file which is there but broken stops a run before its first input.

    Raises:
        ModelNotFoundError: a file is missing. ModelLoadError: one cannot be loaded.
    """
    folder = insightface_models(root)
    for name in INSIGHTFACE_FILES:
        _onnx_session(folder / name, "cpu")
    return folder


def _nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> np.ndarray:
    """Greedy NMS (insightface's ``scrfd.nms``); returns kept indices."""
    order = scores.argsort()[::-1]
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= thresh]
    return np.asarray(keep, int)


def _is_mxnet_normalised(model_path: Path) -> bool:
    """insightface ``landmark.py``: models converted from MXNet normalise inside the graph."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    sub = mul = False
    for nid, node in enumerate(graph.node[:8]):
        if node.name.startswith(("Sub", "_minus")):
            sub = True
        if node.name.startswith(("Mul", "_mul")):
            mul = True
        if nid < 3 and node.name == "bn_data":
            sub = mul = True
    return sub and mul


class InsightFaceLandmarker(_Base):
    """buffalo_l SCRFD detector + ``1k3d68`` landmarks, with onnxruntime directly."""

    det_size = 640
    det_thresh = 0.5
    nms_thresh = 0.4
    strides = (8, 16, 32)
    num_anchors = 2

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        fill_missing: bool = True,
    ) -> None:
        root = insightface_models(root)
        self.root = root
        self._det = _onnx_session(root / "det_10g.onnx", device)
        self._lmk = _onnx_session(root / "1k3d68.onnx", device)
        self._det_in = self._det.get_inputs()[0].name
        self._lmk_in = self._lmk.get_inputs()[0]
        size = self._lmk_in.shape[2]
        self.lmk_size = int(size) if isinstance(size, int) else 192
        if _is_mxnet_normalised(root / "1k3d68.onnx"):
            self.lmk_mean, self.lmk_std = 0.0, 1.0
        else:
            self.lmk_mean, self.lmk_std = 127.5, 128.0
        super().__init__(fill_missing=fill_missing)

    def _detect_boxes(self, rgb: np.ndarray) -> np.ndarray:
        """Face boxes ``(K, 4)`` in frame pixels after threshold and NMS (scrfd.detect)."""
        h, w = rgb.shape[:2]
        size = self.det_size
        new_h, new_w = letterbox_size(h, w, size)
        det_scale = new_h / h
        canvas = np.zeros((size, size, 3), np.float32)
        canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h))
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]  # RGB, as swapRB of BGR
        outs = self._det.run(None, {self._det_in: np.ascontiguousarray(blob, np.float32)})
        if outs[0].ndim == 3:  # batched export
            outs = [o[0] for o in outs]
        boxes, scores = [], []
        n = len(self.strides)
        for i, stride in enumerate(self.strides):
            fh, fw = size // stride, size // stride
            ys, xs = np.mgrid[:fh, :fw]
            centers = (np.stack([xs, ys], -1).reshape(-1, 2) * stride).astype(np.float32)
            centers = np.repeat(centers, self.num_anchors, axis=0)
            sc = outs[i].reshape(-1)
            dist = outs[i + n].reshape(-1, 4) * stride
            pos = sc >= self.det_thresh
            c, d = centers[pos], dist[pos]
            boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
            scores.append(sc[pos])
        b = np.concatenate(boxes) / det_scale
        s = np.concatenate(scores)
        if not len(s):
            return np.zeros((0, 4), np.float32)
        return b[_nms(b, s, self.nms_thresh)].astype(np.float32)

    def _landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 points via the 1.5x box crop at ``lmk_size`` (insightface landmark.get)."""
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half = self.lmk_size / 2
        s = self.lmk_size / (max(x1 - x0, y1 - y0) * 1.5)
        m = np.array([[s, 0, half - cx * s], [0, s, half - cy * s]], np.float32)
        crop = cv2.warpAffine(rgb, m, (self.lmk_size, self.lmk_size), borderValue=0.0)
        blob = ((crop.astype(np.float32) - self.lmk_mean) / self.lmk_std).transpose(2, 0, 1)[None]
        pred = self._lmk.run(None, {self._lmk_in.name: np.ascontiguousarray(blob)})[0][0]
        pred = pred.reshape(-1, 3) if pred.size >= 3000 else pred.reshape(-1, 2)
        pts = (pred[-NUM_POINTS:, :2] + 1.0) * half  # crop pixels
        return ((pts - m[:, 2]) / s).astype(np.float32)  # invert the similarity

    def _detect_one(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        boxes = self._detect_boxes(rgb)
        if not len(boxes):
            return None
        box = np.asarray(_largest([tuple(b) for b in boxes]), np.float32)
        return box, self._landmarks(rgb, box)


def make_landmarker(
    name: BackendName = "dlib",
    *,
    root: str | os.PathLike | None = None,
    device: str = "cpu",
    **kwargs,
) -> Landmarker:
    """The landmark backend ``name``; ``root`` is the insightface model folder.

    ``kwargs`` go to the backend (``track``, ``fill_missing``, ...).
    """
    if name == "dlib":
        return DlibLandmarker(**kwargs)
    if name == "insightface":
        return InsightFaceLandmarker(root, device=str(device), **kwargs)
    raise ValueError(f"unknown landmark backend {name!r}: use 'dlib' or 'insightface'")
