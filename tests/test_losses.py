"""Losses (SPEC.md section 4) against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from spotformer.data.labels import FrameTargets
from spotformer.losses import (
    MACRO_RATIO,
    LossConfig,
    focal_loss,
    onoff_loss,
    spotting_loss,
    supcon_loss,
)
from spotformer.models import SpotFormerOutput

LN2, LN3 = math.log(2.0), math.log(3.0)
# The losses compute in float32: agreement with a float64 hand computation to float32
# precision (a few ulps of values of order 1; totals are differences of such values).
F32 = {"rel": 1e-5, "abs": 1e-6}


# -- focal loss ---------------------------------------------------------------------------


def test_focal_loss_by_hand() -> None:
    # p = sigmoid(z) = 0.5, 0.75, 0.25
    z = torch.tensor([0.0, math.log(3.0), -math.log(3.0)])
    y = torch.tensor([1.0, 0.0, 0.5])
    a, eps = 0.9, 0.16
    want = (
        a * abs(1.0 - 0.5) * -math.log(0.5)  # positive, hard target
        + (1 - a) * abs(eps - 0.75) * -math.log(1 - 0.75)  # negative, smoothed
        + a * abs(0.5 - 0.25) * -math.log(0.25)  # positive, soft target
    ) / 3
    got = focal_loss(z, y, alpha=a, gamma=1.0, smoothing=eps)
    assert got.item() == pytest.approx(want, **F32)


def test_focal_loss_gamma_and_alpha_by_hand() -> None:
    z = torch.tensor([[math.log(3.0), 0.0]])  # p = 0.75, 0.5
    y = torch.tensor([[1.0, 0.0]])
    want = (0.8 * 0.25**2 * -math.log(0.75) + 0.2 * abs(0.1 - 0.5) ** 2 * -math.log(0.5)) / 2
    got = focal_loss(z, y, alpha=0.8, gamma=2.0, smoothing=0.1)
    assert got.item() == pytest.approx(want, **F32)


def test_focal_loss_smoothing_spares_a_negative_at_p_equal_smoothing() -> None:
    eps = 0.16
    z = torch.tensor([math.log(eps / (1 - eps))])  # p = eps exactly
    assert focal_loss(z, torch.zeros(1), 0.9, 1.0, eps).item() == pytest.approx(0.0, abs=1e-7)
    assert focal_loss(z, torch.zeros(1), 0.9, 1.0, 0.0).item() > 1e-3


def test_focal_loss_is_finite_for_extreme_logits_and_bf16() -> None:
    z = torch.tensor([-200.0, 200.0, -200.0, 200.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    loss = focal_loss(z.to(torch.bfloat16), y, 0.9)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    assert loss.dtype == torch.float32


# -- onset / offset / none cross-entropy ----------------------------------------------------


def test_onoff_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0], [0.0, 0.0, math.log(6.0)]])
    target = torch.tensor([0, 0, 2])
    want = (LN3 + -math.log(2 / 4) + -math.log(6 / 8)) / 3
    assert onoff_loss(logits, target).item() == pytest.approx(want, **F32)


# -- SupCon -------------------------------------------------------------------------------


def test_supcon_three_samples_by_hand() -> None:
    # z1 = z2 = (1, 0), z3 = (0, 1); tau = 0.5 -> z1.z2 / tau = 2, others 0.
    # Anchors 1 and 2: -log(e^2 / (e^2 + e^0)); anchor 3 has no positive and is left out.
    f = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])  # normalised inside
    labels = torch.tensor([0, 0, 1])
    want = math.log(math.exp(2) + 1) - 2
    assert supcon_loss(f, labels, 0.5).item() == pytest.approx(want, **F32)


def test_supcon_four_samples_two_classes_by_hand() -> None:
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 1])
    e = math.exp
    # z.z / tau:  s13 = 2, s12 = s23 = s24 = 0, s14 = s34 = -2
    l1 = -(2 - math.log(e(0) + e(2) + e(-2)))  # anchor 1, positive 3
    l2 = -(0 - math.log(e(0) + e(0) + e(0)))  # anchor 2, positive 4
    l3 = -(2 - math.log(e(2) + e(0) + e(-2)))  # anchor 3, positive 1
    l4 = -(0 - math.log(e(-2) + e(0) + e(-2)))  # anchor 4, positive 2
    want = (l1 + l2 + l3 + l4) / 4
    assert supcon_loss(f, labels, 0.5).item() == pytest.approx(want, **F32)


def test_supcon_without_normalisation_uses_raw_dot_products() -> None:
    f = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    # anchor 1: s12 = 2/0.5 = 4, s13 = 0; anchor 2: s21 = 4, s23 = 0
    want = math.log(math.exp(4) + 1) - 4
    assert supcon_loss(f, labels, 0.5, normalize=False).item() == pytest.approx(want, **F32)


def test_supcon_authors_form_scales_by_tau_over_base_temperature() -> None:
    """The authors' form: raw features and the loss times tau / 0.07 (Khosla et al.'s
    code with base_temperature 0.07), the form lambda = 0.005 was tuned for."""
    f = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    want = (math.log(math.exp(4) + 1) - 4) * 0.5 / 0.07
    got = supcon_loss(f, labels, 0.5, normalize=False, base_temperature=0.07)
    assert got.item() == pytest.approx(want, **F32)
    out = SpotFormerOutput(logits=torch.zeros(3, 10), feature=f)
    t = FrameTargets.cat([_two_frames([0, 0]), _two_frames([2, 2]).index(slice(0, 1))])
    cfg = LossConfig(normalize_features=False, base_temperature=0.07)
    assert spotting_loss(out, t, cfg).terms["supcon"].item() == pytest.approx(want, **F32)


def test_supcon_authors_code_form_by_hand() -> None:
    """``form="authors"``: the authors' SupConLoss. z0 = (4, 0), z1 = (1, 0), z2 = (0, 1),
    classes 0, 0, 1, tau 0.5: z.z / tau rows [32, 8, 0], [8, 2, 0], [0, 0, 2]. Each row
    drops its maximum, the anchor's own similarity included, before exp: anchor 0 keeps
    e^-24 + e^-32 (about 4e-11), far below the 1e-6 added inside the log. Anchor 2 has no
    positive and counts 0 in the mean over all three anchors."""
    f = torch.tensor([[4.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    e, log = math.exp, math.log
    a0 = (-24 - log(e(-24) + e(-32) + 1e-6)) / (1 + 1e-6)  # positive 1
    a1 = (0 - log(e(0) + e(-8) + 1e-6)) / (1 + 1e-6)  # row max 8 (positive 0); e^-8: z2
    want = -(a0 + a1 + 0.0) / 3 * 0.5 / 0.07
    got = supcon_loss(f, labels, 0.5, normalize=False, base_temperature=0.07, form="authors")
    assert got.item() == pytest.approx(want, **F32)
    assert want > 20  # the 1e-6 dominates: the Khosla form gives 7e-4 x 7.1 here
    khosla = supcon_loss(f, labels, 0.5, normalize=False, base_temperature=0.07)
    # float32: log(e^8 + 1) - 8 = 3.4e-4 is a difference of values near 8 (ulp 1e-6)
    assert khosla.item() == pytest.approx((log(e(8) + 1) - 8) * 0.5 / 0.07, abs=1e-5)
    cfg = LossConfig(normalize_features=False, base_temperature=0.07, supcon_form="authors")
    out = SpotFormerOutput(logits=torch.zeros(3, 10), feature=f)
    t = FrameTargets.cat([_two_frames([0, 0]), _two_frames([2, 2]).index(slice(0, 1))])
    assert spotting_loss(out, t, cfg).terms["supcon"].item() == pytest.approx(want, **F32)


def test_supcon_authors_form_equals_khosla_on_unit_features_with_positives() -> None:
    """Where the authors' 1e-6 terms are negligible (unit-norm features) and every anchor
    has a positive, the two forms agree: the differences are only where stated."""
    g = torch.Generator().manual_seed(0)
    f = torch.randn(64, 16, generator=g)
    labels = torch.arange(64) % 3
    a = supcon_loss(f, labels, 0.5, form="authors")
    k = supcon_loss(f, labels, 0.5)
    assert a.item() == pytest.approx(k.item(), rel=1e-5)
    labels[0] = 7  # an anchor without a positive: 0 in the authors' mean, left out in ours
    a = supcon_loss(f, labels, 0.5, form="authors")
    k = supcon_loss(f, labels, 0.5)
    assert a.item() < k.item()
    with pytest.raises(ValueError, match="form"):
        supcon_loss(f, labels, 0.5, form="simclr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="supcon_form"):
        LossConfig(supcon_form="simclr")  # type: ignore[arg-type]


def test_supcon_no_positive_pair_is_zero_with_a_graph() -> None:
    f = torch.tensor([[1.0, 0.5], [0.3, 1.0]], requires_grad=True)
    loss = supcon_loss(f, torch.tensor([0, 1]))
    assert loss.item() == 0.0
    loss.backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()


# -- the total ----------------------------------------------------------------------------


def _two_frames(contrast: list[int]) -> FrameTargets:
    """Frame 0 neutral; frame 1 an ME apex inside its expression."""
    return FrameTargets(
        micro_onoff=torch.tensor([2, 2]),
        macro_onoff=torch.tensor([2, 2]),
        micro_apex=torch.tensor([0.0, 1.0]),
        macro_apex=torch.tensor([0.0, 0.0]),
        micro_expr=torch.tensor([0.0, 1.0]),
        macro_expr=torch.tensor([0.0, 0.0]),
        contrast=torch.tensor(contrast),
    )


@pytest.mark.parametrize("dataset", ["casme2", "samm"])
def test_total_loss_weights_by_hand(dataset: str) -> None:
    # All logits 0 -> p = 0.5 and every softmax uniform, so each term is easy to write.
    out = SpotFormerOutput(logits=torch.zeros(2, 10), feature=torch.tensor([[1.0, 0], [0, 1.0]]))
    m = MACRO_RATIO[dataset]
    cfg = LossConfig(macro_ratio=m)
    neg = 0.34 * LN2  # |0.16 - 0.5| * -ln(1 - 0.5)
    micro_apex = (0.1 * neg + 0.9 * 0.5 * LN2) / 2
    micro_expr = (0.2 * neg + 0.8 * 0.5 * LN2) / 2
    macro_apex = 0.1 * neg
    macro_expr = 0.2 * neg
    want = 1.8 * micro_apex + 1.0 * LN3 + 0.1 * micro_expr
    want += m * (1.0 * macro_apex + 1.0 * LN3 + 0.1 * macro_expr)  # SupCon: no positives -> 0
    got = spotting_loss(out, _two_frames([0, 2]), cfg)
    assert got.total.item() == pytest.approx(want, **F32)
    assert got.terms["micro_apex"].item() == pytest.approx(micro_apex, **F32)
    assert got.terms["macro_expr"].item() == pytest.approx(macro_expr, **F32)
    assert m == {"casme2": 0.5, "samm": 0.55}[dataset]


def test_total_loss_adds_lambda_times_supcon() -> None:
    out = SpotFormerOutput(
        logits=torch.linspace(-2, 2, 20).reshape(2, 10),
        feature=torch.tensor([[1.0, 0.2], [0.4, 1.0]]),
    )
    # Three frames, classes 0, 0, 0: every anchor has positives, so SupCon > 0.
    t = _two_frames([0, 0])
    t3 = FrameTargets.cat([t, t.index(slice(0, 1))])
    out3 = SpotFormerOutput(
        logits=torch.cat([out.logits, out.logits[:1] * 0.5]),
        feature=torch.cat([out.feature, torch.tensor([[0.0, 1.0]])]),
    )
    full = spotting_loss(out3, t3, LossConfig())
    without = spotting_loss(out3, t3, LossConfig(contrastive=0.0))
    sc = supcon_loss(out3.feature, t3.contrast, 0.5)
    assert sc.item() > 0.01
    assert (full.total - without.total).item() == pytest.approx(0.005 * sc.item(), **F32)


# Found by mutation testing (2026-11-29): each test below fails on a plausible bug that
# the tests above let through.


def test_each_loss_term_reads_its_own_columns_and_targets() -> None:
    """Random logits, distinct ME and MaE targets and weights that are all different:
    the total is the sum written out by column (0:3 ME on/off, 3:6 MaE on/off, 6/7 ME/MaE
    apex, 8/9 ME/MaE expression). A term reading the other type's column or targets, or
    another term's weight, changes it (with all-zero logits and equal targets it did not)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, generator=g) * 2
    out = SpotFormerOutput(logits=logits, feature=torch.randn(6, 4, generator=g))
    t = FrameTargets(
        micro_onoff=torch.tensor([0, 2, 1, 2, 2, 0]),
        macro_onoff=torch.tensor([2, 1, 0, 0, 2, 1]),
        micro_apex=torch.tensor([0, 1.0, 0.969, 0, 0, 0]),
        macro_apex=torch.tensor([0, 0, 0, 0.755, 1.0, 0]),
        micro_expr=torch.tensor([0, 1.0, 1, 0, 0, 0]),
        macro_expr=torch.tensor([0, 0, 1.0, 1, 1, 0]),
        contrast=torch.tensor([0, 2, 1, 1, 1, 0]),
    )
    cfg = LossConfig(
        micro_apex=1.7,
        micro_onoff=1.1,
        micro_expr=0.3,
        macro_apex=0.9,
        macro_onoff=1.3,
        macro_expr=0.2,
        macro_ratio=0.6,
        contrastive=0.0,
    )
    got = spotting_loss(out, t, cfg).total.item()
    want = (
        1.7 * focal_loss(logits[:, 6], t.micro_apex, 0.9)
        + 1.1 * onoff_loss(logits[:, 0:3], t.micro_onoff)
        + 0.3 * focal_loss(logits[:, 8], t.micro_expr, 0.8)
        + 0.6
        * (
            0.9 * focal_loss(logits[:, 7], t.macro_apex, 0.9)
            + 1.3 * onoff_loss(logits[:, 3:6], t.macro_onoff)
            + 0.2 * focal_loss(logits[:, 9], t.macro_expr, 0.8)
        )
    ).item()
    assert got == pytest.approx(want, rel=1e-6)


def test_focal_loss_soft_positive_below_one_half() -> None:
    """A positive is any y > 0, weighted by |y - p|: at z = 0, y = 0.3 the loss is
    0.9 * |0.3 - 0.5| * ln 2."""
    got = focal_loss(torch.tensor([0.0]), torch.tensor([0.3]), alpha=0.9).item()
    assert got == pytest.approx(0.9 * 0.2 * math.log(2), rel=1e-5)


def test_focal_loss_gradient_includes_the_modulating_factor() -> None:
    """d/dz of -alpha (1 - p) log p at z = 0 (p = 1/2): -alpha (ln 2 / 4 + 1 / 4); a
    detached p (the factor taken as a constant) gives -alpha / 4."""
    z = torch.tensor([0.0], requires_grad=True)
    focal_loss(z, torch.tensor([1.0]), alpha=0.9).backward()
    assert z.grad is not None
    assert z.grad.item() == pytest.approx(-0.9 * (0.25 * math.log(2) + 0.25), rel=1e-5)


def test_loss_config_defaults_and_range_of_m() -> None:
    assert LossConfig().macro_ratio == 0.5  # SPEC 4: CAS(ME)^2's m
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="macro_ratio"):
            LossConfig(macro_ratio=bad)
