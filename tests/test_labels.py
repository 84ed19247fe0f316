"""Per-frame targets (SPEC.md section 4) on hand-written cases."""

from __future__ import annotations

import math

import pytest
import torch

from spotformer.data.labels import FrameTargets, LabelConfig, LabelError, frame_targets
from spotformer.data.table import Expression


def E(on: int, ap: int, off: int, kind: str) -> Expression:
    return Expression("s1", "v", on, ap, off, kind)  # type: ignore[arg-type]


def test_micro_expression_by_hand() -> None:
    t = frame_targets([E(10, 12, 15, "micro")], 30)
    want_onoff = [2] * 30
    for f in (9, 10, 11):
        want_onoff[f] = 0
    for f in (14, 15, 16):
        want_onoff[f] = 1
    assert t.micro_onoff.tolist() == want_onoff
    want_apex = [0.0] * 30
    want_apex[11] = want_apex[13] = math.exp(-1 / 32)
    want_apex[12] = 1.0
    assert t.micro_apex.tolist() == pytest.approx(want_apex, abs=1e-7)
    assert t.micro_expr.tolist() == [1.0 if 10 <= f <= 15 else 0.0 for f in range(30)]
    assert t.contrast.tolist() == [2 if 10 <= f <= 15 else 0 for f in range(30)]
    # Nothing leaks into the other type.
    assert t.macro_onoff.tolist() == [2] * 30
    assert t.macro_apex.abs().sum() == 0 and t.macro_expr.sum() == 0


def test_macro_expression_gaussian_matches_spec_values() -> None:
    t = frame_targets([E(5, 20, 40, "macro")], 50)
    onoff = t.macro_onoff.tolist()
    assert [f for f in range(50) if onoff[f] == 0] == list(range(2, 9))  # 5 +- 3
    assert [f for f in range(50) if onoff[f] == 1] == list(range(37, 44))  # 40 +- 3
    apex = t.macro_apex.tolist()
    assert [round(apex[20 + j], 3) for j in range(-4, 5)] == [
        0.0, 0.755, 0.882, 0.969, 1.0, 0.969, 0.882, 0.755, 0.0,
    ]  # fmt: skip
    assert t.contrast.tolist() == [1 if 5 <= f <= 40 else 0 for f in range(50)]
    assert t.micro_onoff.tolist() == [2] * 50


def test_micro_inside_macro_is_macro_for_the_contrastive_class() -> None:
    t = frame_targets([E(10, 30, 60, "macro"), E(20, 22, 25, "micro")], 80)
    assert t.contrast[20:26].tolist() == [1] * 6
    assert t.micro_expr[20:26].tolist() == [1.0] * 6  # per-type targets are kept
    assert t.micro_onoff[19:22].tolist() == [0, 0, 0]


def test_offset_wins_where_onset_and_offset_ranges_overlap() -> None:
    t = frame_targets([E(10, 11, 12, "micro")], 20)
    # onset range 9..11, offset range 11..13: frame 11 is an offset.
    assert t.micro_onoff[8:15].tolist() == [2, 0, 0, 1, 1, 1, 2]


def test_overlapping_apex_ranges_keep_the_larger_value() -> None:
    t = frame_targets([E(0, 10, 14, "macro"), E(8, 12, 20, "macro")], 30)
    # Frame 11: distance 1 from apex 10 and 1 from apex 12; frame 10: apex (1.0) and j = 2.
    assert t.macro_apex[10].item() == pytest.approx(1.0)
    assert t.macro_apex[11].item() == pytest.approx(math.exp(-1 / 32))
    assert t.macro_apex[9].item() == pytest.approx(math.exp(-1 / 32))
    assert t.macro_apex[15].item() == pytest.approx(math.exp(-9 / 32))


def test_ranges_are_clipped_at_the_video_edges() -> None:
    t = frame_targets([E(0, 1, 5, "micro"), E(7, 9, 9, "micro")], 10)
    # onsets 0 (0..1) and 7 (6..8); offsets 5 (4..6) and 9 (8..9); offsets win at 6 and 8.
    assert t.micro_onoff.tolist() == [0, 0, 2, 2, 1, 1, 1, 0, 1, 1]
    assert t.micro_apex[0].item() == pytest.approx(math.exp(-1 / 32))
    assert t.micro_apex[9].item() == 1.0


@pytest.mark.parametrize(
    ("fps", "micro_r", "macro_r"),
    [(30.0, 1, 3), (200 / 7, 1, 3), (60.0, 2, 6), (200.0, 7, 20), (25.0, 1, 3), (15.0, 1, 2)],
)
def test_ranges_scale_with_fps(fps: float, micro_r: int, macro_r: int) -> None:
    cfg = LabelConfig()
    assert cfg.range_frames("micro", fps) == micro_r
    assert cfg.range_frames("macro", fps) == macro_r
    t = frame_targets([E(100, 150, 200, "macro")], 300, fps=fps)
    assert int((t.macro_onoff == 0).sum()) == 2 * macro_r + 1


def test_gaussian_width_is_fixed_in_seconds() -> None:
    t60 = frame_targets([E(10, 30, 50, "macro")], 80, fps=60.0)
    # 2 frames at 60 fps is 1 frame at 30 fps: exp(-1 / 32).
    assert t60.macro_apex[32].item() == pytest.approx(math.exp(-1 / 32))
    assert t60.macro_apex[36].item() == pytest.approx(math.exp(-9 / 32))


@pytest.mark.parametrize("fps", [200 / 7, 29.97])
def test_near_30_fps_takes_specs_numbers(fps: float) -> None:
    """SAMM-LV after /7 (as the authors' code) and NTSC get SPEC's values exactly
    (evaluated at j * 30 / fps they were 0.966, 0.871, 0.733 at 200/7 fps)."""
    t = frame_targets([E(10, 30, 50, "macro")], 80, fps=fps)
    got = t.macro_apex[27:34].tolist()
    want = [math.exp(-(j**2) / 32) for j in range(-3, 4)]
    assert got == pytest.approx(want, abs=1e-7)
    assert [round(v, 3) for v in got[4:]] == [0.969, 0.882, 0.755]


def test_expression_outside_the_video_is_an_error() -> None:
    with pytest.raises(LabelError, match="outside its 50 frames"):
        frame_targets([E(60, 65, 70, "micro")], 50, video="s1_v")


def test_index_cat_and_to() -> None:
    t = frame_targets([E(2, 3, 4, "micro")], 8)
    u = FrameTargets.cat([t, t.index(slice(2, 5))])
    assert len(u) == 11
    assert u.micro_expr[8:].tolist() == [1.0, 1.0, 1.0]
    assert u.to("cpu").contrast.dtype == torch.int64
    assert u.onoff("micro") is u.micro_onoff and u.apex("macro") is u.macro_apex


def test_rate_scale_treats_the_tolerance_the_same_either_way() -> None:
    """30 fps and SAMM-LV's 200/7 are the same rate whichever is the reference (found in
    review: 30 / (200/7) is 1.05 plus a rounding error, so only one way round was)."""
    from spotformer.data.table import rate_scale

    assert rate_scale(30.0, 200 / 7) == rate_scale(200 / 7, 30.0) == 1.0
    assert rate_scale(29.97, 30.0) == rate_scale(30.0, 29.97) == 1.0
    assert rate_scale(60.0, 30.0) == 2.0 and rate_scale(25.0, 30.0) == 25.0 / 30.0
    assert rate_scale(31.6, 30.0) == 31.6 / 30.0  # 5.3 % over either way
    # Exactly 5 % either way is in (1 - 28.5 / 30 is 0.05 plus a rounding error).
    assert rate_scale(28.5, 30.0) == rate_scale(31.5, 30.0) == 1.0
    assert rate_scale(28.4, 30.0) == 28.4 / 30.0


@pytest.mark.parametrize("bad", [0.0, -30.0, float("nan"), float("inf")])
def test_rate_scale_and_frame_targets_refuse_a_frame_rate_that_is_not_a_positive_number(
    bad: float,
) -> None:
    """A rate of 0, below 0, NaN or infinity is an error, not a scale: NaN used to pass
    ``frame_targets``'s ``fps <= 0`` check, and ``rate_scale`` returned ``bad / 30``."""
    from spotformer.data.table import rate_scale

    with pytest.raises(ValueError, match="fps must be a finite frame rate > 0"):
        rate_scale(bad, 30.0)
    with pytest.raises(ValueError, match="ref_fps must be a finite frame rate > 0"):
        rate_scale(30.0, bad)
    with pytest.raises(LabelError, match="fps must be a finite number > 0"):
        frame_targets([], 10, fps=bad, video="v")


# Found by a mutation probe (2026-11-29): exact-boundary inputs that no test held.


def test_an_expression_starting_at_frame_n_lies_outside() -> None:
    """Kills lb9 (`e.onset >= n` -> `e.onset > n`): frames are 0..n-1, so an onset at n
    (the classic 1-based last frame) is outside; the mutant instead labels the last r
    frames "onset" for an expression with no frame in the video."""
    with pytest.raises(LabelError, match="outside its 12 frames"):
        frame_targets([Expression("s1", "v", onset=12, apex=13, offset=14, kind="micro")], 12)


def test_apex_gaussian_cut_at_the_first_frame_keeps_its_centre() -> None:
    """An apex at frame 1: the Gaussian's left tail is cut off, its peak stays on the
    apex (found by mutation testing: a slice taken from the wrong end shifted it)."""
    t = frame_targets([Expression("s", "v", 0, 1, 10, "macro")], 20)
    got = [round(v, 3) for v in t.macro_apex[:6].tolist()]
    assert got == [0.969, 1.0, 0.969, 0.882, 0.755, 0.0]


def test_zero_frames_is_refused() -> None:
    with pytest.raises(LabelError):
        frame_targets([], 0)
