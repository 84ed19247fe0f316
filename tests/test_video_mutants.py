"""Gaps in tests/test_video.py found by mutation testing of sw_mro/io/video.py.

Each test names the behaviour it pins down. Every clip is real and made here: H.264
and MPEG-4 written with PyAV (tests/videos.py), frame images written with OpenCV, or
frames in memory. References are PyAV's in-order decode or the frames themselves.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from videos import encode

from sw_mro.errors import EmptyVideoError, UnsupportedVideoError
from sw_mro.io import open_video
from sw_mro.io.writer import write_video


def _frames(n: int, h: int = 48, w: int = 64, seed: int = 3) -> np.ndarray:
    """A smooth random texture moving 3 px a frame: every frame distinct."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8 + 1, (w + 3 * n) // 8 + 1, 3), dtype=np.uint8)
    big = cv2.resize(small, (w + 3 * n + 8, h + 8), interpolation=cv2.INTER_CUBIC)
    return np.stack([big[:h, 3 * k : 3 * k + w] for k in range(n)])


def _decoded_in_order(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


@pytest.fixture(scope="module")
def forward_avi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """MPEG-4 Part 2 with B-frames and several GOPs in AVI: read forward (no seeks)."""
    path = tmp_path_factory.mktemp("fwd") / "xvid.avi"
    encode(path, list(_frames(40)), "avi", "mpeg4", g="10", bf="2")
    return path, _decoded_in_order(path)


# --- indices and strides -----------------------------------------------------------------


def test_negative_indices_count_strided_frames(tmp_path: Path) -> None:
    """``read([-1])`` is the last frame *after* the stride, also where the stride does not
    divide the frame count (45 frames at stride 4: frame 11 = source frame 44, not 41)."""
    frames = _frames(45)
    for source in (frames, write_video(tmp_path / "c.mp4", list(frames))):
        video = open_video(source, stride=4, fps=30.0)
        n = len(video)
        assert n == 12
        np.testing.assert_array_equal(
            video.read([-1, -2, -n]).numpy(), video.read([n - 1, n - 2, 0]).numpy()
        )
    # in memory the frames are exact: the last strided frame is source frame 44
    np.testing.assert_array_equal(open_video(frames, stride=4).read([-1])[0].numpy(), frames[44])


def test_frames_in_memory_keep_their_rate_and_refuse_nothing_to_read() -> None:
    """``fps=`` of frames in memory is their source rate (divided by the stride); zero
    frames are an empty video; one (H, W, 3) image is not taken for a video."""
    frames = _frames(10)
    video = open_video(frames, fps=200.0, stride=4)
    assert (video.info.source_fps, video.info.fps, len(video)) == (200.0, 50.0, 3)
    with pytest.raises(EmptyVideoError, match="no frames"):
        open_video(frames[:0])
    with pytest.raises(ValueError, match="looks like one RGB image"):
        open_video(frames[0])


def test_gray_frames_in_memory_read_as_rgb_and_gray() -> None:
    """(N, H, W) gray frames come out as (T, H, W, 3) RGB with three equal channels, or
    as themselves with ``color="gray"``."""
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in _frames(6)])
    rgb = open_video(gray).read([4, 1]).numpy()
    assert rgb.shape == (2, 48, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray[[4, 1]])
    np.testing.assert_array_equal(open_video(gray, color="gray").read([4, 1]).numpy(), gray[[4, 1]])


def test_stride_true_is_refused(tmp_path: Path) -> None:
    """``stride=True`` is a bool, not a stride of 1 (the check names it)."""
    with pytest.raises(ValueError, match="stride must be an int >= 1, got True"):
        open_video(_frames(4), stride=True)


# --- files read forward ------------------------------------------------------------------


def test_forward_read_goes_back_for_frames_behind_it(forward_avi) -> None:
    """A request whose first frame is behind the decoder's position restarts it, even
    when its last frame is ahead: after frames 0-9, [3, 15] is frames 3 and 15."""
    path, ref = forward_avi
    video = open_video(path)
    assert not video.exact_seek
    np.testing.assert_array_equal(video.read(range(10)).numpy(), ref[:10])
    np.testing.assert_array_equal(video.read([3, 15]).numpy(), ref[[3, 15]])
    # and a chunk that starts behind a read ahead of it
    video.read([30])
    first, chunk = next(video.chunks(6, start=20))
    assert first == 20
    np.testing.assert_array_equal(chunk.numpy(), ref[20:26])


def test_forward_read_fills_every_place_of_a_repeated_index(forward_avi) -> None:
    """An index asked for twice (or more) gets its frame in each place."""
    path, ref = forward_avi
    order = [5, 5, 2, 5, 2]
    np.testing.assert_array_equal(open_video(path).read(order).numpy(), ref[order])


def test_files_read_forward_stay_forward_with_parallel_readers(
    forward_avi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FILE_DECODE_READERS > 1 only splits files whose seeks are exact: a file read
    forward gives the in-order decode's frames in chunks, not decord's seeks'."""
    import sw_mro.io.video as vid

    path, ref = forward_avi
    monkeypatch.setattr(vid, "FILE_DECODE_READERS", 2)
    video = open_video(path, stride=3)
    got = [(i, c.numpy()) for i, c in video.chunks(4, start=1)]
    assert [i for i, _ in got] == list(range(1, len(video), 4))
    np.testing.assert_array_equal(np.concatenate([c for _, c in got]), ref[::3][1:])


# --- parallel readers (files whose seeks are exact) --------------------------------------


def test_parallel_readers_keep_stop_and_gray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two readers, ``stop`` ends the last chunk and ``color="gray"`` gives gray
    frames, as with one."""
    import sw_mro.io.video as vid

    path = write_video(tmp_path / "c.mp4", list(_frames(30)))
    monkeypatch.setattr(vid, "FILE_DECODE_READERS", 1)
    one = open_video(path, color="gray", stride=2).read(range(15)).numpy()
    monkeypatch.setattr(vid, "FILE_DECODE_READERS", 2)
    video = open_video(path, color="gray", stride=2)
    assert video.exact_seek
    got = list(video.chunks(4, start=1, stop=11))
    assert [(i, tuple(c.shape)) for i, c in got] == [
        (1, (4, 48, 64)),
        (5, (4, 48, 64)),
        (9, (2, 48, 64)),
    ]
    np.testing.assert_array_equal(torch.cat([c for _, c in got]).numpy(), one[1:11])


def test_two_readers_from_eight_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """FILE_DECODE_READERS None: 2 readers from 8 usable cores up, else 1 (the
    documented rule)."""
    import sw_mro.config
    import sw_mro.io.video as vid

    monkeypatch.setattr(vid, "FILE_DECODE_READERS", None)
    for cores, readers in ((7, 1), (8, 2), (16, 2)):
        monkeypatch.setattr(sw_mro.config, "usable_cpus", lambda c=cores: c)
        assert vid._file_decode_readers() == readers


# --- seeking policy ----------------------------------------------------------------------


def test_ffv1_with_keyframes_apart_is_not_sought(tmp_path: Path) -> None:
    """A whole FFV1 file whose keyframes are apart (FFmpeg's default, one in 12) keeps
    its coding context between them: by the module's rule it is read forward, not
    sought like an intra-only codec (decord's seeks there landed on wrong frames in an
    AVI without its index, which now goes to PyAV anyway; in whole files they were
    right when tried, so the rule itself is what this checks), and every frame is the
    in-order decode's."""
    import av

    path = encode(tmp_path / "ffv1.mkv", list(_frames(30)), "matroska", "ffv1", pix_fmt="yuv420p")
    with av.open(str(path)) as c:
        keys = [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]
    assert 0 < sum(keys) < len(keys)
    ref = _decoded_in_order(path)
    video = open_video(path)
    assert not video.exact_seek
    np.testing.assert_array_equal(
        np.concatenate([c.numpy() for _, c in video.chunks(8, start=3)]), ref[3:]
    )


# --- frame folders and single images -----------------------------------------------------


def _write(folder: Path, names: list[str], frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rgb in zip(names, frames, strict=True):
        ok, buf = cv2.imencode(Path(name).suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        (folder / name).write_bytes(buf.tobytes())


def test_upper_case_suffixes_are_frames(tmp_path: Path) -> None:
    """``IMG1.PNG`` (cameras, Windows copies) is a frame like ``img1.png``."""
    frames = _frames(3)
    _write(tmp_path / "f", ["IMG1.PNG", "IMG2.PNG", "IMG3.PNG"], frames)
    video = open_video(tmp_path / "f")
    np.testing.assert_array_equal(video.read(range(len(video))).numpy(), frames)


def test_a_single_image_with_an_upper_case_suffix_is_refused(tmp_path: Path) -> None:
    """One frame image given as a video, whatever the case of its suffix, is refused
    with the hint to give its folder."""
    _write(tmp_path / "f", ["IMG1.PNG"], _frames(1))
    with pytest.raises(UnsupportedVideoError, match="a single frame image, not a video"):
        open_video(tmp_path / "f" / "IMG1.PNG")


def test_names_that_sort_alike_come_in_name_order(tmp_path: Path) -> None:
    """img1, img01, img001, ... share a number: they come in the order of their names,
    whatever order the files were made in (the file system's listing order varies)."""
    names = ["img0001.png", "img001.png", "img01.png", "img1.png", "img00001.png"]
    frames = _frames(len(names))
    for k, order in enumerate((names, names[::-1], names[2:] + names[:2])):
        folder = tmp_path / f"d{k}"
        for name in order:
            _write(folder, [name], frames[names.index(name)][None])
        video = open_video(folder)
        assert [p.name for p in video.files] == sorted(names)
        want = np.stack([frames[names.index(n)] for n in sorted(names)])
        np.testing.assert_array_equal(video.read(range(len(names))).numpy(), want)


def test_a_two_page_tiff_is_refused(tmp_path: Path) -> None:
    """A TIFF of two pages (a stack) is refused like a longer one: only its first page
    would be read."""
    folder = tmp_path / "stack"
    folder.mkdir()
    pages = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in _frames(2)]
    assert cv2.imwritemulti(str(folder / "img1.tif"), pages)
    with pytest.raises(UnsupportedVideoError, match=r"a multi-page TIFF \(2 pages\)"):
        open_video(folder)


# --- warnings ----------------------------------------------------------------------------


def test_a_given_rate_a_few_percent_off_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rate given for a 30 fps file that is 5 % off (28.5) is said: it is over the 1 %
    tolerance, and times in seconds follow it."""
    path = write_video(tmp_path / "c.mp4", list(_frames(6)), fps=30.0)
    with caplog.at_level(logging.WARNING, logger="sw_mro.io.video"):
        open_video(path, fps=28.5)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: read at the 28.5 fps given, but its container says 30 fps; times in "
        "seconds follow the given rate"
    ]


def test_a_folder_named_like_an_image_is_not_a_frame(tmp_path: Path) -> None:
    """A subfolder named ``img4.png`` among the frames is skipped, not read as a frame."""
    frames = _frames(3)
    _write(tmp_path / "f", ["img1.png", "img2.png", "img3.png"], frames)
    (tmp_path / "f" / "img4.png").mkdir()
    video = open_video(tmp_path / "f")
    assert [p.name for p in video.files] == ["img1.png", "img2.png", "img3.png"]
    np.testing.assert_array_equal(video.read(range(len(video))).numpy(), frames)


def test_a_forward_file_that_ends_early_is_an_error_not_blank_frames(
    forward_avi, tmp_path: Path
) -> None:
    """A file read forward that holds fewer frames than it was opened with (here:
    replaced by a shorter one after opening) fails, naming the frame where its stream
    ends, instead of returning the missing frames as uninitialised memory."""
    from sw_mro.errors import CorruptVideoError

    path, ref = forward_avi
    copy = tmp_path / "replaced.avi"
    copy.write_bytes(path.read_bytes())
    video = open_video(copy)
    assert len(video) == len(ref) == 40 and not video.exact_seek
    encode(copy, list(_frames(20)), "avi", "mpeg4", g="10", bf="2")
    with pytest.raises(CorruptVideoError, match="replaced.avi: .*the stream ends at frame 20"):
        video.read([5, 30])


def test_a_file_replaced_at_its_path_is_warned_about_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Warnings are said once per file *as it is*: the same file opened twice warns
    once, another file written at its path warns again."""
    path = tmp_path / "c.mp4"
    said = []
    for n in (6, 6, 8):
        if n != 6 or not path.exists():
            write_video(path, list(_frames(n)), fps=30.0)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sw_mro.io.video"):
            open_video(path, fps=25.0)
        said.append(len(caplog.records))
    assert said == [1, 0, 1]


def _with_dropped_frames(path: Path, n: int, dropped: tuple[int, ...]) -> Path:
    """``n`` frames at 30 fps whose times skip a frame after each frame in ``dropped``."""
    pts = np.cumsum([0] + [2 if i in dropped else 1 for i in range(n - 1)]).tolist()
    return encode(path, _frames(n, 32, 32), "mp4", pts=pts, bf="0")


def test_variable_rate_share_is_over_one_percent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One dropped frame in 100 intervals (1 %, VFR_SHARE) is the odd dropped frame:
    silent; two in 101 intervals (2 %) is a variable frame rate: warned."""
    import sw_mro.io.video as vid

    assert vid.VFR_SHARE == 0.01
    one = _with_dropped_frames(tmp_path / "one.mp4", 101, (50,))
    two = _with_dropped_frames(tmp_path / "two.mp4", 102, (30, 70))
    with caplog.at_level(logging.WARNING, logger="sw_mro.io.video"):
        assert len(open_video(one)) == 101
        assert not caplog.records, [r.getMessage() for r in caplog.records]
        open_video(two)
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg.startswith(f"{two}: variable frame rate: frame intervals range from 33.3 to 66.7 ms")
    assert "(2 of 101 differ" in msg
