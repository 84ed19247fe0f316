"""Tests added after mutation testing of the streaming machinery and the bookkeeping of
``sw_mro.pipeline`` (2026-11-30): the ring buffer, the groups of windows, the chunk
bookkeeping (frames, fallback frames), the first-face scan, the decode plan, the
too-short and no-face errors, and the head-motion and contrast summaries. Each test
checks a behaviour that a plausible bug would break and that no earlier test pinned
down.

Most tests replace the landmark detector with a stand-in (``_StandIn``): the tests are
about which frame's landmarks go where, not about dlib, and the stand-in makes them
fast and exact. A frame "has a face" when its pixel (0, 0) is red; its landmarks are a
fixed face shape moved right by a tenth of a pixel per frame number (pixel (0, 1)'s
green channel), so features computed with another frame's landmarks differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sw_mro
import sw_mro.pipeline as pl
from sw_mro import SWMROConfig
from sw_mro.errors import ClipTooShortError, NoFaceError
from sw_mro.io.landmarks import LandmarkResult
from sw_mro.io.video import VideoInfo

H, W = 72, 96

_rng = np.random.default_rng(7)
#: A face shape in a 40 x 40 box at (28, 16): 68 points (iBUG order is not needed here).
TEMPLATE = (_rng.uniform(0, 40, (68, 2)) + [28.0, 16.0]).astype(np.float32)
TEMPLATE[[0, 1]] = [[28.0, 16.0], [68.0, 56.0]]  # the box's corners: a fixed extent


class _StandIn:
    """A landmarker: a face where pixel (0, 0) is red, at TEMPLATE + (id / 10, 0)."""

    tracking_state = None
    tracking_box = None

    def reset(self) -> None:
        pass

    def detect(self, frames: np.ndarray) -> LandmarkResult:
        frames = np.asarray(frames)
        found = frames[:, 0, 0, 0] == 255
        ids = frames[:, 0, 1, 1].astype(np.float32)
        points = np.repeat(TEMPLATE[None], len(frames), axis=0)
        points[:, :, 0] += ids[:, None] / 10
        boxes = np.concatenate([points.min(axis=1), points.max(axis=1)], axis=1)
        points[~found], boxes[~found] = np.nan, np.nan
        return LandmarkResult(boxes, points, found)


@pytest.fixture()
def stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pl, "make_landmarker", lambda *a, **k: _StandIn())


def _video(n: int, faceless: tuple[int, ...] = ()) -> np.ndarray:
    """``n`` RGB frames of a smooth texture drifting right by 0.3 px a frame, with a
    face (the stand-in's marker) in all frames but ``faceless``."""
    import cv2

    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 256, (18, 24, 3), dtype=np.uint8), (W + 40, H + 40))
    out = np.empty((n, H, W, 3), np.uint8)
    for t in range(n):
        m = np.float32([[1, 0, 0.3 * t - 20], [0, 1, -20]])
        out[t] = cv2.warpAffine(base, m, (W, H), flags=cv2.INTER_CUBIC)
        out[t, 0, :2] = 0
        out[t, 0, 0, 0] = 0 if t in faceless else 255
        out[t, 0, 1, 1] = t % 256
    return out


class _Source:
    """Frames in memory as a video source; ``stops_at``: the reader ends there early
    (a video whose header promised more frames than it holds). Records the chunks read."""

    def __init__(self, frames: np.ndarray, stops_at: int | None = None) -> None:
        n = len(frames)
        self.frames, self.stops_at = frames, stops_at
        self.info = VideoInfo(Path("memory.mp4"), 30.0, n, H, W, 1, n, 30.0)
        self.read: list[tuple[int, int]] = []

    def chunks(self, chunk_size: int, *, start: int = 0, stop: int | None = None):
        stop = len(self.frames) if stop is None else stop
        if self.stops_at is not None:
            stop = min(stop, self.stops_at)
        for a in range(start, stop, chunk_size):
            b = min(a + chunk_size, stop)
            self.read.append((a, b))
            yield a, torch.from_numpy(self.frames[a:b])


CFG = SWMROConfig(
    window=3, face_size=32, batch_size=8, chunk_size=8, landmark_workers=1, flow_backend="opencv"
)


# --------------------------------------------------------------------------- groups, buffer


def test_the_ring_buffer_keeps_only_the_chunks_the_group_needs(
    stand_in: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC/issue 5: memory is bounded by a ring buffer, never the whole video. With
    chunks of 8, batches of 8 and w = 3, a group of windows [a, a + 8) needs frames
    [a - 1, a + 9): three chunks at most, the first one ending after a - 1."""
    seen: list[tuple[int, int, int]] = []
    real = pl._group_features

    def spy(buf, a, e, n, cfg, device, stats):  # noqa: ANN001
        seen.append((a, buf[0].start, sum(c.gray.shape[0] for c in buf)))
        return real(buf, a, e, n, cfg, device, stats)

    monkeypatch.setattr(pl, "_group_features", spy)
    got = sw_mro.extract(_Source(_video(40)), CFG)
    assert got.shape == (40, 3, 10, 2)
    assert [a for a, _, _ in seen] == list(range(0, 40, 8))
    for a, first, frames in seen:
        assert frames <= 3 * 8, (a, frames)
        assert first + 8 > a - 1, (a, first)


def test_a_last_group_of_one_window_is_not_dropped(stand_in: None) -> None:
    """17 frames in batches of 8: the last group is window 16 alone; the features are
    those of one batch of 17."""
    frames = _video(17)
    chunks = list(sw_mro.stream(_Source(frames), CFG))
    assert [(c.start, len(c.features)) for c in chunks] == [(0, 8), (8, 8), (16, 1)]
    assert [c.frames.tolist() for c in chunks][-1] == [16]
    whole = sw_mro.extract(_Source(frames), CFG.replace(batch_size=17, chunk_size=17))
    assert torch.equal(torch.cat([c.features for c in chunks]), whole)
    assert whole[16, 1:].abs().max() > 0


def test_closing_a_stream_early_stops_decoding(stand_in: None) -> None:
    """A consumer that takes one chunk and closes the stream: the producer stops too
    (a bounded read-ahead past the first group), rather than decoding and landmarking
    the rest of the video before ``close`` returns."""
    src = _Source(_video(400))
    it = sw_mro.stream(src, CFG)
    first = next(it)
    it.close()
    assert first.start == 0 and len(first.features) == 8
    read = max(b for _, b in src.read)
    assert read <= 8 + 1 + 8 * 8 + 8 < 400, read


def test_a_reader_that_ends_early_is_an_error_not_short_features(stand_in: None) -> None:
    """A source whose header says 20 frames but whose reader stops at 12: a clear error,
    not 12 (or 20 made-up) windows."""
    with pytest.raises(RuntimeError, match=r"memory.mp4: the reader stopped at frame 12 of 20"):
        sw_mro.extract(_Source(_video(20), stops_at=12), CFG)


def test_a_clip_of_exactly_the_window_works_one_frame_less_is_refused(stand_in: None) -> None:
    """SPEC 2.1 needs N >= w: w frames give w windows, w - 1 frames a ClipTooShortError."""
    cfg = CFG.replace(window=5)
    got = sw_mro.extract(_Source(_video(5)), cfg)
    assert got.shape == (5, 5, 10, 2) and torch.isfinite(got).all()
    with pytest.raises(ClipTooShortError, match=r"4 frames \(after stride 1\) is shorter"):
        sw_mro.extract(_Source(_video(4)), cfg)


# --------------------------------------------------------------------------- bookkeeping


def test_fallback_frames_across_chunks_and_streamed_equals_whole(stand_in: None) -> None:
    """Frames without a face in several chunks (and at a chunk's first frame): each is
    reported once, by its frame number, and takes the last good landmarks before it, so
    that chunks of 5 give the features of one chunk (bit for bit)."""
    frames = _video(30, faceless=(5, 6, 15, 16, 17, 27))
    chunks = list(sw_mro.stream(_Source(frames), CFG.replace(chunk_size=5)))
    assert [f for c in chunks for f in c.fallback_frames] == [5, 6, 15, 16, 17, 27]
    found = np.concatenate([c.landmark_found for c in chunks])
    assert np.flatnonzero(~found).tolist() == [5, 6, 15, 16, 17, 27]
    whole = sw_mro.extract(_Source(frames), CFG.replace(chunk_size=30))
    assert torch.equal(torch.cat([c.features for c in chunks]), whole)
    marked = frames.copy()  # each fallback frame with the last good frame's landmarks
    for t, last_good in ((5, 4), (6, 4), (15, 14), (16, 14), (17, 14), (27, 26)):
        marked[t, 0, 0, 0], marked[t, 0, 1, 1] = 255, last_good
    assert torch.equal(sw_mro.extract(_Source(marked), CFG.replace(chunk_size=30)), whole)


def test_frames_before_the_first_face_take_its_landmarks_when_it_is_chunks_later(
    stand_in: None,
) -> None:
    """The first face at frame 10, chunks of 4: the chunks before it have no face at all,
    so the first face is looked up ahead (``_first_face``). Frames 0-9 take frame 10's
    landmarks, not a later frame's: chunked equals whole, and both equal the features
    of a video whose frames 0-9 carry frame 10's landmark marker."""
    frames = _video(20, faceless=tuple(range(10)))
    cfg = CFG.replace(chunk_size=4)
    chunks = list(sw_mro.stream(_Source(frames), cfg))
    assert [f for c in chunks for f in c.fallback_frames] == list(range(10))
    streamed = torch.cat([c.features for c in chunks])
    whole = sw_mro.extract(_Source(frames), cfg.replace(chunk_size=20))
    assert torch.equal(streamed, whole)
    marked = frames.copy()
    marked[:10, 0, 0, 0] = 255
    marked[:10, 0, 1, 1] = 10  # frame 10's landmarks on frames 0-9
    assert torch.equal(sw_mro.extract(_Source(marked), cfg.replace(chunk_size=20)), whole)
    # The detector's boxes (crop_box="detector") are filled the same way.
    det = cfg.replace(crop_box="detector")
    got = sw_mro.extract(_Source(frames), det)
    assert torch.isfinite(got).all()
    assert torch.equal(got, sw_mro.extract(_Source(marked), det.replace(chunk_size=20)))


def test_no_face_in_any_chunk_is_a_no_face_error(stand_in: None) -> None:
    with pytest.raises(NoFaceError, match=r"memory.mp4: no face found in any of its 20 frames"):
        sw_mro.extract(_Source(_video(20, faceless=tuple(range(20)))), CFG.replace(chunk_size=6))


def test_feature_chunk_repr_counts_the_fallback_frames() -> None:
    found = np.array([True, False, True, False, False])
    chunk = sw_mro.FeatureChunk(10, torch.zeros(5, 3, 10, 2), found)
    assert repr(chunk).endswith("fallback frames 3)") and "frames 10..14" in repr(chunk)
    assert chunk.fallback_frames == [11, 13, 14] and chunk.frames.tolist() == list(range(10, 15))


# --------------------------------------------------------------------------- decode plan


def test_chunks_of_exactly_four_segments_end_in_quarter_chunks() -> None:
    """'With chunks of at least 4 landmark segments' the last chunk's frames come in
    quarter chunks: 128-frame chunks of 32-frame segments are split too."""
    cfg = SWMROConfig(window=3, batch_size=16, chunk_size=128, landmark_segment=32)
    plan = [(a, len(x)) for a, x in pl._decode_plan(_Source(_video(400)), cfg)]
    assert plan == [(0, 32), (32, 128), (160, 128), (288, 32), (320, 32), (352, 32), (384, 16)]


# --------------------------------------------------------------------------- errors


def test_too_short_at_a_stride_with_exactly_w_source_frames_names_stride_1() -> None:
    """9 source frames at stride 2 keep 5 < w = 9; stride 1 keeps all 9: say so."""
    err = pl.too_short_error("v.mp4", 9, 2, 9)
    assert str(err) == (
        "v.mp4: 5 frames (after stride 2) is shorter than the window of 9 frames; use a "
        "video of >= 17 frames at this stride or a stride <= 1, or a smaller window (--window)"
    )


# --------------------------------------------------------------------------- NoseMotion


def test_nose_motion_share_at_exactly_the_limit_is_not_large() -> None:
    """``large`` is a share *over* LARGE_NOSE_MOTION_SHARE (0.01): 1 of 100 pairs is not."""
    from sw_mro.config import LARGE_NOSE_MOTION_SHARE

    assert LARGE_NOSE_MOTION_SHARE == 0.01
    m = pl.NoseMotion()
    motion = np.zeros((25, 5), np.float32)  # 25 windows x 4 pairs
    motion[3, 2] = 20.0
    m.add(motion)
    assert (m.pairs, m.over, m.share) == (100, 1, 0.01) and not m.large()
    motion[4, 2] = 20.0
    m.add(motion)
    assert m.large()


def test_nose_motion_jumps_across_chunks() -> None:
    """Every jumping pair counts; the first jump's frame is that of the first chunk with
    one (its ``start`` counts), clamped at frame 0 (window 0's slot 1 with w = 5 is the
    padded frame 0), and later chunks do not move it; the maximum is over all chunks."""
    m = pl.NoseMotion(face_size=64)  # jumps beyond 32 px
    quiet = np.zeros((8, 5), np.float32)
    m.add(quiet, start=0)
    assert m.first_jump is None and not m.jumped()
    jumpy = np.zeros((8, 5), np.float32)
    jumpy[3, 2] = jumpy[5, 4] = 40.0  # window 11 slot 2: frame 11 - 2 + 2 = 11
    m.add(jumpy, start=8)
    assert (m.jumps, m.first_jump, m.max) == (2, 11, 40.0)
    later = np.zeros((8, 5), np.float32)
    later[0, 1] = 33.0
    m.add(later, start=16)
    assert (m.jumps, m.first_jump, m.max) == (3, 11, 40.0)
    early = pl.NoseMotion(face_size=64)
    first = np.zeros((8, 5), np.float32)
    first[0, 1] = 50.0  # window 0, slot 1: frame max(0 - 2 + 1, 0) = 0
    early.add(first, start=0)
    assert early.first_jump == 0
    assert "first at frame 0" in early.describe_jumps()


# --------------------------------------------------------------------------- FaceContrast


def _contrast(samples: dict[int, float], segment: int = 32) -> pl.FaceContrast:
    acc = pl.FaceContrast(segment=segment)
    for frame, value in samples.items():  # one chunk per sample, at its frame
        acc.add(np.array([value], np.float32), start=frame)
    return acc


def test_a_dim_stretch_of_exactly_dim_frames_samples_is_warned_about() -> None:
    """FACE_CONTRAST_DIM_FRAMES (2) neighbouring samples under the limit make a stretch."""
    from sw_mro.config import FACE_CONTRAST_DIM_FRAMES

    assert FACE_CONTRAST_DIM_FRAMES == 2
    acc = _contrast({0: 190.0, 32: 40.0, 64: 50.0, 96: 190.0, 128: 200.0})
    assert acc.below() == (2, 2, 32, 64) and acc.dim_stretch() and acc.warns()


def test_a_low_median_is_not_also_a_dim_stretch() -> None:
    """A dim video is one warning (``low``), not a 'dim stretch of a bright video'."""
    acc = _contrast({0: 40.0, 32: 40.0, 64: 40.0, 96: 190.0})
    assert acc.low() and acc.warns() and not acc.dim_stretch()
    assert acc.describe().startswith("the face spans only 40 grey levels")


def test_face_contrast_is_the_1st_to_99th_percentile_span() -> None:
    """A face box over a ramp of 0..255 grey: the span is ~99 % of 255, not 255."""
    ramp = np.broadcast_to(np.linspace(0, 255, 200).round().astype(np.uint8), (40, 200))
    rgb = np.repeat(ramp[None, :, :, None], 3, axis=3).copy()
    spans = pl.face_contrast(rgb, np.array([[0.0, 0.0, 200.0, 40.0]]), np.ones(1, bool), 0, 32)
    assert 240.0 < spans[0] < 252.0, spans


# --------------------------------------------------------------------------- _Landmarks


class _Tracker:
    """A tracking landmarker with dlib's rules in miniature: face A (pixel (0, 0) red,
    40 px, left) and face B (pixel (0, 2) red, 44 px, right: similar size, larger).
    A fresh tracker takes the larger face; a tracker keeps its face while in view; a
    frame with no face at all loses it (``tracking_state`` None)."""

    BOXES = {"A": (10.0, 20.0, 50.0, 60.0), "B": (120.0, 20.0, 164.0, 64.0)}

    def __init__(self) -> None:
        self.box: tuple | None = None
        self.misses = 0

    def reset(self) -> None:
        self.box, self.misses = None, 0

    @property
    def tracking_state(self) -> tuple | None:
        return None if self.box is None else (self.box, self.misses)

    @tracking_state.setter
    def tracking_state(self, state: tuple | None) -> None:
        self.box, self.misses = (None, 0) if state is None else (state[0], state[-1])

    @property
    def tracking_box(self) -> tuple | None:
        return self.box

    @tracking_box.setter
    def tracking_box(self, box) -> None:  # noqa: ANN001
        self.box, self.misses = tuple(float(v) for v in box), 0

    def detect(self, frames: np.ndarray) -> LandmarkResult:
        t = len(frames)
        boxes = np.full((t, 4), np.nan, np.float32)
        points = np.full((t, 68, 2), np.nan, np.float32)
        found = np.zeros(t, bool)
        for k, f in enumerate(frames):
            faces = {n: b for n, b in self.BOXES.items() if f[0, 0 if n == "A" else 2, 0] == 255}
            if not faces:
                self.box, self.misses = None, 0
                continue
            near = [b for b in faces.values() if self.box is not None and b[0] == self.box[0]]
            box = near[0] if near else faces["B" if "B" in faces else "A"]
            self.box, self.misses = box, 0
            found[k], boxes[k] = True, box
            x0, y0, x1, y1 = box
            points[k] = np.stack([np.linspace(x0, x1, 68), np.linspace(y0, y1, 68)[::-1]], axis=1)
        return LandmarkResult(boxes, points, found)


def _faces(n: int, a: range, b: range, blank: tuple[int, ...] = ()) -> np.ndarray:
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    for t in range(n):
        if t not in blank:
            frames[t, 0, 0, 0] = 255 * (t in a)
            frames[t, 0, 2, 0] = 255 * (t in b)
    return frames


def _detect_all(frames: np.ndarray) -> LandmarkResult:
    """The pipeline's landmarks of ``frames`` in one call, in this process."""
    marks = pl._Landmarks(SWMROConfig(landmark_workers=1), torch.device("cpu"))
    try:
        return marks.detect(0, frames)
    finally:
        marks.close()


def test_a_frame_without_any_face_at_a_segments_end_loses_the_tracked_face(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Face A alone until frame 62, no face at frame 63 (the last of segment 1), then A
    and the slightly larger B: the tracker lost A at frame 63, so segment 2 takes the
    larger face as a tracker going on would (not a re-run from A's box at the end of
    segment 0)."""
    monkeypatch.setattr(pl, "make_landmarker", lambda *a, **k: _Tracker())
    res = _detect_all(_faces(80, a=range(80), b=range(64, 80), blank=(63,)))
    assert np.flatnonzero(~res.found).tolist() == [63]
    assert (res.boxes[:63, 0] == 10).all() and (res.boxes[64:, 0] == 120).all()
    # Inside a segment the same: a blank frame 20, B in view from 21 on.
    res = _detect_all(_faces(32, a=range(32), b=range(21, 32), blank=(20,)))
    assert (res.boxes[21:, 0] == 120).all()


def test_a_continued_segments_tracker_is_not_shared_with_another_segment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Landmarks in threads: a chunk that ends inside a segment keeps its tracker for
    the next chunk, which continues that segment with it; no other segment's job, run
    in parallel, may be given the same landmarker (its reset would break the tracking)."""
    from sw_mro.io import landmark_pool

    monkeypatch.setattr(pl, "make_landmarker", lambda *a, **k: _Tracker())
    monkeypatch.setattr(landmark_pool, "usable", lambda: False)
    frames = _faces(96, a=range(96), b=range(0))
    marks = pl._Landmarks(SWMROConfig(landmark_workers=2), torch.device("cpu"))
    try:
        assert marks.pool is not None and marks.procs is None
        marks.collect(marks.submit(0, frames[:40]))  # segments 0-31, 32-39 (goes on)
        p = marks.submit(40, frames[40:96])  # continues 32-63, then 64-95
        jobs = [job[0] for job in p.jobs]
        assert len(jobs) == 2 and jobs[0] is not jobs[1]
        assert marks.collect(p).found.all()
    finally:
        marks.close()


# --------------------------------------------------------------------------- config


def test_no_config_means_the_defaults_and_a_dict_is_refused() -> None:
    assert pl._checked_config(None) == SWMROConfig()
    cfg = SWMROConfig(window=5)
    assert pl._checked_config(cfg) is cfg
    with pytest.raises(TypeError, match=r"SWMROConfig.from_dict"):
        pl._checked_config({"window": 5})


@pytest.mark.parametrize("backend", ["opencv", "torch"])
def test_an_explicit_flow_backend_is_kept(backend: str) -> None:
    assert pl.flow_backend(SWMROConfig(flow_backend=backend), torch.device("cpu")) == backend


def test_a_stream_shuts_its_landmark_threads_down(
    stand_in: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Landmarks in threads (no worker processes): the thread pools that a stream starts
    are shut down when it ends, not left to the garbage collector."""
    from sw_mro.io import landmark_pool

    monkeypatch.setattr(landmark_pool, "usable", lambda: False)
    made = []
    real = pl._landmark_threads

    def spy(workers: int):  # noqa: ANN202
        made.append(real(workers))
        return made[-1]

    monkeypatch.setattr(pl, "_landmark_threads", spy)
    got = sw_mro.extract(_Source(_video(12)), CFG.replace(landmark_workers=2))
    assert got.shape == (12, 3, 10, 2)
    assert made and all(pool._shutdown for pool in made)
