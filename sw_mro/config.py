"""SW-MRO extraction settings: one frozen, validated dataclass.

Every number SPEC.md section 2 gives is a default here, and every decision it leaves
open is a field with its default documented below (see also docs/sw_mro.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["SWMROConfig"]

_REF_FACE = 256  # face size at which the precedent's pixel sizes are stated (SPEC 2.3, 2.5)
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")  # the devices SWMROConfig.device may name


_CGROUP = "/sys/fs/cgroup"  # the cgroup file systems
_SELF_CGROUP = "/proc/self/cgroup"  # this process's cgroup paths


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _up(root: str, path: str) -> list[str]:
    """``root/path`` and each of its parents up to ``root``."""
    parts = [p for p in path.split("/") if p]
    return [os.path.join(root, *parts[:k]) for k in range(len(parts), -1, -1)]


def _cgroup_quota() -> float | None:
    """The smallest CPU quota (in CPUs) on this process's cgroup path, v2 or v1. In a
    container with its own cgroup namespace the path is "/", the container's root;
    under systemd or ``--cgroupns=host`` it is the full path, and a limit may sit on
    any level of it."""
    quotas = []
    for line in (_read(_SELF_CGROUP) or "0::/").splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":  # v2: "max 100000" or "400000 100000"
            for d in _up(_CGROUP, path):
                fields = (_read(os.path.join(d, "cpu.max")) or "max").split()
                try:
                    if fields[0] != "max":
                        quotas.append(int(fields[0]) / int(fields[1]))
                except (IndexError, ValueError, ZeroDivisionError):
                    pass
        elif "cpu" in controllers.split(","):  # v1: cfs quota -1 means none
            for d in _up(os.path.join(_CGROUP, "cpu"), path):
                q, period = (
                    _read(os.path.join(d, f)) for f in ("cpu.cfs_quota_us", "cpu.cfs_period_us")
                )
                try:
                    if q and period and int(q) > 0 and int(period) > 0:
                        quotas.append(int(q) / int(period))
                except ValueError:
                    pass
    return min(quotas) if quotas else None


#: Environment variable that caps :func:`usable_cpus`: ``sw-mro extract --devices``
#: gives each device's worker process its share of the CPUs this way.
CPU_SHARE_ENV = "SW_MRO_CPUS"


def usable_cpus() -> int:
    """CPUs this process may use: the affinity mask (``taskset``, cpusets), capped by a
    cgroup CPU quota (``docker run --cpus``, Kubernetes limits, systemd ``CPUQuota``),
    which ``os.cpu_count()`` ignores: on a 64-core host a 4-CPU container would
    otherwise start 16 landmark workers on 4 CPUs. ``SW_MRO_CPUS=N`` caps it too."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None and quota > 0:
        n = min(n, max(1, int(-(-quota // 1))))  # 2.5 CPUs -> 3
    share = os.environ.get(CPU_SHARE_ENV, "")
    if share.isdigit() and int(share) > 0:
        n = min(n, int(share))
    return max(1, n)


#: Nose landmark motion within a clip (px at face size, crop pixels) beyond which the
#: alignment from 0 loses the head: the 64 px nose patch's flow keeps 2 pyramid levels
#: (OpenCV's level cap), and on a synthetic translation with known ground truth its
#: shift error was 0.05-0.15 px up to 17 px of motion and 16-65 px beyond (docs/sw_mro.md);
#: on scikit-image's astronaut face moved rigidly at 256 px, the features kept 20-29 px of
#: the move from 14 px up, 16 px down, 17 px diagonally and 22 px sideways on (<= 1 px
#: below; found in review, 17 before: ``test_the_default_alignment_reaches_the_limit``).
#: Measured with the 64 px patch of face sizes up to 256; a larger patch (80 px at 320)
#: reaches further, so there the limit errs on the side of the hint.
LARGE_NOSE_MOTION_PX = 13.0

#: Share of a video's frame pairs over :data:`LARGE_NOSE_MOTION_PX` from which
#: ``sw-mro extract`` suggests ``--align-from-landmarks``. Measured at 256 px, w 17, with
#: the limit of 17 px of before: the default synthetic set (head moves of 4-12 px) had
#: at most 0.31 % of its pairs over (one landmark outlier), the same generator with head
#: moves of 24-40 px 1.5-2.1 % on every video, and carphone (a hand-held camera) 50 %.
LARGE_NOSE_MOTION_SHARE = 0.01

#: Nose landmark motion within a clip, as a share of the face crop, beyond which
#: ``sw-mro extract`` warns that the tracked face changed: a head does not cross half
#: its own crop within a clip (carphone's hand-held camera: at most 27 %), while a swap
#: to another face in view, or a detection elsewhere, moves the landmarks by about the
#: distance between the faces (found in review: two faces of similar size swapped at
#: the 32-frame tracking restarts without a word).
FACE_JUMP_SHARE = 0.5

#: Share of a video's frames without a face (their windows use the last face found
#: before them) over which ``sw-mro extract``, ``spotformer train`` and ``spotformer
#: spot`` warn.
LANDMARK_FALLBACK_WARN_SHARE = 0.10
#: What those warnings say the frames without a face get.
LANDMARK_FALLBACK_WORDS = (
    "their windows use the last face found before them, or the first face found for "
    "frames before it"
)

#: Grey levels that the face crop spans (1st to 99th percentile of its luma, the median
#: over one sampled frame per landmark segment) under which ``sw-mro extract``,
#: ``spotformer train`` and ``spotformer spot`` warn that the video is dim or washed out.
#: Farneback's flow (OpenCV's and ours) is regularised for 8-bit contrast, so the same
#: motion gives smaller features on a dim face (eleventh session, carphone, w 9, 128 px:
#: intensities x0.5 -> 0.91x the features, x0.3 -> 0.38x, x0.2 -> 0.11x). Measured spans:
#: carphone 196 (x0.5: 94, x0.3: 54, x0.2: 36), the synthetic set's faces 173-242, the
#: benchmark clip 228; 64 (the span of a 14-bit value read by its high byte) sits near
#: x0.33, where the features are about half.
FACE_CONTRAST_WARN_LEVELS = 64.0

#: The largest ``face_size`` (px): 4x SPEC's 256, where one 16-window batch of crops
#: already holds ~1 GB per float plane.
MAX_FACE_SIZE = 1024
#: More landmark worker processes than this is a mistake (the pool's queue is sized from it).
MAX_LANDMARK_WORKERS = 1024

#: Consecutive sampled frames (one per 32-frame landmark segment) under
#: :data:`FACE_CONTRAST_WARN_LEVELS` from which a video whose median is above it is
#: warned about too: a stretch over two or more segments (about 1 s at 30 fps) where the
#: light was turned down or the camera's exposure went wrong, whose features are smaller
#: than the rest's. One such frame alone, or several with brighter ones between, is not.
FACE_CONTRAST_DIM_FRAMES = 2

#: MDMO sectors, as first edges in degrees (the last sector wraps past 360). The
#: default: 4 equal sectors from 0 degrees (edges on the image axes).
EQUAL_EDGES: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
#: The precedent's ROI sectors (AUW-GCN ``feature_extraction/tools.py``), centred on the
#: axes: down 120, left 60, up 120, right 60 degrees. Opt-in (``mdmo_edges``): with them
#: the demo recipe, tuned on the default sectors, fell from F1 0.64 to 0.50 on the
#: default synthetic set (seed 0); see docs/sw_mro.md.
ROI_EDGES: tuple[float, ...] = (30.0, 150.0, 210.0, 330.0)
#: The precedent's nose sectors (90 degrees each, centred on the axes). Opt-in
#: (``nose_edges``).
NOSE_EDGES: tuple[float, ...] = (45.0, 135.0, 225.0, 315.0)


def equal_edges(bins: int) -> tuple[float, ...]:
    """First edges (degrees) of ``bins`` equal MDMO sectors from 0 degrees."""
    return tuple(360.0 * k / bins for k in range(bins))


def check_edges(edges: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """``edges`` as a tuple of floats, if they are >= 1 increasing angles in [0, 360)."""
    try:
        e = tuple(float(x) for x in edges)
    except (TypeError, ValueError):
        raise ValueError(f"edges must be angles in degrees; got {edges!r}") from None
    if (
        not e
        or any(not 0 <= x < 360 for x in e)
        or any(a >= b for a, b in zip(e, e[1:], strict=False))
    ):
        raise ValueError(f"edges must be increasing angles in [0, 360) degrees; got {edges!r}")
    return e


def _int_tuple(values: Any) -> tuple[int, ...]:
    """``values`` as a tuple of ints (numpy ints too); () for anything else (a number, a
    string, floats, bools), which the caller refuses by name."""
    import operator

    try:
        items = tuple(values)
        if any(isinstance(v, bool) for v in items):
            return ()
        return tuple(operator.index(v) for v in items)
    except TypeError:
        return ()


@dataclass(frozen=True)
class SWMROConfig:
    """Settings of :func:`sw_mro.extract` and ``sw-mro extract``.

    Paper / SPEC.md section 2 defaults:

    - ``window`` = 17 (odd, >= 3): clip length w; clip c_i is centred on frame i and the
      video is padded with w // 2 copies of its first and last frames (SPEC 2.1).
    - ``face_size`` = 256: every clip frame is cropped with the clip's first-frame box and
      resized to ``face_size`` x ``face_size`` (SPEC 2.2; 320 was used for SAMM).
    - ``roi_landmarks`` = (18, 19, 20, 23, 24, 25, 48, 51, 54, 57), 0-based iBUG indices,
      ``roi_groups`` = ((0, 3), (3, 6), (6, 10)) (SPEC 2.5).
    - ``roi_size``: square ROI side, 21 px at 256 px, scaled with ``face_size`` when left
      None (``round(21 * face_size / 256)``, made odd so the patch centres on its pixel).
    - ``nose_landmarks`` = (29, 30) and ``nose_margin``, 13 px at 256 px, scaled likewise
      (SPEC 2.3).
    - ``align_tol`` = 0.1 px, ``align_max_iter`` = 4 (SPEC 2.4).
    - MDMO (SPEC 2.6): 4 sectors, ``mdmo_top`` = 0.6 for ROIs and ``nose_top`` = 0.88
      for the nose. ``mdmo_edges`` = ``nose_edges`` = (0, 90, 180, 270) degrees by
      default; the precedent's sectors, centred on the image axes, are
      ``mdmo_edges=ROI_EDGES`` (30, 150, 210, 330: 120/60/120/60 degrees) and
      ``nose_edges=NOSE_EDGES`` (45, 135, 225, 315), opt-in until the spotting recipe
      is tuned on them (docs/sw_mro.md).
    - Farneback: ``pyr_scale`` 0.5, ``levels`` 3, ``winsize`` 15, ``iterations`` 5,
      ``poly_n`` 7, ``poly_sigma`` 1.5, box window (flags 0) (SPEC 2, precedent).

    Decisions SPEC leaves open (each is a field):

    - ``crop_box`` = "landmarks": the face box is a square around the 68 landmarks of the
      clip's first frame: centre of the landmarks' bounding box, side ``box_scale`` (1.2)
      times its larger extent, shifted up by ``box_shift`` (0.05) of the side so that the
      eyebrows sit inside with margin. Derived from landmarks, the crop is the same for
      every landmark backend and jitters less than a HOG detector box. "detector" uses
      the backend's own box, squared about its centre with the same ``box_scale`` and
      shifted up by the same ``box_shift``.
      Parts of the box outside the frame are filled by replicating the border.
    - Crop resampling: bilinear with ``align_corners=False`` (a box [x0, x1) maps onto
      pixel centres), gray = cv2's RGB->gray weights. Flow runs on gray crops as float32
      in [0, 255].
    - ROI pooling: an ROI is the ``roi_size`` square of flow vectors centred on the
      landmark rounded to the nearest pixel, clamped inside the crop.
    - Nose region: the bounding box of ``nose_landmarks`` widened by ``nose_margin`` on
      every side, rounded to whole pixels. Its head shift is computed on a nose patch: the
      flow between the reference crop and the target crop (re-aligned by the running
      shift) over a square of ``nose_patch`` px centred on the nose region (default
      64 px at 256, scaled, >= 64 px; the nose box is ~27 x 40 px at 256) with the SPEC
      Farneback settings (OpenCV's level cap leaves 2 pyramid levels at 64 px). A
      96 px patch left the same head residual on a 5.6 px drift (median 0.20 vs
      0.20 px, p95 0.42 vs 0.42 px) at 2.25x the alignment flow cost. SPEC 2 allows it
      ("the nose shift needs flow only around the nose").
    - Alignment: the target crop is shifted by the accumulated nose shift with a
      bilinear Kornia translation (border replicated); an iteration's residual is the
      nose MDMO of the re-aligned pair and is added to the shift; iteration stops when
      the residual is <= ``align_tol`` px (per pair) or after ``align_max_iter`` shifts.
      The final ROI flow is of the last aligned pair.
    - ``align_from_landmarks`` (default False: SPEC's start from 0): when True, a pair
      whose nose landmarks (the mean of ``nose_landmarks``, both frames mapped into the
      clip's crop) moved by more than ``align_init_min`` px (8 at 256, scaled) is also
      aligned from that motion, and the shift whose nose patch matches the reference
      better (mean absolute grey difference) wins, ties keeping 0, so a single frame's
      landmark outlier cannot start a pair that did not move. The nose patch's flow
      alone loses a head that moved more than ~14-22 px (measured: a 44 px translation
      in 16 frames was tracked with <= 0.24 px error from the landmarks, and not at all
      from 0, which the whole crop's flow does). Opt-in because on the default
      synthetic set, whose head moves the start from 0 follows, it cost F1 (training
      seeds 0-2: mean 0.65 against 0.70; docs/sw_mro.md).
    - MDMO angle sectors: ``atan2(dy, dx)`` in [0, 2 pi); sector ``k`` is
      [edges[k], edges[k + 1]) and the last wraps past 360; ties between equally
      populated sectors go to the first in ``edges`` order (as the precedent's argmax);
      "top p %" keeps ``ceil(p * count)`` vectors (at least 1); zero-magnitude vectors
      count like any other (angle 0). The mean vector is (direction of the kept vectors' sum) x (their mean
      magnitude); it is 0 when the sum is 0.
    - ``landmarks`` = "dlib"; ``insightface_root`` for the insightface backend.
      Landmarks are tracked within segments of ``landmark_segment`` (32) frames: the
      tracker restarts (a whole-frame detection) at every multiple of 32, so segments
      can run on ``landmark_workers`` workers (None = 1 on CPU; on CUDA the usable CPUs
      minus two, at most 16: :func:`usable_cpus`;
      processes for dlib, whose shape predictor holds the GIL, threads for insightface)
      and the features do not depend on chunking or on the number of workers (a segment
      that starts on a face far from the one the segment before it ended on, and of
      similar size, is run again from that face's box: the tracked face is kept across
      restarts). A frame
      without a face takes the last good landmarks before it; frames before the first
      face take the first face's. ``landmark_redetect`` = 1: dlib's detector runs on
      every frame; N > 1 runs it every N-th frame of a segment and tracks with the shape
      predictor alone between (about 1.9x faster landmarks at N = 4, landmarks within about 0.5 px
      of per-frame detection on the clips measured; see docs/sw_mro.md).
    - ``device`` = "cpu"; ``batch_size`` = windows per device batch (each window has
      w - 1 pairs), None = 16 on CPU and 128 on CUDA; ``flow_backend`` = "auto" (see
      ``sw_mro.pipeline.flow_backend``: on CPU the C++ solver, else OpenCV); ``chunk_size`` = frames decoded (and landmarked) at a time, None = 64 on CPU and 512
      on CUDA; ``stride`` = 1
      (temporal subsampling, e.g. 7 for SAMM-LV).
    """

    window: int = 17
    face_size: int = 256
    roi_size: int | None = None
    roi_landmarks: tuple[int, ...] = (18, 19, 20, 23, 24, 25, 48, 51, 54, 57)
    roi_groups: tuple[tuple[int, int], ...] = ((0, 3), (3, 6), (6, 10))
    nose_landmarks: tuple[int, ...] = (29, 30)
    nose_margin: float | None = None
    nose_patch: int | None = None
    crop_box: Literal["landmarks", "detector"] = "landmarks"
    box_scale: float = 1.2
    box_shift: float = 0.05
    align_tol: float = 0.1
    align_max_iter: int = 4
    align_from_landmarks: bool = False
    align_init_min: float | None = None
    mdmo_edges: tuple[float, ...] = EQUAL_EDGES
    mdmo_top: float = 0.6
    nose_edges: tuple[float, ...] = EQUAL_EDGES
    nose_top: float = 0.88
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 5
    poly_n: int = 7
    poly_sigma: float = 1.5
    flow_backend: Literal["auto", "torch", "cupy", "opencv", "numba", "native"] = "auto"
    landmarks: Literal["dlib", "insightface"] = "dlib"
    insightface_root: str | None = None
    device: str = "cpu"
    batch_size: int | None = None
    chunk_size: int | None = None
    landmark_segment: int = 32
    landmark_redetect: int = 1
    landmark_workers: int | None = None
    stride: int = 1

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"SWMROConfig.{name}={getattr(self, name)!r}: {why}")

        # Types first, so that the range checks below compare numbers: a bool is not an
        # integer here, a string is not a number, and NaN or inf is no size.
        if not isinstance(self.device, str) and type(self.device).__name__ == "device":
            object.__setattr__(self, "device", str(self.device))  # a torch.device
        for f in dataclasses.fields(self):
            v, kind = getattr(self, f.name), str(f.type)
            if v is None and "None" in kind:
                continue
            if kind.startswith("int"):
                # numpy integers and whole floats (64.0) are taken, as Python ints
                whole = isinstance(v, numbers.Real) and not isinstance(v, bool)
                whole = whole and (isinstance(v, numbers.Integral) or float(v).is_integer())
                if not whole:
                    raise bad(f.name, "must be an integer" + (" or None" if "None" in kind else ""))
                object.__setattr__(self, f.name, int(v))
            if kind.startswith("float"):
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                    raise bad(
                        f.name, "must be a finite number" + (" or None" if "None" in kind else "")
                    )
                object.__setattr__(self, f.name, float(v))  # numpy floats as Python floats
        if not isinstance(self.window, int) or self.window < 3 or self.window % 2 == 0:
            raise bad("window", "must be an odd integer >= 3 (the clip is centred on its frame)")
        if not isinstance(self.face_size, int) or not 32 <= self.face_size <= MAX_FACE_SIZE:
            # Found in review: --face-size 100000 was a raw allocator error for 10 TB.
            raise bad(
                "face_size",
                f"must be an integer in 32..{MAX_FACE_SIZE} px (SPEC: 256; 320 for SAMM-LV)",
            )
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise bad("batch_size", "must be a positive integer or None (16 on CPU, 128 on CUDA)")
        if self.flow_backend not in ("auto", "torch", "cupy", "opencv", "numba", "native"):
            raise bad(
                "flow_backend", "must be 'auto', 'torch', 'cupy', 'opencv', 'numba' or 'native'"
            )
        if isinstance(self.landmark_workers, int) and self.landmark_workers > MAX_LANDMARK_WORKERS:
            raise bad(  # found in a probe: 2**31 - 1 failed every input with an OverflowError
                "landmark_workers",
                f"must be at most {MAX_LANDMARK_WORKERS} (one per core is plenty)",
            )
        for name in ("chunk_size", "landmark_workers"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise bad(name, "must be a positive integer or None (chosen by device)")
        for name in (
            "landmark_segment",
            "landmark_redetect",
            "stride",
            "align_max_iter",
            "iterations",
            "levels",
        ):
            v = getattr(self, name)
            low = 0 if name == "align_max_iter" else 1
            if not isinstance(v, int) or v < low:
                raise bad(name, f"must be an integer >= {low}")
        if self.roi_size is not None and (not isinstance(self.roi_size, int) or self.roi_size < 1):
            raise bad("roi_size", "must be a positive integer or None (scaled from 21 at 256 px)")
        if self.roi_size_px > self.face_size:
            raise bad("roi_size", f"is larger than face_size {self.face_size}")
        if self.nose_margin is not None and self.nose_margin < 0:
            raise bad("nose_margin", "must be >= 0 px or None (scaled from 13 at 256 px)")
        if self.nose_patch is not None and not 10 <= self.nose_patch <= self.face_size:
            raise bad(  # under 10 px, Farneback differs from OpenCV's (its border test)
                "nose_patch", f"must be within [10, face_size={self.face_size}] or None"
            )
        # Lists (from JSON or typed) are stored as tuples, as the edges are: found in a
        # probe, a list made the config unhashable and unequal to the same with tuples.
        for name in ("roi_landmarks", "nose_landmarks"):
            pts = _int_tuple(getattr(self, name))
            if not pts or any(not 0 <= p < 68 for p in pts):
                raise bad(name, "must be a non-empty tuple of landmark indices in [0, 68)")
            object.__setattr__(self, name, pts)
        try:
            groups = tuple(_int_tuple(g) for g in self.roi_groups)
        except TypeError:
            groups = ((),)  # not iterable
        if any(len(g) != 2 for g in groups):
            raise bad(
                "roi_groups", "must be (start, stop) pairs of ROI indices, e.g. ((0, 3), (3, 6))"
            )
        object.__setattr__(self, "roi_groups", groups)
        r = len(self.roi_landmarks)
        if any(not 0 <= a < b <= r for a, b in self.roi_groups):
            raise bad("roi_groups", f"each (start, stop) must satisfy 0 <= start < stop <= {r}")
        spans = sorted(self.roi_groups)
        if any(b > c for (_, b), (c, _) in zip(spans, spans[1:], strict=False)):
            raise bad("roi_groups", "the groups (facial parts) must not overlap")
        if self.crop_box not in ("landmarks", "detector"):
            raise bad("crop_box", "must be 'landmarks' or 'detector'")
        if not 0 < self.box_scale <= 10:  # found in a probe: 1e6 gave ~1e-10 px features
            raise bad("box_scale", "must be in (0, 10] (the crop's side over the face's; 1.2)")
        if not -1 <= self.box_shift <= 1:  # NaN too
            raise bad("box_shift", "must be in [-1, 1] (of the crop's side; 0.05)")
        if not self.align_tol >= 0:
            raise bad("align_tol", "must be >= 0 px")
        if not isinstance(self.align_from_landmarks, bool):
            raise bad("align_from_landmarks", "must be True or False")
        if self.align_init_min is not None and not self.align_init_min >= 0:
            raise bad("align_init_min", "must be >= 0 px or None (8 px at 256, scaled)")
        for name in ("mdmo_edges", "nose_edges"):
            try:
                edges = check_edges(getattr(self, name))
            except ValueError:
                raise bad(name, "must be increasing angles in [0, 360) degrees") from None
            object.__setattr__(self, name, edges)  # lists from JSON, ints: a float tuple
        for name in ("mdmo_top", "nose_top"):
            if not 0 < getattr(self, name) <= 1:
                raise bad(name, "must be a fraction in (0, 1]")
        if not 0 < self.pyr_scale < 1:
            raise bad("pyr_scale", "must be in (0, 1)")
        if not self.poly_sigma > 0:
            raise bad("poly_sigma", "must be > 0")
        if not isinstance(self.winsize, int) or self.winsize < 2:
            raise bad("winsize", "must be an integer >= 2 (OpenCV's box window of 1 is not one)")
        if self.poly_n not in (5, 7):
            raise bad("poly_n", "Farneback supports poly_n 5 or 7")
        from sw_mro.ops._farneback_kernels import degenerate_expansion

        if degenerate_expansion(self.poly_n, self.poly_sigma):  # found in a probe
            raise bad(
                "poly_sigma",
                f"is too small for poly_n {self.poly_n}: the polynomial expansion is "
                "degenerate and every flow would be 0 (as cv2 gives; from about 0.164 it "
                "is not; 1.5 and 1.1 are the usual values)",
            )
        if self.landmarks not in ("dlib", "insightface"):
            raise bad("landmarks", "must be 'dlib' or 'insightface'")
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise bad("device", "must be 'cpu' or a CUDA device such as 'cuda' / 'cuda:0'")
        if self.flow_backend == "cupy" and not self.device.startswith("cuda"):  # found in a
            raise bad(  # probe: accepted, then "call .cuda()" deep inside the extraction
                "flow_backend",
                f"'cupy' runs on a CUDA device, not device={self.device!r}; on CPU use "
                "'auto', 'native', 'numba', 'opencv' or 'torch'",
            )

    # Derived sizes (SPEC 2.3, 2.5: pixel sizes stated at 256 px scale with face_size).
    @property
    def roi_size_px(self) -> int:
        if self.roi_size is not None:
            return self.roi_size
        s = max(1, round(21 * self.face_size / _REF_FACE))
        return s if s % 2 else s + 1

    @property
    def nose_patch_px(self) -> int:
        if self.nose_patch is not None:
            return self.nose_patch
        return min(self.face_size, max(64, round(64 * self.face_size / _REF_FACE)))

    @property
    def resolved_batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return 128 if str(self.device).startswith("cuda") else 16

    @property
    def resolved_chunk_size(self) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        # CUDA: 512 frames = 16 landmark segments, one per worker process of a 16-core host.
        return 512 if str(self.device).startswith("cuda") else 64

    @property
    def resolved_landmark_workers(self) -> int:
        if self.landmark_workers is not None:
            return self.landmark_workers
        if str(self.device).startswith("cuda"):
            return max(1, min(16, usable_cpus() - 2))
        return 1

    @property
    def align_init_min_px(self) -> float:
        """Landmark motion (px at face size) from which the alignment starts from it."""
        if self.align_init_min is not None:
            return float(self.align_init_min)
        return 8.0 * self.face_size / _REF_FACE

    @property
    def nose_margin_px(self) -> float:
        return (
            13.0 * self.face_size / _REF_FACE
            if self.nose_margin is None
            else float(self.nose_margin)
        )

    @property
    def num_rois(self) -> int:
        return len(self.roi_landmarks)

    @property
    def farneback_kwargs(self) -> dict[str, Any]:
        return {
            "pyr_scale": self.pyr_scale,
            "levels": self.levels,
            "winsize": self.winsize,
            "iterations": self.iterations,
            "poly_n": self.poly_n,
            "poly_sigma": self.poly_sigma,
        }

    def replace(self, **changes: Any) -> SWMROConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, strict: bool = True) -> SWMROConfig:
        """The config that :meth:`to_dict` wrote (lists back to tuples; ``resolved``,
        which is derived, is ignored; ``mdmo_bins`` / ``nose_bins`` of older versions
        become their equal sectors). Unknown keys are an error, or left out when not
        ``strict`` (a config written by another version)."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        for old, new in (("mdmo_bins", "mdmo_edges"), ("nose_bins", "nose_edges")):
            bins = d.pop(old, None)  # written before 2026-11-27: equal sectors from 0
            if isinstance(bins, int) and new not in d:
                d[new] = list(equal_edges(bins))
        unknown = sorted(set(d) - names - {"resolved"})
        if unknown and strict:
            raise ValueError(f"SWMROConfig.from_dict: unknown keys {unknown}")

        def tuples(v: Any) -> Any:
            return tuple(tuples(x) for x in v) if isinstance(v, list | tuple) else v

        return cls(**{k: tuples(v) for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field plus the resolved pixel sizes."""
        d = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.name.startswith("_")
        }
        d = json.loads(json.dumps(d))  # tuples -> lists
        d["resolved"] = {
            "roi_size": self.roi_size_px,
            "nose_margin": self.nose_margin_px,
            "nose_patch": self.nose_patch_px,
            "align_init_min": self.align_init_min_px,
            "batch_size": self.resolved_batch_size,
            "chunk_size": self.resolved_chunk_size,
            "landmark_workers": self.resolved_landmark_workers,
        }
        return d
