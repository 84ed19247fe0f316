"""Video input: video files (decord, PyAV) and folders of numbered frames, in chunks.

``open_video(path)`` returns a :class:`VideoSource` for either

- a **video file** decoded with decord (FFmpeg underneath; PyAV for some, see
  "Decoders"), or
- a **folder of numbered frames**: the CAS(ME)^2 layout ``img1.jpg, img2.jpg, ...`` and
  the SAMM-LV layout ``006_1_0001.jpg`` (4 or 5 digits) are both handled by a natural
  sort of the file names (``img2`` before ``img10``). ``.jpg``, ``.jpeg``, ``.jpe``,
  ``.jfif``, ``.png``, ``.bmp``, ``.tif``, ``.tiff`` and ``.webp`` files
  (``IMAGE_SUFFIXES``) are frames; every other file (and hidden files
  such as macOS ``._img1.jpg``) is ignored.

Frames come out as torch ``uint8`` tensors, ``(T, H, W, 3)`` RGB or ``(T, H, W)`` gray,
from :meth:`VideoSource.chunks` (bounded memory: one chunk at a time, never the whole
video) or :meth:`VideoSource.read` (random access).

Decisions (SPEC.md section 1 leaves them open):

- **Stride** is temporal subsampling: frame ``i`` of the source is source frame
  ``i * stride`` (0-based), so a source of ``N`` frames gives ``ceil(N / stride)``
  frames at ``source_fps / stride`` fps. SAMM-LV at 200 fps uses ``stride=7``
  (~28.6 fps), as the paper does. Every index in this module (``start``, ``stop``,
  ``read(indices)``, the first index a chunk reports) counts frames *after* the stride.
- **fps.** A frame folder carries no frame rate, so ``fps=`` gives it (default 30.0,
  CAS(ME)^2's rate; pass 200.0 for SAMM-LV). For a video file ``fps=None`` uses the
  container's average rate and a number overrides it (for files whose metadata is wrong).
- **Gray** is ``cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)`` of the RGB frame (0.299 R +
  0.587 G + 0.114 B with OpenCV's fixed-point rounding), for files and folders alike. It
  is *not* the decoder's Y plane (limited-range luma) nor libjpeg's own gray decode.
- **Exactness.** decord's seeking (``read``, chunks starting mid-video, stride) returns
  the same frames, bit for bit, as sequential decoding and as ``cv2.VideoCapture``
  (both decode with FFmpeg) for H.264 and VP9 in MP4/MOV/MKV/WebM and for intra-only
  codecs (MJPEG, raw, PNG, FFV1); ``tests/test_video.py`` checks it on H.264 with
  B-frames. Elsewhere (MPEG-4 Part 2, or H.264 in AVI, with B-frames and several GOPs)
  its seeks return wrong, often repeated frames (dmlc/decord #195), so those files are
  only ever decoded forward: a strided chunk decodes the frames between and keeps every
  ``stride``-th, and a jump backwards restarts the decoder at frame 0 (correct; slow
  for random access). MPEG-TS and MPEG-PS (``.ts``, ``.mts``, ``.m2ts``, ``.mpg``) are
  refused with :class:`UnsupportedVideoError`: with B-frames decord returns shifted
  frames even in order. Convert them first, e.g. ``ffmpeg -i in.mts -c:v libx264 -crf
  12 out.mp4``.
- **Decoders.** PyAV decodes, forward, the files decord gets wrong: rotated ones
  (turned as ``cv2.VideoCapture`` shows them; ``info.rotation`` says by how much), ones
  with an edit list that drops frames (a lossless trim), ones decord cannot open (AV1,
  WebM without a duration, GIF) or decodes to frames of another shape (packed RGB). A
  rotation by other than a multiple of 90 degrees, or a mirroring display matrix, is
  refused (docs/io.md, "Decoders"). PyAV also decodes the files read forward (the
  "Exactness" above): decord would decode the rest of the file into memory.
- **Frame folders with gaps** in the numbering (``img1, img2, img4``) are read in
  order and a warning is logged: frame ``i`` is then the ``i``-th file, not ``img{i+1}``.

Errors (``sw_mro.errors``), each a one-line message naming the file:
:class:`VideoNotFoundError` (missing path), :class:`CorruptVideoError` (a file that
cannot be decoded, a 0-byte file, an unreadable frame image, frames of mixed size),
:class:`EmptyVideoError` (zero frames, a folder without frame images),
:class:`ClipTooShortError` (``stride`` larger than the video).

Examples:
    >>> from sw_mro.io.samples import carphone_path
    >>> video = open_video(carphone_path(), stride=2, color="gray")
    >>> video.info.num_frames, video.info.source_num_frames, round(video.info.fps, 3)
    (60, 120, 14.985)
    >>> [(i, tuple(x.shape)) for i, x in video.chunks(25)]
    [(0, (25, 144, 176)), (25, (25, 144, 176)), (50, (10, 144, 176))]
"""

from __future__ import annotations

import logging
import math
import operator
import os
import re
import stat
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from sw_mro._threads import name_this_thread, os_thread_name
from sw_mro.errors import (
    ClipTooShortError,
    CorruptVideoError,
    EmptyVideoError,
    UnsupportedVideoError,
    VideoError,
    VideoNotFoundError,
    one_line,
)

log = logging.getLogger(__name__)

Color = Literal["rgb", "gray"]
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)
# Containers a user may put in a folder by mistake (for a clearer error only).
_VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".webm", ".m4v"})
DEFAULT_FOLDER_FPS = 30.0

__all__ = [
    "DEFAULT_FOLDER_FPS",
    "IMAGE_SUFFIXES",
    "Color",
    "FileVideoSource",
    "FrameArraySource",
    "FrameFolderSource",
    "VideoInfo",
    "VideoSource",
    "list_frame_files",
    "natural_key",
    "open_video",
]


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows about its video. Counts and rates are *after* the stride."""

    path: Path
    fps: float  # effective frame rate: source_fps / stride
    num_frames: int  # frames after the stride: ceil(source_num_frames / stride)
    height: int
    width: int
    stride: int
    source_num_frames: int
    source_fps: float
    #: Degrees counter-clockwise the stored frames were turned to stand as shown (a
    #: phone's portrait video: 90 or -90); ``height`` and ``width`` are after it.
    rotation: int = 0
    #: Positions, in decoding order from 0, of the video's packets that the container
    #: marks damaged (a file cut short mid-frame: its last packet; docs/io.md,
    #: "Decoders"). Positions count packets, an edit list's dropped ones too. FFmpeg
    #: decodes what such a packet holds: the frame is partly grey or smeared.
    damaged_packets: tuple[int, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.source_num_frames / self.source_fps


def _ffmpeg_reason(path: Path, exc: BaseException) -> tuple[type[VideoError], str]:
    """The error class and one-line message (without the path) for why FFmpeg cannot open ``path``.

    decord only says "Error reading <path>..." (FFmpeg's reason goes to stderr), so ask
    PyAV, which wraps the same FFmpeg, for the reason. A container that ends before its
    first frame (FFmpeg "End of file") is an empty video, not a corrupt one.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return CorruptVideoError, _NO_VIDEO_STREAM
    except Exception as av_exc:  # any PyAV failure is the reason we are looking for
        return _av_reason(av_exc)
    # PyAV opens it, decord does not: typically a file cut short after its header.
    msg = _DECORD_PREFIX.sub("", one_line(exc)).strip()
    return CorruptVideoError, (
        f"cannot decode the video; the file may be truncated or damaged (decord: {msg})"
    )


_NO_VIDEO_STREAM = "cannot decode the video (the file has no video stream)"


def _av_reason(av_exc: BaseException) -> tuple[type[VideoError], str]:
    """The error class and message (without the path) for PyAV's failure to open a file.
    A container that ends before its first frame (FFmpeg "End of file") is an empty
    video, not a corrupt one."""
    import av

    if isinstance(av_exc, av.error.EOFError):
        return (
            EmptyVideoError,
            "the video has no frames (FFmpeg: End of file before the first frame)",
        )
    msg = getattr(av_exc, "strerror", None) or one_line(av_exc)
    return CorruptVideoError, f"cannot decode the video (FFmpeg: {msg})"


# decord's messages start with a time stamp and its build's source path and line.
_DECORD_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\]\s*|/\S+\.(?:cc|h|cpp):\d+:\s*")

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders ``img2`` before ``img10`` and ``006_1_0009`` before ``006_1_10000``."""
    parts = _DIGITS.split(name.lower())
    # Alternating (text, number) pairs keep the tuple comparable element by element. The
    # numbers are the odd parts: a superscript digit is isdigit() but not \d, and int()
    # refused it (found in review).
    return tuple((0, int(p), "") if i % 2 else (1, 0, p) for i, p in enumerate(parts))


def _frames_in(folder: Path) -> Iterator[Path]:
    """Entries of ``folder`` named like frame images (not hidden), lazily."""
    return (
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Frame images of ``folder`` in natural order (non-images and hidden files ignored;
    names that sort alike, ``img1`` and ``img01``, in the order of their names).

    Raises:
        CorruptVideoError: a frame is a broken link or an empty (0-byte) file: said when
            the folder is opened, not after the frames before it were processed (found
            in review), and not skipped (every later frame would be a frame early).
    """
    folder = Path(folder)
    files = []
    for p in _frames_in(folder):
        try:
            st = p.stat()
        except OSError as exc:
            if p.is_symlink():  # missing target, or a loop of links
                why = "which is missing" if isinstance(exc, FileNotFoundError) else exc.strerror
                raise CorruptVideoError(
                    f"{p}: a frame that is a broken link (to {os.readlink(p)}, {why})"
                ) from None
            if isinstance(exc, FileNotFoundError):
                continue  # removed since it was listed
            raise CorruptVideoError(f"{p}: cannot read the frame ({one_line(exc)})") from exc
        if not stat.S_ISREG(st.st_mode):
            continue  # a folder named like an image (dir.jpg)
        if st.st_size == 0:
            raise CorruptVideoError(f"{p}: the frame is empty (0 bytes)")
        files.append(p)
    files.sort(key=lambda p: (natural_key(p.name), p.name))
    return files


def _decord_to_tensor(nd: Any) -> torch.Tensor:
    """A decord NDArray as a torch tensor sharing its memory (DLPack), without
    ``decord.bridge.set_bridge``, which would change decord's output for the whole process."""
    from decord.bridge.torchdl import to_torch as _decord_to_torch

    return _decord_to_torch(nd)


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) RGB -> (T, H, W) with cv2.COLOR_RGB2GRAY (a per-pixel op, so one call)."""
    t, h, w, _ = rgb.shape
    gray = cv2.cvtColor(np.ascontiguousarray(rgb).reshape(t * h, w, 3), cv2.COLOR_RGB2GRAY)
    return gray.reshape(t, h, w)


class VideoSource:
    """A video to stream: a file (:class:`FileVideoSource`) or a frame folder
    (:class:`FrameFolderSource`). Create one with :func:`open_video`.

    Frames are ``uint8`` tensors, ``(T, H, W, 3)`` RGB or ``(T, H, W)`` gray, on CPU.
    """

    info: VideoInfo
    color: Color

    def __len__(self) -> int:
        return self.info.num_frames

    def __repr__(self) -> str:
        i = self.info
        return (
            f"{type(self).__name__}({str(i.path)!r}, frames={i.num_frames}, "
            f"{i.width}x{i.height}, fps={i.fps:.3f}, stride={i.stride}, color={self.color!r})"
        )

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the decoder (optional; garbage collection does it too)."""

    # -- subclasses implement this: source frame indices -> (T, H, W, 3) RGB uint8
    def _read_source_rgb(self, source_indices: list[int]) -> np.ndarray:
        raise NotImplementedError

    def _frames(self, indices: list[int]) -> torch.Tensor:
        rgb = self._read_source_rgb([i * self.info.stride for i in indices])
        out = _to_gray(rgb) if self.color == "gray" else rgb
        return torch.from_numpy(np.ascontiguousarray(out))

    def chunks(
        self, chunk_size: int = 256, *, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first_index, frames)`` for frames ``[start, stop)`` in chunks.

        ``first_index`` counts frames after the stride. Every chunk holds ``chunk_size``
        frames except possibly the last. A decoder is asked for one chunk at a time (a
        file read by two decord readers has one more chunk decoding while the caller
        holds one) and no reference to a yielded chunk is kept. Bad arguments raise
        here, not at the first ``next()``.
        """
        n = self.info.num_frames
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(
                f"{self.info.path}: chunk_size must be an int >= 1, got {chunk_size!r}"
            )
        start = _frame_number(self.info.path, "start", start)
        stop = n if stop is None else _frame_number(self.info.path, "stop", stop)
        if not (0 <= start <= stop <= n):
            raise IndexError(
                f"{self.info.path}: need 0 <= start <= stop <= {n} frames, got start={start}, "
                f"stop={stop}"
            )
        return self._chunks(chunk_size, start, stop)

    def _chunks(self, chunk_size: int, start: int, stop: int) -> Iterator[tuple[int, torch.Tensor]]:
        for first in range(start, stop, chunk_size):
            yield first, self._frames(list(range(first, min(first + chunk_size, stop))))

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames at ``indices`` (after the stride; negative counts from the end), in that order."""
        n = self.info.num_frames
        idx = []
        for i in indices:
            j = _frame_number(self.info.path, "frame index", i)
            if not -n <= j < n:
                raise IndexError(
                    f"{self.info.path}: frame index {i} is out of range for {n} frames"
                )
            idx.append(j % n)
        if not idx:
            shape = (0, self.info.height, self.info.width) + ((3,) if self.color == "rgb" else ())
            return torch.empty(shape, dtype=torch.uint8)
        return self._frames(idx)


def _frame_number(path: Path, what: str, value: Any) -> int:
    """``value`` as a frame number: ints, numpy and torch integers; not 2.9 (was read as
    frame 2; found in review: ``chunks(start=2.0)`` failed at the first ``next()`` with no
    file named) or True (read as frame 1)."""
    try:
        if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, torch.Tensor) and (value.dtype == torch.bool or value.dim() != 0)
        ):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{path}: {what} {value!r} is not an integer") from None


def _strided_info(
    path: Path,
    source_num_frames: int,
    source_fps: float,
    height: int,
    width: int,
    stride: int,
    rotation: int = 0,
    damaged_packets: tuple[int, ...] = (),
) -> VideoInfo:
    if source_num_frames == 0:
        raise EmptyVideoError(f"{path}: the video has no frames")
    if stride > source_num_frames:
        raise ClipTooShortError(
            f"{path}: stride {stride} is larger than the video's {source_num_frames} frames "
            "(it would keep only the first)",
            path=path,
            source_frames=source_num_frames,
            stride=stride,
        )
    return VideoInfo(
        path=path,
        fps=source_fps / stride,
        num_frames=math.ceil(source_num_frames / stride),
        height=height,
        width=width,
        stride=stride,
        source_num_frames=source_num_frames,
        source_fps=source_fps,
        rotation=rotation,
        damaged_packets=damaged_packets,
    )


# (container, codec) pairs whose decord seeks were checked exact (H.264 with B-frames,
# VP9); intra-only codecs have nothing to get wrong. PyAV's format names.
_EXACT_SEEK_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
_EXACT_SEEK_CODECS = frozenset({"h264", "vp9"})
_INTRA_CODECS = frozenset({"mjpeg", "rawvideo", "png", "ffv1"})
# Containers where decord's frames are wrong even in order (B-frames): refused.
_REFUSED_FORMATS = frozenset({"mpegts", "mpeg", "mpegvideo"})
# Elementary streams without a container: decord cannot count their frames.
_RAW_STREAM_FORMATS = frozenset({"h264", "hevc", "m4v", "vvc", "obu"})
_SEQUENTIAL_BLOCK = 32  # source frames per step when decoding forward

#: Decoders that read a video file's chunks at once, each its own decord reader on every
#: other chunk (files whose seeks are exact only). One reader's ``get_batch`` converts
#: and copies its frames in the calling thread, and on the H100 host of run 7 that
#: thread, not FFmpeg's decoder threads, bounded decoding (~1,160 frames/s at 640x480).
#: Each jump to its next chunk costs a reader the frames from the keyframe before it
#: (on the dev VM +35 % decoding CPU on a 120-frame clip with one keyframe), so ``None``
#: (auto) uses 2 readers only where there are cores to spare (>= 8 usable), else 1.
FILE_DECODE_READERS: int | None = None


def _file_decode_readers() -> int:
    if FILE_DECODE_READERS is not None:
        return FILE_DECODE_READERS
    from sw_mro.config import usable_cpus

    return 2 if usable_cpus() >= 8 else 1


#: FFmpeg decoder threads of each decord reader (decord's ``num_threads``), and of PyAV's
#: decoder of the files read forward (``None``: the
#: environment variable ``SW_MRO_DECODE_THREADS`` if set, which also reaches the worker
#: processes of ``sw-mro extract --devices``, else FFmpeg's own choice, one per core plus
#: one, at most 16). The frames are the same for any count (``tests/test_video.py``).
#: Fewer threads save a little CPU and cost speed: at 640x480 H.264 one thread decoded
#: 710 frames/s for 2.16 ms of CPU a frame on the 16-core H100 host of run 7, the
#: automatic count 1,456 frames/s for 2.41 ms
#: (``benchmarks/results/h100-2026-11-27-run7/gpu_diag.txt``); on the 2-core dev VM 1
#: and 3 threads took 1.62 and 1.75 ms a frame at about the same speed. Set it (e.g. 1)
#: to cap the CPU that several extractions on one host take.
FILE_DECODE_THREADS: int | None = None
DECODE_THREADS_ENV = "SW_MRO_DECODE_THREADS"


def _file_decode_threads() -> int:
    """decord's ``num_threads`` (0: FFmpeg's choice); see :data:`FILE_DECODE_THREADS`."""
    if FILE_DECODE_THREADS is not None:
        return FILE_DECODE_THREADS
    text = os.environ.get(DECODE_THREADS_ENV, "").strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"{DECODE_THREADS_ENV}={text!r}: must be a whole number of decoder threads >= 1 "
            "(unset: FFmpeg's choice)"
        )
    return int(text)


#: Threads that decode a frame folder's images (OpenCV releases the GIL; at most the
#: usable cores). A SAMM-LV-sized frame (2040x1088 JPEG, quality 95) took 32 ms to
#: decode on the dev VM (busy), so one thread capped such a folder at ~30 frames/s.
FOLDER_DECODE_THREADS = 8


def _open_decord(path: Path) -> tuple[Any, tuple[int, ...]]:
    """A decord reader of ``path`` at frame 0, and its first frame's shape
    (``(height, width, 3)``; ``()`` without frames). The threads that decord and FFmpeg start meanwhile carry
    the OS thread name ``sw_mro-ffmpeg`` (``top -H``, gpu_diag's CPU split); threads that
    decord starts later, on a seek, carry the name of the thread that reads."""
    import decord

    with os_thread_name("sw_mro-ffmpeg"):
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=_file_decode_threads())
        if len(vr) == 0:
            return vr, ()
        shape = tuple(vr[0].shape)
        vr.seek(0)  # decord starts a decoding thread here
        return vr, shape


@dataclass(frozen=True)
class _Probe:
    """What PyAV tells of a file's video stream (the one FFmpeg calls best, as decord
    picks it) before decord opens it."""

    fmt: str = ""  # container format and codec, as FFmpeg names them ("": unknown)
    codec: str = ""
    index: int = 0  # the stream's index in the file
    rotation: int = 0  # degrees counter-clockwise the display matrix turns the frames
    mirrored: bool = False  # the display matrix also mirrors them
    stored: tuple[int, int] = (0, 0)  # a stored frame's (height, width); (0, 0): none decoded
    discarded: int = 0  # packets an edit list drops, among the first _SCAN_PACKETS
    scanned: int = 0  # packets with data looked at (at most _SCAN_PACKETS)
    keyframes: int = 0  # keyframes among them (0: not looked at)
    recovery_points: int = 0  # H.264 keyframes among them that are not IDR frames
    interlaced: bool = False  # the first frame is coded as two fields
    sar: tuple[int, int] = (1, 1)  # a stored pixel's width : height as shown (1:1 square)
    packets: int = 0  # packets with data in the whole stream (0: not looked at)
    damaged: tuple[int, ...] = ()  # their positions (from 0) that are marked corrupt
    unfinished: bool = False  # the file's structure runs past its end (_may_be_cut)
    keep: int = 0  # a file cut short: the packets decoded (the rest is left out); 0: all
    frames: int = 0  # a file cut short: the frames read, those shown before the cut


#: Packets of a file's video stream looked at when it opens (demuxed, not decoded), for
#: those an edit list drops at its start and for its keyframes.
_SCAN_PACKETS = 256


def _avcc_length_size(stream: Any) -> int:
    """Bytes in an H.264 NAL unit's length prefix (AVCC: MP4, MKV), or -1 for start
    codes (Annex B)."""
    extra = bytes(stream.codec_context.extradata or b"")
    return (extra[4] & 3) + 1 if len(extra) > 4 and extra[0] == 1 else -1


def _idr(packet: Any, length_size: int) -> bool:
    """Whether an H.264 packet holds an IDR slice (NAL type 5). A keyframe without one
    is a recovery point (open GOP, periodic intra refresh), where decoding from it does
    not give the in-order decode's frames."""
    data = bytes(packet)
    if length_size < 0:  # Annex B: 00 00 01 before each NAL unit
        return any(data[m.end()] & 0x1F == 5 for m in re.finditer(b"\x00\x00\x01", data[:-1]))
    i = 0
    while i + length_size < len(data):
        n = int.from_bytes(data[i : i + length_size], "big")
        if data[i + length_size] & 0x1F == 5:
            return True
        i += length_size + n
    return False


def _damaged_packets(
    packets: Iterator[Any], damaged: list[int], shown: list[int | None], size: int
) -> bool:
    """Read on through the demuxer's ``packets`` to the end, after the first ones with
    data (their pts in ``shown``, the positions among them marked corrupt in
    ``damaged``): appends the rest's pts to ``shown`` and the positions (from 0,
    decoding order) of those the container marks corrupt to ``damaged``.

    A file cut short inside a frame's data (a recording stopped mid-write) ends with
    such a packet: AVI and MP4 with its index first keep it, FFmpeg decodes what is
    there, and a decoder reading it gave that frame grey or smeared below the cut, or
    failed on it and lost its whole chunk, or the file failed to open (found in a
    probe: MJPEG and H.264 in AVI); MKV drops it. Run only where the file's structure
    says it may be cut (:func:`_may_be_cut`): demuxing reads the whole file (about 5
    us a packet at 640x480, 50 at 1280x720 MJPEG; nothing is decoded).

    Returns whether the demuxer got to the end of the file (``size`` bytes): where it
    fails near the end, as it does in about a third of cut AVIs (the last chunk's
    header cut), the packets so far are the stream; where it fails more than 1 MiB
    before the end, the file is damaged within, not cut, and is read as decoders read
    it (False)."""
    import av

    reached = 0
    try:
        for p in packets:
            if p.size:
                if p.is_corrupt:
                    damaged.append(len(shown))
                shown.append(p.pts)
                if p.pos is not None and p.pos >= 0:
                    reached = max(reached, p.pos + p.size)
    except av.error.FFmpegError:
        return size - reached <= 1 << 20
    return True


def _cut_at_end(packets: int, damaged: tuple[int, ...]) -> int:
    """How many of the stream's last packets are damaged, all of them."""
    cut = 0
    while cut < len(damaged) and damaged[-1 - cut] == packets - 1 - cut:
        cut += 1
    return cut


_NO_MOOV = (
    "an MP4/MOV file with frame data but no index (no moov box): the recording was not "
    "finished (the recorder stopped before writing it) or the file is cut short, and its "
    "frames cannot be found without one; a tool such as untrunc rebuilds the index "
    "from a whole file of the same camera and settings"
)


def _frame_step(stream: Any) -> float | None:
    """One frame's step in ``stream``'s pts, from its average rate (None: unknown)."""
    rate, base = stream.average_rate or stream.guessed_rate, stream.time_base
    return 1.0 / float(rate * base) if rate and base else None


#: Frames at the end of a stream among which a cut can leave frames missing: those
#: decoded after the cut but shown before frames decoded before it (B-frames).
_GAP_WINDOW = 16


def _frames_before_gap(shown: Sequence[int | None], step: float | None) -> int | None:
    """Of the frames whose pts are ``shown`` (decoding order), how many are shown
    before the first one that a cut left out: None where the pts do not tell (some
    unknown, or none apart).

    Only a stream shown out of decoding order (B-frames) can miss frames before its
    last kept one: frames decoded after the cut but shown among the last ones. A
    candidate is a step between the sorted pts of the last :data:`_GAP_WINDOW` frames
    over 1.5 frames (the median step with 16 frames or more, since a declared rate can
    be wrong; else ``step``, the rate's; else the smallest step: a cut first GOP kept
    frames 0, 2 and 4, every step two frames'). It is the cut's only where nothing
    decoded after the first frame shown past it is shown later still: the frames of
    the gap would be decoded next, and the file ends there. A frame rate that varies
    (a dropped frame) gives a step there too, in a stream that goes on past it (found
    in review: whole pipe-written MKV and WebM files lost up to 16 frames before this
    test); a dropped frame among the very last B-frames of a cut file cannot be told
    from a cut (up to 3 frames lost in the review's runs)."""
    if not shown or None in shown:
        return None
    dec = np.asarray(shown, np.int64)
    order = np.sort(dec)
    steps = np.diff(order)
    positive = steps[steps > 0]
    if len(steps) and not len(positive):
        return None
    if len(dec) < 2 or not (dec[1:] < np.maximum.accumulate(dec)[:-1]).any():
        return len(order)  # shown in decoding order: nothing is missing before the end
    if len(positive) >= 16:
        typical = float(np.median(positive))
    else:
        typical = step or float(positive.min())
    start = max(0, len(steps) - _GAP_WINDOW)
    for i in np.nonzero(steps[start:] > 1.5 * typical)[0]:
        anchor = int(np.argmax(dec >= order[start + i + 1]))  # decoded first from there
        if not (dec[anchor + 1 :] > dec[anchor]).any():
            return start + int(i) + 1
    return len(order)


def _cut_short(
    scan: dict[str, Any], shown: list[int | None], fmt: str, b_frames: bool, step: float | None
) -> tuple[int, int]:
    """``(packets to decode, frames to read)`` of a file cut short, or ``(0, 0)``: the
    stream without its damaged last packets (:func:`_damaged_packets`), read as its
    first frames up to the first one missing where the cut left one out (a B-frame
    stream: frames decoded after the cut are shown among the last ones; decord read a
    cut MKV's last frames misnumbered, found in review). AVI's pts only count packets,
    so where its decoder knows of B-frames (or says so: MPEG-1/2 decoders, even
    without) the last :data:`_GAP_WINDOW` frames before the cut are left out as well:
    a frame is decoded at most that many frames after its place as shown (H.264's
    largest reorder), so every frame shown before them is among the packets kept, in
    its place (decoders reading such a file whole failed on the cut packet, or lost
    the frames still in the reorder buffer: "the stream ends at frame 28" of 31)."""
    packets = scan.get("packets", 0)
    if not packets:  # not read to the end
        return 0, 0
    tail = _cut_at_end(packets, scan["damaged"])
    keep = packets - tail
    if keep == 0:
        return 0, 0
    # MKV drops a cut packet itself, and an AVI may end at a whole packet whose B-frames
    # (decoded next) are lost: in both a cut leaves no damaged packet (found in review:
    # an AVI cut at a packet's end gave its last frame or two from later frames)
    if tail == 0 and fmt not in ("matroska,webm", "avi"):
        return 0, 0
    if fmt == "avi":
        frames = keep - _GAP_WINDOW if b_frames else keep
        if frames <= 0:
            return 0, 0
    else:
        frames = _frames_before_gap(shown[:keep], step)
    if frames is None or (tail == 0 and frames == keep):
        return 0, 0
    return keep, frames


def _boxes(path: Path, riff: bool = False) -> tuple[list[bytes], bool]:
    """The types of the file's top-level boxes (ISO media: MP4, MOV) or chunks
    (``riff``: AVI's ``RIFF`` chunks), as far as the file goes, and whether the last
    runs past its end (or, in RIFF, says a size of 0: a writer that never finished).
    ``([], False)`` for a file that is not of that kind."""
    types: list[bytes] = []
    try:
        with open(path, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            pos = 0
            while pos + 8 <= end and len(types) < 1_000_000:  # (fragmented MP4: many)
                f.seek(pos)
                head = f.read(16)
                if riff:  # "RIFF", its size (little-endian, after these 8 bytes), its form
                    size = int.from_bytes(head[4:8], "little")
                    if head[:4] != b"RIFF":
                        return types, False
                    types.append(head[8:12])
                    if size == 0:
                        return types, True
                    pos += 8 + size + (size & 1)
                    continue
                size, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if size == 1 and len(head) == 16:  # a 64-bit size follows
                    size = int.from_bytes(head[8:16], "big")
                elif size == 0:  # to the end of the file
                    size = end - pos
                if size < 8 or not kind.isalnum() and kind not in (b"free", b"skip"):
                    return [], False  # not a box: not an ISO media file, or damaged
                types.append(kind)
                pos += size
    except OSError:
        return [], False
    return types, pos > end


def _segment_cut(path: Path) -> bool:
    """Whether a Matroska/WebM file's Segment runs past the end of the file. A Segment
    of unknown size (a writer that could not seek back: a pipe, a killed recorder) is
    cut where its last top-level element (a Cluster) runs past the end; where one is of
    unknown size too (a browser's MediaRecorder) it cannot be told, and is taken as
    whole (found in review: whole pipe-written files were taken as cut)."""

    def vint(f: Any) -> tuple[int, bool] | None:  # EBML variable-size integer, unknown?
        first = f.read(1)
        if not first or first[0] == 0:
            return None
        n = 8 - first[0].bit_length() + 1
        rest = f.read(n - 1)
        if len(rest) != n - 1:
            return None
        value = int.from_bytes(bytes([first[0] & (0xFF >> n)]) + rest, "big")
        return value, value == (1 << (7 * n)) - 1

    try:
        with open(path, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            if f.read(4) != b"\x1a\x45\xdf\xa3":
                return False
            head = vint(f)
            if head is None or head[1]:
                return False
            f.seek(f.tell() + head[0])
            if f.read(4) != b"\x18\x53\x80\x67":
                return False
            size = vint(f)
            if size is None:
                return True  # the file ends in the Segment's header
            if not size[1]:
                return f.tell() + size[0] > end
            pos = f.tell()
            while pos < end:  # the Segment's elements: an ID (1-4 bytes), a size
                f.seek(pos)
                first = f.read(1)
                n = 9 - first[0].bit_length() if first and first[0] else 9
                if n > 4:
                    return False  # not an element: damaged, or not Matroska
                f.seek(pos + n)
                size = vint(f)
                if size is None:
                    return True  # the file ends in an element's header
                if size[1]:
                    return False  # an element of unknown size: cannot tell
                pos = f.tell() + size[0]
            return pos > end
    except OSError:
        return False


def _may_be_cut(path: Path, fmt: str) -> bool:
    """Whether the file may end inside a frame's data, so that its packets are worth
    demuxing to the end (:func:`_damaged_packets`): an MP4/MOV or AVI whose last box or
    chunk runs past the end of the file (AVI also: a size never written), and files of
    other containers (FLV, NUT, ...; rare here). MKV/WebM, whose demuxer drops a
    cut packet itself but leaves its B-frame order (:func:`_cut_short`), where its
    Segment runs past the end (:func:`_segment_cut`). A whole file is not read twice: decord
    reads it whole already, and a 1.8 GB MJPEG file took 0.26 s more to open (found in
    review)."""
    if fmt == "matroska,webm":
        return _segment_cut(path)
    if fmt == "mov,mp4,m4a,3gp,3g2,mj2":
        return _boxes(path)[1]
    if fmt == "avi":
        return _boxes(path, riff=True)[1]
    return True


def _mp4_without_index(path: Path) -> bool:
    """Whether ``path`` is an ISO media file (MP4, MOV: ``ftyp`` first, or ``mdat``
    with no ``ftyp``, as older QuickTime writes) whose top-level boxes, as far as the
    file goes, hold frame data (``mdat``) and no index (``moov``): what a recorder
    killed mid-recording leaves, as the index is written last. FFmpeg says only
    "Invalid data found when processing input" (found in a probe)."""
    types, _ = _boxes(path)
    return (
        bool(types)
        and types[0] in (b"ftyp", b"mdat", b"wide", b"free", b"skip")
        and b"mdat" in types
        and b"moov" not in types
    )


def _probe(path: Path) -> _Probe:
    """The file's video stream as PyAV sees it (a default :class:`_Probe` when PyAV
    cannot tell; decord then decides).

    Raises:
        CorruptVideoError: FFmpeg (through PyAV) cannot open the file, or finds no video
            stream in it.
        EmptyVideoError: the container ends before its first frame.

    Said here, before decord tries: decord's own failure prints FFmpeg's log and its
    build's source paths to stderr.
    """
    import itertools

    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise CorruptVideoError(f"{path}: {_NO_VIDEO_STREAM}")
            if container.format.name == "tty":  # found in review: decord's log lines, then
                raise CorruptVideoError(  # "the file may be truncated or damaged"
                    f"{path}: cannot decode the video (a text file: FFmpeg would show it "
                    "as ANSI art)"
                )
            stream = container.streams.best("video") or container.streams.video[0]
            fmt, codec, index = container.format.name, stream.codec_context.name, stream.index
            nal_size = _avcc_length_size(stream) if codec == "h264" else 0
            try:  # frames an edit list drops (a lossless trim): decord counts and seeks them
                scan: dict[str, Any] = dict.fromkeys(
                    ("scanned", "discarded", "keyframes", "recovery_points"), 0
                )
                damaged: list[int] = []
                shown: list[int | None] = []  # each packet's pts, decoding order
                packets = container.demux(stream)
                for p in itertools.islice(packets, _SCAN_PACKETS):
                    if p.size:  # counted, not kept: 256 packets of a 4K video are large
                        if p.is_corrupt:
                            damaged.append(scan["scanned"])
                        shown.append(p.pts)
                        scan["scanned"] += 1
                        scan["discarded"] += p.is_discard
                        scan["keyframes"] += p.is_keyframe
                        scan["recovery_points"] += bool(
                            nal_size and p.is_keyframe and not _idr(p, nal_size)
                        )
                if _may_be_cut(path, fmt):  # read on to the end (else: not counted)
                    scan["unfinished"] = True
                    if _damaged_packets(packets, damaged, shown, path.stat().st_size):
                        scan["packets"] = len(shown)  # (not where it fails within)
                scan["damaged"] = tuple(damaged)
                container.seek(0, stream=stream)
                # the display matrix comes with the decoded frames
                first = next(container.decode(stream), None)
            except Exception:  # a damaged first frame: decord's error says it
                first, scan = None, {}
            if first is None:
                return _Probe(fmt, codec, index, **scan)
            keep, frames = _cut_short(
                scan, shown, fmt, stream.codec_context.has_b_frames, _frame_step(stream)
            )
            matrix = first.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
            a, b, _, c, d = struct.unpack("<5i", bytes(matrix)[:20]) if matrix else (1, 0, 0, 0, 1)
            turn = first.rotation or 0
            if not -360 <= turn <= 360:  # a singular matrix (FFmpeg: NaN; PyAV: INT_MIN)
                turn = 0  # is shown unturned, as ffmpeg and cv2.VideoCapture show it
            # the container's ratio where it has one (an MP4 pasp box), else the
            # bitstream's, as players and ffmpeg take it; None where unknown (0:1)
            sar = stream.sample_aspect_ratio
            return _Probe(
                fmt,
                codec,
                index,
                rotation=round(turn),
                mirrored=a * d - b * c < 0,
                stored=(first.height, first.width),
                **scan,
                keep=keep,
                frames=frames,
                interlaced=bool(first.interlaced_frame),
                sar=(sar.numerator, sar.denominator) if sar else (1, 1),
            )
    except av.error.FFmpegError as exc:  # its reason, without opening the file again
        cls, reason = _av_reason(exc)
        if cls is CorruptVideoError and _mp4_without_index(path):
            reason = _NO_MOOV
        raise cls(f"{path}: {reason}") from exc
    except VideoError:
        raise
    except Exception:  # anything else (say, a path PyAV cannot encode): decord decides
        return _Probe()


# decord's errors for files it cannot open that PyAV may decode: a codec its FFmpeg
# lacks (AV1), and no duration in the container (a browser's WebM recording, GIF).
_DECORD_CANNOT = re.compile(r"cannot find video stream with wanted index|due to broken metadata")


class _PyAVIndex:
    """What decord's reader tells of a file, from PyAV's demuxer (no decoding), for a
    file PyAV decodes: the frame count (packets with data that no edit list drops), the
    average frame rate and the frames' times, as ``len()``, ``get_avg_fps()`` and
    ``get_frame_timestamp()``."""

    def __init__(self, path: Path, index: int, keep: int = 0, frames: int = 0) -> None:
        """``keep``: a file cut short (:func:`_cut_short`): only its first ``keep``
        packets with data are decoded, and only its first ``frames`` frames as shown
        are read."""
        import itertools

        import av

        try:
            with av.open(str(path)) as container:
                stream = container.streams[index]
                rate = stream.average_rate or stream.guessed_rate
                base = stream.time_base
                kept = (p for p in container.demux(stream) if p.size)
                if keep:
                    kept = itertools.islice(kept, keep)
                pts = [p.pts for p in kept if not p.is_discard]
        except av.error.FFmpegError as exc:
            cls, reason = _av_reason(exc)
            raise cls(f"{path}: {reason}") from exc
        if keep:
            pts = sorted(pts)[:frames]
        self._fps = float(rate) if rate else 0.0
        self._n = len(pts)
        known = base is not None and all(t is not None for t in pts)
        self._times = np.sort(np.asarray(pts, np.float64)) * float(base) if known else None

    def __len__(self) -> int:
        return self._n

    def get_avg_fps(self) -> float:
        return self._fps

    def get_frame_timestamp(self, indices: Any) -> np.ndarray:
        """``(start, end)`` seconds of each frame, as decord gives them."""
        if self._times is None:
            raise ValueError("no frame times")
        start = self._times[np.asarray(list(indices), dtype=np.int64)]
        return np.stack([start, start + 1.0 / self._fps], axis=1)


def _decoded_first(container: Any, stream: Any, limit: int) -> Iterator[Any]:
    """The frames of ``stream``'s first ``limit`` packets with data, then the decoder's
    last frames: the stream as if it ended there."""
    sent = 0
    for packet in container.demux(stream):
        if packet.size:
            if sent == limit:
                break
            sent += 1
            yield from stream.decode(packet)
    yield from stream.decode(None)


class FileVideoSource(VideoSource):
    """A video file decoded with decord on the CPU (see the module's "Exactness").
    The files decord gets wrong (rotated ones, edit lists, AV1, ...: docs/io.md,
    "Decoders") and those read forward (``exact_seek`` False) are decoded with PyAV."""

    def __init__(
        self, path: Path, *, stride: int = 1, color: Color = "rgb", fps: float | None = None
    ) -> None:
        self._vr = None
        # Reads never overlap (found in a probe: two streams of one opened file, from two
        # threads or interleaved in one, used decord from two decode threads at once and
        # crashed the process, hung, or called a good file damaged): decord's reader and
        # PyAV's decoder are not thread-safe.
        self._lock = threading.RLock()
        self._av: Any = None  # the PyAV container and frame iterator (``_pyav``)
        self._av_frames: Iterator[Any] | None = None
        self._path = path
        self._pyav = False  # decoded with PyAV, forward: where decord cannot (see below)
        self._turns = 0  # quarter turns counter-clockwise that PyAV's frames get here
        self._pos = 0  # the next source frame a forward read gets (sequential mode)
        self.color = color
        if path.stat().st_size == 0:
            raise CorruptVideoError(f"{path}: the file is empty (0 bytes), not a video")
        try:
            os.fsdecode(os.fsencode(path)).encode("utf-8")
        except UnicodeEncodeError:  # found in review: called a damaged video
            raise UnsupportedVideoError(
                f"{path}: the file's name (or a folder's above it) is not valid UTF-8 (an "
                "older Latin-1 name?), and the video decoder (decord) cannot open such a "
                "path; rename it, e.g. convmv -f latin1 -t utf8 --notest FILE. (Frame "
                "folders are read whatever their names.)"
            ) from None
        _file_decode_threads()  # a bad SW_MRO_DECODE_THREADS is a ValueError, not a bad file
        probe = _probe(path)
        fmt, codec, rotation = probe.fmt, probe.codec, probe.rotation
        if probe.mirrored:
            raise UnsupportedVideoError(
                f"{path}: its display matrix mirrors the frames (and turns them by "
                f"{rotation} degrees), which is not read here; apply it first, e.g. ffmpeg "
                f"-i {path.name} -c:v libx264 -crf 12 {path.stem}_shown.mp4"
            )
        if rotation % 90:
            raise UnsupportedVideoError(
                f"{path}: its frames are shown turned by {rotation} degrees, not a multiple "
                f"of 90; turn them first, e.g. ffmpeg -i {path.name} -c:v libx264 -crf 12 "
                f"{path.stem}_upright.mp4 (ffmpeg applies the rotation)"
            )
        turns = (rotation // 90) % 4  # quarter turns counter-clockwise (np.rot90)
        if fmt in _REFUSED_FORMATS:
            raise UnsupportedVideoError(
                f"{path}: {codec or 'video'} in an MPEG-{'TS' if fmt == 'mpegts' else 'PS'} "
                "container, whose frames the decoder (decord) does not return exactly; "
                f"convert it first, e.g. ffmpeg -i {path.name} -c:v libx264 -crf 12 "
                f"{path.stem}.mp4"
            )
        if fmt in _RAW_STREAM_FORMATS:
            raise UnsupportedVideoError(
                f"{path}: a raw {codec or fmt} stream with no container (no frame count or "
                f"timing for the decoder, decord); put it in one first, e.g. ffmpeg "
                f"-framerate 30 -i {path.name} -c copy {path.stem}.mp4 (with its real rate)"
            )
        # PyAV decodes, forward, what decord gets wrong (docs/io.md, "Decoders"): a
        # display rotation (decord turns the frames in MP4 but not in MKV, and at some
        # sizes returns 4-channel frames), frames an edit list drops (decord counts them
        # and seeks by them), and, where PyAV decodes the first frame, files decord
        # cannot open (AV1, WebM without a duration, GIF) or decodes to frames of
        # another shape (packed RGB, tiny frames). A file cut short inside its last frame
        # (_damaged_packets) is read by PyAV as ending before that frame.
        # An AVI whose structure runs past its end goes to PyAV too: decord aborted the
        # process (std::bad_alloc) on a pipe-written one, its RIFF size 0xFFFFFFFF
        # (found in review).
        self._pyav = (
            bool(turns)
            or probe.discarded > 0
            or probe.keep > 0
            or (fmt == "avi" and probe.unfinished)
        )
        self._limit = probe.keep or None
        self._stream = probe.index
        h = w = 0
        if not self._pyav:
            try:
                self._vr, shape = _open_decord(path)
            except Exception as exc:  # decord raises RuntimeError/DECORDError with traces
                if probe.stored == (0, 0) or not _DECORD_CANNOT.search(str(exc)):
                    cls, reason = _ffmpeg_reason(path, exc)
                    raise cls(f"{path}: {reason}") from exc
                self._pyav = True
            else:
                h, w = shape[:2]
                self._pyav = probe.stored != (0, 0) and shape not in ((), (*probe.stored, 3))
        if self._pyav:
            # an edit list's dropped frames (the first, as shown) are among the probe's
            self._vr = _PyAVIndex(path, probe.index, probe.keep, probe.frames - probe.discarded)
            h, w = probe.stored[::-1] if turns % 2 else probe.stored
        self._turns = turns
        try:
            n = len(self._vr)
            src_fps = float(self._vr.get_avg_fps() if fps is None else fps)
        except Exception as exc:
            cls, reason = _ffmpeg_reason(path, exc)
            raise cls(f"{path}: {reason}") from exc
        if n > 0 and not (math.isfinite(src_fps) and src_fps > 0):
            raise CorruptVideoError(
                f"{path}: the container has no usable frame rate ({src_fps}); pass fps= to open_video"
            )
        # Seek only where seeking is exact; elsewhere decode forward (module docstring).
        # Not in H.264 whose keyframes include recovery points, not IDR frames (open
        # GOPs, periodic intra refresh: low-latency streams, IP cameras): decord's seeks
        # there returned other frames, up to 11 off (found in review). Nor in a long
        # stream with one keyframe in its first packets, where each seek would decode
        # from the start.
        one_keyframe = probe.keyframes == 1 and probe.scanned >= _SCAN_PACKETS
        self.exact_seek = (
            not self._pyav
            and not one_keyframe
            and not probe.recovery_points
            and (
                # FFV1 is intra-coded, but FFmpeg's encoder keeps its context between
                # keyframes (one in 12 by default): decord's seeks in an AVI without its
                # index landed between them, on wrong frames (found in review)
                (codec in _INTRA_CODECS and probe.keyframes == probe.scanned)
                or (fmt in _EXACT_SEEK_FORMATS and codec in _EXACT_SEEK_CODECS)
            )
        )
        self.info = _strided_info(
            path, n, src_fps, h, w, stride, (0, 90, 180, -90)[turns], probe.damaged
        )
        if fps is None:
            _warn_on_variable_rate(path, self._vr, src_fps)
        else:
            _warn_on_other_rate(path, self._vr, src_fps)
        _warn_on_picture(path, probe, h, w)
        _warn_on_damage(path, probe, n)

    def _read_source_rgb(self, source_indices: list[int]) -> np.ndarray:
        with self._lock:
            if self._vr is None:
                raise ValueError(f"{self.info.path}: the video was closed")
            if not self.exact_seek:
                return self._read_forward(source_indices)
            return self._read_seek(self._vr, source_indices)

    def _read_seek(self, vr: Any, source_indices: list[int]) -> np.ndarray:
        try:
            batch = vr.get_batch(source_indices)
            # decord's decoder goes on decoding past the batch in its own threads, holding
            # the frames: found in a probe, a 176x144 run sat at 466 MB after two chunks
            # of a 1-minute file and 871 MB of an 8-minute one while the caller worked.
            # A seek to the start stops it (decord issues 157, 208); the next batch seeks
            # where it needs to anyway.
            vr.seek(0)
            # Zero-copy through DLPack: asnumpy() copies the batch, which measured 1.3-1.6x
            # slower end to end at 640x480 (docs/io.md). .numpy() is a view of the same memory.
            return _decord_to_tensor(batch).numpy()
        except Exception as exc:  # a file can open fine and still fail mid-stream
            raise CorruptVideoError(
                f"{self.info.path}: cannot decode frames {source_indices[0]}..{source_indices[-1]} "
                f"(source numbering) ({one_line(exc)})"
            ) from exc

    def _chunks(self, chunk_size: int, start: int, stop: int) -> Iterator[tuple[int, torch.Tensor]]:
        firsts = range(start, stop, chunk_size)
        if not self.exact_seek or len(firsts) < 2 or _file_decode_readers() < 2:
            yield from super()._chunks(chunk_size, start, stop)
            return
        yield from self._parallel_chunks(firsts, chunk_size, stop)

    def _parallel_chunks(
        self, firsts: range, chunk_size: int, stop: int
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """:meth:`chunks` with :data:`FILE_DECODE_READERS` readers of their own (``read``
        keeps ``self._vr``), each on every other chunk. Same frames as one reader: seeks
        in these files are exact. While the caller holds a chunk, at most ``readers - 1``
        further chunks are decoded ahead: a reader gets its next chunk only once the
        caller asks for the next one."""
        from concurrent.futures import ThreadPoolExecutor

        self._check_open()
        try:
            opened = [_open_decord(self._path) for _ in range(_file_decode_readers())]
        except Exception as exc:  # e.g. the file changed since it was opened
            cls, reason = _ffmpeg_reason(self._path, exc)
            raise cls(f"{self._path}: {reason}") from exc
        readers = [vr for vr, _ in opened]
        for vr, shape in opened:  # the same file as the one opened (by path: it may be replaced)
            if len(vr) != self.info.source_num_frames or shape[:2] != (
                self.info.height,
                self.info.width,
            ):
                raise CorruptVideoError(
                    f"{self._path}: the file changed since it was opened ({len(vr)} frames "
                    f"of {shape[:2]}, not {self.info.source_num_frames} of "
                    f"{(self.info.height, self.info.width)}); open it again"
                )
        stride = self.info.stride

        def job(vr: Any, first: int) -> list[tuple[int, torch.Tensor]]:
            rgb = self._read_seek(
                vr, list(range(first * stride, min(first + chunk_size, stop) * stride, stride))
            )
            out = _to_gray(rgb) if self.color == "gray" else rgb
            # In a box that the generator empties: neither it nor the future keeps a
            # chunk once it is yielded.
            return [(first, torch.from_numpy(np.ascontiguousarray(out)))]

        pool = ThreadPoolExecutor(
            len(readers), thread_name_prefix="sw_mro-decoder", initializer=name_this_thread
        )
        try:
            todo = iter(firsts)
            running = [
                (vr, pool.submit(job, vr, first)) for vr, first in zip(readers, todo, strict=False)
            ]
            while running:
                vr, future = running.pop(0)
                box = future.result()
                self._check_open()
                yield box.pop()
                nxt = next(todo, None)
                if nxt is not None:  # this reader is free: its next chunk
                    running.append((vr, pool.submit(job, vr, nxt)))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _check_open(self) -> None:
        if self._vr is None:
            raise ValueError(f"{self.info.path}: the video was closed")

    def _read_forward(self, source_indices: list[int]) -> np.ndarray:
        """The frames at ``source_indices`` without a single seek: decode forward with
        PyAV from the decoder's position, keeping the frames asked for; a request before
        that position restarts the decoder at frame 0. PyAV, not decord, even where decord
        opened the file: decord's threads go on decoding the rest of the file into memory
        after each batch, and only a seek stops them (docs/io.md, "Decoders"); PyAV
        decodes a frame when it is asked for one."""
        rows: dict[int, list[int]] = {}  # source frame -> its rows in the result
        for r, i in enumerate(source_indices):
            rows.setdefault(i, []).append(r)
        wanted = sorted(rows)
        h, w = self.info.height, self.info.width
        # Written in place, each frame as it is converted: a dict of frames to stack kept
        # up to 64 fresh arrays alive (page faults) and copied them again; 640x480 at
        # stride 1 ran at ~400 frames/s that way (found measuring the forward path).
        out = np.empty((len(source_indices), h, w, 3), np.uint8)
        try:
            if wanted[0] < self._pos or self._av is None:
                self._restart()
            while self._pos <= wanted[-1]:
                a = self._pos
                b = min(a + _SEQUENTIAL_BLOCK, wanted[-1] + 1)
                self._decode_pyav(a, b, rows, out)
                self._pos = b
        except Exception as exc:  # a file can open fine and still fail mid-stream
            raise CorruptVideoError(
                f"{self.info.path}: cannot decode frames {wanted[0]}..{wanted[-1]} "
                f"(source numbering) ({one_line(exc)})"
            ) from exc
        return out

    def _restart(self) -> None:
        """The PyAV decoder at source frame 0."""
        self._pos = 0
        import av

        self._close_av()
        self._av = av.open(str(self._path))
        stream = self._av.streams[self._stream]
        stream.thread_type = "AUTO"  # frame threads, as decord's FFmpeg decodes
        threads = _file_decode_threads()
        if threads:  # SW_MRO_DECODE_THREADS reaches PyAV's decoder too (found in review)
            stream.codec_context.thread_count = threads
        if self._limit is None:
            self._av_frames = self._av.decode(stream)
        else:  # a file cut short: as if it ended before its cut packets
            self._av_frames = _decoded_first(self._av, stream, self._limit)

    def _decode_pyav(self, a: int, b: int, rows: dict[int, list[int]], out: np.ndarray) -> None:
        """Source frames ``[a, b)`` from the PyAV decoder's position ``a``: those in
        ``rows`` into their rows of ``out``, RGB and turned as shown (the others are
        decoded, not converted)."""
        try:
            for j in range(a, b):
                frame = next(self._av_frames, None)
                if frame is None:
                    raise CorruptVideoError(f"the stream ends at frame {j}")
                if j in rows:
                    rgb = frame.to_ndarray(format="rgb24")
                    if self._turns:
                        rgb = np.rot90(rgb, self._turns)
                    if rgb.shape != out.shape[1:]:
                        raise CorruptVideoError(
                            f"frame {j} is {rgb.shape[1]}x{rgb.shape[0]}, not "
                            f"{out.shape[2]}x{out.shape[1]} like the first"
                        )
                    for r in rows[j]:
                        out[r] = rgb
        except BaseException:  # Ctrl-C, a decode error: the decoder is past self._pos now
            self._close_av()  # so the next read restarts it at frame 0
            raise

    def _close_av(self) -> None:
        if self._av is not None:
            self._av_frames = None
            self._av.close()
            self._av = None

    def close(self) -> None:
        with self._lock:
            self._vr = None
            self._close_av()


class FrameFolderSource(VideoSource):
    """A folder of numbered frame images, decoded with OpenCV."""

    def __init__(
        self, path: Path, *, stride: int = 1, color: Color = "rgb", fps: float | None = None
    ) -> None:
        self.color = color
        self.files = list_frame_files(path)
        if not self.files:
            videos = sorted(p.name for p in path.iterdir() if p.suffix.lower() in _VIDEO_SUFFIXES)
            hint = (
                f"; it holds {len(videos)} video file(s) ({', '.join(videos[:3])}"
                f"{', ...' if len(videos) > 3 else ''}): pass the videos themselves "
                f"(e.g. {path}/*{Path(videos[0]).suffix})"
                if videos
                else ""
            )
            arrays = sorted(p for p in path.glob("*.npy") if not p.name.startswith("."))
            if not videos and arrays:  # an `sw-mro extract --out-dir` (found in review)
                hint = f"; it holds {arrays[0].name}: {_features_not_video(arrays[0])}"
            elif not videos:  # a data set's root, or a subject's folder of frame folders
                try:
                    subs = sorted(
                        (d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")),
                        key=lambda d: natural_key(d.name),
                    )
                    framed = [d.name for d in subs[:50] if next(_frames_in(d), None) is not None]
                except OSError:  # an unreadable subfolder: no hint, the error stands
                    framed = []
                if framed:
                    hint = (
                        f"; its subfolders hold frames ({', '.join(framed[:3])}"
                        f"{', ...' if len(framed) > 3 else ''}): pass those folders "
                        f"(e.g. {path}/*)"
                    )
            raise EmptyVideoError(
                f"{path}: the folder has no frame images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}){hint}"
            )
        _warn_on_gaps(path, self.files)
        _warn_on_narrow_16_bit(self.files[0])
        first = self._imread(self.files[0])
        _refuse_multi_page(self.files[0])  # after the read: a bad file is said by it
        h, w = first.shape[:2]
        self.info = _strided_info(
            path, len(self.files), float(DEFAULT_FOLDER_FPS if fps is None else fps), h, w, stride
        )

    @staticmethod
    def _imread(file: Path) -> np.ndarray:
        # imdecode(fromfile) instead of imread: works for non-ASCII paths on every OS.
        try:
            data = np.fromfile(file, dtype=np.uint8)
        except OSError as exc:
            raise CorruptVideoError(f"{file}: cannot read the frame ({one_line(exc)})") from exc
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if bgr is None:
            # An image OpenCV reads only as it is (a float or 32-bit integer TIFF, found
            # in review: "cannot decode" did not say why): named by its sample type.
            raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
            if raw is not None and raw.dtype not in (np.uint8, np.uint16):
                raise CorruptVideoError(
                    f"{file}: a {raw.dtype} image; frames must be 8- or 16-bit integer "
                    "images: convert the frames (e.g. scaled to 0-255, as PNG) first"
                )
            raise CorruptVideoError(f"{file}: cannot decode the frame image{_jpeg_why(data)}")
        return bgr

    def _read_source_rgb(self, source_indices: list[int]) -> np.ndarray:
        h, w = self.info.height, self.info.width
        out = np.empty((len(source_indices), h, w, 3), dtype=np.uint8)

        def one(k: int) -> None:
            i = source_indices[k]
            bgr = self._imread(self.files[i])
            if bgr.shape[:2] != (h, w):
                # cv2 turns each file by its own EXIF orientation tag: a file stored at
                # the same size can come out turned (found in review: a puzzling error)
                turned = " (turned by its EXIF orientation tag?)" if bgr.shape[:2] == (w, h) else ""
                raise CorruptVideoError(
                    f"{self.files[i]}: frame is {bgr.shape[1]}x{bgr.shape[0]}{turned}, but "
                    f"the folder's first frame ({self.files[0].name}) is {w}x{h}"
                )
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out[k])

        from sw_mro.config import usable_cpus

        threads = min(FOLDER_DECODE_THREADS, len(source_indices), usable_cpus())
        if threads < 2:
            for k in range(len(source_indices)):
                one(k)
        else:  # in file order: the first bad frame is the one reported
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(
                threads, thread_name_prefix="sw_mro-imread", initializer=name_this_thread
            ) as pool:
                for _ in pool.map(one, range(len(source_indices))):
                    pass
        return out


#: A video whose frame intervals differ from their median by more than this share, in
#: more than :data:`VFR_SHARE` of the frames, is said to have a variable frame rate.
VFR_DEVIATION = 0.25
VFR_SHARE = 0.01


def _warn_on_variable_rate(path: Path, vr: Any, fps: float) -> None:
    """A logged warning, once per file and process, for a variable-frame-rate file
    (phones, screen recordings): frames are read one after another, and seconds (the
    label ranges, the output intervals' times) assume ``fps`` throughout. Silent for
    constant-rate files, the odd dropped frame, containers that keep times in whole
    milliseconds (240 fps in MKV: 4 and 5 ms), and files whose timestamps decord cannot
    give (Xvid AVI with B-frames: missing ones; H.264 in AVI: all zero)."""
    try:
        n = len(vr)
        if n < 3:
            return
        start = np.asarray(vr.get_frame_timestamp(range(n)), dtype=np.float64)[:, 0]
    except Exception:  # no usable timestamps: nothing to tell
        return
    if not np.isfinite(start).all() or (start < -1.0).any():  # missing ones (~ -3.7e17 s)
        return
    d = np.diff(start)
    med = float(np.median(d))
    if not med > 0:
        return
    # A whole-millisecond time base rounds each interval by up to 1 ms.
    off = np.abs(d - med) > max(VFR_DEVIATION * med, 1.001e-3)
    if off.mean() <= VFR_SHARE:
        return
    if not _first_time("vfr", path):
        return
    log.warning(
        "%s: variable frame rate: frame intervals range from %.1f to %.1f ms (%d of %d "
        "differ from the median %.1f ms by over %d %%). Frames are read in order and "
        "times assume %.2f fps throughout; for exact times re-encode it at a constant "
        "rate first (e.g. ffmpeg -i %s -fps_mode cfr -r 30 out.mp4)",
        path,
        1e3 * float(d.min()),
        1e3 * float(d.max()),
        int(off.sum()),
        d.size,
        1e3 * med,
        round(100 * VFR_DEVIATION),
        fps,
        path.name,
    )


#: Sample aspect ratios within 15 % of square are not warned about (|ln r| <= ln 1.15):
#: standard definition's 4:3 ones reach 12.5 % (NTSC DV and DVD: 8:9).
_SAR_QUIET = math.log(1.15)


def _warn_on_other_rate(path: Path, vr: Any, fps: float) -> None:
    """A logged warning, once per file and process, where a rate given for a video file
    (a CSV's fps column, ``spot --fps``) differs from its container's by over 1 %: the
    frames are read as they are, and every time in seconds (the post-processing's
    windows, a model's expected rate) follows the given one (found in review: a CSV's
    25 for 30 fps files went unsaid)."""
    try:
        own = float(vr.get_avg_fps())
    except Exception:  # no usable rate in the container: nothing to compare
        return
    if not (math.isfinite(own) and own > 0) or abs(fps / own - 1.0) <= 0.01:
        return
    if _first_time(f"rate {fps}", path):
        log.warning(
            "%s: read at the %.4g fps given, but its container says %.4g fps; times in "
            "seconds follow the given rate",
            path,
            fps,
            own,
        )


def _warn_on_picture(path: Path, probe: _Probe, height: int, width: int) -> None:
    """Logged warnings, once per file and process, for frames that are read as stored
    but shown otherwise (found in review: neither was said). Interlaced frames (DV and
    broadcast camcorders, some IP cameras) hold two fields taken 1/50 or 1/60 s apart,
    whose combing at every moving edge the flow sees as motion. Non-square pixels
    (anamorphic DV and DVD, 720x576 shown at 16:9) squeeze the face one way; its
    landmarks, crop and flow are in stored pixels. Ratios within 15 % of square pass
    silently: standard definition's 4:3 ones (NTSC DV and DVD 8:9, PAL 16:15, ITU-R
    BT.601's 12:11 and 10:11, carphone's 128:117); 16:9 ones (32:27 and up) warn. Both are read as decord, cv2 and
    ffmpeg read them, and both are for the user to convert first."""
    if probe.interlaced and _first_time("interlaced", path):
        log.warning(
            "%s: interlaced frames (two fields each, taken 1/2 frame apart): the flow "
            "sees their combing at moving edges as motion; deinterlace first, e.g. "
            "ffmpeg -i %s -vf bwdif=mode=send_frame -c:v libx264 -crf 12 %s_progressive.mp4",
            path,
            path.name,
            path.stem,
        )
    num, den = probe.sar
    if num * den > 0 and abs(math.log(num / den)) > _SAR_QUIET and _first_time("sar", path):
        turned = (height, width) != probe.stored  # a quarter turn: the stretch is vertical
        log.warning(
            "%s: non-square pixels (sample aspect ratio %d:%d): frames are read as stored, "
            "%dx%d, where players show each pixel %.3g times as %s, so faces are "
            'squeezed; make the pixels square first, e.g. ffmpeg -i %s -vf "scale='
            'trunc(iw*sar/2)*2:ih,setsar=1" -c:v libx264 -crf 12 %s_square.mp4',
            path,
            num,
            den,
            width,
            height,
            num / den,
            "tall as wide" if turned else "wide as high",
            path.name,
            path.stem,
        )


def _warn_on_damage(path: Path, probe: _Probe, frames: int) -> None:
    """Logged warnings, once per file and process, for a file cut short
    (:func:`_cut_short`, read as its ``frames`` first frames) and for packets the
    container marks damaged (:func:`_damaged_packets`): FFmpeg, decord and
    ``cv2.VideoCapture`` decode what they hold, so their frames are partly grey or
    smeared (the flow sees that as motion), or fail. Damaged packets that are not left
    out are decoded as every decoder decodes them (the frames' numbering stays every
    decoder's). ``VideoInfo.damaged_packets`` and ``sw-mro extract``'s JSON list them."""
    bad, total = probe.damaged, probe.packets
    tail = _cut_at_end(total, bad) if total else 0
    inner = bad[: len(bad) - tail]
    said: list[tuple[str, tuple]] = []
    if probe.keep and probe.fmt == "avi" and probe.frames < probe.keep:
        where = (
            f"inside the data of its last frame (packet {probe.keep} in decoding order, from 0)"
            if tail
            else f"before its index, after packet {probe.keep - 1} (in decoding order, from 0)"
        )
        said.append((
            "%s: the file ends %s: a recording cut short? It is read as its first %d "
            "frames: its frames may be shown out of decoding order (B-frames), which AVI "
            "does not record, and frames decoded after the cut may be missing, so the %d "
            "before the cut are left out too; decoders that read it whole %s",
            (
                path,
                where,
                frames,
                probe.keep - probe.frames,
                "give the cut frame partly grey or smeared, or fail on it"
                if tail
                else "may show later frames in the last places",
            ),
        ))  # fmt: skip
    elif probe.keep and tail:
        said.append((
            "%s: the file ends inside the data of its last frame (packet %d in decoding "
            "order, from 0): a recording cut short? It is read as its first %d frames, "
            "those shown before the cut; decoders that read it whole give that frame "
            "partly grey or smeared, or fail on it",
            (path, probe.keep, frames),
        ))  # fmt: skip
    elif probe.keep:
        said.append((
            "%s: the file ends before frames it would show among its last ones (B-frames "
            "decoded after the cut): a recording cut short? It is read as its first %d "
            "frames, those shown before the first one missing; decoders that read it "
            "whole number the frames after it too low",
            (path, frames),
        ))  # fmt: skip
    elif tail:
        said.append((
            "%s: the file ends inside the data of its last frame (packet %d in decoding "
            "order, from 0): a recording cut short? Its frames may be shown out of "
            "decoding order (B-frames), where leaving that packet out could shift the "
            "numbering, so it is read as decoders read it: the last frames may be partly "
            "grey or smeared, or fail to decode; re-encode it first, e.g. ffmpeg -i %s "
            "-c:v libx264 -crf 12 %s_whole.mp4",
            (path, total - tail, path.name, path.stem),
        ))  # fmt: skip
    if inner:
        shown = ", ".join(map(str, inner[:10])) + (", ..." if len(inner) > 10 else "")
        said.append((
            "%s: %d of the video's packets %s marked damaged (decoding order from 0: "
            "%s); decoders give what they hold, so those frames (and, in a coded stream, "
            "those after them up to the next keyframe) may be partly grey or smeared, and "
            "the flow sees that as motion",
            (path, len(inner), "is" if len(inner) == 1 else "are", shown),
        ))  # fmt: skip
    if said and _first_time("damaged", path):
        for text, args in said:
            log.warning(text, *args)


_WARNED: set[tuple[str, str, int, int]] = set()


def _first_time(kind: str, path: Path, names: list[str] | None = None) -> bool:
    """Whether this process has not yet warned of ``kind`` about ``path`` as it is now:
    a file's size and modification time, or a folder's file ``names`` (what its
    numbering warnings depend on; a folder's mtime can stay within one clock tick of a
    change). ``train`` and ``spot`` open a video twice (to plan, then to extract), and
    a warning per opening printed each twice (found in review)."""
    try:
        if names is not None:
            key = (kind, str(path.resolve()), len(names), hash("\0".join(names)))
        else:
            st = path.stat()
            key = (kind, str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = (kind, str(path), 0, 0)
    if key in _WARNED:
        return False
    _WARNED.add(key)
    return True


def _warn_on_narrow_16_bit(file: Path) -> None:
    """Warn when a 16-bit frame's colour stays under 16384, a quarter of the range (a
    10-14-bit camera's values, not scaled to the 16-bit range). Frames are read as 8
    bits by their high byte, so such a face spans at most 64 grey levels, and
    Farneback's flow, regularised for 8-bit contrast, shrinks (found in review: 12-bit
    data in 16-bit PNGs gave features 4.8x smaller, without a word). Only the first
    frame is checked."""
    try:
        img = cv2.imdecode(np.fromfile(file, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except (OSError, cv2.error):
        return  # the frame's own read says what is wrong
    if img is None or img.dtype != np.uint16 or not img.size:
        return
    if img.ndim == 3 and img.shape[2] in (2, 4):  # not the alpha (found in review)
        img = img[..., : img.shape[2] - 1]
    top = int(img.max())
    if top < 16384 and _first_time("16-bit", file):
        log.warning(
            "%s: a 16-bit frame whose values reach only %d of 65535; frames are read as "
            "8-bit by their high byte (0-%d here), and flow features shrink with the "
            "contrast: scale the frames to the full 16-bit range, or to 8 bits, first "
            "(docs/io.md, 'Frame folders')",
            file,
            top,
            top >> 8,
        )


def _jpeg_why(data: np.ndarray) -> str:
    """Why a JPEG that OpenCV cannot decode fails, where its bytes say: 12-bit samples
    (valid, but libjpeg's 8-bit build refuses them) or an end before the end-of-image
    marker (a cut download or copy); "" otherwise."""
    raw = data.tobytes()
    if raw[:2] != b"\xff\xd8":
        return ""
    i = 2
    while i + 9 < len(raw) and raw[i] == 0xFF:  # the segments before the image data
        marker = raw[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header
            if raw[i + 4] == 12:
                return " (a 12-bit JPEG, which OpenCV does not read; convert the frames to 8-bit JPEG or 16-bit PNG)"
            break
        if marker == 0xDA:  # start of scan: the image data follows
            break
        i += 2 + int.from_bytes(raw[i + 2 : i + 4], "big")
    # Image data holds no FF D9 (an FF in it is followed by 00): none after the scan
    # started is an end before the end of the image (data after it: a phone's trailer).
    if raw.find(b"\xff\xd9", i) < 0:
        return " (the JPEG ends early: a truncated file?)"
    return ""


def _features_not_video(npy: Path) -> str:
    """What to say of a ``.npy`` given as a video: `sw-mro extract`'s features (named by
    the JSON next to it) or another NumPy array."""
    import json

    try:
        made_from = json.loads(npy.with_suffix(".json").read_text())["input"]
    except (OSError, ValueError, KeyError, TypeError):
        made_from = None
    if made_from:
        return (
            f"SW-MRO features (sw-mro extract's output), not a video; give the video they "
            f"were made from ({made_from})"
        )
    return (
        "a NumPy array file, not a video; give a video file or a frame folder (frames in "
        "memory: open_video(array, fps=...))"
    )


def _refuse_multi_page(file: Path) -> None:
    """A multi-page TIFF (an ImageJ or microscope stack) as a frame: refused, as only its
    first page would be read (found in review: a folder of one stack was a 1-frame
    video, without a word)."""
    if file.suffix.lower() not in (".tif", ".tiff"):
        return
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # its [ERROR] lines
    try:
        pages = cv2.imcount(str(file))
    except cv2.error:
        return  # the frame's own read says what is wrong
    finally:
        cv2.utils.logging.setLogLevel(level)
    if pages > 1:
        raise UnsupportedVideoError(
            f"{file}: a multi-page TIFF ({pages} pages), of which only the first would be "
            "read as a frame; save its pages as numbered images in a folder (ImageJ: File "
            "> Save As > Image Sequence) and give that folder"
        )


_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def _warn_on_gaps(folder: Path, files: list[Path]) -> None:
    """Warnings for a numbered folder whose files are not one run of numbers: files that
    do not follow its naming (a ``cover.jpg``, ``img2 - Copy.jpg``: each is a frame, in
    name order, and shifts the frames after it; found in review: without a word, and
    one such name turned every check off), numbers given twice (``img1``, ``img01``),
    a first number above 1, and the first jump."""
    parsed = [_NUMBERED.match(f.stem) for f in files]
    prefixes = [m[1].lower() for m in parsed if m is not None]
    if not prefixes or not _first_time("numbering", folder, [f.name for f in files]):
        return  # not a numbered layout: nothing to check
    from collections import Counter

    prefix, count = Counter(prefixes).most_common(1)[0]
    if 2 * count < len(files):  # numbers in varying names (frame_0001_t0.033): no layout
        return
    ours = [
        (f, int(m[2])) for f, m in zip(files, parsed, strict=True) if m and m[1].lower() == prefix
    ]
    odd = [f.name for f, m in zip(files, parsed, strict=True) if not m or m[1].lower() != prefix]
    if odd:
        example = ours[0][0].name
        log.warning(
            "%s: %d file(s) do not follow the folder's numbering (%s): %s; each is read as "
            "a frame, in name order, and every frame after it is one later than its number",
            folder,
            len(odd),
            example,
            ", ".join(odd[:5]) + (", ..." if len(odd) > 5 else ""),
        )
    seen: dict[int, str] = {}
    for f, n in ours:
        if n in seen:
            log.warning(
                "%s: two files are numbered %d (%s, %s); both are read as frames",
                folder,
                n,
                seen[n],
                f.name,
            )
            break
        seen[n] = f.name
    nums, files = [n for _, n in ours], [f for f, _ in ours]
    if nums[0] > 1:  # CAS(ME)^2 img1.jpg and SAMM-LV _0001.jpg start at 1
        log.warning(
            "%s: frame numbers start at %d (%s), not at 0 or 1; frame i is the i-th file, "
            "so annotations numbered from the first frame would be %d frames off",
            folder,
            nums[0],
            files[0].name,
            nums[0] - 1,
        )
    for a, b, fb in zip(nums, nums[1:], files[1:], strict=False):
        if b not in (a, a + 1):  # a number given twice is said above
            log.warning(
                "%s: frame numbers jump from %d to %d at %s; frame i is the i-th file",
                folder,
                a,
                b,
                fb.name,
            )
            return


class FrameArraySource(VideoSource):
    """Frames already in memory: a ``(N, H, W, 3)`` RGB or ``(N, H, W)`` gray ``uint8``
    numpy array or CPU tensor (not copied). ``open_video(frames, fps=...)`` makes one;
    ``info.path`` is ``<frames in memory>``."""

    def __init__(
        self, frames: Any, *, stride: int = 1, color: Color = "rgb", fps: float | None = None
    ) -> None:
        where = Path("<frames in memory>")
        if isinstance(frames, torch.Tensor) and frames.device.type != "cpu":
            # .numpy() would raise torch's own TypeError first (found in review)
            raise TypeError(
                f"{where}: frames must be a numpy array or a CPU torch tensor; got a tensor "
                f"on {frames.device} (move it with .cpu())"
            )
        arr = frames.detach().numpy() if isinstance(frames, torch.Tensor) else frames
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{where}: frames must be a numpy array or a CPU torch tensor")
        if arr.ndim == 3 and arr.shape[2] == 3:
            raise ValueError(
                f"{where}: {tuple(arr.shape)} looks like one RGB image, not a video; give "
                "frames as (N, H, W, 3) (frames[None] for a single one)"
            )
        if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[3] != 3):
            raise ValueError(
                f"{where}: frames must be uint8 (N, H, W, 3) RGB or (N, H, W) gray; got "
                f"{arr.dtype} {tuple(arr.shape)}"
            )
        self._frames_rgb = arr
        self.color = color
        n, h, w = arr.shape[:3]
        self.info = _strided_info(where, n, float(fps or DEFAULT_FOLDER_FPS), h, w, stride)

    def _read_source_rgb(self, source_indices: list[int]) -> np.ndarray:
        out = self._frames_rgb[source_indices]
        return out if out.ndim == 4 else np.repeat(out[..., None], 3, axis=3)


def open_video(
    path: str | os.PathLike | np.ndarray | torch.Tensor,
    *,
    stride: int = 1,
    color: Color = "rgb",
    fps: float | None = None,
) -> VideoSource:
    """Open a video file, a folder of numbered frames, or frames in memory.

    Args:
        path: a video file (anything FFmpeg decodes), a folder of frame images, or
            ``uint8`` frames ``(N, H, W, 3)`` RGB / ``(N, H, W)`` gray (a numpy array or
            a CPU tensor: :class:`FrameArraySource`).
        stride: keep every ``stride``-th frame (source frames 0, stride, 2 stride, ...).
        color: ``"rgb"`` -> ``(T, H, W, 3)``; ``"gray"`` -> ``(T, H, W)``, computed as
            ``cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)``.
        fps: frame rate of a frame folder or of frames in memory (``None`` -> 30.0); for
            a video file ``None`` uses the container's rate and a number overrides it.

    Raises:
        VideoNotFoundError, CorruptVideoError, EmptyVideoError, ClipTooShortError.
    """
    in_memory = isinstance(path, np.ndarray | torch.Tensor)
    where = "<frames in memory>" if in_memory else Path(path)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"{where}: stride must be an int >= 1, got {stride!r}")
    if color not in ("rgb", "gray"):
        raise ValueError(f"{where}: color must be 'rgb' or 'gray', got {color!r}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"{where}: fps must be a positive number, got {fps!r}")
    if in_memory:
        return FrameArraySource(path, stride=stride, color=color, fps=fps)
    path = where
    if not path.exists():
        raise VideoNotFoundError(f"{path}: no such video file or frame folder")
    if path.is_dir():
        return FrameFolderSource(path, stride=stride, color=color, fps=fps)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if path.is_file():  # not a FIFO: OpenCV's open of one waits for a writer
            _refuse_multi_page(path)
        raise UnsupportedVideoError(
            f"{path}: a single frame image, not a video; give the folder of frames "
            f"({path.parent}) to read them all"
        )
    if path.suffix.lower() == ".npy":  # found in review: "cannot decode the video"
        raise UnsupportedVideoError(f"{path}: {_features_not_video(path)}")
    if not path.is_file():  # a FIFO would block the open for good (found in review)
        raise UnsupportedVideoError(
            f"{path}: not a regular file (a pipe, socket or device); give a video file or "
            "a frame folder"
        )
    return FileVideoSource(path, stride=stride, color=color, fps=fps)
