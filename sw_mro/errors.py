"""Typed errors. Every message names the file (or value) and, where possible, the fix."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name (decord and
    torch append stack traces, CuPy compiler logs)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


class SWMROError(Exception):
    """Base class for every user-facing error raised by ``sw_mro``."""


class VideoError(SWMROError):
    """A video file or frame folder cannot be used."""


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The video file or frame folder does not exist."""


class CorruptVideoError(VideoError):
    """The file exists but cannot be decoded."""


class UnsupportedVideoError(VideoError):
    """A file that is not read as a video: a container whose frames the decoder cannot
    return exactly (MPEG-TS/PS), or a single frame image (give its folder)."""


class EmptyVideoError(VideoError):
    """The video decodes to zero frames."""


class ClipTooShortError(VideoError):
    """The video has fewer frames than the operation needs (stride, window).

    Raised when a video is opened at a stride over its frames, it carries the ``path``,
    the ``source_frames`` and the ``stride``, so that a caller that knows the window can
    say which strides would do (:func:`sw_mro.pipeline.window_advice`); None otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        path: object = None,
        source_frames: int | None = None,
        stride: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path, self.source_frames, self.stride = path, source_frames, stride


class LandmarkError(SWMROError):
    """Landmark detection failed for a whole video."""


class NoFaceError(LandmarkError):
    """No face was found in any frame of a video."""


class ModelNotFoundError(LandmarkError, FileNotFoundError):
    """A landmark model the user must bring is missing; the message says where to put it."""


class ModelLoadError(LandmarkError):
    """A landmark model file is there but cannot be loaded (a truncated download, another
    file under its name) or its runtime is not installed; the message names the file."""


class DeviceError(SWMROError, ValueError):
    """The config names a device this process cannot use (no CUDA, or no such index).
    A ValueError too, as before it had its own class."""


class OutputNameError(SWMROError):
    """Two inputs of one run would write the same output name (``<name>.npy``)."""
