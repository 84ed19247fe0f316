"""Post-processing (SPEC.md section 5) on hand-made probability curves."""

from __future__ import annotations

import math

import pytest
import torch

from spotformer.postprocess import (
    FrameProbabilities,
    Proposals,
    SpotParams,
    apex_candidates,
    candidate_intervals,
    frame_probabilities,
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
        ("micro", 200 / 7, (2, 7)),  # SAMM-LV after /7: 4.76 / 2, 15.2 / 2
        ("macro", 200 / 7, (7, 28)),
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
