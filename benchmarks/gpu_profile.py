"""Where SW-MRO's GPU time goes: per stage and per kernel, with both CuPy solvers.

``python -m benchmarks.gpu_profile [BATCHES]`` (stage a of ``gpu_check.sh``) runs
:func:`sw_mro.pipeline.window_features` on synthetic batches of the default shape (128
windows of 17 frames at 256 px; a textured face image moved by a known sub-pixel head
motion plus a local bump, so alignment iterates as on real video) and prints:

- the device-to-device copy bandwidth (the memory ceiling, measured),
- per solver (``split``: two launches per Farneback iteration; ``tiled``: one launch on
  shared-memory tiles, direct sums; ``box``: one launch, running box sums), the milliseconds per window of the whole device work and of
  its stages (alignment, ROI flow, pooling), timed after a warm-up with a device sync,
- the largest kernels of one batch per solver, from ``torch.profiler`` (CUDA time),
- how far the tiled and box solvers' features are from the split solver's.

It needs no landmark model: the landmarks are placed on the synthetic face. The last
line is one JSON record with every figure.
"""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
import torch

B, W, S = 128, 17, 256


def synthetic_batch(
    b: int, w: int, s: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops ``(b, w, s, s)`` and landmarks ``(b, 68, 2)`` in crop pixels."""
    import cv2

    from sw_mro.io.samples import astronaut

    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY).astype(np.float32)
    face = cv2.resize(gray[20:276, 120:376], (s, s), interpolation=cv2.INTER_LINEAR)
    ys, xs = np.mgrid[:s, :s].astype(np.float32)
    crops = np.empty((b, w, s, s), np.float32)
    rng = np.random.default_rng(0)
    mouth = (0.5 * s, 0.78 * s)
    bump = np.exp(-((xs - mouth[0]) ** 2 + (ys - mouth[1]) ** 2) / (2 * (0.03 * s) ** 2))
    for i in range(b):
        for k in range(w):
            t = i + k
            dx, dy = 2.0 * math.sin(2 * math.pi * t / 90), 1.0 * math.sin(2 * math.pi * t / 60)
            amp = 2.0 * max(0.0, math.sin(math.pi * (t % 40) / 12)) if t % 40 < 12 else 0.0
            crops[i, k] = cv2.remap(
                face, xs - dx - amp * bump, ys - dy, cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )  # fmt: skip
    crops += rng.normal(0, 1.0, crops.shape).astype(np.float32)
    pts = np.zeros((68, 2), np.float32)
    pts[:] = (0.5 * s, 0.5 * s)
    for j, q in enumerate(range(17, 22)):  # one eyebrow
        pts[q] = (0.25 * s + 0.04 * s * j, 0.32 * s)
    for j, q in enumerate(range(22, 27)):  # the other
        pts[q] = (0.58 * s + 0.04 * s * j, 0.32 * s)
    for j, q in enumerate(range(27, 36)):  # nose bridge and base
        pts[q] = (
            0.5 * s + (0.02 * s * (j - 6) if j >= 4 else 0.0),
            0.42 * s + 0.02 * s * min(j, 4),
        )
    for j, q in enumerate(range(48, 60)):  # mouth ring
        a = 2 * math.pi * j / 12
        pts[q] = (mouth[0] + 0.1 * s * math.cos(a), mouth[1] + 0.05 * s * math.sin(a))
    p = torch.from_numpy(pts)[None].expand(b, 68, 2).contiguous()
    return torch.from_numpy(crops).to(device), p.to(device, torch.float64)


def copy_bandwidth(device: torch.device) -> float:
    """GB/s of a 1 GiB device-to-device copy (bytes read + bytes written), median of 5."""
    x = torch.empty(2**28, device=device)
    y = torch.empty_like(x)
    times = []
    for _ in range(7):
        torch.cuda.synchronize()
        t = time.perf_counter()
        y.copy_(x)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return 2 * x.numel() * 4 / float(np.median(times[2:])) / 1e9


def measure(crops: torch.Tensor, pts: torch.Tensor, cfg, batches: int) -> tuple[torch.Tensor, dict]:
    """Features of one batch, ms per window (total and per stage) and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    from sw_mro.pipeline import window_features

    feats = window_features(crops, pts, cfg)  # warm-up (compile, caches)
    torch.cuda.synchronize()
    stats: dict[str, float] = {}
    t = time.perf_counter()
    for _ in range(batches):
        window_features(crops, pts, cfg, stats)
    torch.cuda.synchronize()
    total = (time.perf_counter() - t) / (batches * B) * 1e3
    rec = {"ms_per_window": round(total, 4)}
    rec.update({k: round(v / (batches * B) * 1e3, 4) for k, v in stats.items()})
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        window_features(crops, pts, cfg)
        torch.cuda.synchronize()
    events = prof.key_averages()
    print(events.table(sort_by="cuda_time_total", row_limit=22, max_name_column_width=60))
    kern = []
    for e in events:
        dt = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if dt:
            kern.append((e.key[:60], round(dt / 1e3, 3), e.count))
    rec["top_kernels_ms_per_batch"] = sorted(kern, key=lambda r: -r[1])[:15]
    return feats, rec


def main(batches: int = 5) -> dict:
    import sw_mro.cuda.farneback as fbcuda
    from sw_mro import SWMROConfig

    dev = torch.device("cuda")
    cfg = SWMROConfig(device="cuda")
    crops, pts = synthetic_batch(B, W, S, dev)
    rec: dict = {"device": torch.cuda.get_device_name(0), "windows": B, "window": W, "face": S}
    rec["copy_gb_s"] = round(copy_bandwidth(dev), 1)
    print(f"device-to-device copy: {rec['copy_gb_s']} GB/s (read + write)")
    feats = {}
    default = fbcuda.SOLVER
    try:
        for solver in ("split", "tiled", "box"):
            fbcuda.SOLVER = solver
            print(f"--- solver {solver}: kernels of one batch of {B} windows")
            feats[solver], rec[solver] = measure(crops, pts, cfg, batches)
            print(f"{solver}: ms per window {rec[solver]['ms_per_window']:.3f}")
    finally:
        fbcuda.SOLVER = default
    rec["features_mean_abs"] = float(feats["split"].abs().mean())
    for solver in ("tiled", "box"):
        diff = (feats[solver] - feats["split"]).abs()
        rec[f"features_{solver}_vs_split_max_px"] = float(diff.max())
        rec[f"features_{solver}_vs_split_mean_px"] = float(diff.mean())
        print(f"{solver} vs split features: max |diff| {float(diff.max()):.2e} px, mean "
              f"{float(diff.mean()):.2e} (mean |feature| {rec['features_mean_abs']:.3f} px)")  # fmt: skip
    print(json.dumps(rec))
    return rec


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
