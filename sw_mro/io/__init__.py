"""File I/O: video and frame-folder readers, landmark backends, writers.

The readers are imported on first use, so that importing a submodule (the landmark
worker processes import ``sw_mro.io.landmarks``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["VideoInfo", "VideoSource", "open_video"]

if TYPE_CHECKING:
    from sw_mro.io.video import VideoInfo, VideoSource, open_video


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sw_mro.io import video

        return getattr(video, name)
    raise AttributeError(f"module 'sw_mro.io' has no attribute {name!r}")
