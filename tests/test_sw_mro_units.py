"""SW-MRO's small rules, each pinned by a fast case. Found by mutation testing
(2026-11-29): each test fails on a plausible bug that the rest of the suite let through,
or caught only in its slow end-to-end tests (SPEC 2.4-2.6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sw_mro.pipeline as pl
from sw_mro import SWMROConfig
from sw_mro.ops import mdmo, shift
from sw_mro.pipeline import _nose_geometry, window_features


def _at(deg: float, length: float = 1.0) -> list[float]:
    return [length * math.cos(math.radians(deg)), length * math.sin(math.radians(deg))]


# --- MDMO (SPEC 2.6) ----------------------------------------------------------------------


def test_zero_vectors_in_the_main_sector_count_in_the_mean_magnitude() -> None:
    """Sector 0 holds (0, 0), (0, 0) and (2, 0); (0, -1), listed first, is in sector 3.
    At top 1 all three are kept: sum (2, 0), mean magnitude 2/3. (Vectors of other
    sectors must sort below every vector of the chosen one, zero-length ones included.)"""
    v = torch.tensor([[[0.0, -1.0], [0.0, 0.0], [0.0, 0.0], [2.0, 0.0]]])
    for exact in (False, True):
        torch.testing.assert_close(mdmo(v, top=1.0, exact_sums=exact), torch.tensor([[2 / 3, 0.0]]))


@pytest.mark.parametrize("zero", [(-0.0, -0.0), (-0.0, 0.0), (0.0, -0.0)])
def test_a_negative_zero_vector_has_angle_0_too(zero: tuple[float, float]) -> None:
    """Farneback writes (-0.0, -0.0) in flat regions (found in review): atan2 gives it
    -pi (or pi), which put it in the 180-degree sector, so three of them outnumbered two
    vectors to the right and the mean was (0, 0). As (0, 0) and the precedent's
    cv2.cartToPolar (angle 0) they join the vectors to the right. Also in the reference."""
    from reference.sw_mro_reference import mdmo as reference_mdmo

    right = [[1.0, 0.1], [1.0, 0.2]]
    v = torch.tensor([[list(zero)] * 3 + right])
    want = torch.tensor([[[0.0, 0.0]] * 3 + right])
    for exact in (False, True):
        got = mdmo(v, top=1.0, exact_sums=exact)
        torch.testing.assert_close(got, mdmo(want, top=1.0, exact_sums=exact))
        assert float(got[0, 0]) > 0.3  # (2, 0.3) / 5 in length: the right-hand sector
    ref = reference_mdmo(v[0].numpy(), edges=(0.0, 90.0, 180.0, 270.0), top=1.0)
    np.testing.assert_allclose(ref, got[0].numpy(), rtol=1e-6)


def test_exact_sums_round_to_the_nearest_step() -> None:
    """The fixed-point sums (steps of 2^-24 px) round: 0.75 of a step is one step."""
    x = 0.75 * 2.0**-24
    got = mdmo(torch.tensor([[[x, 0.0]]]), top=1.0, exact_sums=True)
    assert abs(float(got[0, 0]) - x) <= 2.0**-25


def test_default_sectors_are_four_of_90_degrees_from_0() -> None:
    """The default (equal sectors, a fast path) against the same sectors given as edges,
    on random regions; and 3 vectors at 60 degrees outnumber 2 at 100 (sectors 0-90 and
    90-180; with 3 sectors of 120 all 5 would share one)."""
    rng = np.random.default_rng(0)
    v = torch.from_numpy(rng.normal(size=(50, 40, 2)).astype(np.float32))
    edges = (0.0, 90.0, 180.0, 270.0001)
    want = torch.stack([mdmo(v[k : k + 1], edges=edges)[0] for k in range(50)])
    torch.testing.assert_close(mdmo(v), want)
    w = torch.tensor([[_at(100), _at(100), _at(60), _at(60), _at(60)]])
    torch.testing.assert_close(mdmo(w, top=1.0)[0], torch.tensor(_at(60)))


def test_an_angle_just_below_360_degrees_is_in_the_last_sector() -> None:
    """atan2(-1e-8, 1) + 2 pi rounds to 2 pi in float32: the sector index must stay 3."""
    v = torch.tensor([[[1.0, -1e-8]]])
    torch.testing.assert_close(mdmo(v, top=1.0), v[:, 0])


# --- Config (sizes scale with face_size; closed ends of the ranges) ------------------------


def test_roi_size_rounds_to_nearest_then_odd() -> None:
    assert SWMROConfig(face_size=64).roi_size_px == 5  # 21 * 64 / 256 = 5.25 -> 5
    assert SWMROConfig(face_size=96).roi_size_px == 9  # 7.875 -> 8 -> odd 9


def test_config_accepts_the_closed_ends_of_its_ranges() -> None:
    c = SWMROConfig(mdmo_top=1.0, nose_top=1.0, align_tol=0.0)
    assert (c.mdmo_top, c.nose_top, c.align_tol) == (1.0, 1.0, 0.0)


def test_nose_patch_centre_rounds_half_to_even() -> None:
    """Nose x 88.5..101.5 widened by the 13 px margin: box x 76..115, centre 95.5 -> 96,
    so the 64 px patch starts at x 64 (a floored centre gives 63)."""
    nose = torch.tensor([[[88.5, 87.5], [101.5, 100.0]]], dtype=torch.float64)
    box, origin, _ = _nose_geometry(nose, SWMROConfig())
    assert box.tolist() == [[76, 75, 115, 113]] and origin.tolist() == [[64, 62]]


# --- The alignment loop (SPEC 2.4), with the nose residual replaced ------------------------


def _crops(s: int = 64, w: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.random((s + 16, s + 16)).astype(np.float32))
    base = torch.nn.functional.avg_pool2d(base[None, None], 5, 1, 2)[0, 0] * 255
    crops = torch.stack([base[8 - k : 8 - k + s, 8 : 8 + s] for k in range(w)])[None]
    pts = torch.from_numpy(rng.uniform(20, 44, (1, 68, 2)))
    return crops, pts


CFG = SWMROConfig(window=3, face_size=64, flow_backend="opencv")


def _constant_residual(monkeypatch: pytest.MonkeyPatch, value: list[float]) -> list[int]:
    """Every nose residual is ``value``; returns the list of calls (pairs per call)."""
    calls: list[int] = []

    def fake(ref_patch, tp, *a, **k):  # noqa: ANN001, ANN002, ANN003
        calls.append(tp.shape[0])
        return torch.tensor(value, dtype=torch.float32).expand(tp.shape[0], 2).clone()

    monkeypatch.setattr(pl, "_nose_residual", fake)
    return calls


def test_alignment_stops_at_a_residual_equal_to_the_tolerance(monkeypatch) -> None:
    """SPEC 2.4 repeats while the remaining shift is *over* align_tol."""
    crops, pts = _crops()
    raw = window_features(crops, pts, CFG.replace(align_max_iter=0))
    calls = _constant_residual(monkeypatch, [0.5, 0.0])  # norm exactly 0.5
    got = window_features(crops, pts, CFG.replace(align_tol=0.5))
    assert len(calls) == 1 and torch.equal(got, raw)


@pytest.mark.parametrize("compact", [True, False])
def test_the_shift_applied_is_the_sum_of_the_residuals(monkeypatch, compact: bool) -> None:
    """A residual of (1, 0) every round: 4 rounds (the default maximum) shift each target
    by (4, 0), which equals features of targets shifted by (4, 0) up front and not
    aligned. Catches a shift with dy exactly 0 left out, the sign, and the round count."""
    monkeypatch.setattr(pl, "COMPACT_ALIGNMENT", compact)
    crops, pts = _crops()
    moved = crops.clone()
    moved[0, 1:] = shift(crops[0, 1:], torch.tensor([[4.0, 0.0], [4.0, 0.0]]))
    want = window_features(moved, pts, CFG.replace(align_max_iter=0))
    calls = _constant_residual(monkeypatch, [1.0, 0.0])
    got = window_features(crops, pts, CFG)
    assert len(calls) == 4 and torch.equal(got, want)
