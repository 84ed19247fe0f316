"""Shared fixtures. The whole suite runs on CPU; ``--device cuda`` reruns it on a GPU.

Random data comes from seeded generators on CPU and is then moved to the device.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sw_mro.io.samples import astronaut, carphone_path


def pytest_configure(config: pytest.Config) -> None:
    _signals_as_in_a_terminal()


def _signals_as_in_a_terminal() -> None:
    """The suite tests how Ctrl-C, a hang-up and SIGTERM stop a run, in this process and
    in the commands it starts, as they come in a terminal. Started in the background by
    a shell without job control (``make test &`` in a script) SIGINT is ignored, and
    under ``nohup`` SIGHUP is; both stay ignored in every child, so those tests failed and
    one hung (found when the suite ran as ``(nohup make test &)``). An ignored SIGINT gets
    Python's default handler (KeyboardInterrupt); an ignored SIGHUP a handler that does
    nothing, so that this process still outlives a hang-up while its children start with
    SIGHUP at its default (a signal that is caught, not ignored, is reset by exec)."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    hup = getattr(signal, "SIGHUP", None)  # not on Windows
    if hup is not None and signal.getsignal(hup) is signal.SIG_IGN:
        signal.signal(hup, _outlive_a_hangup)


def _outlive_a_hangup(signum: int, frame: object) -> None:
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device", default="cpu", help="torch device for device-generic tests (cpu or cuda)"
    )


def _cuda_ok() -> bool:
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_ok():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not _cuda_ok():
        pytest.skip("--device cuda given but no CUDA device is available")
    return torch.device(name)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def carphone() -> str:
    return str(carphone_path())


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    return astronaut()


@pytest.fixture(scope="session")
def astronaut_gray(astronaut_rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)


@pytest.fixture()
def one_torch_thread():
    """torch on one thread for the test (tiny models run fastest so; see test_models.py).
    A module takes it for all its tests with ``pytestmark = pytest.mark.usefixtures(...)``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
