"""Invariants of the synthetic benchmark that tests/test_synthetic.py leaves open.

Found by mutation testing: the plan's documented invariants (lengths, gaps, apex
position, distractors kept off the expressions), the timing of the planted motion in
lossless renders (the annotated onset and offset frames still, motion in between), the
backward map moving content by exactly the planted field, the random streams, and the
files' fps and names. Everything is built here, at small sizes.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from spotformer.data import synthetic as S
from spotformer.data import synthetic_plan as P
from spotformer.data import synthetic_render as R
from spotformer.data.synthetic import SyntheticConfig, expression_profile, make_synthetic, plan

# Events only (no landmark detection): the planner's private steps, with fresh rngs.
EVENTS = SyntheticConfig(
    subjects=1,
    videos_per_subject=1,
    seconds=20,
    width=320,
    height=240,
    macro_per_video=3,
    micro_per_video=4,
    macro_frames=(16, 60),
    min_gap_frames=12,
    blinks_per_minute=40,
    head_moves_per_minute=20,
)
SEEDS = range(40)

# A still head, no noise: every pixel change of a render comes from a planted field.
STILL = dict(drift_px=0.0, drift_deg=0.0, drift_scale=0.0, noise_sigma=0.0)


def _events(cfg: SyntheticConfig, seed: int) -> tuple[list, list, list]:
    rng = np.random.default_rng(seed)
    exprs = P._plan_expressions(cfg, rng)
    return exprs, P._plan_head_moves(cfg, rng, exprs), P._plan_blinks(cfg, rng, exprs)


def _free_between(a: tuple[int, int], b: tuple[int, int]) -> int:
    """Free frames between two inclusive intervals (negative: they overlap)."""
    (a0, a1), (b0, b1) = sorted([a, b])
    return b0 - a1 - 1


# --------------------------------------------------------------------------- plan


def test_expressions_keep_lengths_gaps_and_order() -> None:
    cfg, gap, n = EVENTS, EVENTS.min_gap_frames, EVENTS.num_frames
    first_kinds = set()
    for seed in SEEDS:
        exprs = _events(cfg, seed)[0]
        assert [e["kind"] for e in exprs].count("macro") == cfg.macro_per_video
        assert [e["kind"] for e in exprs].count("micro") == cfg.micro_per_video
        for e in exprs:
            lo, hi = cfg.macro_frames if e["kind"] == "macro" else cfg.micro_frames
            assert lo <= e["offset"] - e["onset"] + 1 <= hi, e
            plo, phi = cfg.macro_peak_px if e["kind"] == "macro" else cfg.micro_peak_px
            assert plo <= e["peak_px"] <= phi, e
        spans = [(e["onset"], e["offset"]) for e in exprs]
        assert spans == sorted(spans)  # listed in time order
        # min_gap_frames free frames between expressions and from both ends of the video
        assert spans[0][0] >= gap and n - 1 - spans[-1][1] >= gap, (seed, spans)
        for a, b in zip(spans, spans[1:], strict=False):
            assert _free_between(a, b) >= gap, (seed, spans)
        first_kinds.add(exprs[0]["kind"])
    assert first_kinds == {"macro", "micro"}  # the order of the kinds is random


def test_exact_lengths_when_the_range_is_one_value() -> None:
    cfg = dataclasses.replace(EVENTS, macro_frames=(23, 23), micro_frames=(9, 9))
    for seed in range(10):
        for e in _events(cfg, seed)[0]:
            assert e["offset"] - e["onset"] + 1 == (23 if e["kind"] == "macro" else 9), e


@pytest.mark.parametrize("frac", [0.01, 0.5, 0.99])
def test_apex_is_where_apex_fraction_says_and_strictly_inside(frac: float) -> None:
    cfg = dataclasses.replace(EVENTS, apex_fraction=(frac, frac), micro_frames=(3, 15))
    for seed in SEEDS:
        for e in _events(cfg, seed)[0]:
            assert e["onset"] < e["apex"] < e["offset"], e
            span = e["offset"] - e["onset"]
            want = e["onset"] + frac * span
            # rounded to a frame, then kept off the ends
            if 1 <= round(frac * span) <= span - 1:
                assert abs(e["apex"] - want) <= 0.5, (e, want)


def test_region_and_side_probabilities_are_honoured() -> None:
    for prob, region in ((1.0, "brows"), (0.0, "mouth")):
        cfg = dataclasses.replace(EVENTS, brow_prob=prob)
        assert {e["region"] for s in range(5) for e in _events(cfg, s)[0]} == {region}
    for prob, n_sides in ((1.0, 2), (0.0, 1)):
        cfg = dataclasses.replace(EVENTS, both_sides_prob=prob)
        assert {len(e["sides"]) for s in range(5) for e in _events(cfg, s)[0]} == {n_sides}


def test_distractors_stay_off_the_expressions_and_each_other() -> None:
    cfg, gap = EVENTS, EVENTS.min_gap_frames
    n_moves = n_blinks = 0
    for seed in SEEDS:
        exprs, moves, blinks = _events(cfg, seed)
        spans = [(e["onset"], e["offset"]) for e in exprs]
        for m in moves:
            assert 0 < m["start"] <= m["end"] < cfg.num_frames
            lo, hi = cfg.head_move_frames
            assert lo <= m["end"] - m["start"] + 1 <= hi
            for sp in spans:  # never within min_gap_frames of an expression
                assert _free_between((m["start"], m["end"]), sp) >= gap, (seed, m, sp)
        for a, b in zip(moves, moves[1:], strict=False):
            assert _free_between((a["start"], a["end"]), (b["start"], b["end"])) >= 0
        for b in blinks:
            assert 0 < b["start"] < b["closed"] <= b["reopen"] < b["end"] < cfg.num_frames
            for sp in spans:  # off the expression and its 2-frame margins
                assert _free_between((b["start"], b["end"]), sp) >= 2, (seed, b, sp)
        for a, b in zip(blinks, blinks[1:], strict=False):  # >= 0.5 s apart
            assert b["start"] - a["end"] - 1 >= int(0.5 * cfg.fps), (seed, a, b)
        n_moves += len(moves)
        n_blinks += len(blinks)
    assert n_moves > len(SEEDS) and n_blinks > len(SEEDS)  # the checks saw events


def test_blinks_keep_their_margin_at_a_low_frame_rate() -> None:
    """At 2 fps the 0.5 s spacing of blinks is one frame: the 2-frame margin around
    every expression must still hold."""
    cfg = dataclasses.replace(
        EVENTS, fps=2, seconds=120, micro_frames=(3, 5), macro_frames=(6, 12), min_gap_frames=4,
        blink_frames=(3, 4), blinks_per_minute=30,
    )  # fmt: skip
    for seed in SEEDS:
        exprs, _, blinks = _events(cfg, seed)
        assert blinks
        for b in blinks:
            for e in exprs:
                assert _free_between((b["start"], b["end"]), (e["onset"], e["offset"])) >= 2


def test_blinks_may_overlap_expressions_when_asked() -> None:
    cfg = dataclasses.replace(EVENTS, blinks_during_expressions=True, blinks_per_minute=60)
    hits = 0
    for seed in SEEDS:
        exprs, _, blinks = _events(cfg, seed)
        hits += sum(
            _free_between((b["start"], b["end"]), (e["onset"], e["offset"])) < 0
            for b in blinks
            for e in exprs
        )
    assert hits > 0


def test_head_pose_moves_exactly_from_start_to_end() -> None:
    """Without drift the pose is a staircase: still up to ``start - 1``, the whole move
    done at ``end``, still after it."""
    cfg = dataclasses.replace(EVENTS, **STILL)
    for seed in range(10):
        exprs, moves, _ = _events(cfg, seed)
        pose = P._head_pose(cfg, np.random.default_rng(seed), moves)
        assert moves and np.all(pose[:, 3] == 1.0)
        changes = np.flatnonzero(np.any(np.diff(pose[:, :3], axis=0) != 0, axis=1)) + 1
        inside = np.concatenate([np.arange(m["start"], m["end"] + 1) for m in moves])
        assert set(changes) <= set(inside), (changes, moves)
        for m in moves:
            assert m["start"] in changes
            step = pose[m["end"], :3] - pose[m["start"] - 1, :3]
            np.testing.assert_allclose(step, [m["dx"], m["dy"], m["dtheta_deg"]], atol=2e-5)


def test_expression_profile_shape() -> None:
    for onset, apex, offset in [(10, 11, 14), (10, 13, 30), (0, 20, 21), (5, 40, 100)]:
        t = np.arange(onset - 3, offset + 4)
        p = expression_profile(onset, apex, offset, t)
        assert p[t == apex][0] == pytest.approx(1.0)
        assert np.all(p[(t <= onset) | (t >= offset)] == 0)
        inside = (t > onset) & (t < offset)
        assert np.all(p[inside] > 0) and np.all(p[inside] < 1 + 1e-12)
        assert np.argmax(p) == np.flatnonzero(t == apex)[0]
        assert np.all(np.diff(p[(t >= onset) & (t <= apex)]) > 0)
        assert np.all(np.diff(p[(t >= apex) & (t <= offset)]) < 0)


def test_subject_numbers_and_video_codes_stay_unique() -> None:
    numbers = [P._subject_number(i) for i in range(60)]
    assert numbers[: len(P.CASME2_SUBJECT_NUMBERS)] == list(P.CASME2_SUBJECT_NUMBERS)
    assert len(set(numbers)) == len(numbers) and numbers == sorted(numbers)
    codes = [P._video_code(j) for j in range(30)]
    assert len({c for c, _ in codes}) == len(codes) and len({n for _, n in codes}) == len(codes)
    k = len(P.CASME2_VIDEO_CODES)
    assert codes[k] == ("0601", "video1")  # docs/synthetic.md: the 10th video


# --------------------------------------------------------------------------- plan()


@lru_cache(maxsize=8)
def _plan(**kw: object) -> tuple[dict, list]:
    base = dict(subjects=2, videos_per_subject=2, seconds=3, width=320, height=240)
    base.update(macro_per_video=1, micro_per_video=1, macro_frames=(16, 24), min_gap_frames=8)
    base.update(kw)
    return plan(SyntheticConfig(**base))


def _events_of(v: dict) -> tuple:
    return (v["expressions"], v["blinks"], v["head_moves"], v["pose"]["values"])


def test_random_streams_per_subject_and_video() -> None:
    manifest, _ = _plan()
    videos = manifest["videos"]
    assert len(videos) == 4
    for i, a in enumerate(videos):  # every video has its own events and drift
        for b in videos[i + 1 :]:
            assert a["pose"]["values"] != b["pose"]["values"], (a["video"], b["video"])
    # A video does not change when others are added (docs/synthetic.md, Determinism).
    small, _ = _plan(subjects=1, videos_per_subject=1)
    assert _events_of(small["videos"][0]) == _events_of(videos[0])
    # ... nor when the subjects before it get more videos.
    one_each, _ = _plan(videos_per_subject=1)
    assert _events_of(one_each["videos"][1]) == _events_of(videos[2])
    keep = ("rotation_deg", "centre", "gains", "landmarks")
    assert {k: small["subjects"][0][k] for k in keep} == {
        k: manifest["subjects"][0][k] for k in keep
    }


def test_sites_sit_on_their_landmarks_and_move_as_their_action_says() -> None:
    manifest, _ = _plan()
    for s in manifest["subjects"]:
        pts = np.asarray(s["landmarks"])
        ex, ey = R.face_axes(pts)
        for region, actions in (("brows", ("raise", "lower")), ("mouth", ("smile", "depress"))):
            for action in actions:
                e = {"region": region, "action": action, "sides": ["left", "right"]}
                e["peak_px"] = 3.0
                for side, site, lm in zip(
                    e["sides"], P.sites(pts, e), P._site_landmarks(e), strict=True
                ):
                    # "left" is the image's left: the smaller x of the pair
                    pair = (19, 24) if region == "brows" else (48, 54)
                    assert lm == (min(pair, key=lambda k: pts[k][0]) if side == "left" else
                                  max(pair, key=lambda k: pts[k][0]))  # fmt: skip
                    np.testing.assert_allclose(site.centre, pts[lm])
                    v = np.asarray(site.vector)
                    assert np.linalg.norm(v) == pytest.approx(3.0)
                    down = float(v @ ey)  # + down the face
                    out = float(v @ ex) * (-1 if side == "left" else 1)  # + away from midline
                    if action in ("raise", "smile"):
                        assert down < 0, (action, side, v)
                    else:
                        assert down > 0, (action, side, v)
                    if action == "smile":
                        assert out > 0, (side, v)
                    if action == "lower":
                        assert out < 0, (side, v)  # down and inwards


def test_roi_bookkeeping_follows_the_documented_fields() -> None:
    manifest, _ = _plan(brow_prob=0.5, both_sides_prob=0.0)
    manifest2, _ = _plan(brow_prob=1.0, both_sides_prob=0.0, seed=1)
    manifest3, _ = _plan(brow_prob=0.0, both_sides_prob=1.0, seed=2)
    roi = manifest["roi_landmarks"]
    seen = set()
    for m in (manifest, manifest2, manifest3):
        subjects = {s["subject"]: s for s in m["subjects"]}
        for v in m["videos"]:
            s = subjects[v["subject"]]
            for e in v["expressions"]:
                seen.add(e["region"])
                assert e["peak_px_face256"] == pytest.approx(
                    e["peak_px"] * 256 / s["crop_side_px"], abs=2e-3
                )
                gain = dict(zip(roi, e["roi_gain"], strict=True))
                rois = {roi[i] for i in e["rois"]}
                for side in e["sides"]:
                    if e["region"] == "brows":  # 18 and 20 get ~0.88 of the peak
                        trio = (18, 19, 20) if side == "left" else (23, 24, 25)
                        assert set(trio) <= rois, (e["sides"], gain)
                    else:  # the lip centres see ~2 % of a mouth-corner field
                        assert gain[51] < 0.05 and gain[57] < 0.05, gain
    assert seen == {"brows", "mouth"}


def test_subjects_four_to_six_are_mirrored() -> None:
    cfg = SyntheticConfig(subjects=6, videos_per_subject=1, seconds=1, width=192, height=144,
                          macro_per_video=0, micro_per_video=0)  # fmt: skip
    manifest, _ = plan(cfg)
    assert [s["flip"] for s in manifest["subjects"]] == [False] * 3 + [True] * 3


def test_pose_is_the_documented_formula() -> None:
    """docs/synthetic.md: rest -> frame t is q = c + scale R(theta) (p - c) + t, with
    R(theta) = [[cos, -sin], [sin, cos]]; frame_points applies it."""
    rng = np.random.default_rng(0)
    c = np.array([150.0, 110.0])
    pts = rng.uniform(50, 250, size=(7, 2))
    for tx, ty, deg, scale in [(0, 0, 90, 1), (3.5, -2, -30, 1.01), (-1, 4, 7, 0.98)]:
        a = np.radians(deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        want = c + scale * (pts - c) @ rot.T + [tx, ty]
        video = {"pose": {"centre": list(c), "values": [[tx, ty, deg, scale]]}}
        np.testing.assert_allclose(P.frame_points(video, {}, 0, pts), want, atol=1e-9)


# --------------------------------------------------------------------------- pixels


def test_content_moves_by_exactly_the_planted_field() -> None:
    """A plate whose pixels hold their own rest coordinates: after one field, the
    content of rest point p is found at p + u(p) (docs: "moves to exactly p + u(p)")."""
    w, h, m = 160, 120, 8
    ys, xs = np.mgrid[0 : h + 2 * m, 0 : w + 2 * m].astype(np.float32)
    plate = np.dstack([xs - m, ys - m, np.zeros_like(xs)])
    grid = (np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    fwd = R.pose_matrix(np.array([0.0, 0.0, 0.0, 1.0]), (80.0, 60.0))
    site = R.Site((80.0, 60.0), (3.0, -4.0), (1.0, 0.0), 9.0, 9.0)  # |grad u| ~0.34
    out = R.render_frame(plate, m, fwd, [(site, 1.0)], grid)
    import cv2

    worst = 0.0
    for px in np.arange(62.0, 99.0, 3.0):
        for py in np.arange(42.0, 79.0, 3.0):
            u = np.asarray(site.vector) * site.gain_at(np.array([px, py]))
            q = np.array([px, py]) + u
            got = cv2.getRectSubPix(out, (1, 1), tuple(q))[0, 0, :2]
            worst = max(worst, float(np.abs(got - [px, py]).max()))
    assert worst < 0.02, worst


@lru_cache(maxsize=4)
def _lossless(**kw: object) -> tuple[dict, dict, np.ndarray]:
    """One video rendered without noise, drift or codec: (video, subject, frames)."""
    base = dict(subjects=1, videos_per_subject=1, seconds=4, width=320, height=240,
                macro_per_video=1, micro_per_video=1, macro_frames=(16, 30),
                micro_peak_px=(1.0, 1.5), min_gap_frames=10, blinks_per_minute=0,
                head_moves_per_minute=0, seed=3, **STILL)  # fmt: skip
    base.update(kw)
    cfg = SyntheticConfig(**base)
    manifest, plates = plan(cfg)
    v, s = manifest["videos"][0], manifest["subjects"][0]
    frames = S._frames(cfg, plates[0], s, v, np.random.default_rng(0))
    return v, s, np.stack([f.astype(np.int16) for f in frames])


def test_planted_motion_spans_exactly_the_annotated_frames() -> None:
    """docs/synthetic.md: the annotated onset and offset frames are still; the face
    moves on onset + 1 .. offset - 1, most at the apex (lossless renders)."""
    v, s, frames = _lossless()
    assert len(v["expressions"]) == 2
    rest = frames[0]
    changed = np.abs(frames - rest).reshape(len(frames), -1).max(1) > 0
    want = np.zeros(len(frames), bool)
    for e in v["expressions"]:
        want[e["onset"] + 1 : e["offset"]] = True
    assert np.array_equal(np.flatnonzero(changed), np.flatnonzero(want)), (
        np.flatnonzero(changed),
        [(e["onset"], e["offset"]) for e in v["expressions"]],
    )
    for e in v["expressions"]:
        ts = np.arange(e["onset"], e["offset"] + 1)
        size = np.abs(frames[ts] - rest).reshape(len(ts), -1).sum(1)
        assert ts[np.argmax(size)] == e["apex"], (e, size)


def test_planted_motion_has_the_annotated_direction() -> None:
    import cv2

    v, s, frames = _lossless(micro_per_video=0, macro_peak_px=(5.0, 6.0), seed=4)
    (e,) = v["expressions"]
    a = cv2.cvtColor(frames[e["onset"]].astype(np.uint8), cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(frames[e["apex"]].astype(np.uint8), cv2.COLOR_RGB2GRAY)
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 5, 7, 1.5, 0)
    for st in e["sites"]:
        x, y = np.round(st["centre"]).astype(int)
        got = flow[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 2).mean(0)
        want = np.asarray(st["vector"])
        cos = got @ want / (np.linalg.norm(got) * np.linalg.norm(want))
        assert cos > 0.9 and 0.5 < np.linalg.norm(got) / np.linalg.norm(want) < 1.3, (got, want)


def test_render_follows_the_pose_frame_by_frame() -> None:
    """No expressions or blinks, no drift: a frame differs from the one before exactly
    when the manifest's pose does (sudden head moves)."""
    v, _, frames = _lossless(macro_per_video=0, micro_per_video=0, head_moves_per_minute=45)
    pose = np.asarray(v["pose"]["values"])
    assert v["head_moves"]
    pose_moved = np.any(np.diff(pose, axis=0) != 0, axis=1)
    frame_moved = np.abs(np.diff(frames, axis=0)).reshape(len(frames) - 1, -1).max(1) > 0
    assert np.array_equal(pose_moved, frame_moved)


def test_blinks_close_both_eyes() -> None:
    v, s, frames = _lossless(macro_per_video=0, micro_per_video=0, blinks_per_minute=15)
    pts = np.asarray(s["landmarks"])
    assert v["blinks"]
    for b in v["blinks"]:
        diff = np.abs(frames[b["closed"]] - frames[0]).sum(2)
        for eye in (range(36, 42), range(42, 48)):
            x0, y0 = pts[list(eye)].min(0).astype(int)
            x1, y1 = pts[list(eye)].max(0).astype(int) + 1
            assert diff[y0:y1, x0:x1].mean() > 5, (b, eye)


def test_sensor_noise_is_fresh_every_frame() -> None:
    frame = np.full((48, 64, 3), 100.0, np.float32)
    rng = np.random.default_rng(0)
    a, b = R.add_noise(frame, rng, 2.0), R.add_noise(frame, rng, 2.0)
    d = a.astype(np.int16) - b.astype(np.int16)
    assert np.mean(d != 0) > 0.5 and 2.0 < d.std() < 3.5  # sqrt(2) x sigma


# --------------------------------------------------------------------------- files


def test_files_carry_the_videos_fps_and_expression_names(tmp_path: Path) -> None:
    import openpyxl

    from spotformer.data.annotations import load_csv

    cfg = SyntheticConfig(subjects=1, videos_per_subject=1, seconds=3, fps=25, width=192,
                          height=144, macro_per_video=0, micro_per_video=2,
                          min_gap_frames=8, crf=30)  # fmt: skip
    manifest = make_synthetic(tmp_path / "fps25", cfg, progress=False)
    (v,) = manifest["videos"]
    table = load_csv(tmp_path / "fps25" / "annotations.csv")
    assert table.sources[v["video"]].fps == 25
    wb = openpyxl.load_workbook(tmp_path / "fps25" / S.XLSX_NAME, read_only=True)
    names = [r[1] for r in wb["CASFEcode_final"].iter_rows(values_only=True)]
    wb.close()
    assert names == [f"{v['name']}_{k}" for k in range(1, len(v["expressions"]) + 1)]


@pytest.mark.parametrize("width", [640, 320, 192])
def test_sudden_moves_keep_the_face_within_five_percent_of_the_width(width: int) -> None:
    """docs/synthetic.md: sudden moves keep the face within 5 % of the width of its rest
    place, as the pose adds them up in time order (found in review: the plan checked
    them in the order drawn; 44 px of a 32 px limit at 640 px wide, 60 s)."""
    cfg = SyntheticConfig(width=width, height=width * 3 // 4, seconds=60, macro_per_video=0,
                          micro_per_video=0, head_moves_per_minute=12, drift_px=0.0,
                          drift_deg=0.0, drift_scale=0.0)  # fmt: skip
    for seed in range(50):
        rng = np.random.default_rng(seed)
        moves = P._plan_head_moves(cfg, rng, [])
        pose = P._head_pose(cfg, rng, moves)
        worst = float(np.linalg.norm(pose[:, :2], axis=1).max())
        assert worst <= 0.05 * width + 1e-3, (seed, worst, moves)
