"""SpotFormer's forward pass against an independent re-implementation (SPEC 3, paper
3.2) written with plain tensor ops from the model's own parameters, in float64, plus
symmetry tests (ROIs shuffled within a part, moved between parts, frames reversed) and
the dropouts. They pin what the shape, gradient and parameter-count tests of
``test_models.py`` do not: which axis each attention runs over, the residuals, pre-norm
placement, the FLGP groups, the part tokens, GELU, the 1/sqrt(d) scale, the order of the
stages and the temporal convolution. Found by mutation testing (2026-11-29): 17 of 30
plausible mutants of the model passed the suite before.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spotformer.models import (
    APEX_INDEX,
    EXPR_INDEX,
    FACE_PARTS,
    NONE,
    OFFSET,
    ONOFF_SLICE,
    ONSET,
    SpotFormer,
    SpotFormerConfig,
    SpotFormerOutput,
    count_parameters,
)
from spotformer.models.blocks import Attention, TokenNorm

GROUPS = [(0, 3), (3, 6), (6, 10)]  # SPEC 2.5: brow, brow, mouth
PART_OF = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(variant: str = "simul-st", seed: int = 0, **kw) -> SpotFormer:
    torch.manual_seed(seed)
    cfg = {"dim": 32, "heads": 4, "head_dim": 8, "mlp_dim": 24, "variant": variant, **kw}
    m = SpotFormer(**cfg)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.3)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(mod.num_features, generator=g) * 0.2)
    return m.eval()


def _x(b: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 17, 10, 2, generator=g) * 3.0
    x[:, 0] = 0.0
    return x


# -- independent reference ---------------------------------------------------------------


def _bn(x, sd, p):
    return (x - sd[p + ".running_mean"]) / torch.sqrt(sd[p + ".running_var"] + 1e-5) * sd[
        p + ".weight"
    ] + sd[p + ".bias"]


def _mhsa(seq, sd, p, heads, hd):
    """seq: (N, L, D). Standard MHSA, rows of qkv.weight are [q | k | v], heads contiguous."""
    w = sd[p + ".qkv.weight"]
    inner = heads * hd
    q, k, v = (seq @ w[i * inner : (i + 1) * inner].T for i in range(3))
    outs = []
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        s = torch.einsum("nld,nmd->nlm", q[..., sl], k[..., sl]) / math.sqrt(hd)
        outs.append(torch.einsum("nlm,nmd->nld", s.softmax(-1), v[..., sl]))
    return torch.cat(outs, -1) @ sd[p + ".proj.weight"].T + sd[p + ".proj.bias"]


def _layer(seq, sd, p, heads, hd):
    seq = seq + _mhsa(_bn(seq, sd, p + ".norm1.bn"), sd, p + ".attn", heads, hd)
    h = _bn(seq, sd, p + ".norm2.bn") @ sd[p + ".mlp.net.0.weight"].T + sd[p + ".mlp.net.0.bias"]
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # exact GELU
    return seq + h @ sd[p + ".mlp.net.3.weight"].T + sd[p + ".mlp.net.3.bias"]


def _spatial(z, sd, p, heads, hd):  # (B, T, V, D): attend over V
    b, t, v, d = z.shape
    out = torch.empty_like(z)
    for i in range(b):
        for j in range(t):
            out[i, j] = _layer(z[i, j][None], sd, p, heads, hd)[0]
    return out


def _temporal(z, sd, p, heads, hd):  # (B, T, V, D): attend over T, per node
    b, t, v, d = z.shape
    out = torch.empty_like(z)
    for i in range(b):
        for n in range(v):
            out[i, :, n] = _layer(z[i, :, n][None], sd, p, heads, hd)[0]
    return out


def _flgp(z, sd, p, groups):
    z = _bn(z, sd, p + ".norm.bn")
    return torch.stack([z[:, :, a:b].max(dim=2).values for a, b in groups], dim=2)


def _tdown(z, sd, p, pad):
    z = _bn(z, sd, p + ".norm.bn")
    w = sd[p + ".conv.weight"]  # (D_out, D_in, 3)
    t = z.shape[1]
    zp = F.pad(z.permute(0, 2, 3, 1), (pad, pad)).permute(0, 3, 1, 2)  # pad time
    t_out = (t + 2 * pad - 3) // 2 + 1
    return torch.stack(
        [sum(zp[:, 2 * o + k] @ w[:, :, k].T for k in range(3)) for o in range(t_out)], dim=1
    )


def reference(m: SpotFormer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = m.config
    sd = {k: v.detach().double() for k, v in m.state_dict().items()}
    x = x.double()
    hh = (cfg.heads, cfg.head_dim)
    z = x @ sd["embed.weight"].T + sd["embed.bias"]
    z = _bn(z, sd, "embed_norm")
    z = z + sd["pos_embed"][None, :, None, :]  # shared by every node of a frame
    z = z + sd["part_tokens"][torch.tensor(PART_OF)][None, None]  # shared within a part
    pads = cfg.paddings
    flgp_groups = [GROUPS, [(0, 3)]]
    if cfg.variant in ("simul-st", "simul-ts"):
        for s, pad in enumerate(pads):
            if s < 2:
                if cfg.variant == "simul-st":
                    z = _spatial(z, sd, f"spatial.{s}", *hh)
                    z = _temporal(z, sd, f"temporal.0.{s}", *hh)
                else:
                    z = _temporal(z, sd, f"temporal.0.{s}", *hh)
                    z = _spatial(z, sd, f"spatial.{s}", *hh)
                z = _flgp(z, sd, f"flgp.{s}", flgp_groups[s])
            else:
                z = _temporal(z, sd, f"temporal.0.{s}", *hh)
            z = _tdown(z, sd, f"tdown.0.{s}", pad)
    elif cfg.variant == "seq-st":
        for s in range(2):
            z = _flgp(_spatial(z, sd, f"spatial.{s}", *hh), sd, f"flgp.{s}", flgp_groups[s])
        for s, pad in enumerate(pads):
            z = _tdown(_temporal(z, sd, f"temporal.0.{s}", *hh), sd, f"tdown.0.{s}", pad)
    else:
        raise NotImplementedError(cfg.variant)
    assert z.shape[1:3] == (1, 1)
    feat = z[:, 0, 0]
    return feat @ sd["head.weight"].T + sd["head.bias"], feat


@pytest.mark.parametrize("variant", ["simul-st", "simul-ts", "seq-st"])
def test_forward_matches_an_independent_reference(variant: str) -> None:
    m, x = _model(variant), _x()
    with torch.no_grad():
        out = m(x)
    logits, feat = reference(m, x)
    torch.testing.assert_close(out.feature.double(), feat, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.logits.double(), logits, rtol=1e-4, atol=1e-4)


# -- symmetries ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["simul-st", "simul-ts", "seq-st", "paral-st"])
def test_permuting_rois_within_a_part_changes_nothing(variant: str) -> None:
    """Nodes of one part share the part token and the FLGP max; attention has no node
    positions. So a permutation inside [0:3], [3:6], [6:10] is a symmetry."""
    m, x = _model(variant), _x()
    perm = [2, 0, 1, 4, 5, 3, 9, 6, 8, 7]
    with torch.no_grad():
        a, b = m(x).logits, m(x[:, :, perm]).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # ... but moving a node to another part does change the output.
    for cross in ([3, 1, 2, 0, 4, 5, 6, 7, 8, 9], [0, 1, 6, 3, 4, 5, 2, 7, 8, 9],
                  [0, 1, 2, 3, 4, 9, 6, 7, 8, 5]):  # fmt: skip
        with torch.no_grad():
            c = m(x[:, :, cross]).logits
        assert (a - c).abs().max() > 1e-3, cross


def test_part_tokens_break_the_symmetry_between_the_two_brows() -> None:
    m, x = _model(), _x()
    swap = [3, 4, 5, 0, 1, 2, 6, 7, 8, 9]
    with torch.no_grad():
        a, b = m(x).logits, m(x[:, :, swap]).logits
        m.part_tokens[1].copy_(m.part_tokens[0])  # equal brow tokens: now a symmetry
        c, d = m(x).logits, m(x[:, :, swap]).logits
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(c, d, rtol=1e-4, atol=1e-4)


def test_frame_order_matters_and_samples_are_independent() -> None:
    m, x = _model(), _x(4)
    with torch.no_grad():
        a = m(x).logits
        b = m(x.flip(1)).logits
        c = m(x[1:2]).logits
    assert (a - b).abs().max() > 1e-3  # temporal positions
    torch.testing.assert_close(a[1:2], c, rtol=1e-5, atol=1e-5)


# -- hyper-parameters (SPEC 3) ------------------------------------------------------------


def test_default_hyper_parameters() -> None:
    c = SpotFormerConfig()
    assert (c.variant, c.dim, c.heads, c.head_dim, c.mlp_dim) == ("simul-st", 256, 4, 64, 256)
    assert (c.dropout, c.window, c.rois, c.paddings) == (0.1, 17, 10, (0, 0, 1, 1))
    assert tuple(map(tuple, c.parts)) == ((0, 3), (3, 6), (6, 10)) == FACE_PARTS
    m = SpotFormer()
    attn = [a for a in m.modules() if isinstance(a, Attention)]
    assert len(attn) == 6 and all((a.heads, a.head_dim) == (4, 64) for a in attn)
    assert tuple(m.flgp[0].groups) == ((0, 3), (3, 6), (6, 10))
    assert tuple(m.flgp[1].groups) == ((0, 3),)
    assert all(isinstance(t.bn, nn.BatchNorm1d) for t in m.modules() if isinstance(t, TokenNorm))
    assert not any(isinstance(t, nn.LayerNorm) for t in m.modules())
    gelus = [t for t in m.modules() if isinstance(t, nn.GELU)]
    assert len(gelus) == 6 and all(g.approximate == "none" for g in gelus)
    assert m.embed.in_features == 2 and m.head.out_features == 10
    assert count_parameters(m) == 3_168_522


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_every_dropout_uses_the_configured_rate(p: float) -> None:
    m = SpotFormer(dim=32, head_dim=8, dropout=p)
    drops = [d for d in m.modules() if isinstance(d, nn.Dropout)]
    # embedding + per layer (attention proj, MLP x2) for 6 layers
    assert len(drops) == 1 + 6 * 3 and all(d.p == p for d in drops)
    assert all(a.dropout == p for a in m.modules() if isinstance(a, Attention))


def test_attention_weight_dropout_is_active_only_in_training() -> None:
    """Dropout on the attention weights (besides the projection's): with the projection
    dropout removed, two training calls still differ; evaluation is deterministic."""
    torch.manual_seed(0)
    a = Attention(16, heads=2, head_dim=8, dropout=0.5)
    a.proj_drop = nn.Identity()
    x = torch.randn(4, 7, 16)
    a.train()
    with torch.no_grad():
        assert (a(x) - a(x)).abs().max() > 1e-4
    a.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), a(x))


def test_embedding_dropout_is_applied() -> None:
    m, x = _model(dropout=0.5), _x(8)
    m.train()
    with torch.no_grad():
        z = m._embed(x)
    zero = (z == 0).float().mean().item()
    assert 0.4 < zero < 0.6, zero
    m.eval()
    with torch.no_grad():
        assert (m._embed(x) == 0).float().mean().item() < 0.01


# -- output layout (SPEC 3) ---------------------------------------------------------------


def test_output_columns() -> None:
    assert ONOFF_SLICE == {"micro": slice(0, 3), "macro": slice(3, 6)}
    assert APEX_INDEX == {"micro": 6, "macro": 7} and EXPR_INDEX == {"micro": 8, "macro": 9}
    assert (ONSET, OFFSET, NONE) == (0, 1, 2)
    logits = torch.arange(10.0)[None]
    out = SpotFormerOutput(logits=logits, feature=torch.zeros(1, 4))
    assert out.onoff("micro").tolist() == [[0, 1, 2]] and out.onoff("macro").tolist() == [[3, 4, 5]]
    assert out.apex("micro").item() == 6 and out.apex("macro").item() == 7
    assert out.expression("micro").item() == 8 and out.expression("macro").item() == 9


def test_feature_is_the_head_input() -> None:
    m, x = _model(), _x()
    with torch.no_grad():
        out = m(x)
        torch.testing.assert_close(out.logits, m.head(out.feature))
