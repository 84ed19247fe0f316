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
    """The video has fewer frames than the operation needs (stride, window)."""


class LandmarkError(SWMROError):
    """Landmark detection failed for a whole video."""


class NoFaceError(LandmarkError):
    """No face was found in any frame of a video."""


class ModelNotFoundError(LandmarkError, FileNotFoundError):
    """A landmark model the user must bring is missing; the message says where to put it."""


class DeviceError(SWMROError, ValueError):
    """The config names a device this process cannot use (no CUDA, or no such index).
    A ValueError too, as before it had its own class."""


class OutputNameError(SWMROError):
    """Two inputs of one run would write the same output name (``<name>.npy``)."""
