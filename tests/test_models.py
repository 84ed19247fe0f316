"""SpotFormer: shapes, gradients, parameter counts, AMP, and the doctests of the package."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

from spotformer.models import (
    VARIANTS,
    SpotFormer,
    SpotFormerConfig,
    SpotFormerOutput,
    count_parameters,
    flgp,
)
from spotformer.models.blocks import TemporalDownsample

SMALL = 32  # most tests use dim=32; shape and parameter-count tests use the default 256


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; on a shared 2-core box, OpenMP's spinning
    threads make each small op take ~10 ms. Restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _clips(b: int, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    """SW-MRO-like input: per-ROI flow in px, zero in the window's first frame."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 17, 10, 2, generator=g) * scale
    x[:, 0] = 0.0
    return x


@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_and_temporal_schedule(variant: str, device: torch.device) -> None:
    m = SpotFormer(variant=variant).to(device).eval()  # default dim 256
    seen: list[tuple[int, int]] = []
    for mod in m.modules():
        if isinstance(mod, TemporalDownsample):
            mod.register_forward_hook(lambda _m, i, o: seen.append((i[0].shape[1], o.shape[1])))
    out = m(_clips(3).to(device))
    assert isinstance(out, SpotFormerOutput)
    assert out.logits.shape == (3, 10) and out.feature.shape == (3, 256)
    assert m.config.temporal_lengths() == [17, 8, 3, 2, 1]
    # Paral-ST runs each step in several branches; the schedule is the same.
    assert list(dict.fromkeys(seen)) == [(17, 8), (8, 3), (3, 2), (2, 1)]
    assert out.onoff("micro").shape == (3, 3) and out.apex("macro").shape == (3,)
    assert torch.equal(out.expression("micro"), out.logits[:, 8])


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_gets_a_gradient(variant: str, device: torch.device) -> None:
    m = SpotFormer(variant=variant, dim=SMALL, head_dim=8).to(device).train()
    out = m(_clips(4).to(device))
    g = torch.Generator().manual_seed(1)
    w = torch.randn(out.logits.shape, generator=g).to(device)
    (out.logits * w).sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def _per_layer(d: int, mlp: int) -> int:
    # qkv (no bias) + proj + MLP (2 linears) + 2 BN (weight, bias)
    return d * 3 * d + (d * d + d) + (d * mlp + mlp) + (mlp * d + d) + 2 * 2 * d


def test_parameter_counts_by_hand() -> None:
    d, mlp, w, r, stages = 256, 256, 17, 10, 4
    embed = (2 * d + d) + 2 * d + w * d + 3 * d  # linear, BN, positions, part tokens
    layers = (2 + stages) * _per_layer(d, mlp)  # 2 spatial + 4 temporal
    flgp_bn = 2 * 2 * d
    tdown = stages * (3 * d * d + 2 * d)  # conv without bias + BN
    head = d * 10 + 10
    want = embed + layers + flgp_bn + tdown + head
    counts = {v: count_parameters(SpotFormer(variant=v)) for v in VARIANTS}
    assert counts["simul-st"] == want == 3_168_522
    # Paper 4.4.1: all but Paral-ST have the same number of parameters.
    assert counts["seq-st"] == counts["simul-ts"] == counts["simul-st"]
    assert counts["paral-st"] > counts["simul-st"]
    assert r == 10


def test_same_output_type_in_train_and_eval_and_eval_is_per_sample() -> None:
    m = SpotFormer(dim=SMALL, head_dim=8)
    x = _clips(6)
    m.train()
    a = m(x)
    m.eval()
    with torch.no_grad():
        b = m(x)
        c = m(x[:2])  # BN uses running statistics: a sample's output ignores its batch
    assert type(a) is type(b) and a.logits.shape == b.logits.shape
    assert a.feature.shape == b.feature.shape
    torch.testing.assert_close(c.logits, b.logits[:2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_nan_under_bf16_autocast_on_cpu(variant: str) -> None:
    m = SpotFormer(variant=variant, dim=SMALL, head_dim=8).train()
    x = _clips(8, scale=20.0)  # large flows, as in head-motion-heavy clips
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
        loss = out.logits.float().square().mean() + out.feature.float().square().mean()
    loss.backward()
    assert torch.isfinite(out.logits.float()).all() and torch.isfinite(out.feature.float()).all()
    # Every parameter gets a gradient (measured: all 90, or 220 for paral-st), so the
    # finiteness check below is not vacuous.
    grads = [p.grad for p in m.parameters()]
    assert grads and all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.cuda
@pytest.mark.parametrize("variant", VARIANTS)
def test_no_nan_under_fp16_autocast_on_cuda(variant: str) -> None:
    m = SpotFormer(variant=variant).cuda().train()
    x = _clips(64, scale=20.0).cuda()
    scaler = torch.amp.GradScaler("cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        out = m(x)
        loss = out.logits.float().square().mean() + out.feature.float().square().mean()
    scaler.scale(loss).backward()
    assert torch.isfinite(out.logits.float()).all() and torch.isfinite(out.feature.float()).all()
    scaler.unscale_(torch.optim.SGD(m.parameters(), lr=0.0))
    grads = [p.grad for p in m.parameters()]  # every one (as on CPU): not a vacuous check
    assert grads and all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


def test_flgp_by_hand() -> None:
    x = torch.tensor([3.0, -1.0, 2.0, 0.5, 4.0, 1.0, -2.0, 7.0, 0.0, 1.0]).reshape(1, 1, 10, 1)
    got = flgp(x, ((0, 3), (3, 6), (6, 10)))
    assert got.flatten().tolist() == [3.0, 4.0, 7.0]


def test_part_tokens_follow_the_face_parts() -> None:
    m = SpotFormer(dim=SMALL, head_dim=8)
    assert m.part_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert m.part_tokens.shape == (3, SMALL)


def test_bad_inputs_and_configs_raise() -> None:
    m = SpotFormer(dim=SMALL, head_dim=8)
    with pytest.raises(ValueError, match=r"\(B 17 10 2\)"):
        m(torch.randn(2, 15, 10, 2))
    with pytest.raises(ValueError, match="variant"):
        SpotFormer(variant="paral-ts")
    with pytest.raises(ValueError, match="not 1"):
        SpotFormer(window=5)  # paddings (0, 0, 1, 1) take 5 -> 2 -> 0
    with pytest.raises(ValueError, match="unknown"):
        SpotFormerConfig.from_dict({"dimension": 3})


def test_other_windows_with_matching_paddings() -> None:
    m = SpotFormer(dim=SMALL, head_dim=8, window=9, paddings=(0, 0, 1)).eval()
    assert m.config.temporal_lengths() == [9, 4, 1, 1]
    assert m(torch.randn(2, 9, 10, 2)).logits.shape == (2, 10)


def test_config_round_trip() -> None:
    c = SpotFormerConfig(variant="seq-st", dim=64)
    assert SpotFormerConfig.from_dict(c.to_dict()) == c


def _modules_with_examples() -> list[str]:
    """Every module of both packages whose docstrings hold examples (found in review:
    sw_mro's 23 examples were never run; the list here named 6 spotformer modules)."""
    import pkgutil

    import spotformer
    import sw_mro

    names = []
    for pkg in (sw_mro, spotformer):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            module = importlib.import_module(info.name)
            if any(t.examples for t in doctest.DocTestFinder().find(module)):
                names.append(info.name)
    return names


DOCTEST_MODULES = _modules_with_examples()


def test_doctests_are_found() -> None:
    for name in ("sw_mro.ops.farneback", "sw_mro.io.landmarks", "spotformer.metrics"):
        assert name in DOCTEST_MODULES, DOCTEST_MODULES


@pytest.mark.parametrize("module", DOCTEST_MODULES)
def test_doctests(module: str) -> None:
    res = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0


def test_model_input_checks_and_the_paddings_it_suggests() -> None:
    from spotformer.models.spotformer import paddings_for

    model = SpotFormer(SpotFormerConfig(dim=16, heads=2, head_dim=8, mlp_dim=16)).eval()
    out = model(torch.zeros(0, 17, 10, 2))  # an empty batch: empty outputs
    assert out.logits.shape == (0, 10) and out.feature.shape == (0, 16)
    with pytest.raises(ValueError, match="x is torch.float64, the model's weights torch.float32"):
        model(torch.zeros(2, 17, 10, 2, dtype=torch.float64))
    # A window the default paddings do not fit: the error names paddings that do.
    with pytest.raises(ValueError, match=r"for 5: paddings=\((\d, )+\d\)") as err:
        SpotFormerConfig(window=5)
    fits = paddings_for(5, 4)
    assert fits is not None and f"paddings={fits}" in str(err.value)
    small = SpotFormer(
        SpotFormerConfig(window=5, paddings=fits, dim=16, heads=2, head_dim=8, mlp_dim=16)
    )
    assert small.eval()(torch.zeros(3, 5, 10, 2)).logits.shape == (3, 10)
    assert paddings_for(17, 4) is not None and paddings_for(5) == (0, 1)
