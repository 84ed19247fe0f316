"""SW-MRO feature extraction (paper section 3.1, SPEC.md section 2), streamed and batched.

``extract(video)`` returns ``O`` of shape ``(N, w, R, 2)`` (float32, pixels at face
size); ``stream(video)`` yields the same features in :class:`FeatureChunk` pieces with
memory bounded for any video length.

How a video flows through (docs/sw_mro.md has the decisions and measured figures):

1. A background thread decodes chunks of ``chunk_size`` frames (a smaller first one),
   finds the landmarks of every frame (``sw_mro.io.landmarks``), turns the frames to
   gray (cv2's fixed-point RGB->gray weights) on the target device (on CUDA on a side
   stream, ordered before their use by an event) and queues them (at most 2 chunks
   ahead), so decoding and landmarks overlap the flow work of the main thread.
2. The main thread keeps a ring buffer of frames (the chunk being consumed plus the
   ``w // 2`` frames before it), never the whole video, and processes windows in fixed
   groups of ``batch_size`` windows ``[k B, (k + 1) B)``. The groups do not depend on
   ``chunk_size``, so streamed and whole-video results are bit-identical.
3. Per group (SPEC 2.1-2.7), with windows and pairs batched as tensors:
   - clip ``c_i`` is frames ``clamp(i - w//2 + s)``, ``s = 0..w-1`` (padding with copies
     of the first and last frames);
   - every clip frame is cropped with the box of the clip's first frame ``c_i^1`` and
     resized to ``face_size`` (:func:`sw_mro.ops.crop_resize`);
   - for all ``w - 1`` pairs ``(c_i^1, c_i^s)`` at once: Farneback on the nose patch,
     nose MDMO = head shift, sub-pixel re-alignment of ``c_i^s`` (Kornia warp), repeated
     for the pairs whose residual exceeds ``align_tol`` (at most ``align_max_iter``
     shifts);
   - Farneback of every aligned pair with :func:`sw_mro.ops.farneback_pairs` (the
     reference crop's pyramid and expansion are shared by its ``w - 1`` pairs), then
     MDMO of every ROI patch; ``o_i^1 = 0``.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sw_mro._malloc import reuse_freed_memory
from sw_mro._threads import name_this_thread, put_unless, read_ahead, start_named
from sw_mro.config import SWMROConfig
from sw_mro.errors import ClipTooShortError, DeviceError, NoFaceError
from sw_mro.io.landmarks import LandmarkResult, centre_distance, make_landmarker
from sw_mro.ops import (
    box_mask,
    crop_resize,
    farneback_pairs,
    frame_to_crop,
    gather_patches,
    mdmo,
    patch_origins,
    shift,
)

__all__ = [
    "FaceContrast",
    "FeatureChunk",
    "NoseMotion",
    "extract",
    "face_boxes",
    "flow_backend",
    "rgb_to_gray",
    "stream",
    "window_features",
]


@dataclass(init=False)
class FeatureChunk:
    """Features of frames ``start .. start + len(features) - 1``.

    ``features``: ``(n, w, R, 2)`` float32 on the config's device (on CUDA possibly still
    being computed: the stream is not synced). ``landmark_found``: ``(n,)`` bool numpy,
    False where that frame's landmarks fell back to the last good ones. It describes
    frame ``i``; window ``i`` (centred on frame ``i``) is cropped with the box and
    landmarks of its first frame, ``max(i - w // 2, 0)`` (SPEC 2.2), so to mask windows
    by fallback use ``landmark_found`` shifted by ``w // 2``. ``stats``:
    seconds per stage in this chunk: ``crop``, ``align``, ``flow``, ``pooling`` (on CUDA
    the device's time between events, so reading ``stats`` waits for this chunk's work),
    ``wait`` (the main thread blocked on decoding and landmarks) and
    ``decode_landmarks`` (the producer's time per chunk). ``nose_motion``: ``(n, w)``
    float32 numpy, how far the mean nose landmark (``nose_landmarks``) of each clip frame
    lies from the clip's first frame's, in px at face size (slot 0 is 0): the head motion
    that the nose alignment has to follow. The start from 0 loses a head beyond about
    :data:`sw_mro.config.LARGE_NOSE_MOTION_PX`; ``align_from_landmarks`` follows it
    (docs/sw_mro.md). ``face_contrast``: ``(n,)`` float32 numpy, the grey levels that
    frame ``i``'s face crop spans (1st to 99th percentile of its luma) on one frame with a
    face per landmark segment, NaN on the others (:class:`FaceContrast` sums them up).
    """

    start: int
    features: torch.Tensor
    landmark_found: np.ndarray
    _stats: dict[str, float] = field(repr=False)
    _timer: _StageTimer | None = field(repr=False)
    nose_motion: np.ndarray | None = field(default=None, repr=False)
    face_contrast: np.ndarray | None = field(default=None, repr=False)

    def __init__(
        self,
        start: int,
        features: torch.Tensor,
        landmark_found: np.ndarray,
        stats: dict[str, float] | None = None,
        timer: _StageTimer | None = None,
        nose_motion: np.ndarray | None = None,
        face_contrast: np.ndarray | None = None,
    ) -> None:
        self.start, self.features, self.landmark_found = start, features, landmark_found
        self.nose_motion, self.face_contrast = nose_motion, face_contrast
        self._stats = {} if stats is None else stats
        self._timer = timer  # device stage times, read into stats on first access

    def __repr__(self) -> str:  # not the whole feature tensor
        f, n = self.features, len(self.features)
        return (
            f"FeatureChunk(frames {self.start}..{self.start + n - 1}, features "
            f"{tuple(f.shape)} {f.dtype} on {f.device}, fallback frames "
            f"{int((~self.landmark_found).sum())})"
        )

    @property
    def stats(self) -> dict[str, float]:
        if self._timer is not None:
            self._stats.update(self._timer.seconds())
            self._timer = None
        return self._stats

    @property
    def frames(self) -> np.ndarray:
        return np.arange(self.start, self.start + self.features.shape[0])

    @property
    def fallback_frames(self) -> list[int]:
        return [int(self.start + k) for k in np.flatnonzero(~self.landmark_found)]


class NoseMotion:
    """How far the nose landmarks moved within the clips of one video: add each chunk's
    :attr:`FeatureChunk.nose_motion`; :meth:`large` says whether more than
    :data:`~sw_mro.config.LARGE_NOSE_MOTION_SHARE` of the frame pairs moved beyond
    :data:`~sw_mro.config.LARGE_NOSE_MOTION_PX`, the alignment from 0's reach, so that
    ``align_from_landmarks`` should be considered (``sw-mro extract``, ``spotformer
    train`` and ``spotformer spot`` say so). A pair is a (window, slot): overlapping
    windows count a frame pair up to ``w - 1`` times."""

    ADVICE = (
        "the alignment from 0 loses such head motion. Consider --align-from-landmarks "
        "(hand-held cameras, large head motion; docs/sw_mro.md)"
    )

    def __init__(self, face_size: int | None = None) -> None:
        from sw_mro.config import FACE_JUMP_SHARE, LARGE_NOSE_MOTION_PX  # read now (tests)

        self.limit = LARGE_NOSE_MOTION_PX
        self.pairs = self.over = 0
        self.max = 0.0
        # With ``face_size``: pairs beyond FACE_JUMP_SHARE of the crop, where the tracked
        # face changed (:meth:`jumped`; not counted in ``over``: no alignment follows
        # that), and the first frame where it shows.
        self.jump_px = None if face_size is None else FACE_JUMP_SHARE * face_size
        self.jumps = 0
        self.first_jump: int | None = None

    def add(self, motion: np.ndarray | None, start: int = 0) -> None:
        """Add a chunk's :attr:`FeatureChunk.nose_motion` (its windows from ``start``)."""
        pairs = None if motion is None else motion[:, 1:]  # slot 0: the first frame itself
        if pairs is None or pairs.size == 0:
            return
        over = pairs > self.limit
        jump = None if self.jump_px is None else pairs > self.jump_px
        if jump is not None:
            over &= ~jump
        self.pairs += pairs.size
        self.over += int(over.sum())
        self.max = max(self.max, float(pairs.max()))
        if jump is not None and jump.any():
            self.jumps += int(jump.sum())
            if self.first_jump is None:  # window i's slot k is frame i - w // 2 + k
                row, col = np.argwhere(jump)[0]
                frame = start + int(row) - motion.shape[1] // 2 + int(col) + 1
                self.first_jump = max(frame, 0)

    @classmethod
    def from_summary(cls, summary: dict | None) -> NoseMotion:
        """A video's motion as :meth:`summary` recorded it (``nose_motion`` in ``sw-mro
        extract``'s JSON), for :meth:`large` and :meth:`jumped` on reused features; an
        empty one where ``summary`` is missing or incomplete (an older JSON)."""
        out = cls()
        try:
            out.limit = float(summary["over_px"])
            out.pairs, out.over = int(summary["pairs"]), int(summary["pairs_over"])
            out.max = float(summary["max_px"])
        except (KeyError, TypeError, ValueError):
            out = cls()
        try:  # apart: a bad jump record keeps the head motion (found in review)
            jumps = int(summary["pairs_over_jump"])
            out.jump_px, out.jumps = float(summary["jump_px"]), jumps
        except (KeyError, TypeError, ValueError):
            return out
        try:
            out.first_jump = int(summary["first_jump_frame"])
        except (KeyError, TypeError, ValueError):
            out.first_jump = None  # jumps whose first frame was not recorded
        return out

    def jumped(self) -> bool:
        return self.jumps > 0

    @property
    def share(self) -> float:
        return self.over / self.pairs if self.pairs else 0.0

    def large(self) -> bool:
        from sw_mro.config import LARGE_NOSE_MOTION_SHARE

        return self.share > LARGE_NOSE_MOTION_SHARE

    def summary(self) -> dict:
        """For the metadata: ``over_px``, ``pairs``, ``pairs_over``, ``max_px``; with a
        face size also ``jump_px``, ``pairs_over_jump`` and ``first_jump_frame``."""
        out = {
            "over_px": self.limit,
            "pairs": self.pairs,
            "pairs_over": self.over,
            "max_px": round(self.max, 2),
        }
        if self.jump_px is not None:
            out.update(
                jump_px=self.jump_px, pairs_over_jump=self.jumps, first_jump_frame=self.first_jump
            )
        return out

    def describe_jumps(self) -> str:
        return (
            f"within {self.jumps} clip frame pair{'s' if self.jumps != 1 else ''} the nose "
            f"landmarks moved more than half the face crop ({self.jump_px:g} px), first at "
            f"frame {self.first_jump}: the tracked face changed (another face of similar "
            "size in view, or a detection elsewhere), and the windows whose clips span the "
            "change compare two faces"
        )

    def describe(self, face_size: int) -> str:
        return (
            f"the nose landmarks moved more than {self.limit:g} px (at face size {face_size}) "
            f"within a clip in {100 * self.share:.1f} % of the frame pairs, up to "
            f"{self.max:.0f} px"
        )


class FaceContrast:
    """The contrast of one video's face: add each chunk's
    :attr:`FeatureChunk.face_contrast`. :meth:`low` says whether the median span is
    under :data:`~sw_mro.config.FACE_CONTRAST_WARN_LEVELS` grey levels, where the flow
    features shrink by about half or more; :meth:`dim_stretch` whether, the median
    being fine, at least :data:`~sw_mro.config.FACE_CONTRAST_DIM_FRAMES` consecutive
    sampled frames are under it (a light turned down for a while in a long video: those windows'
    features are smaller than the rest's). ``sw-mro extract``, ``spotformer train`` and
    ``spotformer spot`` warn of either (:meth:`warns`). Keeps one value per landmark
    segment (32 frames)."""

    def __init__(self, segment: int = 32) -> None:
        from sw_mro.config import FACE_CONTRAST_DIM_FRAMES, FACE_CONTRAST_WARN_LEVELS

        self.segment = segment  # frames per landmark segment (SWMROConfig.landmark_segment)
        self.limit = FACE_CONTRAST_WARN_LEVELS  # read now (tests)
        self.dim_frames = FACE_CONTRAST_DIM_FRAMES
        self._values: list[np.ndarray] = []
        self._frames: list[np.ndarray] = []  # the sampled frames (output frame numbers)
        self._recorded: dict | None = None  # a summary read back (from_summary)

    @classmethod
    def from_summary(cls, summary: dict | None, segment: int = 32) -> FaceContrast:
        """A video's contrast as :meth:`summary` recorded it (``face_contrast`` in
        ``sw-mro extract``'s JSON), for :meth:`low`, :meth:`dim_stretch`,
        :meth:`summary` and :meth:`describe` on reused features (it has no
        :attr:`values`); no median where ``summary`` is missing or has none (an older
        JSON, no face sampled), and no dim stretch where it has no count of frames
        below the limit (a JSON before that count). ``segment``: the extraction's
        ``landmark_segment``, the samples' spacing that :meth:`describe` gives."""
        out = cls(segment)
        try:
            median, low = summary["median_levels"], summary.get("min_levels")
            out._recorded = {
                "median_levels": None if median is None else float(median),
                "min_levels": None if low is None else float(low),
                "frames": int(summary.get("frames") or 0),
            }
        except (KeyError, TypeError, ValueError, AttributeError):
            return out
        try:
            below, run = int(summary["frames_below"]), int(summary["dim_run_frames"])
            first, last = summary["dim_run_first_frame"], summary["dim_run_last_frame"]
            out._recorded.update(
                frames_below=below,
                dim_run_frames=run,
                dim_run_first_frame=None if first is None else int(first),
                dim_run_last_frame=None if last is None else int(last),
            )
        except (KeyError, TypeError, ValueError):
            pass
        return out

    def add(self, spans: np.ndarray | None, start: int = 0) -> None:
        """Add a chunk's :attr:`FeatureChunk.face_contrast` (NaN where not sampled;
        the chunk's first frame is ``start``, :attr:`FeatureChunk.start`)."""
        if spans is not None:
            at = np.flatnonzero(np.isfinite(spans))
            if at.size:
                self._values.append(spans[at].astype(np.float32))
                self._frames.append(at + int(start))

    @property
    def values(self) -> np.ndarray:
        return np.concatenate(self._values) if self._values else np.zeros(0, np.float32)

    @property
    def frames(self) -> np.ndarray:
        """The frames :attr:`values` were sampled at (output frame numbers)."""
        return np.concatenate(self._frames) if self._frames else np.zeros(0, np.int64)

    @property
    def median(self) -> float | None:
        if self._recorded is not None:
            return self._recorded["median_levels"]
        v = self.values
        return float(np.median(v)) if v.size else None

    def low(self) -> bool:
        """The median under the limit, at the 0.1 level the JSON records, so that
        features reused from it (:meth:`from_summary`) are judged as they were (found
        in review: 63.96 was low, its record 64.0 was not)."""
        m = self.median
        return m is not None and round(m, 1) < self.limit

    def below(self) -> tuple[int, int, int | None, int | None]:
        """The sampled frames under the limit (at the 0.1 level): how many in all, and
        the longest run of consecutive samples under it: its length, first and last
        frame (None: none, or not recorded)."""
        if self._recorded is not None:
            r = self._recorded
            return (
                r.get("frames_below", 0),
                r.get("dim_run_frames", 0),
                r.get("dim_run_first_frame"),
                r.get("dim_run_last_frame"),
            )
        under = np.round(self.values, 1) < self.limit
        if not under.any():
            return 0, 0, None, None
        # Runs: samples under the limit in neighbouring segments (found in review: two
        # with 23 segments without a face between them made a "stretch" of 25 s).
        frames = self.frames
        seg = frames // self.segment
        joins = under[1:] & under[:-1] & (np.diff(seg) == 1)  # sample i-1 -> i
        starts = under & ~np.concatenate([[False], joins])
        run = np.cumsum(starts) - 1  # each sample's run (valid where under)
        lengths = np.bincount(run[under])
        k = int(np.argmax(lengths))  # the longest, the first of equals
        members = np.flatnonzero(under & (run == k))
        return (
            int(under.sum()),
            int(lengths[k]),
            int(frames[members[0]]),
            int(frames[members[-1]]),
        )

    def dim_stretch(self) -> bool:
        """The median fine, but at least ``dim_frames`` sampled frames of neighbouring
        segments under the limit (found in review: two scattered ones, with bright
        samples or faceless segments between them, were called a stretch)."""
        return not self.low() and self.below()[1] >= self.dim_frames

    def warns(self) -> bool:
        return self.low() or self.dim_stretch()

    def summary(self) -> dict:
        """For the metadata: ``median_levels``, ``min_levels``, ``frames`` (sampled),
        ``frames_below`` (sampled frames under the limit), the longest run of
        consecutive ones (``dim_run_frames``, ``dim_run_first_frame``,
        ``dim_run_last_frame``) and ``warn_below``."""
        below, run, first, last = self.below()
        tail = {
            "frames_below": below,
            "dim_run_frames": run,
            "dim_run_first_frame": first,
            "dim_run_last_frame": last,
            "warn_below": self.limit,
        }
        if self._recorded is not None:
            r = self._recorded
            head = {k: r[k] for k in ("median_levels", "min_levels", "frames")}
            if "frames_below" not in r:  # an older record: no count to give
                tail = {"warn_below": self.limit}
            return {**head, **tail}
        v = self.values
        return {
            "median_levels": None if not v.size else round(float(np.median(v)), 1),
            "min_levels": None if not v.size else round(float(v.min()), 1),
            "frames": int(v.size),
            **tail,
        }

    def short(self) -> str:
        """A few words for a list of videos (``spotformer train``)."""
        if self.low():
            return f"median {self.median:.0f}"
        _, run, first, last = self.below()
        return f"{run} consecutive sampled frames, frames {first}-{last}"

    def describe(self) -> str:
        frames = self.summary()["frames"]
        if self.low():
            return (
                f"the face spans only {self.median:.0f} grey levels (1st-99th percentile of "
                f"the face crop's luma, median of {frames} sampled frames; well-lit faces "
                "span 150-240): the video is dim or washed out, and Farneback's flow "
                "shrinks with the contrast, so its features are smaller than the same "
                f"motion gives in a well-lit video (about half at {self.limit:g} levels); "
                "brighten or stretch the video first (docs/io.md, 'Contrast')"
            )
        below, run, first, last = self.below()
        return (
            f"the face spans fewer than {self.limit:g} grey levels (1st-99th percentile of "
            f"the face crop's luma) in {run} consecutive sampled frames (one per landmark "
            f"segment), from frame {first} to frame {last} ({below} of {frames} sampled "
            f"frames in all; the samples are {self.segment} frames apart, so the stretch can "
            f"reach up to {self.segment} frames past either end), against a median of "
            f"{self.median:.0f}: a dim or washed-out "
            "stretch, where Farneback's flow shrinks with the contrast, so the features "
            "there are smaller than the same motion gives in the rest of the video; "
            "brighten or stretch it first (docs/io.md, 'Contrast')"
        )


def face_contrast(
    rgb: np.ndarray,
    boxes: np.ndarray,
    found: np.ndarray,
    start: int,
    segment: int,
    after: int = -1,
) -> np.ndarray:
    """``(T,)`` float32: the grey levels that the face box spans (1st to 99th percentile
    of its luma, as :func:`rgb_to_gray` computes it) on the first frame with a face of
    each landmark segment of ``rgb`` ``(T, H, W, 3)`` (frames ``start ..``) after
    segment ``after`` (one a chunk before sampled already), NaN on the other frames: the
    host work of a quarter of one crop per 32 frames (a 300 px box: ~0.5 ms, or 15 us a
    frame, on the dev VM)."""
    out = np.full(len(found), np.nan, np.float32)
    hit = np.flatnonzero(found)
    hit = hit[(start + hit) // segment > after]
    if not hit.size:
        return out
    _, first = np.unique((start + hit) // segment, return_index=True)
    h, w = rgb.shape[1:3]
    for k in hit[first]:
        x0, y0, x1, y1 = boxes[k]
        x0, y0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        x1, y1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        g = rgb_to_gray(torch.from_numpy(rgb[k, y0:y1:2, x0:x1:2]))  # every 4th pixel
        lo, hi = np.percentile(g.numpy(), (1, 99))
        out[k] = hi - lo
    return out


# --------------------------------------------------------------------------- helpers


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., 3)`` RGB -> uint8 gray, bit-exact with ``cv2.COLOR_RGB2GRAY``.

    On CPU it is ``cv2.cvtColor`` itself, on all frames at once (0.24 ms per 640x480
    frame on the dev VM, against 5.2 ms for the integer tensor ops); on a GPU it is
    :func:`_rgb_to_gray_tensor`.
    """
    if rgb.device.type != "cpu":
        return _rgb_to_gray_tensor(rgb)
    import cv2

    a = np.ascontiguousarray(rgb.numpy())
    if a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(f"rgb_to_gray needs (..., H, W, 3) uint8; got {tuple(a.shape)}")
    shape = a.shape[:-1]
    if a.size == 0:
        return torch.empty(shape, dtype=torch.uint8)
    gray = cv2.cvtColor(a.reshape(-1, shape[-1], 3), cv2.COLOR_RGB2GRAY)
    return torch.from_numpy(gray.reshape(shape))


def _rgb_to_gray_tensor(rgb: torch.Tensor) -> torch.Tensor:
    """OpenCV 5's 15-bit fixed-point weights as tensor ops, on any device:
    ``(9798 R + 19235 G + 3735 B + 2^14) >> 15`` (checked against ``cv2.cvtColor`` in
    tests/test_sw_mro.py)."""
    x = rgb.to(torch.int32)
    g = (x[..., 0] * 9798 + x[..., 1] * 19235 + x[..., 2] * 3735 + 16384) >> 15
    return g.to(torch.uint8)


#: A face at a landmark segment's start up to this many times the side of the face the
#: segment before it ended on counts as of similar size: the segment keeps the tracked
#: face (:meth:`_Landmarks._keep_the_tracked_face`). dlib's boxes come in steps of 1.2x.
SIMILAR_FACE = 1.25


def _extent(points: np.ndarray) -> float:
    """A face's size: the larger side of its landmarks' bounding box (frame px)."""
    return float(np.ptp(points, axis=0).max())


def face_boxes(result: LandmarkResult, config: SWMROConfig) -> np.ndarray:
    """Square crop boxes ``(T, 4)`` ``x0, y0, x1, y1`` per frame (see SWMROConfig.crop_box)."""
    if config.crop_box == "landmarks":
        p = result.points.astype(np.float64)
        lo, hi = p.min(axis=1), p.max(axis=1)
    else:
        b = result.boxes.astype(np.float64)
        lo, hi = b[:, :2], b[:, 2:]
    centre = (lo + hi) / 2
    side = config.box_scale * np.max(hi - lo, axis=1)
    side = np.maximum(side, 8.0)
    centre[:, 1] -= config.box_shift * side
    half = side[:, None] / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def _nose_geometry(
    nose_pts: torch.Tensor, config: SWMROConfig
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Nose box (inclusive, crop px) and the nose patch origin per window.

    SPEC 2.3: the bounding box of the nose landmarks widened by the margin. The flow
    for the head shift is computed on a ``nose_patch`` square centred on that box.
    """
    s = config.face_size
    m = config.nose_margin_px
    lo = torch.floor(nose_pts.min(dim=1).values - m + 0.5)
    hi = torch.floor(nose_pts.max(dim=1).values + m + 0.5)
    box = torch.cat([lo, hi], dim=1).clamp(0, s - 1).long()  # (B, 4)
    patch = config.nose_patch_px
    centre = (box[:, :2] + box[:, 2:]).double() / 2
    origin = patch_origins(centre, patch, s, s)
    return box, origin, patch


class _StageTimer:
    """Seconds per stage without syncing the device.

    On CUDA each :meth:`mark` records an event on the current stream and
    :meth:`seconds` reads the times between them once the work is done (it waits for the
    last event only); on CPU, where the work is synchronous, it reads the host clock.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.marks: list[tuple[str, Any]] = []
        self.mark("")

    def mark(self, stage: str) -> None:
        """End ``stage`` (which began at the previous mark) here."""
        import time

        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            self.marks.append((stage, event))
        else:
            self.marks.append((stage, time.perf_counter()))

    def seconds(self) -> dict[str, float]:
        if self.cuda:
            self.marks[-1][1].synchronize()
        out: dict[str, float] = {}
        for (_, a), (stage, b) in zip(self.marks[:-1], self.marks[1:], strict=True):
            dt = a.elapsed_time(b) / 1e3 if self.cuda else b - a
            out[stage] = out.get(stage, 0.0) + dt
        return out


def window_features(
    crops: torch.Tensor,
    points: torch.Tensor,
    config: SWMROConfig,
    stats: dict | None = None,
    *,
    slot_nose: torch.Tensor | None = None,
) -> torch.Tensor:
    """SW-MRO features of ``B`` clips from their crops (SPEC 2.3-2.7).

    Args:
        crops: ``(B, w, S, S)`` float gray crops (``S = face_size``), clip frame order.
        points: ``(B, 68, 2)`` landmarks of each clip's first frame, in crop pixels.
        config: the settings.
        stats: optional dict that accumulates seconds per stage (``align``, ``flow``,
            ``pooling``; on CUDA the device's time, read when the work is done).
        slot_nose: optional ``(B, w, 2)`` mean nose landmark of every clip frame, in the
            clip's crop pixels: pairs whose nose moved by more than
            ``config.align_init_min_px`` are also aligned from that motion, and the
            better nose match of the two starts wins (``config.align_from_landmarks``).
            None: every pair starts from 0.

    Returns:
        ``(B, w, R, 2)`` float32; ``[:, 0] = 0``.
    """
    if crops.dim() != 4 or crops.shape[2] != crops.shape[3]:
        raise ValueError(f"crops must be (B, w, S, S); got {tuple(crops.shape)}")
    timer = _StageTimer(crops.device) if stats is not None else None
    # The aligned targets are written over the crops: work on a copy of the caller's.
    init = None if slot_nose is None else _landmark_init(slot_nose.cpu(), config)
    out = _window_features(crops.float().clone(), points.cpu(), config, timer, init)
    if timer is not None:
        for k, v in timer.seconds().items():
            stats[k] = stats.get(k, 0.0) + v
    return out


def _cut_patches(
    flat: torch.Tensor, frame: torch.Tensor, origin: torch.Tensor, size: int
) -> torch.Tensor:
    """``(n, size, size)``: ``flat[frame[i]]`` at ``origin[i]`` (x, y), inside the image."""
    _, h, w = flat.shape
    k = torch.arange(size, device=flat.device)
    rows = (frame[:, None] * h + origin[:, 1, None] + k) * w  # (n, size)
    lin = rows[:, :, None] + origin[:, 0, None, None] + k  # (n, size, size)
    return flat.reshape(-1)[lin]


#: Alignment rounds on the pairs still above tolerance only (``True``, the default), or
#: on every pair with the finished ones masked (``False``). Both give bit-identical
#: features (every step is per pair). Compacting skips the finished pairs' work (on
#: carphone about 2 % of the pairs finish per round, on the benchmark clip 10-35 %); it
#: costs a device sync per round (which pairs are left) and one for the pairs that
#: moved. The masked rounds queue a whole group without a sync. On the H100 (run 8)
#: they made the device work alone 8 % faster (3.37 / 3.42 s against 3.68 s for 3,600
#: frames), but end to end the code with them was slower than the code before it on
#: the same machine (run 9: 617-648 against 699-702 frames/s; not yet separated from
#: this session's other changes), so they are not the default yet.
COMPACT_ALIGNMENT: bool = True


def _nose_residual(
    ref_patch: torch.Tensor,
    tp: torch.Tensor,
    pw: torch.Tensor,
    corner: torch.Tensor,
    nmask: torch.Tensor,
    block: tuple[int, int],
    fb: dict,
    config: SWMROConfig,
) -> torch.Tensor:
    """``(n, 2)`` nose MDMO of the flow from each pair's reference patch ``ref_patch[pw]``
    to its target patch ``tp``: the head shift still left."""
    b = ref_patch.shape[0]
    frames = torch.cat([ref_patch, tp])
    tgt_idx = torch.arange(tp.shape[0], device=tp.device) + b
    flow = farneback_pairs(frames, pw, tgt_idx, **fb)  # (n, 2, P, P)
    vec = gather_patches(flow, corner[pw, None], block)[:, 0]  # (n, bh*bw, 2)
    # Exact sums: the block is sized by the batch's largest nose box, and float sums
    # over different block sizes round differently (features would depend on the
    # batch size).
    return mdmo(vec, nmask[pw], edges=config.nose_edges, top=config.nose_top, exact_sums=True)


def _landmark_init(slot_nose: torch.Tensor, config: SWMROConfig) -> torch.Tensor | None:
    """``(B * (w - 1), 2)`` float32 start of each pair's alignment: the motion of its
    nose landmarks from the clip's first frame (``slot_nose``: ``(B, w, 2)`` in crop
    pixels, host) where it exceeds ``config.align_init_min_px``, else 0. None when no
    pair starts elsewhere than 0 (or ``align_from_landmarks`` is off)."""
    if not config.align_from_landmarks or config.align_max_iter == 0:
        return None
    move = (slot_nose[:, 1:] - slot_nose[:, :1]).reshape(-1, 2).to(torch.float64)
    big = torch.linalg.vector_norm(move, dim=1) > config.align_init_min_px
    if not bool(big.any()):
        return None
    return torch.where(big[:, None], move, torch.zeros_like(move)).float()


def _align(
    flat, ref_patch, tgt_flat, win, norigin, corner, nmask, block, patch, d, fb, config, init_rows
) -> None:  # noqa: ANN001 - the tensors of _window_features
    """Nose alignment (SPEC 2.4): adds the head shift of each pair to ``d``
    (:func:`_apply_shifts` then re-samples the targets). Compact rounds (the default) run only
    the pairs still above tolerance, a device sync each; masked rounds
    (:data:`COMPACT_ALIGNMENT` False) run every pair and let the finished ones take no
    step. Same result, bit for bit: each pair's flow, MDMO and shift depend on that
    pair alone. ``d`` holds each pair's starting shift; ``init_rows`` (or None) are the
    pairs whose start is not 0 (their first round shifts the target)."""
    compact = COMPACT_ALIGNMENT
    active = torch.ones(d.shape[0], dtype=torch.bool, device=flat.device)
    for it in range(config.align_max_iter):
        idx = None  # the pairs of this round: all, or (compact, after the first) the active
        if it == 0:  # nothing shifted yet: cut the patch out of the raw crop
            tp = _cut_patches(flat, tgt_flat, norigin[win], patch)
            if init_rows is not None:  # pairs that start from their landmarks' motion
                r = init_rows
                tp[r] = _shifted_patches(flat, tgt_flat[r], win[r], norigin, d[r], patch)
        elif compact:
            idx = active.nonzero()[:, 0]  # a device sync
            if idx.numel() == 0:
                break
            tp = _shifted_patches(flat, tgt_flat[idx], win[idx], norigin, d[idx], patch)
        else:
            tp = _shifted_patches(flat, tgt_flat, win, norigin, d, patch)
        pw = win if idx is None else win[idx]
        resid = _nose_residual(ref_patch, tp, pw, corner, nmask, block, fb, config)
        # Not done (a NaN residual is not done either): take the step, stay active.
        go = ~(torch.linalg.vector_norm(resid, dim=1) <= config.align_tol)
        if idx is None:
            go &= active
            d += torch.where(go[:, None], resid, torch.zeros_like(resid))
            active = go
        else:
            d[idx] += torch.where(go[:, None], resid, torch.zeros_like(resid))
            active[idx] = go


def _apply_shifts(flat: torch.Tensor, tgt_flat: torch.Tensor, d: torch.Tensor) -> None:
    """Re-sample each pair's target ``flat[tgt_flat]`` in place by its head shift ``d``
    (pairs whose shift is 0 keep their crop, bit for bit)."""
    if COMPACT_ALIGNMENT:
        moved = (d != 0).any(dim=1).nonzero()[:, 0]  # a device sync
        if moved.numel():
            rows = tgt_flat[moved]
            flat[rows] = shift(flat[rows], d[moved])
    else:
        moved = (d != 0).any(dim=1)
        targets = flat[tgt_flat]
        flat[tgt_flat] = torch.where(moved[:, None, None], shift(targets, d), targets)


def _shifted_patches(
    flat: torch.Tensor,
    tgt_flat: torch.Tensor,
    win: torch.Tensor,
    norigin: torch.Tensor,
    d: torch.Tensor,
    patch: int,
) -> torch.Tensor:
    """``(n, patch, patch)``: each pair's nose patch of its target shifted by ``d``."""
    return shift(flat[tgt_flat], d, origin=norigin[win], size=patch)


def _window_features(
    crops: torch.Tensor,
    points: torch.Tensor,
    config: SWMROConfig,
    timer: _StageTimer | None,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`window_features` on crops it may overwrite, with host (CPU) ``points``.

    The geometry (nose boxes, patch origins, indices) is computed on the host and sent
    without blocking, and pairs index the crops in place. The compact alignment syncs
    the device once per round after the first and once for the pairs that moved; the
    masked one (:data:`COMPACT_ALIGNMENT`) not at all.
    """
    b, w, s, _ = crops.shape
    dev = crops.device
    fb = dict(config.farneback_kwargs, backend=flow_backend(config, dev), check_indices=False)
    pairs = w - 1
    flat = crops.view(b * w, s, s)  # clip k's frame j is flat[k * w + j]

    def up(t: torch.Tensor) -> torch.Tensor:
        return t.to(dev, non_blocking=True)

    win_h = torch.arange(b).repeat_interleave(pairs)  # window of each pair
    win, ref_flat = up(win_h), up(win_h * w)
    tgt_flat = up(win_h * w + torch.arange(1, w).repeat(b))

    # -- nose alignment (SPEC 2.4): shifts in d, targets re-sampled in place.
    pts = points.to(torch.float64)
    nbox, norigin_h, patch = _nose_geometry(pts[:, list(config.nose_landmarks)], config)
    # The nose MDMO reads only the nose box: gather a (bh, bw) block (the largest box of
    # the batch) at each box's corner inside the patch, masked to the box itself.
    local = nbox - norigin_h.repeat(1, 2)  # box in patch pixels
    bh = min(int((local[:, 3] - local[:, 1]).max()) + 1, patch)
    bw = min(int((local[:, 2] - local[:, 0]).max()) + 1, patch)
    corner_h = torch.stack(
        [local[:, 0].clamp(0, patch - bw), local[:, 1].clamp(0, patch - bh)], dim=1
    )  # (B, 2)
    nmask = up(box_mask(local, corner_h, (bh, bw)))  # (B, bh*bw)
    norigin, corner = up(norigin_h), up(corner_h)
    ref_patch = _cut_patches(flat, ref_flat[::pairs], norigin, patch)  # (B, P, P)
    n = b * pairs
    geo = (corner, nmask, (bh, bw), patch)
    if init is None:  # every pair starts from 0
        d = torch.zeros(n, 2, device=dev)
        _align(flat, ref_patch, tgt_flat, win, norigin, *geo, d, fb, config, None)
    else:
        # Pairs whose nose landmarks moved far (_landmark_init) are aligned twice: from 0
        # (SPEC) and from their landmarks' motion. The shift whose nose patch matches the
        # reference better wins, so a landmark outlier (a single frame's jump) cannot
        # start a pair that did not move, and a large head move is still followed.
        rows_h = init.abs().sum(dim=1).nonzero()[:, 0]
        rows = up(rows_h)
        k = int(rows_h.numel())
        tgt2, win2 = torch.cat([tgt_flat, tgt_flat[rows]]), torch.cat([win, win[rows]])
        d = torch.cat([torch.zeros(n, 2, device=dev), up(init[rows_h])])
        first = torch.arange(n, n + k, device=dev)  # their first round shifts the target
        _align(flat, ref_patch, tgt2, win2, norigin, *geo, d, fb, config, first)
        # Mean absolute grey difference to the reference nose patch, both starts' shifts.
        tp = _shifted_patches(flat, tgt2[n:].repeat(2), win2[n:].repeat(2), norigin,
                              torch.cat([d[rows], d[n:]]), patch)  # fmt: skip
        err = (tp - ref_patch[win2[n:].repeat(2)]).abs().mean(dim=(1, 2))
        better = err[k:] < err[:k]  # ties keep SPEC's start from 0
        pick = torch.where(better[:, None], d[n:], d[rows])
        d = d[:n]
        d[rows] = pick
    _apply_shifts(flat, tgt_flat, d)
    if timer is not None:
        timer.mark("align")

    # -- ROI flow of the aligned pairs, reference expansion shared (SPEC 2.4-2.6).
    flow = farneback_pairs(flat, ref_flat, tgt_flat, **fb)
    if timer is not None:
        timer.mark("flow")
    roi = config.roi_size_px
    centres = pts[:, list(config.roi_landmarks)]  # (B, R, 2)
    origins = up(patch_origins(centres, roi, s, s))
    vec = gather_patches(flow, origins[win], roi)  # (B*pairs, R, roi*roi, 2)
    feat = mdmo(vec, edges=config.mdmo_edges, top=config.mdmo_top)  # (B*pairs, R, 2)
    out = torch.zeros(b, w, feat.shape[1], 2, device=dev)
    out[:, 1:] = feat.view(b, pairs, -1, 2)
    if timer is not None:
        timer.mark("pooling")
    return out


#: The reasons the C++ Farneback is unavailable that :func:`flow_backend` has warned of.
_NATIVE_WARNED: set[str] = set()


def flow_backend(config: SWMROConfig, device: torch.device) -> str:
    """The concrete Farneback backend: ``"auto"`` means, on CPU, the C++ solver
    (``"native"``) when it builds here and OpenCV otherwise; on CUDA the library's choice
    (``"cupy"``, else ``"torch"``).

    On CPU the C++ solver on shared reference expansions was measured 2x faster per pair
    than a thread pool of ``cv2.calcOpticalFlowFarneback`` calls (docs/sw_mro.md), which
    in turn beats the batched torch port and the numba solver inside the pipeline. Without
    a C++ compiler, OpenCV is pinned here so that the features do not change if the
    library's CPU default does. On CUDA ``sw_mro.ops.farneback`` picks CuPy or torch.
    """
    if config.flow_backend != "auto":
        return config.flow_backend
    if device.type == "cpu":
        from sw_mro.ops import _farneback_native

        if _farneback_native.available():
            return "native"
        why = " ".join((_farneback_native.unavailable_reason() or "").split())  # one line
        # a compiler that failed; once per reason (found in review: 3 times per input)
        if not why.startswith(("no C++ compiler", "turned off")) and why not in _NATIVE_WARNED:
            import warnings

            _NATIVE_WARNED.add(why)

            warnings.warn(  # found in review: silent, and the features change a little
                f"sw_mro: the C++ Farneback could not be built or loaded ({why}); OpenCV's "
                "runs instead (about half the extraction speed; features within ~0.01 px "
                "of the C++ solver's). Fix what the message names (the compiler: CXX; the "
                "cache folder: SW_MRO_CACHE), or set SW_MRO_NATIVE=0 to choose OpenCV's "
                "without this warning",
                RuntimeWarning,
                stacklevel=2,
            )
        return "opencv"
    from sw_mro.ops.farneback import resolve_backend

    return resolve_backend("auto", device)


# --------------------------------------------------------------------------- streaming


@dataclass
class _Chunk:
    start: int
    gray: torch.Tensor  # (T, H, W) uint8 on the device
    boxes: np.ndarray  # (T, 4) float64 crop boxes
    points: np.ndarray  # (T, 68, 2) float32 landmarks (frame px)
    found: np.ndarray  # (T,) bool
    seconds: float  # decode + landmarks + gray time of this chunk (producer side)
    contrast: np.ndarray  # (T,) float32 face_contrast, NaN where not sampled
    ready: Any = None  # CUDA: event on the upload stream after ``gray`` is written


class _SerialSource:
    """A video source whose reads never overlap: the decode thread and the scan for the
    first face (another thread) share one decoder, and decord's is not thread-safe."""

    def __init__(self, src: Any) -> None:
        self.src, self.info = src, src.info
        self._lock = threading.Lock()

    def chunks(
        self, chunk_size: int, *, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """The source's chunks of frames ``[start, stop)``. ``stop`` goes to the source
        when it is a ``VideoSource`` (which then decodes nothing past it: a file's
        parallel readers work ahead), else the chunks are cut short here."""
        import itertools

        from sw_mro.io.video import VideoSource

        with self._lock:
            if stop is None:
                it = iter(self.src.chunks(chunk_size, start=start))
            elif isinstance(self.src, VideoSource):
                it = iter(self.src.chunks(chunk_size, start=start, stop=stop))
            else:  # a custom source without stop: cut its chunks at stop here
                count = -(-(stop - start) // chunk_size)
                it = (
                    (a, x[: stop - a])
                    for a, x in itertools.islice(self.src.chunks(chunk_size, start=start), count)
                )
        while True:
            with self._lock:
                item = next(it, None)
            if item is None:
                return
            yield item


def _open(video: Any, config: SWMROConfig):
    if hasattr(video, "chunks") and hasattr(video, "info"):
        opened = int(getattr(video.info, "stride", 1))
        if config.stride not in (1, opened):
            raise ValueError(
                f"SWMROConfig.stride={config.stride}: {video.info.path} was opened at stride "
                f"{opened}; open it with stride={config.stride}, or pass its path"
            )
        if getattr(video, "color", "rgb") != "rgb":  # found in review: failed deep inside
            raise ValueError(
                f"{video.info.path} was opened with color={video.color!r}; the landmarks and "
                "the gray conversion need RGB frames: open it with color='rgb' (the default), "
                "or pass its path"
            )
        return video
    from sw_mro.io.video import open_video

    if isinstance(video, np.ndarray | torch.Tensor):  # frames in memory
        return open_video(video, stride=config.stride, color="rgb")
    if not isinstance(video, str | os.PathLike):
        raise TypeError(
            f"video must be a video file, a frame folder, uint8 frames (a numpy array or a "
            f"tensor) or an opened source (sw_mro.io.open_video); got {type(video).__name__}"
        )
    return open_video(Path(os.fspath(video)), stride=config.stride, color="rgb")


def _landmark_threads(workers: int) -> Any:
    """Landmarks in threads (no worker processes): a pool named ``sw_mro-lm`` (OS too)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(workers, thread_name_prefix="sw_mro-lm", initializer=name_this_thread)


class _Landmarks:
    """Landmarks of consecutive chunks, tracked within fixed segments of frames.

    The tracker restarts at every multiple of ``landmark_segment`` frames, so the result
    depends neither on ``chunk_size`` nor on the number of workers, and segments run in
    parallel: dlib in worker processes (its shape predictor holds the GIL;
    ``sw_mro.io.landmark_pool``), insightface in threads (onnxruntime releases the GIL).
    A frame without a face takes the last good landmarks before it (across segments and
    chunks); frames before the first face stay NaN here and are filled by the caller.
    """

    def __init__(self, config: SWMROConfig, device: torch.device) -> None:

        self.config, self.device = config, device
        self.segment = config.landmark_segment
        workers = config.resolved_landmark_workers
        self.free: list = []  # idle landmarkers (the dlib model itself is shared)
        self.carry = None  # the landmarker tracking the segment the last chunk ended in
        self.carry_state = None  # the same for worker processes: the tracker's state
        self.procs = None
        if config.landmarks == "dlib" and workers > 1:
            from sw_mro.io import landmark_pool

            if landmark_pool.usable():
                # Started once per option set, reused across videos; held until close().
                self.procs = landmark_pool.hold_pool(
                    workers, redetect=config.landmark_redetect, nice=landmark_pool.WORKER_NICE
                )
        self.pool = _landmark_threads(workers) if workers > 1 and self.procs is None else None
        self.last: tuple[np.ndarray, np.ndarray] | None = None
        # The box and the landmarks' size of the last face found that the last collected
        # segment's tracker still held (what a tracker that went on across the segment's
        # end would search near), else None, and for how many frames it was missed.
        self.tail: tuple[np.ndarray, float] | None = None
        self.tail_misses = 0
        self.in_flight = 0  # chunks submitted and not yet collected
        # submit() and collect() run in two threads: the count and the switch from worker
        # processes to threads (which either may find necessary) are locked.
        self._count = threading.Lock()
        self._switch = threading.Lock()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if self.procs is not None:
            from sw_mro.io import landmark_pool

            landmark_pool.release_pool(self.procs)
            self.procs = None

    def _get(self):
        try:  # the submitting and the collecting thread both take from it
            return self.free.pop()
        except IndexError:
            pass
        c = self.config
        opts = {"redetect": c.landmark_redetect} if c.landmarks == "dlib" else {}
        return make_landmarker(
            c.landmarks,
            root=c.insightface_root,
            device=str(self.device),
            fill_missing=False,
            **opts,
        )

    @staticmethod
    def _run(job: tuple) -> LandmarkResult:
        lm, fresh, frames = job
        if fresh:
            lm.reset()
        return lm.detect(frames)

    def _to_threads(self, exc: BaseException) -> None:
        """Stop using worker processes for good after they failed to start.

        Spawned workers re-import the ``__main__`` script; one that calls ``sw_mro``
        at top level (no ``if __name__ == "__main__":`` guard), or a main that is not a
        file, kills them. Then the video goes on in threads, with a warning. Either the
        submitting or the collecting thread may find out; the first one switches.
        """
        import signal
        import warnings

        from sw_mro.io import landmark_pool

        with self._switch:
            if self.procs is None:  # the other thread or an earlier chunk already switched
                return
            signum = self.procs.killed_by()
            if signum is not None:
                # Killed from outside (SIGTERM to the process group, which this process
                # also gets, or the OOM killer), not a failed start (found in review: a
                # SIGTERM printed the start-failure advice): the video goes on in
                # threads, and the next one starts a new pool.
                landmark_pool.discard_pool(self.procs)
                if signum not in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    try:
                        name = signal.Signals(signum).name
                    except ValueError:  # a real-time signal
                        name = "a real-time signal"
                    oom = "; the out-of-memory killer?" if name == "SIGKILL" else ""
                    warnings.warn(
                        f"sw_mro: a landmark worker process was killed by signal {signum} "
                        f"({name}{oom}); this video goes on with landmarks in threads",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            else:
                warnings.warn(
                    f"sw_mro: the landmark worker processes failed to start ({exc}); "
                    "running landmarks in threads instead (slower: dlib's detector holds "
                    "the GIL). A worker's own error, if it had one, is printed above. "
                    "Worker processes re-import the main script: a script of your own "
                    "must call sw_mro under `if __name__ == '__main__':`.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                landmark_pool.disable(str(exc))  # later videos do not try again
            # Closed now, or by the last extraction that holds it (release_pool).
            landmark_pool.release_pool(self.procs)
            self.procs = None
            self.pool = _landmark_threads(self.config.resolved_landmark_workers)
            if self.carry_state is not None:  # hand the tracker state to a thread landmarker
                self.carry = self._get()
                self.carry.reset()
                self.carry.tracking_state = self.carry_state

    def _segment_jobs(self, p: _PendingLandmarks, first: Any) -> list:
        """One (landmarker, fresh, frames) job per segment; ``first`` (or None) is the
        landmarker that continues the chunk's first segment, already in its state."""
        jobs = []
        for j, (a, b) in enumerate(p.spans):
            continues = j == 0 and p.continues and first is not None
            lm = first if continues else self._get()
            jobs.append((lm, not continues, p.frames[a:b]))
        return jobs

    def _thread_jobs(self, p: _PendingLandmarks) -> list:
        """The chunk's jobs in threads; a continued segment's tracker is the one the
        last chunk ended with."""
        jobs = self._segment_jobs(p, self.carry if p.continues else None)
        self.carry = jobs[-1][0] if p.ends_inside else None
        return jobs

    def _rerun_in_threads(self, p: _PendingLandmarks) -> list:
        """A chunk submitted to worker processes that died, run again in threads from
        the tracker state it was submitted with. Later chunks may be in flight already,
        so ``self.carry`` changes only when this chunk ends inside a segment (then the
        next chunk continues it and cannot have been submitted)."""
        first = None
        if p.continues and p.start_state is not None:
            first = self._get()
            first.reset()
            first.tracking_state = p.start_state
        p.jobs = self._segment_jobs(p, first)
        results = list(self.pool.map(self._run, p.jobs) if self.pool else map(self._run, p.jobs))
        if p.ends_inside:
            self.carry = p.jobs[-1][0]
        return results

    def submit(self, start: int, frames: np.ndarray) -> _PendingLandmarks:
        """Start the landmarks of a chunk; :meth:`collect` returns them.

        Chunks are collected in the order they were submitted. Several may be in flight
        when each starts a segment; a chunk that continues a segment needs the chunk
        before it collected first (the tracker's state comes from it).
        """
        from concurrent.futures.process import BrokenProcessPool

        t = len(frames)
        seg = self.segment
        cuts = [0, *range(seg - start % seg, t, seg), t]
        spans = [(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]
        p = _PendingLandmarks(start, frames, spans, start % seg != 0, (start + t) % seg != 0)
        with self._count:
            busy = self.in_flight
        if p.continues and busy:
            raise RuntimeError(
                f"chunk at frame {start} continues a landmark segment: collect the chunks "
                "before it first"
            )
        broken = None
        with self._switch:  # the pool in use cannot be closed under this submission
            if self.procs is not None:
                # A continued segment starts from the state its tracker ended the last chunk in.
                p.start_state = self.carry_state if p.continues else None
                seg_jobs = [
                    (a, b, self.carry_state if j == 0 and p.continues else None)
                    for j, (a, b) in enumerate(spans)
                ]
                try:
                    p.submission = self.procs.submit(frames, seg_jobs)
                except BrokenProcessPool as exc:
                    broken = exc
        if broken is not None:
            self._to_threads(broken)
        if p.submission is None:
            p.jobs = self._thread_jobs(p)
            if self.pool is not None:
                p.results = [self.pool.submit(self._run, job) for job in p.jobs]
            else:
                p.results = [self._run(job) for job in p.jobs]
        with self._count:
            self.in_flight += 1
        return p

    def collect(self, p: _PendingLandmarks) -> LandmarkResult:
        """The landmarks of a submitted chunk, missing frames filled forward."""
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        results = ends = None
        if p.submission is not None:
            try:
                done = p.submission.result()
            except BrokenProcessPool as exc:
                self._to_threads(exc)
            else:
                results, ends = [r for r, _ in done], [e for _, e in done]
                self.carry_state = done[-1][1] if p.ends_inside else None
            if results is None:  # the workers died: this chunk again, in threads
                results = self._rerun_in_threads(p)
        else:
            results = [r.result() if isinstance(r, Future) else r for r in p.results]
        if ends is None:  # each segment's tracker, in its end state until it is freed below
            ends = [getattr(job[0], "tracking_state", None) for job in p.jobs]
        self._keep_the_tracked_face(p, results, ends)
        if p.jobs is not None:
            self.free.extend(job[0] for job in p.jobs if job[0] is not self.carry)
        with self._count:
            self.in_flight -= 1
        t = len(p.frames)
        boxes = np.concatenate([r.boxes for r in results])
        points = np.concatenate([r.points for r in results])
        found = np.concatenate([r.found for r in results])
        # Forward fill: each frame without a face takes the last found frame's values.
        last = np.maximum.accumulate(np.where(found, np.arange(t), -1))
        ok = last >= 0
        boxes[ok], points[ok] = boxes[last[ok]], points[last[ok]]
        if self.last is not None:
            boxes[~ok], points[~ok] = self.last
        if found.any():
            self.last = (boxes[last[-1]].copy(), points[last[-1]].copy())
        return LandmarkResult(boxes, points, found)

    def detect(self, start: int, frames: np.ndarray) -> LandmarkResult:
        return self.collect(self.submit(start, frames))

    def _keep_the_tracked_face(self, p: _PendingLandmarks, results: list, ends: list) -> None:
        """Run again, in this thread, each segment of ``p`` that starts afresh on a face
        far from the one the segment before it ended on, and not clearly larger, from
        that face's box.

        Each segment starts with a whole-frame scan that takes the largest face, so two
        faces of similar size swapped at the restarts (found in review: at frames 32, 59
        and 64 with two equal faces; the features compared two people): dlib's boxes
        come in steps of 1.2x, so either can be the larger. A tracker that went on
        across the segment's end would have searched near the last face first: the
        segment run again from that box does so. A face larger than
        :data:`SIMILAR_FACE` times the last one still wins at a restart, as before (the
        largest face is the subject; the tracked face may have been a bystander taken
        over where the subject was lost). Sizes are the landmarks' extents: the tracked
        search's box and the whole-frame scan's differ for one face by up to 1.5x (found
        in review: two equal faces swapped at 140 px). The last face is the last one
        found while the segment's tracker (``ends``: each segment's end state) still
        holds it: missed with other faces in view for at most
        :data:`~sw_mro.io.landmarks.TRACK_PATIENCE` frames, which the segment run again
        counts into its patience (found in review: one missed frame at a segment's end
        handed the video to a bystander); a frame with no face at all loses it, as
        inside a segment. Whether a segment is run again depends only on
        the landmarks before it, which are collected in order, so the result still
        depends neither on the chunking nor on the number of workers. Far: the first
        frame's box centre moved more than half the last box's side
        (:data:`sw_mro.config.FACE_JUMP_SHARE`). dlib only (the insightface backend
        detects every frame afresh). Cost: with two faces of similar size in view, up to
        every segment is run twice, the second time in this thread."""
        from sw_mro.config import FACE_JUMP_SHARE

        tail, misses = self.tail, self.tail_misses
        for j, ((a, b), r) in enumerate(zip(p.spans, results, strict=True)):
            fresh = not (j == 0 and p.continues)
            if (
                fresh
                and tail is not None
                and self.config.landmarks == "dlib"
                and r.found[0]
                and centre_distance(tail[0], r.boxes[0])
                > FACE_JUMP_SHARE * (tail[0][2] - tail[0][0])
                and _extent(r.points[0]) <= SIMILAR_FACE * tail[1]
            ):
                lm = self._get()
                lm.reset()
                lm.tracking_box = tail[0]
                if misses:  # the frames since it count into the tracker's patience
                    state = lm.tracking_state
                    lm.tracking_state = (*state[:-1], misses)
                r = results[j] = lm.detect(p.frames[a:b])
                ends[j] = lm.tracking_state
                if j == len(p.spans) - 1 and p.ends_inside:  # the next chunk goes on from it
                    if self.carry is not None:
                        self.carry.tracking_state = lm.tracking_state
                    else:
                        self.carry_state = lm.tracking_state
                self.free.append(lm)
            if ends[j] is None:  # the tracker lost the face (or never had one)
                tail, misses = None, 0
            else:  # it holds the last face found, missed for its last ends[j][-1] frames
                hits = np.flatnonzero(r.found)
                if hits.size:
                    k = int(hits[-1])
                    tail = (r.boxes[k].copy(), _extent(r.points[k]))
                misses = int(ends[j][-1])
        self.tail, self.tail_misses = tail, misses

    @staticmethod
    def cancel(p: _PendingLandmarks) -> None:
        """Cancel a submitted chunk's jobs that have not started (when ``stream`` stops
        early); running ones finish, and the chunk's shared block goes back after them."""
        from concurrent.futures import Future

        futures = p.submission.futures if p.submission is not None else p.results
        for f in futures:
            if isinstance(f, Future):
                f.cancel()


@dataclass
class _PendingLandmarks:
    """A chunk whose landmarks are being computed (see :meth:`_Landmarks.submit`)."""

    start: int
    frames: np.ndarray
    spans: list[tuple[int, int]]  # segments, in chunk frames
    continues: bool  # the first segment began in the chunk before
    ends_inside: bool  # the last segment goes on in the next chunk
    submission: Any = None  # worker processes: a landmark_pool.Submission
    start_state: Any = None  # worker processes: the state a continued segment starts in
    jobs: list | None = None  # threads: (landmarker, fresh, frames) per segment
    results: list = field(default_factory=list)  # threads: futures or results


#: Host bytes of one decoded RGB chunk when ``chunk_size`` is automatic: larger frames
#: get fewer frames per chunk (whole landmark segments). About eight chunks' worth of
#: host memory is alive at once (docs/sw_mro.md), so at SAMM-LV's 2040x1088 the CUDA
#: default of 512 frames (3.4 GB a chunk) would hold ~29 GB; capped, 160 frames (1.07
#: GB) hold ~9 GB (both scaled from ~4 GB measured with 640x480 chunks). 640x480 keeps 512 frames (0.47 GB); 720p gets 384, 1080p 160.
CHUNK_BYTES = 1 << 30


def _chunk_size(info: Any, config: SWMROConfig) -> int:
    """Frames per decoded chunk: ``config.chunk_size``, or the automatic size capped at
    :data:`CHUNK_BYTES` of RGB frames (at least one landmark segment)."""
    size = config.resolved_chunk_size
    if config.chunk_size is not None:
        return size
    seg = config.landmark_segment
    frame = max(1, int(info.height) * int(info.width) * 3)
    return min(size, max(seg, CHUNK_BYTES // frame // seg * seg))


def _first_face(src: Any, start: int, config: SWMROConfig, device: torch.device) -> LandmarkResult:
    """Scan from ``start`` for the first frame with a face (frames are not kept).

    The scan starts at the segment boundary at or before ``start`` so that its tracking
    (and so the landmarks it returns) is exactly what the main pass will compute.
    """
    marks = _Landmarks(config, device)
    start -= start % config.landmark_segment
    try:
        for first, rgb in src.chunks(_chunk_size(src.info, config), start=start):
            res = marks.detect(first, rgb.numpy())
            hit = np.flatnonzero(res.found)
            if hit.size:
                k = hit[0]
                return LandmarkResult(
                    res.boxes[k : k + 1], res.points[k : k + 1], res.found[k : k + 1]
                )
    finally:
        marks.close()
    raise NoFaceError(
        f"{src.info.path}: no face found in any of its {src.info.num_frames} frames "
        f"(landmark backend {config.landmarks!r}); the video must show a frontal face "
        "(with dlib, about 40 px wide or more in frames of up to 1280 px, proportionally "
        "more in larger ones: smaller faces are not detected)"
    )


def _decode_plan(src: Any, config: SWMROConfig) -> Iterator[tuple[int, torch.Tensor]]:
    """Chunks of ``chunk_size`` frames (automatic: at most :data:`CHUNK_BYTES` of RGB
    frames), but small ones at both ends, so the device starts early and is not left
    with a whole chunk to do after the producer has finished.

    - The first batch of windows needs only ``batch_size + window // 2`` frames;
      decoding and landmarking a whole chunk first (512 frames on CUDA) would keep the
      device idle for that long. The first chunk is that need rounded up to whole
      landmark segments, so no segment is split.
    - With chunks of at least 4 landmark segments (CUDA: 512 frames, 16 segments), the
      last ``chunk_size`` frames or fewer come in quarter chunks (whole segments). The
      device work on the last chunk is what remains after decoding and landmarks end:
      about 0.5 s for 512 frames on the H100 of run 6, a quarter of that now.

    Features do not depend on chunking either way.
    """
    n = src.info.num_frames
    size = _chunk_size(src.info, config)
    seg = config.landmark_segment
    tail = size // 4 // seg * seg if size >= 4 * seg else size
    first = -(-(config.resolved_batch_size + config.window // 2) // seg) * seg
    pos = 0
    if first < size and first < n:
        yield from src.chunks(first, stop=first)
        pos = first
    if tail == size:
        yield from src.chunks(size, start=pos)
        return
    full = max(0, -(-(n - pos) // size) - 1)  # whole chunks before the last chunk's frames
    if full:
        yield from src.chunks(size, start=pos, stop=pos + full * size)
    if pos + full * size < n:
        yield from src.chunks(tail, start=pos + full * size)


#: Chunks whose landmarks may be in flight at once: the workers start on the next chunk's
#: segments while the last ones of the current chunk finish.
_LANDMARK_CHUNKS_IN_FLIGHT = 2


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless ``stop`` is set first; True when the item went in."""
    return put_unless(q, item, stop.is_set)


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    """Get, or None once ``stop`` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return None


def _producer(
    src: Any, config: SWMROConfig, device: torch.device, out: queue.Queue, stop: threading.Event
) -> None:
    """Decode chunks (a thread ahead) and submit their landmarks; a second thread
    (:func:`_finish_chunks`) collects them in order, uploads and queues the chunks.

    Up to :data:`_LANDMARK_CHUNKS_IN_FLIGHT` chunks are submitted before the first of
    them is collected, so the landmark workers do not idle between chunks. A chunk that
    continues a landmark segment (a ``chunk_size`` that is not a multiple of
    ``landmark_segment``) waits until the chunks before it are collected.
    """
    try:
        marks = _Landmarks(config, device)
    except BaseException as exc:  # handed to the consumer, which re-raises it
        _put(out, exc, stop)
        return
    handoff: queue.Queue = queue.Queue()
    slots = threading.Semaphore(_LANDMARK_CHUNKS_IN_FLIGHT)
    finisher = start_named(
        _finish_chunks,
        (marks, src, config, device, handoff, out, stop, slots),
        name="sw_mro-landmarks",
    )
    chunks = read_ahead(_decode_plan(src, config), stop=stop, name="sw_mro-decode")
    try:
        for start, rgb in chunks:
            # A continued segment needs every slot: nothing before it may be in flight.
            need = _LANDMARK_CHUNKS_IN_FLIGHT if start % config.landmark_segment else 1
            for _ in range(need):
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
            if stop.is_set():
                return
            pending = marks.submit(start, rgb.numpy())
            for _ in range(need - 1):
                slots.release()
            handoff.put((start, rgb, pending))
        handoff.put(None)
    except BaseException as exc:  # handed on (after the chunks before it) to the consumer
        handoff.put(exc)
    finally:
        # Closed here, not when garbage-collected: an exception handed to the consumer
        # keeps this frame (and the generator) alive, and the read-ahead thread with it.
        chunks.close()
        finisher.join()
        if stop.is_set():  # the consumer is gone: drop the landmark jobs still queued
            while True:
                try:
                    item = handoff.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, tuple):
                    marks.cancel(item[2])
        marks.close()


def _finish_chunks(
    marks: _Landmarks,
    src: Any,
    config: SWMROConfig,
    device: torch.device,
    handoff: queue.Queue,
    out: queue.Queue,
    stop: threading.Event,
    slots: threading.Semaphore,
) -> None:
    """Collect the landmarks of each submitted chunk in order, fill the frames before the
    first face, put the gray frames on the device and queue the chunk for ``stream``."""
    import time

    try:
        # Frames go up on their own stream, so a chunk's upload overlaps the flow kernels
        # queued on the compute stream instead of waiting behind them.
        upload = torch.cuda.Stream(device) if device.type == "cuda" else None
        first_good: LandmarkResult | None = None
        sampled = -1  # the last landmark segment whose face contrast was sampled
        t = time.perf_counter()
        while True:
            item = _get(handoff, stop)
            if item is None:
                _put(out, None, stop)
                return
            if isinstance(item, BaseException):
                raise item
            start, rgb, pending = item
            res = marks.collect(pending)
            slots.release()
            pts, boxes = res.points, res.boxes
            missing = np.isnan(pts[:, 0, 0])  # only before the first face ever seen
            if missing.any():
                if first_good is None:
                    hit = np.flatnonzero(res.found)
                    if hit.size:
                        k = hit[0]
                        first_good = LandmarkResult(
                            boxes[k : k + 1], pts[k : k + 1], res.found[k : k + 1]
                        )
                    else:
                        first_good = _first_face(src, start + len(pts), config, device)
                pts[missing] = first_good.points[0]
                boxes[missing] = first_good.boxes[0]
            fixed = LandmarkResult(boxes, pts, res.found)
            crop_boxes = face_boxes(fixed, config)
            spans = face_contrast(
                rgb.numpy(), crop_boxes, res.found, start, config.landmark_segment, sampled
            )
            seen = np.flatnonzero(res.found)  # a segment split by chunks: looked at once,
            if seen.size:  # sampled or not (a box clipped to a sliver is not; review)
                sampled = max(sampled, (start + int(seen[-1])) // config.landmark_segment)
            ready = None
            if upload is not None:  # CUDA: upload on a side stream, off the compute stream
                with torch.cuda.stream(upload):
                    gray = rgb_to_gray(rgb.to(device, non_blocking=True))
                ready = upload.record_event()
            else:
                gray = rgb_to_gray(rgb.to(device))
            now = time.perf_counter()
            item = _Chunk(start, gray, crop_boxes, pts, res.found.copy(), now - t, spans, ready)
            if not _put(out, item, stop):
                return
            t = time.perf_counter()
    except BaseException as exc:  # handed to the consumer, which re-raises it
        _put(out, exc, stop)


def _usable_device(cfg: SWMROConfig) -> torch.device:
    """``cfg.device`` as a torch device with its index, or a DeviceError naming it when it
    is a CUDA device that this process cannot use (no CUDA, or no such index).

    A bare ``"cuda"`` is the caller's current device, fixed here: to torch it means the
    current device of whichever thread uses it, and a new thread (the upload thread)
    starts on device 0, so after ``torch.cuda.set_device(1)`` the frames went to one GPU
    and the crops to the other (found in review)."""
    device = torch.device(cfg.device)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            from sw_mro._cli_util import no_cuda_reason

            why = no_cuda_reason() if count == 0 else f"torch sees {count} CUDA device(s)"
            raise DeviceError(f"SWMROConfig.device={cfg.device!r}: no such device here ({why})")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def too_short_error(
    path: Any, source_frames: int, stride: int, window: int, frames: int | None = None
) -> ClipTooShortError:
    """The error for a video of ``source_frames`` frames whose ``frames`` at ``stride``
    (default ceil(source_frames / stride)) are fewer than ``window``, with what would do.

    At stride s a video needs (w - 1) s + 1 frames, and the largest stride that keeps w
    of the source's N is (N - 1) // (w - 1): ceil(N / s) >= w <=> s < N / (w - 1) (found
    in review: the advice was "a video of >= w frames" at any stride; and a stride over
    the video's frames said only that).
    """
    w, s, n_src = window, stride, source_frames
    n = -(-n_src // s) if frames is None else frames
    fix = f"a video of >= {(w - 1) * s + 1} frames" + (" at this stride" if s > 1 else "")
    if s > 1 and n_src >= w:
        fix += f" or a stride <= {(n_src - 1) // (w - 1)}"
    return ClipTooShortError(
        f"{path}: {n} frame{'s' * (n != 1)} (after stride {s}) is shorter than the window of "
        f"{w} frames; use {fix}, or a smaller window (--window)"
    )


def window_advice(exc: ClipTooShortError, window: int) -> ClipTooShortError:
    """``exc`` from opening a video at a stride over its frames, as
    :func:`too_short_error` words it for ``window`` (``exc`` itself when it is another)."""
    if exc.source_frames is None or exc.stride is None:
        return exc
    return too_short_error(exc.path, exc.source_frames, exc.stride, window)


def _checked_config(config: Any) -> SWMROConfig:
    """``config``, or the defaults for None; a TypeError for anything else (found in a
    probe: a dict, e.g. a JSON's "config", failed with an AttributeError deep inside)."""
    if config is None:
        return SWMROConfig()
    if isinstance(config, SWMROConfig):
        return config
    hint = (
        '; for a dict (e.g. the "config" of an extract JSON) use SWMROConfig.from_dict(d)'
        if isinstance(config, dict)
        else ""
    )
    raise TypeError(
        f"config must be an sw_mro.SWMROConfig or None, got {type(config).__name__}{hint}"
    )


def stream(video: Any, config: SWMROConfig | None = None) -> Iterator[FeatureChunk]:
    """Yield SW-MRO features of ``video`` chunk by chunk, with bounded memory.

    Args:
        video: a video file, a frame folder, ``uint8`` frames in memory (``(N, H, W, 3)``
            RGB, a numpy array or a CPU tensor, read at 30 fps: use
            ``sw_mro.io.open_video(frames, fps=...)`` for another rate), or an opened
            ``VideoSource`` (anything with ``.info`` (``num_frames``, ``height``,
            ``width``, ``path``, ``stride``) and ``.chunks(chunk_size, start=, stop=)``
            yielding ``(first_index, uint8 RGB tensor)``). A source opened at another
            stride than ``config.stride`` (other than 1) is refused.
        config: settings; default :class:`SWMROConfig()`.

    Yields:
        :class:`FeatureChunk` for consecutive windows ``[k B, (k + 1) B)``.

    Raises:
        sw_mro.errors.VideoError subclasses for unusable inputs, ClipTooShortError when
        the video has fewer frames than the window, NoFaceError when no frame has a face;
        TypeError for anything else than the above, or for a ``config`` that is not an
        :class:`SWMROConfig`; DeviceError (a ValueError) for a CUDA device this process
        cannot use.
    """
    cfg = _checked_config(config)
    device = _usable_device(cfg)
    w = cfg.window
    try:
        src = _SerialSource(_open(video, cfg))
    except ClipTooShortError as exc:  # a stride over the video's frames: what would do
        raise window_advice(exc, w) from None
    n = int(src.info.num_frames)
    if n < w:
        raise too_short_error(src.info.path, src.info.source_num_frames, src.info.stride, w, n)
    with reuse_freed_memory():  # freed host blocks are reused, not faulted in again
        yield from _groups(src, cfg, device, n)


def _groups(src: Any, cfg: SWMROConfig, device: torch.device, n: int) -> Iterator[FeatureChunk]:
    """:func:`stream`'s work on an opened source of ``n >= window`` frames."""
    import time

    h = cfg.window // 2
    bsz = cfg.resolved_batch_size
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    worker = start_named(_producer, (src, cfg, device, q, stop), name="sw_mro-submit")

    buf: list[_Chunk] = []  # consecutive chunks covering [buf_start, buf_end)
    end = 0
    try:
        for a in range(0, n, bsz):
            e = min(a + bsz, n)
            need_end = min(e + h, n)  # frames [max(a - h, 0), need_end) are needed
            stats: dict[str, float] = {"wait": 0.0, "decode_landmarks": 0.0}
            while end < need_end:
                t = time.perf_counter()
                item = q.get()
                stats["wait"] += time.perf_counter() - t
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    raise RuntimeError(f"{src.info.path}: the reader stopped at frame {end} of {n}")
                stats["decode_landmarks"] += item.seconds
                if item.ready is not None:  # order the upload before this stream's use
                    main = torch.cuda.current_stream(device)
                    main.wait_event(item.ready)
                    item.gray.record_stream(main)  # its memory is not reused until then
                buf.append(item)
                end = item.start + item.gray.shape[0]
            lo = max(a - h, 0)
            while buf and buf[0].start + buf[0].gray.shape[0] <= lo:
                buf.pop(0)  # ring buffer: drop chunks no window needs any more
            yield _group_features(buf, a, e, n, cfg, device, stats)
    finally:
        stop.set()
        while worker.is_alive():  # unblock the producer if it waits on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
        buf.clear()  # before the thresholds drop and free memory goes back


#: Bytes of crop temporaries per ``crop_resize`` call of a group ([CPU, CUDA]). On CUDA
#: the slots of a group are cropped in as few calls as fit (2 instead of 17 at batch 128
#: on a 640x480 clip; each call is ~20 kernel launches of the main thread). On the dev
#: VM's CPU one slot per call was fastest (16 windows, 256 px, 2 threads: 87 ms per
#: group against 120 / 146 / 291 ms with 3 / 5 / 17 slots per call; larger temporaries
#: miss the cache), hence 0: one slot per call.
_CROP_BYTES = (0, 1 << 30)


def _group_features(
    buf: list[_Chunk], a: int, e: int, n: int, cfg: SWMROConfig, device: torch.device, stats: dict
) -> FeatureChunk:
    """Features of windows ``[a, e)`` from the buffered chunks (queued on the device)."""
    timer = _StageTimer(device)
    w, h, s = cfg.window, cfg.window // 2, cfg.face_size
    base = buf[0].start
    boxes = np.concatenate([c.boxes for c in buf])
    points = np.concatenate([c.points for c in buf])
    found = np.concatenate([c.found for c in buf])
    b = e - a
    # Virtual frame v = i - h + s of window i; frame index clamp(v) pads the ends (SPEC 2.1).
    v = np.arange(a - h, e + h)  # the B + w - 1 virtual frames of this group
    fidx = np.clip(v, 0, n - 1) - base
    first = np.clip(np.arange(a, e) - h, 0, n - 1) - base  # first frame of each window
    win_box = boxes[first]  # (B, 4) crop box of each window
    # One source region (union of this group's boxes, +2 px) keeps the crop input small.
    H, W = buf[0].gray.shape[-2:]
    rx0 = int(max(np.floor(win_box[:, 0].min()) - 2, 0))
    ry0 = int(max(np.floor(win_box[:, 1].min()) - 2, 0))
    rx1 = int(min(np.ceil(win_box[:, 2].max()) + 2, W))
    ry1 = int(min(np.ceil(win_box[:, 3].max()) + 2, H))
    if rx1 - rx0 < 2 or ry1 - ry0 < 2:  # box wholly outside the frame: use the frame
        rx0, ry0, rx1, ry1 = 0, 0, W, H
    # The region's rows, gathered from each buffered chunk in turn (concatenating the
    # chunks first would copy up to two whole chunks of frames per group).
    pieces = []
    for c in buf:
        off = c.start - base
        sel = fidx[(fidx >= off) & (fidx < off + c.gray.shape[0])] - off
        if sel.size:
            rows = torch.from_numpy(sel).to(device, non_blocking=True)
            pieces.append(c.gray[rows, ry0:ry1, rx0:rx1])
    region = (torch.cat(pieces) if len(pieces) > 1 else pieces[0]).float()
    boxes_t = torch.from_numpy(win_box[:, None]).to(device, non_blocking=True)  # (B, 1, 4)
    # Slot k of window i is virtual frame i + k (region row i + k), cropped with window
    # i's box: exactly the B * w crops used, in one call per block of slots (the row
    # blend's temporaries are B x slots x S x region width floats). The taps are found
    # in frame pixels, so the region (which depends on the batch) does not change them.
    crops = torch.empty(b, w, s, s, device=device)
    slot_bytes = 4 * 4 * b * s * (rx1 - rx0)  # top, bottom, their blend step, col
    per_call = max(1, min(w, _CROP_BYTES[device.type == "cuda"] // slot_bytes))
    rows_of = torch.arange(b, device=device)[:, None] + torch.arange(w, device=device)
    for k in range(0, w, per_call):
        kk = min(w, k + per_call) - k
        crops[:, k : k + kk] = crop_resize(
            region,
            boxes_t.expand(b, kk, 4),
            s,
            origin=(rx0, ry0),
            frame_size=(H, W),
            index=rows_of[:, k : k + kk],
        )
    box_h = torch.from_numpy(win_box)
    # On the host: the geometry of window_features is computed there.
    pts_crop = frame_to_crop(torch.from_numpy(points[first].astype(np.float64)), box_h, s)
    # Each clip frame's mean nose landmark, in the clip's crop (B, w, 2).
    slots = fidx[np.arange(b)[:, None] + np.arange(w)]  # (B, w) frame of each slot
    nose = points[slots][:, :, list(cfg.nose_landmarks)].astype(np.float64).mean(axis=2)
    slot_nose = frame_to_crop(torch.from_numpy(nose), box_h, s)
    motion = torch.linalg.vector_norm(slot_nose - slot_nose[:, :1], dim=-1)
    init = _landmark_init(slot_nose, cfg)  # None unless align_from_landmarks
    timer.mark("crop")
    feats = _window_features(crops, pts_crop, cfg, timer, init)
    frame_found = found[np.arange(a, e) - base]
    spans = np.concatenate([c.contrast for c in buf])[np.arange(a, e) - base]
    return FeatureChunk(
        a, feats, frame_found, stats, timer, motion.numpy().astype(np.float32), spans
    )


def extract(video: Any, config: SWMROConfig | None = None) -> torch.Tensor:
    """SW-MRO features of a whole video: ``(N, w, R, 2)`` float32 on the config's device.

    Examples:
        >>> from sw_mro.io.samples import carphone_path
        >>> cfg = SWMROConfig(window=5, face_size=64, batch_size=64)
        >>> extract(carphone_path(), cfg).shape
        torch.Size([120, 5, 10, 2])
    """
    return torch.cat([c.features for c in stream(video, config)])
