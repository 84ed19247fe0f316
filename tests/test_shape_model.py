"""dlib's shape predictor read from its file and run in numba (sw_mro.io.shape_model),
against dlib's own ``shape_predictor`` on the same images and boxes: the landmarks must
be identical, point for point, including boxes partly or wholly outside the image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sw_mro.io import landmarks as lm_mod
from sw_mro.io.landmarks import make_landmarker
from sw_mro.io.samples import dlib_shape_predictor_path
from sw_mro.io.shape_model import ShapeModel, ShapeModelFormatError, load_shape_model
from sw_mro.io.video import open_video

dlib = pytest.importorskip("dlib")


def train_tiny_dlib_model(
    rgb: np.ndarray,
    path: Path,
    shifts: list[tuple[int, int]],
    *,
    every: int,
    trees: int,
    oversampling: int,
    pool: int,
) -> list[int]:
    """A shape predictor trained here with dlib and saved at ``path``: 3 cascades of
    ``trees`` trees of depth 3, on ``rgb`` moved by each ``(dx, dy)`` of ``shifts``, with
    every ``every``-th of the 68 landmarks that the shipped model finds there. Returns the
    face box it was trained on (unmoved)."""
    res = make_landmarker("dlib", track=False).detect(rgb)
    box = [round(float(v)) for v in res.boxes[0]]
    images, objects = [], []
    for dx, dy in shifts:
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        images.append(np.ascontiguousarray(cv2.warpAffine(rgb, shift, rgb.shape[1::-1])))
        rect = dlib.rectangle(box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
        parts = [
            dlib.point(round(float(x)) + dx, round(float(y)) + dy)
            for x, y in res.points[0][::every]
        ]
        objects.append([dlib.full_object_detection(rect, parts)])
    opt = dlib.shape_predictor_training_options()
    opt.cascade_depth, opt.tree_depth, opt.num_trees_per_cascade_level = 3, 3, trees
    opt.oversampling_amount, opt.feature_pool_size, opt.num_threads = oversampling, pool, 1
    dlib.train_shape_predictor(images, objects, opt).save(str(path))
    return box


def _boxes(box, rng: np.random.Generator, n: int, h: int, w: int) -> list[list[int]]:
    """``box`` itself, then boxes moved, resized and stretched at random: some partly or
    wholly outside the image, some tiny, some larger than it."""
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    out = [[x0, y0, x1, y1]]
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0
    for _ in range(n):
        s = side * rng.uniform(0.2, 3.0)
        c = (cx + rng.uniform(-0.8, 0.8) * w, cy + rng.uniform(-0.8, 0.8) * h)
        a = rng.uniform(0.7, 1.4)
        out.append(
            [
                round(c[0] - s / 2),
                round(c[1] - a * s / 2),
                round(c[0] + s / 2),
                round(c[1] + a * s / 2),
            ]
        )
    return out


def test_the_68_point_model_matches_dlib_on_video(carphone: str) -> None:
    path = str(dlib_shape_predictor_path())
    model, ref = load_shape_model(path), lm_mod._dlib_predictor(path)
    assert model.num_parts == 68 and model.leaves.shape == (15, 500, 16, 136)
    frames = open_video(carphone).read(range(0, 120, 3)).numpy()
    rng = np.random.default_rng(0)
    cases = 0
    for size in [None, (640, 480)]:  # the clip's 176x144 (44 px faces) and upscaled
        clip = frames if size is None else np.stack([cv2.resize(f, size) for f in frames])
        res = make_landmarker("dlib").detect(clip)
        assert res.found.all()
        h, w = clip.shape[1:3]
        for rgb, box in zip(clip, res.boxes, strict=True):
            for b in _boxes(box, rng, 4, h, w):
                np.testing.assert_array_equal(
                    model.predict(rgb, b), lm_mod._dlib_points(ref, rgb, b)
                )
                cases += 1
    assert cases == 2 * 40 * 5


def test_other_dlib_models_match_dlib(astronaut_rgb: np.ndarray, tmp_path: Path) -> None:
    """The 5-point model that face-recognition-models ships, and one trained here with
    dlib (3 cascades of 25 trees of depth 3, 17 points): other sizes read and run."""
    rng = np.random.default_rng(1)
    shifts = [tuple(int(v) for v in rng.integers(-20, 21, 2)) for _ in range(6)]
    trained = tmp_path / "tiny.dat"
    box = train_tiny_dlib_model(astronaut_rgb, trained, shifts, every=4, trees=25,
                                oversampling=3, pool=60)  # fmt: skip
    five = dlib_shape_predictor_path().with_name("shape_predictor_5_face_landmarks.dat")
    for path, parts, trees in [(trained, 17, (3, 25, 7, 2)), (five, 5, None)]:
        model, ref = ShapeModel.read(path), dlib.shape_predictor(str(path))
        assert model.num_parts == parts
        assert trees is None or model.splits.shape == trees
        for b in _boxes(box, rng, 60, 512, 512):
            np.testing.assert_array_equal(
                model.predict(astronaut_rgb, b), lm_mod._dlib_points(ref, astronaut_rgb, b)
            )


def test_the_landmarker_uses_it_and_falls_back_to_dlib(carphone: str, monkeypatch) -> None:
    frames = open_video(carphone).read(range(12)).numpy()
    ours = make_landmarker("dlib").detect(frames)

    def unreadable(path: str):
        raise ShapeModelFormatError(f"{path}: trees of mixed sizes")

    monkeypatch.setattr("sw_mro.io.shape_model.load_shape_model", unreadable)
    lm = make_landmarker("dlib")
    assert getattr(lm._predict, "__self__", None) is None  # dlib's wrapper, not a ShapeModel
    theirs = lm.detect(frames)
    assert ours.found.all()
    np.testing.assert_array_equal(ours.points, theirs.points)
    np.testing.assert_array_equal(ours.boxes, theirs.boxes)


def test_an_unreadable_file_is_read_once(tmp_path: Path, monkeypatch) -> None:
    reads = []
    read = ShapeModel.read.__func__
    monkeypatch.setattr(ShapeModel, "read", classmethod(lambda c, p: reads.append(p) or read(c, p)))
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"not a model at all\n" * 10)
    raised = []
    for _ in range(3):
        with pytest.raises(ShapeModelFormatError, match="bad.dat") as exc:
            load_shape_model(str(bad))
        raised.append(exc.value)
    assert reads == [str(bad)]
    assert len({id(e) for e in raised}) == 3  # new ones: none keeps another's frames


def test_a_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    good = dlib_shape_predictor_path().with_name("shape_predictor_5_face_landmarks.dat")
    data = good.read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) // 2])
    extra = tmp_path / "extra.dat"
    extra.write_bytes(data + b"\x01\x01")
    text = tmp_path / "text.dat"
    text.write_bytes(b"not a model at all\n" * 10)
    for path in [cut, extra, text]:
        with pytest.raises(ShapeModelFormatError, match=path.name):
            ShapeModel.read(path)
    with pytest.raises(FileNotFoundError):
        ShapeModel.read(tmp_path / "missing.dat")
    # Random bytes (found in review: one 5 KB file was read for minutes, its header
    # taken as a 9549 x 8.5e18 matrix, and huge counts gave numpy's "array is too big"),
    # and a version-1 header whose counts do not fit in the file.
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.dat"
    for _ in range(300):
        noise.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
        with pytest.raises(ShapeModelFormatError, match="noise.dat"):
            ShapeModel.read(noise)
    big = bytes([1, 1, 0x81, 2, 0x81, 1]) + bytes([1, 1, 1, 0]) * 2  # version 1, 2x1 shape
    big += bytes([8]) + b"\xff" * 8  # then 2^64 - 1 cascades
    noise.write_bytes(big + bytes(64))
    with pytest.raises(ShapeModelFormatError, match="noise.dat"):
        ShapeModel.read(noise)
    model = ShapeModel.read(good)
    with pytest.raises(ValueError, match="uint8"):
        model.predict(np.zeros((8, 8), np.uint8), (0, 0, 4, 4))
