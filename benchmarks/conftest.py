"""Benchmark fixtures: every benchmark records the device, versions and git commit.

Run them for figures with ``make bench`` (``--benchmark-autosave``) and compare runs
with ``pytest-benchmark compare``. CI runs them once with ``--benchmark-disable`` so
that they stay correct; their correctness assertions run after timing.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def run_info() -> dict[str, str]:
    import cv2
    import numpy

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    info = {
        "commit": commit or "unknown",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": str(torch.get_num_threads()),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    try:
        import cupy

        info["cupy"] = cupy.__version__
    except Exception:  # cupy is optional; any import failure just means "not there"
        info["cupy"] = "not installed"
    return info


@pytest.fixture(autouse=True)
def _record_run_info(request: pytest.FixtureRequest) -> None:
    if "benchmark" in request.fixturenames:
        request.getfixturevalue("benchmark").extra_info.update(run_info())


def sync(device: torch.device | str) -> None:
    """Wait for queued GPU work so that a timed function measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def flow_variant(monkeypatch: pytest.MonkeyPatch, variant: str) -> str:
    """``"<backend>[-<cupy solver>]"`` (e.g. ``"cupy-split"``, ``"auto"``): set the CuPy
    solver for this test (default ``"box"``) and return the backend name."""
    backend, _, solver = variant.partition("-")
    if backend in ("cupy", "auto"):
        import sw_mro.cuda.farneback as fbcuda

        monkeypatch.setattr(fbcuda, "SOLVER", solver or "box")
    return backend
