"""Video writing with PyAV (H.264). Used by the synthetic benchmark and the tests."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from sw_mro.io.atomic import atomic_path

# BT.601 limited range ("tv"), what decoders assume for an untagged H.264 stream.
_YUV = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], np.float32
) / np.float32(255.0)


def rgb_to_i420(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB -> ``(3H/2, W)`` I420 (yuv420p) planes, BT.601 limited
    range, chroma the mean of each 2x2 block. Matches swscale within 1 (Y) / 2 (U, V)."""
    h, w = rgb.shape[:2]
    f = rgb.astype(np.float32)
    out = np.empty((h * 3 // 2, w), np.uint8)
    out[:h] = cv2.convertScaleAbs(cv2.transform(f, _YUV[:1]) + np.float32(16))
    uv = cv2.transform(cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA), _YUV[1:])
    uv = cv2.convertScaleAbs(uv + np.float32(128))  # rounds and saturates
    # The planes follow each other in the buffer, each (h/2)(w/2) bytes; as rows of w
    # they need not be whole rows (found in review: h = 142 failed to reshape).
    flat = out.reshape(-1)
    q = (h // 2) * (w // 2)
    flat[h * w : h * w + q] = uv[..., 0].reshape(-1)
    flat[h * w + q :] = uv[..., 1].reshape(-1)
    return out


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = 30.0,
    *,
    crf: int = 18,
    preset: str = "veryfast",
    threads: int = 1,
) -> Path:
    """Write ``frames`` ((H, W, 3) RGB or (H, W) gray uint8, even H and W) to an H.264
    mp4 (libx264, yuv420p), atomically and byte-reproducibly.

    - Atomic: the file is written to ``.<name>.tmp.mp4`` and renamed, so a killed run
      never leaves a truncated video under the final name.
    - Reproducible: frames are converted to yuv420p here (:func:`rgb_to_i420`; with RGB
      input PyAV's swscale made the first encode of a process differ from later ones)
      and x264 runs one thread (its output depends on the thread count). ``threads=0``
      lets x264 choose (faster, for long benchmark clips; the bytes then depend on the
      machine).
    """
    if not isinstance(threads, int) or threads < 0:
        raise ValueError(f"write_video({path}): threads must be an int >= 0; got {threads!r}")
    import av  # local import: PyAV is only needed here

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = None
    with atomic_path(path, keep_suffix=True) as tmp:
        with av.open(str(tmp), mode="w") as container:
            for count, frame in enumerate(frames):
                arr = np.asarray(frame)
                if arr.dtype != np.uint8:
                    raise ValueError(f"write_video({path}): frames must be uint8, got {arr.dtype}")
                if arr.ndim == 2:
                    arr = np.repeat(arr[:, :, None], 3, axis=2)
                if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] % 2 or arr.shape[1] % 2:
                    raise ValueError(
                        f"write_video({path}): frame shape {arr.shape} is not (H, W[, 3]) "
                        "with even H and W"
                    )
                if stream is not None and arr.shape[:2] != (stream.height, stream.width):
                    raise ValueError(  # found in review: PyAV rescaled it, unsaid
                        f"write_video({path}): frame {count} is {arr.shape[1]}x"
                        f"{arr.shape[0]}, the first was {stream.width}x{stream.height}"
                    )
                if stream is None:
                    stream = container.add_stream(
                        "libx264", rate=Fraction(fps).limit_denominator(1001)
                    )
                    stream.width, stream.height = arr.shape[1], arr.shape[0]
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": str(crf), "preset": preset}
                    stream.codec_context.thread_count = threads
                vf = av.VideoFrame.from_ndarray(rgb_to_i420(arr), format="yuv420p")
                for packet in stream.encode(vf):
                    container.mux(packet)
            if stream is None:
                raise ValueError(f"write_video({path}): no frames given")
            for packet in stream.encode():
                container.mux(packet)
    return path
