"""Landmark tracking's rules, each pinned by a case of its own (sw_mro/io/landmarks.py,
``sw_mro.pipeline._Landmarks`` and ``face_boxes``). Found by mutation testing
(2026-11-29): each test fails on a plausible bug that the rest of the suite let through,
and one found a real bug (``track=False`` and small faces)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sw_mro import SWMROConfig
from sw_mro.io.landmarks import DlibLandmarker, LandmarkResult, make_landmarker
from sw_mro.io.samples import astronaut, carphone_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_landmarks import _face_placer  # noqa: E402


@functools.cache
def _astro() -> np.ndarray:
    return astronaut()


def _placer():
    """``place(canvas, px, cx, cy)``: the astronaut's face, ``px`` wide, at ``(cx, cy)``."""
    return _face_placer(_astro())


def _centre_x(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 0] + boxes[:, 2]) / 2


# ------------------------------------------------------------------ DlibLandmarker


@pytest.mark.parametrize("redetect", [1, 4])
def test_patience_is_per_occlusion_not_cumulative(redetect: int) -> None:
    """Kills: the miss count not reset on a hit (``self._prev = box`` instead of
    ``self._prev, self._misses = box, 0``). Two occlusions of 5 frames (10 misses in all,
    more than TRACK_PATIENCE) with the subject seen between them: never the bystander."""
    place = _placer()
    frames = np.full((18, 480, 640, 3), 120, np.uint8)
    hidden = set(range(3, 8)) | set(range(10, 15))
    for t, c in enumerate(frames):
        place(c, 130, 500, 240)  # a bystander throughout
        if t not in hidden:
            place(c, 170, 150, 240)  # the subject
    res = DlibLandmarker(redetect=redetect).detect(frames)
    assert np.flatnonzero(~res.found).tolist() == sorted(hidden)
    assert (_centre_x(res.boxes) < 320).all(), _centre_x(res.boxes)


def test_a_frame_without_any_face_loses_the_tracked_face() -> None:
    """Kills: a frame where the whole-frame scan finds no face at all keeping the tracked
    box (``if not tracked:`` for ``if not (tracked and rects):``). The docs: "a frame with
    no face at all loses it": the next frame takes the largest face."""
    place = _placer()
    frames = np.full((6, 480, 640, 3), 120, np.uint8)
    for t, c in enumerate(frames):
        if t != 2:
            place(c, 130, 150, 240)  # the smaller face, tracked from frame 0
            if t >= 1:
                place(c, 175, 470, 240)  # a larger face, from frame 1
    res = DlibLandmarker().detect(frames)
    assert res.found.tolist() == [True, True, False, True, True, True]
    x = _centre_x(res.boxes)
    assert (x[:3] < 320).all() and (x[3:] > 320).all(), x


def test_fallback_takes_the_last_good_frame_not_the_first() -> None:
    """Kills: the fallback keeping the first good landmarks (``_last_box`` set only once).
    The existing test has one good frame only."""
    rgb = _astro()
    shifted = np.roll(rgb, 40, axis=1)
    blank = np.full_like(rgb, 90)
    res = make_landmarker("dlib").detect(np.stack([rgb, shifted, blank]))
    assert res.found.tolist() == [True, True, False]
    assert np.array_equal(res.points[2], res.points[1])
    assert np.array_equal(res.boxes[2], res.boxes[1])
    assert not np.allclose(res.points[1], res.points[0])


def test_untracked_small_face_found_in_every_frame() -> None:
    """``track=False`` "always scans the whole frame", but the small-face pass ran only
    where ``self._prev is None``, which the last hit sets even without tracking: a 50 px
    face on 640x480 was found only in every other frame (found in review)."""
    from sw_mro.io.video import open_video

    frame = open_video(str(carphone_path())).read([0]).numpy()[0]
    big = np.full((480, 640, 3), 40, np.uint8)
    big[168:312, 232:408] = frame
    res = make_landmarker("dlib", track=False).detect(np.stack([big] * 4))
    assert res.found.tolist() == [True] * 4


# ------------------------------------------------------------------ pipeline._Landmarks


def _marks_run(frames: np.ndarray, step: int, workers: int = 1) -> LandmarkResult:
    from sw_mro.pipeline import _Landmarks

    marks = _Landmarks(SWMROConfig(landmark_workers=workers), torch.device("cpu"))
    try:
        res = [marks.detect(a, frames[a : a + step]) for a in range(0, len(frames), step)]
    finally:
        marks.close()
    return LandmarkResult(
        np.concatenate([r.boxes for r in res]),
        np.concatenate([r.points for r in res]),
        np.concatenate([r.found for r in res]),
    )


def test_last_good_landmarks_carry_across_chunks() -> None:
    """Kills: ``self.last`` not applied to a chunk's leading misses (they would stay NaN
    and the caller would fill them with the video's FIRST face, not the last)."""
    rgb = _astro()
    blank = np.full_like(rgb, 90)
    frames = np.stack([rgb, np.roll(rgb, 40, axis=1), blank, blank])
    res = _marks_run(frames, 2)
    assert res.found.tolist() == [True, True, False, False]
    assert np.isfinite(res.points).all()
    np.testing.assert_array_equal(res.points[2], res.points[1])
    np.testing.assert_array_equal(res.points[3], res.points[1])


def test_restart_keeps_an_equal_face_with_chunks_at_segment_boundaries() -> None:
    """Kills: the tail (last tracked face) not carried across chunks
    (``self.tail = None`` at the end of ``_keep_the_tracked_face``). The existing restart
    tests chunk at 20/40/56/98 frames, so a segment boundary never coincides with a chunk
    boundary after a segment with faces; here chunks are whole segments (32)."""
    place = _placer()
    frames = np.full((40, 480, 640, 3), 120, np.uint8)
    for t, c in enumerate(frames):
        place(c, 140, 160, 240)
        if t >= 8:
            place(c, 140, 470, 240)
    for step in (40, 32):
        res = _marks_run(frames, step)
        assert res.found.all()
        assert (_centre_x(res.boxes) < 320).all(), (
            step,
            np.flatnonzero(_centre_x(res.boxes) > 320),
        )


# ------------------------------------------------------------------ face_boxes


def test_face_boxes_use_the_larger_extent_of_non_square_landmarks() -> None:
    """Kills: box_scale applied to the smaller / the x extent (the existing test's
    landmarks span 40 x 40, so min, max and x are the same)."""
    from sw_mro.pipeline import face_boxes

    pts = np.zeros((2, 68, 2), np.float32)
    pts[0, :, 0], pts[0, :, 1] = np.linspace(10, 50, 68), np.linspace(0, 60, 68)  # 40 x 60
    pts[1, :, 0], pts[1, :, 1] = np.linspace(0, 60, 68), np.linspace(10, 50, 68)  # 60 x 40
    res = LandmarkResult(np.zeros((2, 4), np.float32), pts, np.ones(2, bool))
    # side 1.2 x 60 = 72, centre (30, 30) / (30, 30), up by 0.05 x 72 = 3.6
    want = [[-6.0, -9.6, 66.0, 62.4], [-6.0, -9.6, 66.0, 62.4]]
    np.testing.assert_allclose(face_boxes(res, SWMROConfig()), want, atol=1e-9)
    # crop_box="detector": the same rule on a non-square detector box
    boxes = np.float32([[10, 0, 50, 60], [0, 10, 60, 50]])
    res = LandmarkResult(boxes, pts, np.ones(2, bool))
    cfg = SWMROConfig(crop_box="detector")
    np.testing.assert_allclose(face_boxes(res, cfg), want, atol=1e-9)


@pytest.mark.parametrize("big_left", [True, False])
def test_after_the_patience_the_largest_bystander_takes_over(big_left: bool) -> None:
    """Kills: the take-over after TRACK_PATIENCE picking the scan's first face
    (``rects[0]``) instead of the largest. The existing test has one bystander only."""
    from sw_mro.io.landmarks import TRACK_PATIENCE

    place = _placer()
    n = 3 + TRACK_PATIENCE + 2
    frames = np.full((n, 480, 640, 3), 120, np.uint8)
    xs = (130, 500) if big_left else (500, 130)
    for t, c in enumerate(frames):
        if t < 3:
            place(c, 120, 320, 110)  # the subject, top centre, gone from frame 3
        if t >= 1:  # bystanders from frame 1 (the subject is tracked by then)
            place(c, 180, xs[0], 350)  # the larger bystander
            place(c, 120, xs[1], 350)  # the smaller one
    res = DlibLandmarker(detect_max_side=640).detect(frames)  # full-size scan: both found
    take = 3 + TRACK_PATIENCE
    assert res.found.tolist() == [True] * 3 + [False] * TRACK_PATIENCE + [True] * (n - take)
    x = _centre_x(res.boxes[take:])
    assert (np.abs(x - xs[0]) < 30).all(), x


def test_a_tracked_face_that_shook_out_of_the_region_in_a_large_frame_is_found() -> None:
    """Kills: the whole-frame scan's full-size pass dropped (``_full`` pass 3). In a
    1280x720 frame a ~110 px face is found neither at 320 px nor 2x that; at full size it
    is. Tracked into the frame, the small-face pass does not run, so only pass 3 finds it
    after it jumped 0.9 of its side, out of the search region."""
    place = _placer()
    frames = np.full((2, 720, 1280, 3), 120, np.uint8)
    small = np.full((480, 640, 3), 120, np.uint8)
    place(small, 110, 300, 240)
    frames[0, 120:600, 320:960] = small
    lm = DlibLandmarker()
    first = lm.detect(frames[:1])
    assert first.found[0]
    side = float(first.boxes[0, 2] - first.boxes[0, 0])
    small[:] = 120
    place(small, 110, 300 + int(0.9 * side), 240)
    frames[1, 120:600, 320:960] = small
    res = lm.detect(frames[1:])
    assert res.found[0], "the shaken face was missed"


def test_no_small_face_pass_in_a_frame_a_face_was_tracked_into(monkeypatch) -> None:
    """Kills: the small-face pass run regardless of ``small_faces`` (its cost, +107 ms a
    frame at 640x480, and the documented rule "the last only where no face was tracked
    into the frame")."""
    calls: list[int] = []
    real = DlibLandmarker._run
    monkeypatch.setattr(
        DlibLandmarker,
        "_run",
        lambda self, img, *a: calls.append((img.shape[1], a[-1])) or real(self, img, *a),
    )
    rgb = _astro()
    canvas = np.full((480, 640, 3), 120, np.uint8)
    canvas[: 512 - 32, :512] = rgb[:480]
    blank = np.full_like(canvas, 120)
    lm = DlibLandmarker()
    assert lm.detect(canvas).found[0]
    calls.clear()
    assert not lm.detect(blank).found[0]  # tracked in: near + 3 whole-frame passes
    assert (640, 1) not in calls and calls[-1] == (640, 0), calls  # no 2x pass at 640


def test_redetect_detects_exactly_every_nth_frame(monkeypatch) -> None:
    """Kills: ``self._since > self.redetect`` for ``>=`` (a detection every N+1 frames;
    the existing test only bounds the count from above)."""
    calls: list[int] = []
    real = DlibLandmarker._run
    monkeypatch.setattr(DlibLandmarker, "_run", lambda self, *a: calls.append(1) or real(self, *a))
    res = DlibLandmarker(redetect=4).detect(np.stack([_astro()] * 9))
    assert res.found.all()
    assert len(calls) == 3, len(calls)  # frames 0, 4 and 8


def test_face_boxes_floor_of_8_px_comes_after_the_scale_and_before_the_shift() -> None:
    """Landmarks spanning 5 px: side max(1.2 x 5, 8) = 8 (not 1.2 x max(5, 8) = 9.6), and
    the box is moved up by 0.05 x 8 = 0.4 (not by 0.05 x 6)."""
    from sw_mro.pipeline import face_boxes

    pts = np.zeros((1, 68, 2), np.float32)
    pts[0, :, 0] = np.linspace(10, 15, 68)
    pts[0, :, 1] = np.linspace(20, 25, 68)
    res = LandmarkResult(np.zeros((1, 4), np.float32), pts, np.ones(1, bool))
    cfg = SWMROConfig()
    assert (cfg.box_scale, cfg.box_shift) == (1.2, 0.05)
    np.testing.assert_allclose(face_boxes(res, cfg), [[8.5, 18.1, 16.5, 26.1]], atol=1e-6)


def test_frames_before_the_first_face_take_the_first_faces_landmarks(tmp_path) -> None:
    """Frames 0-3 without a face, then a face moving right by 3 px a frame: frames 0-3
    take frame 4's landmarks (the first face), not a later frame's. Seen in the nose
    motion of window 2 (first frame 0, slots = frames 0-4): 0 in every slot."""
    import sw_mro

    place = _placer()
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(12):
        c = np.full((480, 640, 3), 120, np.uint8)
        if t >= 4:
            place(c, 150, 200 + 3 * (t - 4), 240)
        cv2.imwrite(str(folder / f"{t:03d}.png"), c[..., ::-1])
    cfg = SWMROConfig(window=5, face_size=64)
    chunks = list(sw_mro.stream(folder, cfg))
    found = np.concatenate([c.landmark_found for c in chunks])
    motion = np.concatenate([c.nose_motion for c in chunks])
    assert found.tolist() == [False] * 4 + [True] * 8
    assert np.abs(motion[2]).max() < 1e-6, motion[2]
    assert motion[9, 4] > 1.0  # window 9: frames 7-11, the face moved 12 px in the frame


def test_misses_before_a_restart_count_into_the_patience_after_it() -> None:
    """The subject, tracked, is hidden from frame 28 to 37 while a bystander of the same
    size is in view. Frames 28-35 are misses (TRACK_PATIENCE = 8 in all, across the
    restart at frame 32), and the bystander takes over at frame 36. A restart that forgot
    the 4 misses of frames 28-31 would still be missing at 36 and 37."""
    from sw_mro.io.landmarks import TRACK_PATIENCE

    assert TRACK_PATIENCE == 8
    place = _placer()
    frames = np.full((44, 480, 640, 3), 120, np.uint8)
    for t, c in enumerate(frames):
        if t >= 4:
            place(c, 140, 470, 240)  # the bystander
        if not 28 <= t <= 37:
            place(c, 140, 160, 240)  # the subject
    for step in (44, 32):
        res = _marks_run(frames, step)
        assert res.found.tolist() == [True] * 28 + [False] * 8 + [True] * 8, step
        x = _centre_x(res.boxes)
        assert (x[:36] < 320).all() and (x[36:] > 320).all(), (step, x)


# ------------------------------------------------ the selection rules, unit by unit
# (mutants that survived every scene: the HOG detector cannot be made to find two
# overlapping faces, or a face whose size creeps, on demand)


def test_the_nearest_close_face_wins_over_a_larger_close_one() -> None:
    """Kills: ``_largest(close)`` for ``_nearest(close, self._prev)`` in
    ``_tracked_or_largest``. Among faces within one side of the tracked box, the nearest
    is the tracked face, even where a larger one is also close (two faces side by side
    after a camera shake took the larger in review)."""
    lm = DlibLandmarker()
    lm._prev = (100.0, 100.0, 200.0, 200.0)  # centre (150, 150), side 100
    near_small = (112.0, 112.0, 192.0, 192.0)  # centre (152, 152), 80 px
    close_large = (160.0, 160.0, 280.0, 280.0)  # centre (220, 220): 99 px away, 120 px
    far_larger = (400.0, 100.0, 600.0, 300.0)  # 350 px away, 200 px
    for rects in ([near_small, close_large], [close_large, near_small, far_larger]):
        assert lm._tracked_or_largest(list(rects)) == near_small
        assert lm._misses == 0
    # only far faces: a miss (None) for TRACK_PATIENCE frames, then the largest
    from sw_mro.io.landmarks import TRACK_PATIENCE

    far_small = (0.0, 0.0, 50.0, 50.0)  # 177 px away
    got = [lm._tracked_or_largest([far_small, far_larger])]
    got += [lm._tracked_or_largest([far_larger]) for _ in range(TRACK_PATIENCE)]
    assert got[:TRACK_PATIENCE] == [None] * TRACK_PATIENCE
    assert got[TRACK_PATIENCE] == far_larger


def test_redetect_detects_again_when_the_fit_grows_by_more_than_a_quarter() -> None:
    """Kills: the size check dropped from ``_predict_only`` (``abs(extent - extent0) >
    0.25 * extent0``). A fit that grows 9 % a frame passes the per-frame shape check
    (translation removed) every frame, but by the third frame after the detection it is
    29.5 % wider than there: that frame goes to the detector (None here)."""
    from sw_mro.io.landmarks import SHAPE_CHANGE_LIMIT

    lm = DlibLandmarker(redetect=4)
    rgb = _astro()
    res = lm.detect(rgb)
    assert res.found[0] and lm._since == 1 and lm._anchor is not None
    pts0 = res.points[0].astype(np.float64)
    centre = pts0.mean(axis=0)
    side = lm._anchor[0][2] - lm._anchor[0][0]
    step = 1.09
    scaled = [(centre + (pts0 - centre) * step**k).astype(np.float32) for k in (1, 2, 3)]
    calls = iter(scaled)
    lm._predict = lambda rgb, box: next(calls)  # the shape predictor's fits, planted
    out = [lm._predict_only(rgb) for _ in range(3)]
    # the premise: each frame's change passes the shape check; only the size differs
    from sw_mro.io.landmarks import _shape_change

    prev = [pts0.astype(np.float32), *scaled[:2]]
    assert all(
        _shape_change(s, p) < SHAPE_CHANGE_LIMIT * side for s, p in zip(scaled, prev, strict=True)
    )
    assert out[0] is not None and out[1] is not None  # 9 % and 18.8 % wider: kept
    assert out[2] is None  # 29.5 % wider than at the detection: detect again
