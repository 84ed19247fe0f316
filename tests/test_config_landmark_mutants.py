"""Tests written from a mutation review of ``sw_mro.config``, ``sw_mro.io.shape_model``
and the insightface part of ``sw_mro.io.landmarks``: each pins a behaviour that a
plausible bug changed without any other test failing.

The insightface stand-ins are tiny ONNX graphs built here with ``onnx``, with the real
models' interfaces (det_10g: 9 outputs of scores, box distances and keypoints for
strides 8, 16, 32 and 2 anchors per cell; 1k3d68: 1103 3-D points, the last 68 the iBUG
landmarks in [-1, 1] crop coordinates). Unlike the stand-ins of tests/test_landmarks.py
they depend on the input's colour channels, and their boxes are not centred on their
anchors, so channel order, the box decoding and the crop's scale can be checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sw_mro import SWMROConfig
from sw_mro.errors import ModelNotFoundError
from sw_mro.io.landmarks import (
    InsightFaceLandmarker,
    _is_mxnet_normalised,
    _nms,
    insightface_models,
)

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

STRIDES = (8, 16, 32)
RED = 0.99609375  # (255 - 127.5) / 128: a red pixel's first channel, normalised
LMK = np.random.default_rng(7).uniform(-0.5, 0.5, (68, 2)).astype(np.float32)
TILT = 0.05  # the landmark stand-in moves every point by TILT * (mean R - mean B)


def _save(nodes, inputs, outputs, inits, path: Path) -> None:
    graph = helper.make_graph(nodes, "standin", inputs, outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def _det_model(path: Path, faces: dict[tuple[int, int, int], tuple[float, tuple]]) -> None:
    """SCRFD stand-in. ``faces`` maps (stride, cell x, cell y) to (score, distances
    (left, top, right, bottom) in strides) of the cell's first anchor. Every score is
    multiplied by gate = clip(4 * mean of the first (red) input channel, 0, 1): 1 for a
    red frame fed as RGB, 0 for the same frame fed as BGR."""
    f = TensorProto.FLOAT
    inits = [
        numpy_helper.from_array(np.array([[1.0], [0.0], [0.0]], np.float32), "pick_r"),
        numpy_helper.from_array(np.array(4.0, np.float32), "c4"),
        numpy_helper.from_array(np.array(0.0, np.float32), "c0"),
        numpy_helper.from_array(np.array(1.0, np.float32), "c1"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["ch"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["ch", "pick_r"], ["r"]),  # (1, 1)
        helper.make_node("Mul", ["r", "c4"], ["r4"]),
        helper.make_node("Clip", ["r4", "c0", "c1"], ["gate"]),
    ]
    outputs = []
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for stride in STRIDES:
            g = 640 // stride
            val = np.zeros((2 * g * g, width), np.float32)
            for (s, cx, cy), (score, dist) in faces.items():
                if s == stride:
                    row = 2 * (cy * g + cx)
                    if kind == "score":
                        val[row] = score
                    elif kind == "bbox":
                        val[row] = dist
            name = f"{kind}{stride}"
            inits.append(numpy_helper.from_array(val, f"{name}_c"))
            op, other = ("Mul", "gate") if kind == "score" else ("Add", "c0")
            nodes.append(helper.make_node(op, [f"{name}_c", other], [name]))
            outputs.append(helper.make_tensor_value_info(name, f, [2 * g * g, width]))
    inputs = [helper.make_tensor_value_info("input.1", f, [1, 3, "h", "w"])]
    _save(nodes, inputs, outputs, inits, path)


def _lmk_model(path: Path, size: int = 192, mxnet: bool = False) -> None:
    """1k3d68 stand-in: LMK (+ TILT * (mean R - mean B) on every coordinate). With
    ``mxnet`` its graph starts with the identity Sub and Mul nodes (named as MXNet's
    exports name them) by which insightface knows that the model normalises itself."""
    f = TensorProto.FLOAT
    pts = np.zeros((1103, 3), np.float32)
    pts[-68:, :2] = LMK
    inits = [
        numpy_helper.from_array(pts.reshape(1, 3309), "pts"),
        numpy_helper.from_array(np.array([[TILT], [0.0], [-TILT]], np.float32), "tilt"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    nodes = []
    x = "data"
    if mxnet:
        nodes += [
            helper.make_node("Sub", ["data", "zero"], ["d0"], name="_minusscalar0"),
            helper.make_node("Mul", ["d0", "one"], ["d1"], name="_mulscalar0"),
        ]
        x = "d1"
    nodes += [
        helper.make_node("ReduceMean", [x], ["ch"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["ch", "tilt"], ["z"]),  # (1, 1)
        helper.make_node("Add", ["pts", "z"], ["fc1"]),
    ]
    inputs = [helper.make_tensor_value_info("data", f, [1, 3, size, size])]
    outputs = [helper.make_tensor_value_info("fc1", f, [1, 3309])]
    _save(nodes, inputs, outputs, inits, path)


def _root(tmp_path: Path, faces: dict, **lmk) -> Path:
    root = tmp_path / "buffalo_l"
    root.mkdir(exist_ok=True)
    _det_model(root / "det_10g.onnx", faces)
    _lmk_model(root / "1k3d68.onnx", **lmk)
    return root


def _red(h: int, w: int) -> np.ndarray:
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 0] = 255
    return frame


def _iou(a, b) -> float:
    """insightface's IoU (pixel-inclusive boxes: +1 on each side)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


# --------------------------------------------------------------------------- NMS


def test_nms_keeps_by_score_and_drops_only_overlaps_over_the_threshold() -> None:
    """insightface's scrfd.nms by hand: highest score first; a box is dropped when its
    IoU (+1 pixel-inclusive areas) with a kept one is over the threshold, kept at it."""
    boxes = np.array(
        [
            [0, 0, 9, 9],  # 0: 10 x 10
            [0, 0, 9, 3],  # 1: inside 0, IoU 40 / 100 = 0.4 exactly: kept at 0.4
            [0, 0, 9, 3.5],  # 2: IoU 45 / 100 = 0.45 (36 / 81 = 0.44 without the +1)
            [20, 20, 29, 29],  # 3: apart from 0 (its x and y overlaps are both negative)
            [20, 20, 29, 26],  # 4: inside 3, IoU 0.7
            [0, 0, 9, 7.3],  # 5: inside 0, IoU 0.83, higher score than 0
        ],
        np.float64,
    )
    scores = np.array([0.8, 0.7, 0.75, 0.6, 0.65, 0.9])
    assert _iou(boxes[0], boxes[1]) == 0.4 and 0.4 < _iou(boxes[0], boxes[2]) < 0.5
    assert min(_iou(boxes[5], boxes[i]) for i in (0, 1, 2)) > 0.4 < _iou(boxes[3], boxes[4])
    # 5 first (0.9) drops 0, 1 and 2; 4 (0.65) drops 3 (0.6); 3 and 4 are apart from 5.
    assert _nms(boxes, scores, 0.4).tolist() == [5, 4]
    # Without box 5, box 0 is kept first and 1 sits exactly at the threshold.
    sub = [0, 1, 2, 3, 4]
    assert _nms(boxes[sub], scores[sub], 0.4).tolist() == [0, 1, 4]
    # 4 (0.65) beats 3 (0.6): the higher score is kept, whatever the index order.
    assert _nms(boxes[[3, 4]], scores[[3, 4]], 0.4).tolist() == [1]
    # Far-apart boxes are never dropped, even at threshold 0.
    assert sorted(_nms(boxes[[0, 3]], scores[[0, 3]], 0.0).tolist()) == [0, 1]


# --------------------------------------------------------------------------- detector


def test_detector_thresholds_and_nms_on_a_stand_in(tmp_path: Path) -> None:
    """Score threshold 0.5 (kept at 0.5), NMS 0.4 (module docstring, insightface 0.7),
    applied to the decoded boxes of a red 640 x 640 frame (det_scale 1)."""
    faces = {
        (32, 5, 5): (0.95, (2, 2, 2, 2)),  # A: [96, 96, 224, 224]
        (32, 6, 5): (0.8, (1.5, 2, 2.5, 2)),  # B: [144, 96, 272, 224], IoU with A 0.46
        (32, 15, 15): (0.5, (1, 1, 1, 1)),  # C: score exactly 0.5
        (32, 15, 5): (0.45, (1, 1, 1, 1)),  # D: under the threshold
        (16, 10, 30): (0.7, (2, 2, 2, 2)),  # E: [128, 448, 192, 512]
    }
    lm = InsightFaceLandmarker(_root(tmp_path, faces))
    a, b = [96, 96, 224, 224], [144, 96, 272, 224]
    assert 0.4 < _iou(a, b) < 0.5
    got = lm._detect_boxes(_red(640, 640))
    want = [a, [128, 448, 192, 512], [448, 448, 512, 512]]  # A, E, C: by score
    np.testing.assert_allclose(got, np.array(want, np.float32), atol=1e-3)


def test_detector_reads_rgb_and_decodes_left_top_right_bottom(tmp_path: Path) -> None:
    """A portrait frame 640 high x 424 wide is letterboxed to 640 x 423 (scrfd.py:
    ``int(640 / ratio)``) and its boxes divided by det_scale = new height / height = 1.
    The box distances are (left, top, right, bottom) from the anchor; the detector
    takes RGB (insightface swaps the BGR it is given), so the red frame is found and a
    blue one is not."""
    faces = {(32, 9, 9): (0.9, (1, 2, 3, 4))}
    lm = InsightFaceLandmarker(_root(tmp_path, faces))
    frame = _red(640, 424)
    cx = cy = 9 * 32
    want = np.array([[cx - 32, cy - 64, cx + 96, cy + 128]], np.float32)
    np.testing.assert_allclose(lm._detect_boxes(frame), want, atol=1e-3)
    assert len(lm._detect_boxes(np.ascontiguousarray(frame[..., ::-1]))) == 0


# --------------------------------------------------------------------------- landmarks


def _want_points(box, size: int, shift: float) -> np.ndarray:
    """insightface landmark.get by hand: a crop of 1.5x the box's larger side about its
    centre at ``size`` px, points (p + 1) * size / 2 in it, mapped back to the frame."""
    x0, y0, x1, y1 = box
    scale = size / (1.5 * max(x1 - x0, y1 - y0))
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    crop = (LMK + shift + 1) * (size / 2)
    return (crop - size / 2) / scale + centre


def test_landmarks_of_a_tall_box_from_an_rgb_crop(tmp_path: Path) -> None:
    """The largest face wins (not the best score); its crop is 1.5x its larger side (the
    height here); the crop reaches the landmark model as RGB normalised by (x - 127.5) /
    128, so on a red face the stand-in moves its points by TILT * 2 * RED."""
    faces = {
        (32, 9, 9): (0.7, (1, 2, 3, 4)),  # the larger face: 128 x 192 px
        (16, 5, 5): (0.95, (1, 1, 1, 1)),  # a small one with a better score
    }
    lm = InsightFaceLandmarker(_root(tmp_path, faces))
    assert (lm.lmk_mean, lm.lmk_std, lm.lmk_size) == (127.5, 128.0, 192)
    res = lm.detect(_red(640, 640))
    box = [288 - 32, 288 - 64, 288 + 96, 288 + 128]
    np.testing.assert_allclose(res.boxes[0], box, atol=1e-3)
    want = _want_points(box, 192, TILT * 2 * RED)
    np.testing.assert_allclose(res.points[0], want, atol=2e-3)


def test_an_mxnet_landmark_model_gets_raw_pixels_at_its_own_size(tmp_path: Path) -> None:
    """A landmark model whose graph starts with MXNet's Sub and Mul normalises inside,
    so it is fed raw 0..255 pixels (landmark.py: mean 0, std 1); the crop size is the
    model's input size (128 here), not a fixed 192."""
    faces = {(32, 9, 9): (0.9, (2, 2, 2, 2))}
    lm = InsightFaceLandmarker(_root(tmp_path, faces, size=128, mxnet=True))
    assert (lm.lmk_mean, lm.lmk_std, lm.lmk_size) == (0.0, 1.0, 128)
    res = lm.detect(_red(640, 640))
    box = [288 - 64, 288 - 64, 288 + 64, 288 + 64]
    want = _want_points(box, 128, TILT * 255.0)
    np.testing.assert_allclose(res.points[0], want, atol=2e-3)


def _graph_with(path: Path, names: list[str]) -> Path:
    """A chain of Identity nodes with these names (only the names are read)."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"], name=n) for i, n in enumerate(names)
    ]
    inputs = [helper.make_tensor_value_info("t0", f, [1])]
    outputs = [helper.make_tensor_value_info(f"t{len(names)}", f, [1])]
    _save(nodes, inputs, outputs, [], path)
    return path


@pytest.mark.parametrize(
    ("names", "want"),
    [
        (["_minusscalar0", "_mulscalar0", "conv0"], True),
        (["Sub_0", "x", "y", "z", "w", "Mul_5", "conv"], True),  # both within the first 8
        (["Sub_0", "conv", "relu"], False),  # a Sub alone is not the preamble
        (["conv", "Mul_1", "relu"], False),  # nor a Mul alone
        (["x", "bn_data", "conv"], True),  # MXNet's bn_data among the first 3 nodes
        (["a", "b", "c", "bn_data", "conv"], False),  # but not later
        (["Sub_0", "a", "b", "c", "d", "e", "f", "g", "Mul_8"], False),  # the 9th: too far
    ],
)
def test_mxnet_normalisation_is_recognised_as_insightface_does(
    tmp_path: Path, names: list[str], want: bool
) -> None:
    assert _is_mxnet_normalised(_graph_with(tmp_path / "m.onnx", names)) is want


# --------------------------------------------------------------------------- model folder


def test_the_model_folder_from_env_and_home_and_the_missing_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``$INSIGHTFACE_ROOT`` and ``~`` are honoured, and the error for missing models says
    what to download even when the folder is not named buffalo_l."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("INSIGHTFACE_ROOT", raising=False)
    home = tmp_path / ".insightface" / "models" / "buffalo_l"
    home.mkdir(parents=True)
    for name in ("det_10g.onnx", "1k3d68.onnx"):
        (home / name).write_bytes(b"x")
    assert insightface_models() == home
    assert insightface_models("~/.insightface/models/buffalo_l") == home
    other = tmp_path / "mine"
    other.mkdir()
    monkeypatch.setenv("INSIGHTFACE_ROOT", str(other))
    with pytest.raises(ModelNotFoundError) as exc:
        insightface_models()
    msg = str(exc.value)
    assert str(other / "det_10g.onnx") in msg and str(other / "1k3d68.onnx") in msg
    assert "buffalo_l.zip" in msg and "--insightface-root" in msg
    for name in ("det_10g.onnx", "1k3d68.onnx"):
        (other / name).write_bytes(b"x")
    assert insightface_models() == other


# --------------------------------------------------------------------------- config


def test_config_documented_defaults_and_resolved_sizes() -> None:
    """SWMROConfig's documented defaults and resolved values: ROI 21 px, nose margin 13
    px and landmark start 8 px at 256 px, scaled with face_size; explicit values win;
    batch 16 / 128 and chunk 64 / 512 frames on CPU / CUDA; 32-frame landmark segments."""
    c = SWMROConfig()
    assert (c.landmark_segment, c.landmark_redetect, c.stride) == (32, 1, 1)
    assert (c.align_from_landmarks, c.landmarks, c.flow_backend) == (False, "dlib", "auto")
    assert (c.resolved_batch_size, c.resolved_chunk_size) == (16, 64)
    cuda = SWMROConfig(device="cuda:0")
    assert (cuda.resolved_batch_size, cuda.resolved_chunk_size) == (128, 512)
    assert c.align_init_min_px == 8.0 and SWMROConfig(face_size=320).align_init_min_px == 10.0
    assert SWMROConfig(face_size=320, align_init_min=3).align_init_min_px == 3.0
    assert SWMROConfig(face_size=320, nose_margin=5).nose_margin_px == 5.0
    assert SWMROConfig(face_size=320, roi_size=9).roi_size_px == 9
    resolved = SWMROConfig(face_size=320).to_dict()["resolved"]
    assert resolved["nose_margin"] == 16.25 and resolved["align_init_min"] == 10.0
    assert (resolved["roi_size"], resolved["nose_patch"]) == (27, 80)
    assert (resolved["batch_size"], resolved["chunk_size"]) == (16, 64)


def test_config_round_trips_every_field() -> None:
    """A config with every field off its default comes back from its JSON dict whole
    (the existing round trip changes 3 fields only, so a field to_dict lost came back
    as its default unnoticed)."""
    import dataclasses
    import json

    from sw_mro.config import NOSE_EDGES, ROI_EDGES

    c = SWMROConfig(
        window=9, face_size=128, roi_size=7, roi_landmarks=(17, 19, 21, 22, 24, 26, 48, 54),
        roi_groups=((0, 3), (3, 6), (6, 8)), nose_landmarks=(30, 33), nose_margin=5.0,
        nose_patch=48, crop_box="detector", box_scale=1.3, box_shift=0.1, align_tol=0.2,
        align_max_iter=2, align_from_landmarks=True, align_init_min=3.0,
        mdmo_edges=ROI_EDGES, mdmo_top=0.5, nose_edges=NOSE_EDGES, nose_top=0.9,
        pyr_scale=0.6, levels=2, winsize=11, iterations=3, poly_n=5, poly_sigma=1.1,
        flow_backend="opencv", landmarks="insightface", insightface_root="/models",
        device="cuda:1", batch_size=8, chunk_size=32, landmark_segment=16,
        landmark_redetect=4, landmark_workers=3, stride=7,
    )  # fmt: skip
    default = SWMROConfig()
    for f in dataclasses.fields(SWMROConfig):
        assert getattr(c, f.name) != getattr(default, f.name), f.name
    d = json.loads(json.dumps(c.to_dict()))
    assert set(d) == {f.name for f in dataclasses.fields(SWMROConfig)} | {"resolved"}
    assert SWMROConfig.from_dict(d) == c


def test_config_from_old_dicts_with_bin_counts() -> None:
    """``mdmo_bins`` / ``nose_bins`` of older versions become that many equal sectors; an
    ``mdmo_edges`` given beside them wins."""
    old = SWMROConfig.from_dict({"mdmo_bins": 6, "nose_bins": 3})
    assert old.mdmo_edges == (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)
    assert old.nose_edges == (0.0, 120.0, 240.0)
    both = SWMROConfig.from_dict({"mdmo_bins": 4, "mdmo_edges": [30, 150, 210, 330]})
    assert both.mdmo_edges == (30.0, 150.0, 210.0, 330.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"face_size": 1024}, {"landmark_workers": 1024}, {"align_max_iter": 0},
     {"face_size": 64, "roi_size": 64}, {"nose_margin": 0.0},
     {"face_size": 64, "nose_patch": 64}, {"nose_patch": 10},
     {"roi_landmarks": (0, 67), "roi_groups": ((0, 1), (1, 2))},
     {"box_scale": 10.0}, {"box_shift": -1.0}, {"box_shift": 1.0}, {"poly_n": 5},
     {"mdmo_edges": (0.0, 1.0)}, {"device": "cuda:12"}, {"winsize": 2}],
)  # fmt: skip
def test_config_accepts_the_ends_of_its_ranges(kwargs: dict) -> None:
    c = SWMROConfig(**kwargs)
    assert all(getattr(c, k) == v for k, v in kwargs.items())


@pytest.mark.parametrize(
    "kwargs",
    [{"face_size": 1025}, {"face_size": 100000}, {"landmark_workers": 1025},
     {"face_size": 64, "roi_size": 65}, {"nose_margin": -0.5},
     {"nose_margin": float("nan")}, {"nose_margin": float("inf")}, {"align_tol": float("inf")},
     {"face_size": 64, "nose_patch": 65}, {"roi_landmarks": (18, 68)},
     {"nose_landmarks": (-1, 30)}, {"roi_groups": ((0, 0), (0, 10))}, {"box_scale": 0.0},
     {"pyr_scale": 1.0}, {"pyr_scale": 0.0}, {"mdmo_top": 0.0}, {"nose_top": 0.0},
     {"mdmo_edges": (0.0, 90.0, 90.0, 270.0)}, {"poly_n": 9}, {"poly_sigma": 0.0},
     {"poly_sigma": -0.5}, {"device": "cuda:"}, {"levels": 0}, {"iterations": 0},
     {"stride": 0}, {"landmark_segment": 0}],
)  # fmt: skip
def test_config_rejects_just_outside_its_ranges(kwargs: dict) -> None:
    field = next(k for k in kwargs if k != "face_size" or len(kwargs) == 1)
    with pytest.raises(ValueError, match=rf"^SWMROConfig\.{field}="):
        SWMROConfig(**kwargs)


# --------------------------------------------------------------------------- shape model


def _tiny_dlib_model(rgb: np.ndarray, path: Path) -> tuple[Path, list[int]]:
    """A shape predictor trained here with dlib (3 cascades of 20 trees of depth 3, 9
    points around the astronaut's face); returns its path and the face box."""
    from test_shape_model import train_tiny_dlib_model

    shifts = [(0, 0), (12, -7), (-9, 5), (6, 14)]
    box = train_tiny_dlib_model(rgb, path, shifts, every=8, trees=20, oversampling=2, pool=40)
    return path, box


def _int_at(b: bytes, p: int) -> tuple[int, int]:
    """One dlib-serialized integer (control byte: size | 0x80 if negative; then the
    magnitude's bytes, little-endian)."""
    size = b[p] & 0x0F
    v = int.from_bytes(b[p + 1 : p + 1 + size], "little")
    return (-v if b[p] & 0x80 else v), p + 1 + size


def _pack_int(v: int) -> bytes:
    body = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def _rewrite(src: Path, dst: Path, *, thresh: int | None = None, split: int | None = None,
             anchor: int | None = None) -> None:  # fmt: skip
    """``src`` with every split threshold set to ``thresh`` (a float as mantissa
    ``thresh``, exponent 0) and leaves that tell the paths apart (the trained ones are
    ~0: the tiny training set has one shape), the first split's first feature index set
    to ``split``, or the first feature pixel's anchor landmark set to ``anchor``."""
    b = src.read_bytes()
    out = bytearray()
    p = 0

    def copy_ints(n: int) -> list[int]:
        nonlocal p
        vals = []
        for _ in range(n):
            v, q = _int_at(b, p)
            out.extend(b[p:q])
            vals.append(v)
            p = q
        return vals

    _, nr, nc = copy_ints(3)
    copy_ints(2 * abs(nr) * abs(nc))  # the mean shape (a float is 2 ints)
    (n_casc,) = copy_ints(1)
    first = True
    for _ in range(n_casc):
        (n_trees,) = copy_ints(1)
        for _ in range(n_trees):
            (n_splits,) = copy_ints(1)
            for _ in range(n_splits):
                i, q = _int_at(b, p)
                if first and split is not None:
                    out.extend(_pack_int(split))
                else:
                    out.extend(b[p:q])
                p = q
                first = False
                copy_ints(1)
                if thresh is None:
                    copy_ints(2)
                else:
                    _, p = _int_at(b, _int_at(b, p)[1])
                    out.extend(_pack_int(thresh) + _pack_int(0))
            (n_leaves,) = copy_ints(1)
            for leaf in range(n_leaves):
                lr, lc = copy_ints(2)
                if thresh is None:
                    copy_ints(2 * abs(lr) * abs(lc))
                else:  # leaf k moves every point by (k + 1) / 1024 of the box
                    for _ in range(2 * abs(lr) * abs(lc)):
                        p = _int_at(b, p)[1]
                    out.extend((_pack_int(leaf + 1) + _pack_int(-10)) * (abs(lr) * abs(lc)))
    copy_ints(2)  # the number of anchor lists, the first list's length
    if anchor is not None:
        _, p = _int_at(b, p)
        out.extend(_pack_int(anchor))
    out.extend(b[p:])
    dst.write_bytes(bytes(out))


def test_shape_model_ties_and_bad_indices(astronaut_rgb: np.ndarray, tmp_path: Path) -> None:
    """With every split threshold 0, pixel differences of exactly 0 are common (two
    pixels outside the image, flat regions): dlib goes right on a tie (left only when the
    difference is over the threshold), and so must the port, on boxes partly outside the
    image too. A feature index or anchor landmark one past the end is a format error."""
    dlib = pytest.importorskip("dlib")
    from sw_mro.io import landmarks as lm_mod
    from sw_mro.io.shape_model import ShapeModel, ShapeModelFormatError

    trained, box = _tiny_dlib_model(astronaut_rgb, tmp_path / "tiny.dat")
    model = ShapeModel.read(trained)
    n_pix, n_parts = model.anchors.shape[1], model.num_parts
    assert model.splits.shape[:3] == (3, 20, 7) and n_parts == 9
    zero = tmp_path / "zero.dat"
    _rewrite(trained, zero, thresh=0)
    ours, ref = ShapeModel.read(zero), dlib.shape_predictor(str(zero))
    assert (ours.thresh == 0).all() and (ours.leaves[:, :, -1] == 8 / 1024).all()
    np.testing.assert_array_equal(ours.splits, model.splits)
    x0, y0, x1, y1 = box
    side = x1 - x0
    cases = [box] + [
        [x0 + dx, y0 + dy, x1 + dx + ds, y1 + dy + ds]
        for dx in (-side, -side // 2, 0, 400)
        for dy in (-side, 0, 300)
        for ds in (0, 40)
    ]
    for b in cases:
        np.testing.assert_array_equal(
            ours.predict(astronaut_rgb, b), lm_mod._dlib_points(ref, astronaut_rgb, b)
        )
    for kind, value in (("split", n_pix), ("anchor", n_parts)):
        bad = tmp_path / f"{kind}.dat"
        _rewrite(trained, bad, **{kind: value})
        with pytest.raises(ShapeModelFormatError, match="index out of range"):
            ShapeModel.read(bad)
        _rewrite(trained, bad, **{kind: value - 1})
        ShapeModel.read(bad)  # the last valid index is taken
