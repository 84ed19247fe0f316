"""SpotFormer throughput: training windows/s and inference frames/s, CPU and CUDA.

A training step is forward + the full SPEC loss + backward + AdamW on one batch of
SW-MRO-shaped windows ``(B, 17, 10, 2)``; inference is ``predict_logits`` (eval mode,
no grad) over a video of N frames. Windows/s or frames/s go into ``extra_info``; the
results (finite loss, logits shape) are asserted after timing, so
``--benchmark-disable`` still checks them. The CUDA entries are skipped without a GPU;
training uses the AMP setting (bfloat16 autocast), inference float32.

Sizes: the default model (dim 256, 3.17 M parameters), dim 64, and on CPU the demo's
dim 32.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.conftest import sync
from spotformer.data.labels import FrameTargets
from spotformer.losses import spotting_loss
from spotformer.models import SpotFormer, SpotFormerConfig
from spotformer.train import TrainConfig, _autocast, make_optimizer, predict_logits

NO_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = [pytest.mark.cuda, NO_GPU]
CASES = [
    # (device, dim, train batch, inference frames)
    pytest.param("cpu", 32, 256, 2048, id="cpu-dim32"),  # the demo's model
    pytest.param("cpu", 64, 256, 2048, id="cpu-dim64"),
    pytest.param("cpu", 256, 64, 512, id="cpu-dim256"),
    pytest.param("cuda", 64, 512, 32768, id="cuda-dim64", marks=CUDA),
    pytest.param("cuda", 256, 512, 32768, id="cuda-dim256", marks=CUDA),
]


def _model(dim: int, device: str) -> tuple[SpotFormer, TrainConfig]:
    torch.manual_seed(0)
    mc = SpotFormerConfig(dim=dim, heads=4, head_dim=dim // 4, mlp_dim=dim)
    return SpotFormer(mc).to(device), TrainConfig(model=mc)


def _batch(b: int, device: str) -> tuple[torch.Tensor, FrameTargets]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, 17, 10, 2, generator=g) * 2
    x[:, 0] = 0
    cls = torch.randint(0, 3, (b,), generator=g)
    t = FrameTargets(
        micro_onoff=cls,
        macro_onoff=cls.roll(1),
        micro_apex=torch.rand(b, generator=g),
        macro_apex=torch.rand(b, generator=g),
        micro_expr=(cls == 2).float(),
        macro_expr=(cls == 1).float(),
        contrast=cls,
    )
    return x.to(device), t.to(device)


@pytest.mark.benchmark(group="spotformer-train-step")
@pytest.mark.parametrize(("device", "dim", "batch", "frames"), CASES)
def test_train_windows_per_second(
    benchmark, device: str, dim: int, batch: int, frames: int
) -> None:
    model, cfg = _model(dim, device)
    opt = make_optimizer(model, cfg)
    x, t = _batch(batch, device)
    dev = torch.device(device)

    def step() -> float:
        with _autocast(dev, cfg):
            out = model(x)
        loss = spotting_loss(out, t, cfg.loss).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        return float(loss.detach())

    step()  # warm-up
    loss = benchmark.pedantic(step, rounds=3, iterations=1)
    if benchmark.stats is not None:
        benchmark.extra_info["windows_per_s"] = batch / benchmark.stats.stats.mean
    benchmark.extra_info.update({"dim": dim, "batch": batch, "threads": torch.get_num_threads()})
    assert torch.isfinite(torch.tensor(loss))


@pytest.mark.benchmark(group="spotformer-inference")
@pytest.mark.parametrize(("device", "dim", "batch", "frames"), CASES)
def test_inference_frames_per_second(
    benchmark, device: str, dim: int, batch: int, frames: int
) -> None:
    model, _ = _model(dim, device)
    x, _ = _batch(frames, device)

    def infer() -> torch.Tensor:
        out = predict_logits(model, x, batch=4096)
        sync(device)
        return out

    infer()  # warm-up
    logits = benchmark.pedantic(infer, rounds=3, iterations=1)
    if benchmark.stats is not None:
        benchmark.extra_info["frames_per_s"] = frames / benchmark.stats.stats.mean
    benchmark.extra_info.update({"dim": dim, "frames": frames, "threads": torch.get_num_threads()})
    assert logits.shape == (frames, 10) and torch.isfinite(logits).all()
