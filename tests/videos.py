"""Test videos written with PyAV: any container and codec, and a display rotation."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def encode(
    path: Path,
    frames: list[np.ndarray] | np.ndarray,
    fmt: str | None = None,
    codec: str = "libx264",
    rate: int = 30,
    *,
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    **opts: str,
) -> Path:
    """``frames`` (RGB uint8) in ``path``; ``fmt`` None: from the suffix. ``rotation``:
    degrees counter-clockwise the display matrix turns the frames, as a phone stores a
    portrait video (``libx264rgb`` with ``pix_fmt="rgb24"``, ``crf="0"``: lossless)."""
    import av

    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        stream.options = opts
        if rotation:
            stream.set_display_rotation(rotation)
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
