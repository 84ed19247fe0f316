"""Video writing with PyAV (H.264). Used by the synthetic benchmark and the tests."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = 30.0,
    *,
    crf: int = 18,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write ``frames`` ((H, W, 3) RGB or (H, W) gray uint8) to an H.264 mp4, atomically.

    The file is written to ``<path>.tmp.mp4`` and renamed, so a killed run never
    leaves a truncated video under the final name.
    """
    from fractions import Fraction

    import av  # local import: PyAV is heavy and only needed here

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    rate = Fraction(fps).limit_denominator(1001)
    n = 0
    with av.open(str(tmp), mode="w") as container:
        stream = None
        for frame in frames:
            arr = np.asarray(frame)
            if arr.dtype != np.uint8:
                raise ValueError(f"write_video({path}): frames must be uint8, got {arr.dtype}")
            if arr.ndim == 2:
                arr = np.repeat(arr[:, :, None], 3, axis=2)
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"write_video({path}): frame shape {arr.shape} is not (H, W[, 3])")
            if stream is None:
                stream = container.add_stream(codec, rate=rate)
                stream.width, stream.height = arr.shape[1], arr.shape[0]
                stream.pix_fmt = pix_fmt
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
            n += 1
        if stream is None:
            raise ValueError(f"write_video({path}): no frames given")
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path
