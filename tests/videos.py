"""Test videos written with PyAV: any container and codec, and a display rotation; and
frame folders."""

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
    hflip: bool = False,
    trim: int = 0,
    container_options: dict[str, str] | None = None,
    sar: tuple[int, int] | None = None,
    pts: list[int] | None = None,
    **opts: str,
) -> Path:
    """``frames`` (RGB uint8) in ``path``; ``fmt`` None: from the suffix. ``rotation``
    (``hflip``): degrees counter-clockwise the display matrix turns the frames (and
    whether it mirrors them), as a phone stores a portrait video (``libx264rgb`` with
    ``pix_fmt="rgb24"``, ``crf="0"``: lossless). ``trim``: the first ``trim`` frames are
    given negative times, so that MP4's muxer writes an edit list that drops them, as a
    lossless trim (``ffmpeg -ss T -c copy``) does. ``sar``: the sample aspect ratio
    (a stored pixel's width : height as shown; anamorphic DV). ``pts``: each frame's time
    in units of ``1 / rate`` (dropped frames: a gap), else 0, 1, 2, ..."""
    from fractions import Fraction

    import av

    with av.open(str(path), mode="w", format=fmt, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        stream.options = opts
        if trim or pts is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, rate)
        if rotation or hflip:
            stream.set_display_rotation(rotation, hflip=hflip)
        if sar:
            stream.codec_context.sample_aspect_ratio = Fraction(*sar)

        def mux(packets: list) -> None:
            for packet in packets:
                if trim and packet.pts is not None:
                    packet.pts -= trim
                    packet.dts -= trim
                container.mux(packet)

        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if trim or pts is not None:
                frame.pts, frame.time_base = i if pts is None else pts[i], Fraction(1, rate)
            mux(stream.encode(frame))
        mux(stream.encode())
    return path


def write_frames(folder: Path, names: list[str], frames: list[np.ndarray] | np.ndarray) -> Path:
    """A frame folder: each RGB frame of ``frames`` as the image file of its name in
    ``names``, in ``folder`` (made where absent)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for name, rgb in zip(names, frames, strict=True):
        assert cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder
