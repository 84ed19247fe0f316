"""File I/O: video and frame-folder readers, landmark backends, writers."""

from sw_mro.io.video import VideoInfo, VideoSource, open_video

__all__ = ["VideoInfo", "VideoSource", "open_video"]
