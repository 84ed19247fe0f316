"""SpotFormer's training losses (paper eqs. 3-5, SPEC.md section 4).

All losses are computed in float32 whatever the autocast dtype of the logits, and use
``logsigmoid`` instead of ``log(sigmoid + eps)``, so they are finite for any logit.

Total (SPEC.md section 4)::

    1.8 ME-apex + 1.0 ME-onoff + 0.1 ME-expr
      + m (1.0 MaE-apex + 1.0 MaE-onoff + 0.1 MaE-expr) + 0.005 SupCon(tau = 0.5)

with m = 0.5 for CAS(ME)^2 and 0.55 for SAMM-LV (:data:`MACRO_RATIO`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from spotformer.data.labels import FrameTargets
from spotformer.models.spotformer import SpotFormerOutput

#: m per data set (SPEC.md section 4; the authors' config "macro_ration").
MACRO_RATIO: dict[str, float] = {"casme2": 0.5, "samm": 0.55}

#: ``"khosla"``: Khosla et al.'s SupCon (eq. 4); ``"authors"``: the SpotFormer authors'
#: code, numerically (see :func:`_supcon_authors`).
SupConForm = Literal["khosla", "authors"]
SUPCON_FORMS: tuple[str, ...] = get_args(SupConForm)


def focal_loss(
    logits: Tensor, target: Tensor, alpha: float, gamma: float = 1.0, smoothing: float = 0.16
) -> Tensor:
    """Binary focal loss with soft positive targets and label smoothing (paper eq. 3).

    With ``p = sigmoid(logits)``, averaged over all elements::

        y > 0 (positive, y may be soft, e.g. the apex Gaussian):  -alpha     |y - p|^gamma       log p
        y = 0 (negative):                                          -(1-alpha) |smoothing - p|^gamma log(1 - p)

    This is the authors' formulation. "Label smoothing" is the ``smoothing - p`` factor:
    a negative's loss is 0 at p = ``smoothing`` as well as at p = 0, with a small hump
    between (near p = 0.08 for gamma 1), so a negative scored near ``smoothing`` is left there
    rather than pushed to 0; a soft positive is weighted by its distance from its target.

    Args:
        logits: raw scores, any shape.
        target: same shape, values in [0, 1].
        alpha: weight of the positives (0.9 apex, 0.8 expression); negatives get 1 - alpha.
        gamma: focusing exponent (1 in SPEC).
        smoothing: label smoothing (0.16 in SPEC).

    Examples:
        >>> z = torch.tensor([0.0]); y = torch.tensor([1.0])
        >>> round(focal_loss(z, y, alpha=0.9).item(), 6)  # 0.9 * 0.5 * ln 2
        0.311916
    """
    z, y = logits.float(), target.float()
    p = torch.sigmoid(z)
    pos = y > 0
    pos_term = alpha * (y - p).abs().pow(gamma) * F.logsigmoid(z)
    neg_term = (1.0 - alpha) * (smoothing - p).abs().pow(gamma) * F.logsigmoid(-z)
    return -torch.where(pos, pos_term, neg_term).mean()


def onoff_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy over onset / offset / none. ``logits (B, 3)``, ``target (B,)`` int64."""
    return F.cross_entropy(logits.float(), target)


def supcon_loss(
    features: Tensor,
    labels: Tensor,
    temperature: float = 0.5,
    normalize: bool = True,
    base_temperature: float | None = None,
    form: SupConForm = "khosla",
) -> Tensor:
    """Supervised contrastive loss (paper eq. 4, Khosla et al. 2020).

    For each anchor i with at least one positive (another sample of its class)::

        L_i = -1/|Q(i)| sum_{q in Q(i)} log( exp(z_i.z_q / tau) / sum_{e != i} exp(z_i.z_e / tau) )

    averaged over those anchors. Anchors without a positive are left out (eq. 4 is
    undefined for them); a batch with none returns 0, still attached to the graph.

    Args:
        features: ``(B, D)``.
        labels: ``(B,)`` class of each sample (0 neutral, 1 MaE, 2 ME).
        temperature: tau (0.5 in SPEC).
        normalize: L2-normalise the features first, as in Khosla et al. The authors'
            code feeds raw features and rescales by tau / 0.07; see docs/spotformer.md.
        base_temperature: when given, the loss is multiplied by ``temperature /
            base_temperature`` (Khosla et al.'s code; the authors use 0.07).
        form: ``"khosla"`` (above) or ``"authors"``: the SpotFormer authors'
            ``SupConLoss`` (:func:`_supcon_authors`); with ``normalize=False`` and
            ``base_temperature=0.07``, as ``spotformer train --supcon authors`` sets
            them, it is their loss exactly.
    """
    z = features.float()
    if normalize:
        z = F.normalize(z, dim=1)
    if form == "authors":
        loss = _supcon_authors(z, labels, temperature)
        return loss * (temperature / base_temperature) if base_temperature else loss
    if form != "khosla":
        raise ValueError(f"form must be one of {SUPCON_FORMS}, got {form!r}")
    b = z.shape[0]
    sim = z @ z.T / temperature
    self_mask = torch.eye(b, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))  # E(i) = I \ {i}
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return z.sum() * 0.0
    pos_sum = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(1)
    loss = -(pos_sum[has_pos] / n_pos[has_pos]).mean()
    return loss * (temperature / base_temperature) if base_temperature else loss


def _supcon_authors(z: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """The SpotFormer authors' ``SupConLoss`` (``abfcm.py``, one view), before the
    ``temperature / base_temperature`` factor. It differs from :func:`supcon_loss`'s
    Khosla form in three places:

    - the row maximum subtracted for stability includes the anchor's similarity with
      itself (then left out of the sum),
    - ``log(sum + 1e-6)`` and ``/ (|Q(i)| + 1e-6)``,
    - the mean is over every anchor, an anchor without a positive counting 0.

    On raw features (the authors feed them unnormalised) of norm above about 4 the
    self-similarity exceeds the others by so much that the ``1e-6`` dominates the sum:
    the loss then pulls positives together without the denominator's push apart. That is
    what the authors' training did (both models' features start at norm ~7.5).
    """
    b = z.shape[0]
    sim = z @ z.T / temperature
    logits = sim - sim.max(dim=1, keepdim=True).values.detach()
    not_self = ~torch.eye(b, dtype=torch.bool, device=z.device)
    denom = (torch.exp(logits) * not_self).sum(1, keepdim=True)
    log_prob = logits - torch.log(denom + 1e-6)
    pos = ((labels[:, None] == labels[None, :]) & not_self).float()
    mean_pos = (pos * log_prob).sum(1) / (pos.sum(1) + 1e-6)
    return -mean_pos.mean()


@dataclass(frozen=True)
class LossConfig:
    """Weights and hyper-parameters of the total loss (SPEC.md section 4)."""

    micro_apex: float = 1.8
    micro_onoff: float = 1.0
    micro_expr: float = 0.1
    macro_apex: float = 1.0
    macro_onoff: float = 1.0
    macro_expr: float = 0.1
    macro_ratio: float = 0.5  # m: 0.5 CAS(ME)^2, 0.55 SAMM-LV
    contrastive: float = 0.005  # lambda of eq. 5
    apex_alpha: float = 0.9
    expr_alpha: float = 0.8
    gamma: float = 1.0
    smoothing: float = 0.16
    temperature: float = 0.5
    normalize_features: bool = True
    base_temperature: float | None = None
    supcon_form: SupConForm = "khosla"  # "authors": with the two above False and 0.07

    def __post_init__(self) -> None:
        if not 0.0 <= self.macro_ratio <= 1.0:
            raise ValueError(f"macro_ratio (m) must be in [0, 1], got {self.macro_ratio}")
        if self.supcon_form not in SUPCON_FORMS:
            raise ValueError(f"supcon_form must be one of {SUPCON_FORMS}, got {self.supcon_form!r}")


@dataclass
class LossTerms:
    """The total loss (with its graph) and each weighted term's unweighted value."""

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


def spotting_loss(
    out: SpotFormerOutput, targets: FrameTargets, config: LossConfig | None = None
) -> LossTerms:
    """Total loss of one batch (paper eq. 5 with SPEC's weights)."""
    cfg = config or LossConfig()
    t: dict[str, Tensor] = {}
    for kind in ("micro", "macro"):
        t[f"{kind}_apex"] = focal_loss(
            out.apex(kind), targets.apex(kind), cfg.apex_alpha, cfg.gamma, cfg.smoothing
        )
        t[f"{kind}_onoff"] = onoff_loss(out.onoff(kind), targets.onoff(kind))
        t[f"{kind}_expr"] = focal_loss(
            out.expression(kind), targets.expr(kind), cfg.expr_alpha, cfg.gamma, cfg.smoothing
        )
    t["supcon"] = supcon_loss(
        out.feature,
        targets.contrast,
        cfg.temperature,
        cfg.normalize_features,
        cfg.base_temperature,
        cfg.supcon_form,
    )
    micro = cfg.micro_apex * t["micro_apex"] + cfg.micro_onoff * t["micro_onoff"]
    micro = micro + cfg.micro_expr * t["micro_expr"]
    macro = cfg.macro_apex * t["macro_apex"] + cfg.macro_onoff * t["macro_onoff"]
    macro = macro + cfg.macro_expr * t["macro_expr"]
    total = micro + cfg.macro_ratio * macro + cfg.contrastive * t["supcon"]
    return LossTerms(total=total, terms={k: v.detach() for k, v in t.items()})
