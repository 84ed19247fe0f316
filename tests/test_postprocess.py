"""Post-processing (SPEC.md section 5) on hand-made probability curves."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from spotformer.postprocess import (
    FrameProbabilities,
    Proposals,
    SpotParams,
    apex_candidates,
    candidate_intervals,
    expression_segments,
    frame_probabilities,
    moving_average,
    nms,
    spot_type,
    spot_video,
)


def _probs(n: int, onset: dict[int, float], offset: dict[int, float], apex: dict[int, float]):
    """Background: onset 0.1, offset 0.1 (none 0.8), apex 0.05."""
    on = torch.full((n,), 0.1)
    off = torch.full((n,), 0.1)
    ap = torch.full((n,), 0.05)
    for f, v in onset.items():
        on[f] = v
    for f, v in offset.items():
        off[f] = v
    for f, v in apex.items():
        ap[f] = v
    return FrameProbabilities(on, off, 1 - on - off, ap, ap.clone())


@pytest.mark.parametrize(
    ("kind", "fps", "want"),
    [
        ("micro", 30.0, (2, 8)),  # (5 // 2, 16 // 2), as the authors' code
        ("macro", 30.0, (8, 29)),  # (16 // 2, 59 // 2)
        ("micro", 60.0, (5, 16)),
        ("macro", 60.0, (16, 59)),
        # SAMM-LV after /7 (~28.6 fps) and NTSC 29.97 fps: SPEC's numbers unscaled, as
        # in the authors' code (scaled, they were 2..7 and 7..28).
        ("micro", 200 / 7, (2, 8)),
        ("macro", 200 / 7, (8, 29)),
        ("macro", 29.97, (8, 29)),
        ("macro", 25.0, (6, 24)),  # PAL is 17 % off: scaled, 13.3 / 2 and 49.2 / 2
    ],
)
def test_search_range_scales_with_fps(kind: str, fps: float, want: tuple[int, int]) -> None:
    assert SpotParams().search_range(kind, fps) == want  # type: ignore[arg-type]


def test_apex_threshold_is_strict() -> None:
    p = torch.tensor([0.2, 0.5, 0.51, 0.9, 0.1])
    assert apex_candidates(p, 0.5).tolist() == [2, 3]
    assert apex_candidates(p, 0.8).tolist() == [3]


def test_candidate_by_hand() -> None:
    # ME apex at 20: onset sought in 12..18, offset in 22..28.
    pr = _probs(40, onset={15: 0.8, 10: 0.95}, offset={26: 0.7, 30: 0.9}, apex={20: 0.9})
    c = candidate_intervals(pr, torch.tensor([20]), 2, 8)
    # The peaks at 10 and 30 are outside the windows and ignored.
    assert (c.onset.tolist(), c.apex.tolist(), c.offset.tolist()) == ([15], [20], [26])
    assert c.score.item() == pytest.approx(0.8 * 0.9 * 0.7)


def test_ties_go_to_the_frame_nearest_the_apex() -> None:
    pr = _probs(40, onset={13: 0.6, 17: 0.6}, offset={23: 0.6, 27: 0.6}, apex={20: 0.9})
    c = candidate_intervals(pr, torch.tensor([20]), 2, 8)
    assert (c.onset.tolist(), c.offset.tolist()) == ([17], [23])


def test_window_excludes_frames_nearer_than_j_over_2() -> None:
    # Onset peak at 19 (1 frame before the apex) lies inside j/2 = 2: not eligible.
    pr = _probs(40, onset={19: 0.9, 16: 0.5}, offset={24: 0.5}, apex={20: 0.9})
    c = candidate_intervals(pr, torch.tensor([20]), 2, 8)
    assert c.onset.tolist() == [16]


def test_validity_checks_drop_proposals() -> None:
    # At the chosen onset P_offset > P_onset: dropped.
    pr = _probs(40, onset={15: 0.4}, offset={15: 0.5, 26: 0.7}, apex={20: 0.9})
    assert len(candidate_intervals(pr, torch.tensor([20]), 2, 8)) == 0
    # At the chosen onset P_onset == P_offset: dropped too (SPEC: P_onset > P_offset).
    pr = _probs(40, onset={15: 0.45}, offset={15: 0.45, 26: 0.7}, apex={20: 0.9})
    assert len(candidate_intervals(pr, torch.tensor([20]), 2, 8)) == 0
    # At the chosen offset P_onset >= P_offset: dropped.
    pr = _probs(40, onset={15: 0.8, 26: 0.45}, offset={26: 0.45}, apex={20: 0.9})
    assert len(candidate_intervals(pr, torch.tensor([20]), 2, 8)) == 0


def test_windows_are_clipped_to_the_video() -> None:
    # Apex 2: onset window 2-8..2-2 is all before frame 0 -> frame 0; offset in 4..10.
    # Apex 9: onset in 1..7; offset window 11..17 is all past the end -> frame 11.
    pr = _probs(12, onset={0: 0.7, 3: 0.7}, offset={10: 0.6, 11: 0.6}, apex={2: 0.9, 9: 0.9})
    c = candidate_intervals(pr, torch.tensor([2, 9]), 2, 8)
    assert c.onset.tolist() == [0, 3] and c.offset.tolist() == [10, 11]


def _loop_reference(pr: FrameProbabilities, apex: list[int], lo: int, hi: int):
    """Obviously-correct loop version of candidate_intervals (SPEC.md section 5)."""
    n, out = len(pr.apex), []
    for a in apex:
        best_on, best_off = None, None
        for d in range(lo, hi + 1):  # nearest first; strict > keeps the first maximum
            f = max(a - d, 0)
            if best_on is None or pr.onset[f] > pr.onset[best_on]:
                best_on = f
            g = min(a + d, n - 1)
            if best_off is None or pr.offset[g] > pr.offset[best_off]:
                best_off = g
        if pr.onset[best_on] > pr.offset[best_on] and pr.onset[best_off] < pr.offset[best_off]:
            s = float(pr.onset[best_on] * pr.apex[a] * pr.offset[best_off])
            out.append((best_on, a, best_off, s))
    return out


def test_vectorised_candidates_match_a_loop_reference() -> None:
    g = torch.Generator().manual_seed(7)
    n = 300
    onoff = torch.softmax(torch.randn(n, 3, generator=g) * 2, dim=1)
    ap = torch.rand(n, generator=g)
    pr = FrameProbabilities(onoff[:, 0], onoff[:, 1], onoff[:, 2], ap, ap)
    apex = apex_candidates(ap, 0.5)
    for lo, hi in ((2, 8), (8, 29)):
        c = candidate_intervals(pr, apex, lo, hi)
        ref = _loop_reference(pr, apex.tolist(), lo, hi)
        assert len(ref) > 10  # a real test, not an empty one
        got = list(
            zip(c.onset.tolist(), c.apex.tolist(), c.offset.tolist(), c.score.tolist(), strict=True)
        )
        assert [r[:3] for r in got] == [r[:3] for r in ref]
        assert [r[3] for r in got] == pytest.approx([r[3] for r in ref], rel=1e-6)


def _props(rows: list[tuple[int, int, float]]) -> Proposals:
    on, off, s = zip(*rows, strict=True)
    return Proposals(torch.tensor(on), torch.tensor(on), torch.tensor(off), torch.tensor(s))


def test_nms_by_hand() -> None:
    p = _props(
        [
            (10, 20, 0.9),  # A, kept first
            (11, 21, 0.8),  # B: IoU with A = 10/12 > 0.5, dropped
            (30, 40, 0.7),  # C, kept
            (15, 25, 0.85),  # D: IoU with A = 6/16, kept second
            (0, 9, 0.6),  # E: kept
            (0, 4, 0.5),  # F: IoU with E exactly 0.5, not "over 0.5": kept
        ]
    )
    k = nms(p, 0.5, top_k=10)
    assert list(zip(k.onset.tolist(), k.offset.tolist(), strict=True)) == [
        (10, 20), (15, 25), (30, 40), (0, 9), (0, 4),
    ]  # fmt: skip
    k2 = nms(p, 0.5, top_k=2)
    assert list(zip(k2.onset.tolist(), k2.offset.tolist(), strict=True)) == [(10, 20), (15, 25)]


def test_nms_of_nothing() -> None:
    empty = Proposals(*(torch.zeros(0, dtype=torch.long),) * 3, torch.zeros(0))
    assert len(nms(empty)) == 0


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


def test_spot_video_from_logits_end_to_end() -> None:
    n = 120
    me = _probs(n, onset={40: 0.8}, offset={47: 0.7}, apex={43: 0.9, 44: 0.8})
    ma = _probs(n, onset={60: 0.9}, offset={100: 0.9}, apex={80: 0.4})  # apex below 0.5
    logits = torch.zeros(n, 10)
    logits[:, 0:3] = torch.log(torch.stack([me.onset, me.offset, me.none], 1))
    logits[:, 3:6] = torch.log(torch.stack([ma.onset, ma.offset, ma.none], 1))
    logits[:, 6], logits[:, 7] = _logit(me.apex), _logit(ma.apex)
    logits[:, 8], logits[:, 9] = _logit(me.apex), _logit(ma.apex)
    back = frame_probabilities(logits, "micro")
    assert torch.allclose(back.onset, me.onset, atol=1e-6)
    out = spot_video(logits, "vid", fps=30.0)
    # Apexes 43 and 44 both give [40, 47]; NMS keeps the better one.
    assert [(i.video, i.onset, i.offset, i.kind, i.apex) for i in out] == [
        ("vid", 40, 47, "micro", 43)
    ]
    assert out[0].score == pytest.approx(0.8 * 0.9 * 0.7, rel=1e-5)
    # Lowering the threshold lets the MaE through.
    out2 = spot_video(logits, "vid", params=SpotParams(apex_threshold=0.3))
    assert ("macro", 60, 100) in [(i.kind, i.onset, i.offset) for i in out2]


def test_top_k_per_type() -> None:
    n = 400
    ap = {f: 0.9 for f in range(20, 380, 30)}  # 12 separate apexes
    on = {f - 5: 0.8 for f in ap}
    off = {f + 5: 0.8 for f in ap}
    pr = _probs(n, on, off, ap)
    assert len(spot_type(pr, "micro")) == 5
    assert len(spot_type(pr, "micro", params=SpotParams(top_k=8))) == 8
    assert math.isclose(SpotParams().nms_iou, 0.5)


# -- expression-segment mode ----------------------------------------------------------


def _expr(n: int, runs: dict[tuple[int, int], float], apex: dict[int, float] | None = None):
    """P_expression 0.1 except ``runs`` (inclusive frame ranges); P_apex 0.05 + ``apex``."""
    ex = torch.full((n,), 0.1)
    for (a, b), v in runs.items():
        ex[a : b + 1] = v
    ap = torch.full((n,), 0.05)
    for f, v in (apex or {}).items():
        ap[f] = v
    on = torch.full((n,), 0.1)
    return FrameProbabilities(on, on.clone(), 1 - 2 * on, ap, ex)


# Raw thresholding, no merging, no length limit, no widening: only the stage under test.
RAW = SpotParams(expr_threshold=0.65, expr_smooth=0, expr_gap=0, expr_min_len=1, expr_extend=0)


def _spans(p: Proposals) -> list[tuple[int, int]]:
    return sorted(zip(p.onset.tolist(), p.offset.tolist(), strict=True))


def test_expression_segments_threshold_score_and_apex() -> None:
    pr = _expr(100, {(10, 29): 0.9, (50, 54): 0.7, (70, 79): 0.6}, apex={17: 0.8, 60: 0.99})
    got = expression_segments(pr, 30.0, RAW)
    # 0.6 is not above 0.65; the run ends are inclusive.
    assert _spans(got) == [(10, 29), (50, 54)]
    by_onset = dict(zip(got.onset.tolist(), got.score.tolist(), strict=True))
    assert by_onset[10] == pytest.approx(0.9) and by_onset[50] == pytest.approx(0.7)
    # Apex: the frame of highest P_apex inside the run (60 is outside every run).
    apex = dict(zip(got.onset.tolist(), got.apex.tolist(), strict=True))
    assert apex[10] == 17 and 50 <= apex[50] <= 54
    # A run that touches the video's ends is closed there.
    edge = expression_segments(_expr(40, {(0, 4): 0.9, (35, 39): 0.9}), 30.0, RAW)
    assert _spans(edge) == [(0, 4), (35, 39)]
    assert len(expression_segments(_expr(40, {}), 30.0, RAW)) == 0


def test_expression_segments_gap_length_and_widening() -> None:
    pr = _expr(200, {(10, 19): 0.9, (25, 34): 0.9, (100, 104): 0.9})  # gap of 5 frames
    assert _spans(expression_segments(pr, 30.0, dataclasses.replace(RAW, expr_gap=5))) == [
        (10, 34), (100, 104)
    ]  # fmt: skip
    assert _spans(expression_segments(pr, 30.0, dataclasses.replace(RAW, expr_gap=4))) == [
        (10, 19), (25, 34), (100, 104)
    ]  # fmt: skip
    # The merged 25-frame run stays, the 5-frame one goes.
    long = dataclasses.replace(RAW, expr_gap=5, expr_min_len=6)
    assert _spans(expression_segments(pr, 30.0, long)) == [(10, 34)]
    # The merged score is the mean over the whole merged run, gap frames included.
    s = expression_segments(pr, 30.0, long).score.item()
    assert s == pytest.approx((20 * 0.9 + 5 * 0.1) / 25)
    # Every run too short: no proposal (and no error).
    assert len(expression_segments(pr, 30.0, dataclasses.replace(RAW, expr_min_len=30))) == 0
    # Widening by 12 frames, clipped at frame 0.
    wide = dataclasses.replace(long, expr_extend=12)
    assert _spans(expression_segments(pr, 30.0, wide)) == [(0, 46)]


def test_expression_segments_scale_with_fps() -> None:
    pr = _expr(400, {(10, 29): 0.9, (70, 89): 0.9})  # a 40-frame gap
    prm = dataclasses.replace(RAW, expr_gap=30)
    assert len(expression_segments(pr, 30.0, prm)) == 2  # 40 > 30
    assert _spans(expression_segments(pr, 60.0, prm)) == [(10, 89)]  # 40 <= 60
    assert prm.frames(30, 200 / 7) == 30  # within 5 % of 30 fps: unscaled
    assert prm.frames(30, 25.0) == 25


def test_moving_average_matches_numpy() -> None:
    import numpy as np

    x = torch.rand(50, generator=torch.Generator().manual_seed(0))
    got = moving_average(x, 5)
    xs = x.numpy()
    want = [xs[max(i - 2, 0) : i + 3].mean() for i in range(50)]  # shrinks at the ends
    assert np.allclose(got.numpy(), want, atol=1e-6)
    assert torch.equal(moving_average(x, 1), x)
    assert moving_average(x, 4).shape == x.shape  # an even width is made odd


def test_smoothing_removes_a_one_frame_spike() -> None:
    pr = _expr(100, {(50, 50): 0.99, (10, 39): 0.9})
    prm = dataclasses.replace(RAW, expr_smooth=5)
    # The spike averages to (0.99 + 4 x 0.1) / 5 = 0.28. The run's end frames average to
    # (3 x 0.9 + 2 x 0.1) / 5 = 0.58 < 0.65, the next ones in to 0.74: the run is 11-38.
    assert _spans(expression_segments(pr, 30.0, prm)) == [(11, 38)]


def test_spot_video_expression_mode_per_type() -> None:
    n = 300
    ma_expr = torch.full((n,), 0.1)
    ma_expr[100:160] = 0.95
    logits = torch.full((n, 10), -4.0)
    logits[:, [2, 5]] = 4.0  # onset/offset/none: "none" everywhere
    logits[:, 9] = _logit(ma_expr)
    p = SpotParams(macro_mode="expression", expr_smooth=5, expr_threshold=0.65, expr_extend=10)
    out = spot_video(logits, "vid", 30.0, p)
    # MaE from the expression run: the 5-frame average exceeds 0.65 on 101-158 (frame 100
    # averages (2 x 0.1 + 3 x 0.95) / 5 = 0.61), widened by 10 frames each side. No ME:
    # the ME stays in apex mode and no P_apex exceeds 0.5.
    assert [(i.kind, i.onset, i.offset) for i in out] == [("macro", 91, 168)]
    # The defaults: a 9-frame average above 0.55 (frame 99 averages
    # (5 x 0.1 + 4 x 0.95) / 9 = 0.48, frame 100 0.57), no widening.
    out = spot_video(logits, "vid", 30.0, SpotParams(macro_mode="expression"))
    assert [(i.kind, i.onset, i.offset) for i in out] == [("macro", 100, 159)]
    assert spot_video(logits, "vid", 30.0, SpotParams()) == []  # SPEC's apex mode: nothing


def test_spot_params_validation() -> None:
    with pytest.raises(ValueError, match="macro_mode"):
        SpotParams(macro_mode="segments")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expr_threshold"):
        SpotParams(expr_threshold=1.0)
    with pytest.raises(ValueError, match="expr_gap"):
        SpotParams(expr_gap=-1)
    assert SpotParams().mode("macro") == "apex" and SpotParams().mode("micro") == "apex"


def test_expression_segments_many_runs_match_a_loop() -> None:
    """A noisy curve gives thousands of runs; spans, scores and apexes match a plain loop."""
    n = 5000
    g = torch.Generator().manual_seed(1)
    ex, ap = torch.rand(n, generator=g), torch.rand(n, generator=g)
    pr = FrameProbabilities(torch.zeros(n), torch.zeros(n), torch.zeros(n), ap, ex)
    prm = dataclasses.replace(RAW, expr_threshold=0.5, expr_min_len=2)
    got = expression_segments(pr, 30.0, prm)
    want = []
    start = None
    for i, v in enumerate([*ex.tolist(), 0.0]):
        if v > 0.5 and start is None:
            start = i
        elif v <= 0.5 and start is not None:
            if i - start >= 2:
                want.append((start, i - 1))
            start = None
    assert len(want) > 500
    assert _spans(got) == want
    for on, off, apex, score in zip(got.onset.tolist(), got.offset.tolist(),
                                    got.apex.tolist(), got.score.tolist(), strict=True):  # fmt: skip
        assert apex == on + int(torch.argmax(ap[on : off + 1]))
        assert score == pytest.approx(float(ex[on : off + 1].mean()), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, says",
    [({"top_k": 0}, "top_k"), ({"top_k": -1}, "top_k"), ({"nms_iou": 2.0}, "nms_iou"),
     ({"nms_iou": 0.0}, "nms_iou"), ({"micro_j": 20.0}, "micro_j (the shortest"),
     ({"macro_k": 0.0}, "macro_k"), ({"ref_fps": float("nan")}, "ref_fps"),
     ({"apex_threshold": 1.0}, "apex_threshold")],
)  # fmt: skip
def test_spot_params_refuse_values_that_cannot_work(kwargs: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", "\\(")):
        SpotParams(**kwargs)


def test_equal_durations_may_round_k_under_j() -> None:
    """--durations train: the mean of equal durations can sit an ulp under their min."""
    p = SpotParams(micro_k=13.199999999999998, micro_j=13.2)
    assert p.micro_j > p.micro_k  # taken: the same duration, rounded


def test_spot_video_checks_its_logits_and_fps() -> None:
    logits = torch.zeros(40, 10)
    assert spot_video(logits, "v", 30.0) == []  # nothing above the thresholds
    for fps in (0.0, -30.0, float("nan")):
        with pytest.raises(ValueError, match="v: fps must be a finite number > 0"):
            spot_video(logits, "v", fps)
    for bad in (torch.zeros(40, 9), torch.zeros(2, 40, 10)):
        with pytest.raises(ValueError, match=r"logits must be \(N, 10\)"):
            spot_video(bad, "v", 30.0)


# Found by mutation testing (2026-11-29): each test below fails on a plausible bug that
# the tests above let through.


def test_apex_search_reads_the_apex_column_not_the_expression_column() -> None:
    """ME apex 0.9 at frame 23 on column 6, the ME expression head (column 8) low: one
    interval. Reading the apex from the expression head gives none."""
    n = 60
    on, off = torch.full((n,), 0.1), torch.full((n,), 0.1)
    on[20], off[27] = 0.8, 0.7
    ap = torch.full((n,), 0.05)
    ap[23] = 0.9
    logits = torch.full((n, 10), -4.0)
    logits[:, 0:3] = torch.log(torch.stack([on, off, 1 - on - off], 1))
    logits[:, 3:6] = torch.tensor([-4.0, -4.0, 4.0])  # MaE: "none" everywhere
    logits[:, 6] = _logit(ap)
    out = spot_video(logits, "v")
    assert [(i.kind, i.onset, i.apex, i.offset) for i in out] == [("micro", 20, 23, 27)]


def test_spot_params_defaults() -> None:
    """SPEC 5's apex threshold, and the expression mode's documented defaults
    (docs/spotformer.md), so that none drifts unseen."""
    p = SpotParams()
    assert p.apex_threshold == 0.5
    assert (p.expr_threshold, p.expr_smooth, p.expr_gap, p.expr_min_len, p.expr_extend) == (
        0.55,
        9.0,
        30.0,
        20.0,
        0.0,
    )


def test_frames_round_down() -> None:
    assert SpotParams().frames(9, 25.0) == 7  # 9 * 25 / 30 = 7.5


def test_nms_at_iou_one_keeps_each_proposal_once() -> None:
    p = Proposals(
        torch.tensor([0, 20]),
        torch.tensor([0, 20]),
        torch.tensor([9, 29]),
        torch.tensor([0.9, 0.8]),
    )
    assert nms(p, 1.0, top_k=5).onset.tolist() == [0, 20]


RAW50 = dataclasses.replace(RAW, expr_threshold=0.5)


def test_expression_threshold_is_strict() -> None:
    assert len(expression_segments(_expr(40, {(10, 19): 0.5}), 30.0, RAW50)) == 0
    assert len(expression_segments(_expr(40, {(10, 19): 0.51}), 30.0, RAW50)) == 1


def test_expression_segment_apex_is_the_first_of_equal_maxima() -> None:
    got = expression_segments(_expr(40, {(10, 19): 0.9}, {12: 0.8, 16: 0.8}), 30.0, RAW50)
    assert got.apex.tolist() == [12]


def test_expression_extension_stops_at_the_video_end() -> None:
    prm = dataclasses.replace(RAW50, expr_extend=5)
    got = expression_segments(_expr(40, {(30, 39): 0.9}), 30.0, prm)
    assert (got.onset.tolist(), got.offset.tolist()) == ([25], [39])


def test_expression_smoothing_scales_with_fps() -> None:
    """A 12-frame run at 0.9: smoothed over 9 frames at 30 fps it passes 0.65; over 19
    frames at 60 fps its peak is (12 * 0.9 + 7 * 0.1) / 19 = 0.605 and it does not."""
    prm = dataclasses.replace(RAW50, expr_smooth=9, expr_threshold=0.65)
    pr = _expr(100, {(40, 51): 0.9})
    assert len(expression_segments(pr, 30.0, prm)) == 1
    assert len(expression_segments(pr, 60.0, prm)) == 0


def test_expression_mode_keeps_the_top_k() -> None:
    pr = _expr(400, {(a, a + 9): 0.9 for a in range(10, 380, 40)})  # 10 runs
    prm = dataclasses.replace(RAW50, macro_mode="expression")
    assert len(spot_type(pr, "macro", 30.0, prm)) == 5


def test_moving_average_makes_an_even_width_odd() -> None:
    x = torch.rand(20, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(moving_average(x, 2), moving_average(x, 3))
    assert not torch.allclose(moving_average(x, 3), x)
