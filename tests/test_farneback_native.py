"""The C++ CPU backend (``backend="native"``, sw_mro/ops/farneback_cpu.cpp).

Its solver must compute exactly what the numba engine computes (same operations, same
order): compared bit for bit on the same expansions, in three builds (``ISAS``: this
CPU's, with AVX-512 where it has it; AVX2; x86-64-v2, the scalar loop), with NaN,
-0.0 and out-of-image cases, and 1-px images; an AddressSanitizer build checks that no
access leaves the buffers. Its expansion is compared with the torch expansion (same operators,
another summation order). Parity with cv2 itself is in tests/test_farneback.py
(``native`` is one of its ENGINES). The rest: threads, the build cache, and the clear
errors and fallbacks when no compiler or a broken one is found.
"""

from __future__ import annotations

import os
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_farneback import PARAM_SETS, _carphone_frames, kwargs_of, need_native, scenes
from tolerances import TOL

from sw_mro.ops import _farneback_native as nat
from sw_mro.ops import _farneback_numba as numba_engine
from sw_mro.ops import farneback, farneback_pairs
from sw_mro.ops._farneback_expand import expand_frames as torch_expand
from sw_mro.ops._farneback_kernels import FarnebackParams

pytestmark = pytest.mark.usefixtures("native_built")


@pytest.fixture(scope="module")
def native_built() -> None:
    need_native()


#: The code paths of update-matrices, by instruction set: this CPU's build (AVX-512 on
#: the dev VM), an AVX2 build (8-lane gathers) and an x86-64-v2 build (the scalar loop).
ISAS = ["native", "x86-64-v3", "x86-64-v2"]


@pytest.fixture(scope="module")
def isa_libs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import platform

    libs: dict = {"native": None}  # None: this process's library
    if platform.machine() in ("x86_64", "AMD64"):
        base = tuple(f for f in nat.FLAGS if f != "-march=native")
        out = tmp_path_factory.mktemp("isa")
        for isa in ISAS[1:]:
            libs[isa] = nat.load(
                nat.build(nat._compiler(), flags=(*base, f"-march={isa}"), out_dir=out)
            )
    return libs


@pytest.fixture(params=ISAS)
def lib(request: pytest.FixtureRequest, isa_libs: dict):
    if request.param not in isa_libs:  # an environment limit: x86 levels off x86
        pytest.skip(f"-march={request.param} is for x86-64")
    return isa_libs[request.param]


def _params(params: tuple, gaussian: bool) -> FarnebackParams:
    return FarnebackParams(**kwargs_of(params, gaussian))


def _frames(height: int, width: int, count: int = 6) -> torch.Tensor:
    """Real carphone frames resized to (height, width), float32."""
    import cv2

    frames = _carphone_frames(*range(0, 2 * count, 2))
    return torch.from_numpy(
        np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])
    ).float()


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit: tells -0.0 from +0.0 and compares NaNs (torch.equal does neither)."""
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def _sw_mro_pairs(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    ref = torch.zeros(count - 1, dtype=torch.long)
    return ref, torch.arange(1, count)


# --------------------------------------------------------------------------- solver


@pytest.mark.parametrize("gaussian", [False, True], ids=["box", "gaussian"])
@pytest.mark.parametrize(
    ("shape", "params"),
    [
        ((128, 128), PARAM_SETS["spec"]),
        ((256, 256), PARAM_SETS["opencv-doc"]),
        ((75, 90), (0.5, 3, 14, 4, 5, 1.1)),  # rows not a multiple of 16: the scalar tail
        ((40, 52), (0.7, 4, 9, 2, 5, 1.1)),  # one level
    ],
)
def test_solver_bit_equals_numba(shape, params, gaussian: bool, lib) -> None:
    """Same expansions in, the same flows out, bit for bit, with and without init_flow."""
    p = _params(params, gaussian)
    exp = torch_expand(_frames(*shape), p)
    ref, tgt = _sw_mro_pairs(6)
    want = numba_engine.solve_pairs(exp, ref, tgt, p)
    got = nat.solve_pairs(exp, ref, tgt, p, lib=lib)
    assert same_bits(got, want), f"max |diff| {(got - want).abs().max():.3e}"
    assert got.abs().max() > 0.1  # real motion, not two zero fields
    init = torch.randn(len(ref), 2, *shape, generator=torch.Generator().manual_seed(1)) * 2
    want = numba_engine.solve_pairs(exp, ref, tgt, p, init)
    got = nat.solve_pairs(exp, ref, tgt, p, init, lib=lib)
    assert same_bits(got, want), f"init_flow: max |diff| {(got - want).abs().max():.3e}"


def test_solver_out_of_image_and_nan_flows_equal_numba(lib) -> None:
    """Initial flows that leave the image (the R0-only rule of note 5) and NaN flows take
    the same branch as in the numba engine, lane for lane in the vector path."""
    p = FarnebackParams(levels=0, iterations=2)
    shape = (64, 80)
    exp = torch_expand(_frames(*shape), p)
    ref, tgt = _sw_mro_pairs(4)
    init = torch.zeros(len(ref), 2, *shape)
    init[0, 0] = torch.linspace(-100, 100, shape[1])  # far out on both sides
    rows = torch.arange(shape[0], dtype=torch.float32)[:, None]
    init[1, 1, :, :40] = 63.0 - rows  # y + dy lands exactly on h - 1 (out), then inside
    init[1, 1, :, 40:] = 62.999 - rows
    init[2, :, 10:20, 17:33] = float("nan")
    want = numba_engine.solve_pairs(exp, ref, tgt, p, init)
    got = nat.solve_pairs(exp, ref, tgt, p, init, lib=lib)
    assert same_bits(got, want)
    assert torch.isnan(got[2]).any() and torch.isfinite(got[0]).all()


@pytest.mark.parametrize("gaussian", [False, True], ids=["box", "gaussian"])
def test_out_of_bounds_never_reads_the_target(gaussian: bool, lib) -> None:
    """Out of bounds only R0 is used (note 5): a NaN in the target's expansion where an
    out-of-image sample is clamped to must not leak in, and R0's -0.0 stays -0.0."""
    p = FarnebackParams(levels=0, iterations=1, winsize=5, gaussian=gaussian)
    h, w = 40, 40
    ref, tgt = torch.tensor([0]), torch.tensor([1])
    init = torch.zeros(1, 2, h, w)
    init[:, 0] = -50.0  # every sample leaves the image on the left
    e = torch.rand(2, 5, h, w, generator=torch.Generator().manual_seed(0))
    e[1, :, 10, 0] = float("nan")  # where the clamped samples of row 10 land
    want = numba_engine.solve_pairs([e], ref, tgt, p, init)
    got = nat.solve_pairs([e], ref, tgt, p, init, lib=lib)
    assert not torch.isnan(want).any() and same_bits(got, want)
    e = torch.zeros(2, 5, h, w)
    e[0, 0], e[0, 1], e[0, 2], e[0, 4] = 2.0, -2.0, -0.0, 1.0  # YY = -0 in R0
    want = numba_engine.solve_pairs([e], ref, tgt, p, init)
    got = nat.solve_pairs([e], ref, tgt, p, init, lib=lib)
    assert same_bits(got, want)


@pytest.mark.parametrize("shape", [(1, 1), (1, 21), (19, 1), (2, 2), (3, 17)])
def test_tiny_images_bit_equal_numba(shape, lib) -> None:
    """Images 1 px wide or high have no in-bounds sample: the taps must stay inside the
    plane (they collapse onto the clamped position) and the R0-only rule applies."""
    p = FarnebackParams(levels=0, iterations=3, winsize=5)
    frames = torch.rand(4, *shape, generator=torch.Generator().manual_seed(2)) * 255
    exp = torch_expand(frames, p)
    ref, tgt = _sw_mro_pairs(4)
    init = torch.randn(len(ref), 2, *shape, generator=torch.Generator().manual_seed(3))
    for flow in (None, init):
        want = numba_engine.solve_pairs(exp, ref, tgt, p, flow)
        assert same_bits(nat.solve_pairs(exp, ref, tgt, p, flow, lib=lib), want)


def test_solver_writes_into_out_and_checks_it() -> None:
    p = _params(PARAM_SETS["spec"], False)
    exp = torch_expand(_frames(64, 64, 3), p)
    ref, tgt = _sw_mro_pairs(3)
    out = torch.full((2, 2, 64, 64), float("nan"))
    assert nat.solve_pairs(exp, ref, tgt, p, out=out) is out and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="contiguous float32"):
        nat.solve_pairs(exp, ref, tgt, p, out=torch.empty(2, 64, 64, 2).permute(0, 3, 1, 2))
    with pytest.raises(IndexError, match="tgt_idx"):
        nat.solve_pairs(exp, ref, torch.tensor([1, 3]), p)


_ASAN_SCRIPT = """
import sys, torch
from pathlib import Path
from sw_mro.ops import _farneback_native as nat
from sw_mro.ops._farneback_kernels import FarnebackParams
lib = nat.load(Path(sys.argv[1]))
g = torch.Generator().manual_seed(0)
for shape in [(1, 1), (1, 21), (19, 1), (2, 2), (3, 17), (40, 52)]:
    for gaussian in (False, True):
        p = FarnebackParams(levels=3, iterations=3, winsize=5, gaussian=gaussian)
        exp = nat.expand_frames(torch.rand(4, *shape, generator=g) * 255, p, lib=lib)
        ref, tgt = torch.arange(1, 4), torch.tensor([0, 0, 3])  # frame 0 and the last
        init = torch.randn(3, 2, *shape, generator=g) * 40
        init[1, :, : shape[0] // 2] = float("nan")
        init[2] = 1e30
        nat.solve_pairs(exp, ref, tgt, p, init, lib=lib)
print("done")
"""


def test_no_out_of_bounds_access_under_address_sanitizer(tmp_path: Path) -> None:
    """The scalar path built with AddressSanitizer over tiny and odd shapes, both windows,
    NaN and huge initial flows, first and last frames as targets: no access outside the
    buffers. (This catches the taps of a 1-px-wide image reading before the plane; ASan
    does not see inside AVX-512 gathers, whose indices are the same clamped ones.)"""
    import subprocess
    import sys

    compiler = nat._compiler()
    asan = subprocess.run(
        [compiler, "-print-file-name=libasan.so"], capture_output=True, text=True
    ).stdout.strip()
    if not os.path.isabs(asan):  # an environment limit: this compiler has no ASan runtime
        pytest.skip(f"{compiler} has no AddressSanitizer runtime")
    flags = tuple(f for f in nat.FLAGS if f not in ("-march=native", "-O3"))
    flags += ("-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer")
    lib = nat.build(compiler, flags=flags, out_dir=tmp_path)
    env = dict(os.environ, LD_PRELOAD=asan, ASAN_OPTIONS="detect_leaks=0")
    run = subprocess.run(
        [sys.executable, "-c", _ASAN_SCRIPT, str(lib)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0 and "done" in run.stdout, run.stderr[-3000:]
    assert "AddressSanitizer" not in run.stderr


def test_threads_give_identical_flows_and_expansions() -> None:
    p = _params(PARAM_SETS["spec"], False)
    frames = _frames(128, 128, 8)
    one = nat.expand_frames(frames, p, threads=1)
    two = nat.expand_frames(frames, p, threads=3)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    ref, tgt = _sw_mro_pairs(8)
    assert torch.equal(
        nat.solve_pairs(one, ref, tgt, p, threads=1), nat.solve_pairs(one, ref, tgt, p, threads=4)
    )


# --------------------------------------------------------------------------- expansion


@pytest.mark.parametrize(
    ("shape", "params"),
    [
        ((256, 256), PARAM_SETS["spec"]),
        ((144, 176), PARAM_SETS["opencv-doc"]),
        ((75, 100), (0.5, 3, 14, 4, 5, 1.1)),  # odd level sizes
        ((96, 96), (0.6, 5, 11, 3, 7, 1.5)),  # non-integer resize ratios
    ],
)
def test_expansion_matches_torch_expansion(shape, params) -> None:
    """Same operators and taps as the torch engine, float32 sums in another order."""
    p = _params(params, False)
    frames = _frames(*shape)
    want = torch_expand(frames, p)
    got = nat.expand_frames(frames, p)
    assert len(got) == len(want)
    for level, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape
        rel = float((g - w).abs().max() / w.abs().max())
        assert rel <= TOL["expansion_native_vs_torch_rel"], f"level {level}: {rel:.2e}"


def test_native_backend_matches_numba_backend_end_to_end() -> None:
    """farneback_pairs(native) vs (numba): only the expansion's rounding differs."""
    names, prevs, nexts = scenes(128)
    frames = torch.from_numpy(np.concatenate([prevs, nexts]))
    n = len(names)
    ref, tgt = torch.arange(n), torch.arange(n) + n
    for gaussian in (False, True):
        kw = kwargs_of(PARAM_SETS["spec"], gaussian)
        got = farneback_pairs(frames, ref, tgt, backend="native", **kw)
        want = farneback_pairs(frames, ref, tgt, backend="numba", **kw)
        e = (got - want).double().norm(dim=1)
        assert float(e.mean()) <= TOL["flow_native_vs_numba_mean"], float(e.mean())


# --------------------------------------------------------------------------- building


def test_build_is_cached_and_keyed(tmp_path: Path) -> None:
    compiler = nat._compiler()
    first = nat.build(compiler, out_dir=tmp_path)
    mtime = first.stat().st_mtime_ns
    assert nat.build(compiler, out_dir=tmp_path) == first  # found, not rebuilt
    assert first.stat().st_mtime_ns == mtime
    other = nat.build(compiler, flags=(*nat.FLAGS, "-DSW_MRO_KEY_TEST"), out_dir=tmp_path)
    assert other != first and other.exists()  # other flags, another file
    assert not list(tmp_path.glob("*.tmp"))  # no temporary left behind


def test_concurrent_first_builds_agree(tmp_path: Path) -> None:
    """Threads that build into one empty folder and load at once all get a whole
    library (the rename is atomic), and no temporary file is left."""
    compiler = nat._compiler()
    results: list[tuple[Path, int]] = []
    errors: list[BaseException] = []

    def build_and_use() -> None:
        try:
            path = nat.build(compiler, out_dir=tmp_path)
            lib = nat.load(path)  # at once, while the others may still be writing
            exp = nat.expand_frames(torch.full((1, 40, 40), 7.0), FarnebackParams(), lib=lib)
            results.append((path, int(torch.isfinite(exp[0]).all())))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build_and_use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 3 and len({p for p, _ in results}) == 1
    assert all(ok for _, ok in results)
    assert not list(tmp_path.glob("*.tmp"))
    assert results[0][0].stat().st_mode & 0o055 == 0o055  # usable by other users


def _fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nat, "_lib", None)
    monkeypatch.setattr(nat, "_reason", None)
    monkeypatch.setattr(nat, "_path", None)


def test_no_compiler_falls_back_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from sw_mro import SWMROConfig
    from sw_mro.pipeline import flow_backend

    fb_module = importlib.import_module("sw_mro.ops.farneback")  # the module, not the function

    _fresh_state(monkeypatch)
    monkeypatch.setattr(nat, "_compiler", lambda: None)
    assert not nat.available()
    assert "no C++ compiler" in nat.unavailable_reason()
    img = torch.rand(40, 40) * 255
    with pytest.raises(nat.NativeBuildError, match="no C.. compiler"):
        farneback(img, img, backend="native")
    assert fb_module._resolve_backend("auto", torch.device("cpu")) == fb_module.CPU_AUTO_BACKEND
    assert flow_backend(SWMROConfig(), torch.device("cpu")) == "opencv"
    assert farneback(img, torch.roll(img, 1, 1)).shape == (1, 2, 40, 40)  # auto still works


def test_broken_compiler_reports_its_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "fake-g++"
    fake.write_text("#!/bin/sh\necho 'fake-g++: fatal error: out of licences' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    _fresh_state(monkeypatch)
    monkeypatch.setenv("CXX", str(fake))
    monkeypatch.setenv("SW_MRO_CACHE", str(tmp_path / "cache"))
    assert not nat.available()
    reason = nat.unavailable_reason()
    assert "out of licences" in reason and "exit 3" in reason and "farneback_cpu.cpp" in reason
    assert not list((tmp_path / "cache").rglob("*.so"))  # nothing half-written is kept
    # The extraction says so (found in review: it fell back to OpenCV without a word,
    # and the features changed by up to 0.0055 px); no compiler, or SW_MRO_NATIVE=0, not.
    from sw_mro import SWMROConfig
    from sw_mro.pipeline import flow_backend

    with pytest.warns(RuntimeWarning, match="C.. Farneback could not be built or loaded .*out of licences"):
        assert flow_backend(SWMROConfig(), torch.device("cpu")) == "opencv"
    with warnings.catch_warnings():  # once per reason (found in review: 3 times an input)
        warnings.simplefilter("error")
        assert flow_backend(SWMROConfig(), torch.device("cpu")) == "opencv"
    for quiet in ("no C++ compiler found", "turned off by SW_MRO_NATIVE=0"):
        monkeypatch.setattr(nat, "_reason", quiet)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert flow_backend(SWMROConfig(), torch.device("cpu")) == "opencv"


def test_turned_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh_state(monkeypatch)
    monkeypatch.setenv("SW_MRO_NATIVE", "0")
    assert not nat.available() and "SW_MRO_NATIVE=0" in nat.unavailable_reason()


def test_cache_folder_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fresh_state(monkeypatch)
    monkeypatch.setenv("SW_MRO_CACHE", str(tmp_path))
    assert nat.available()
    path = nat.library_path()
    assert path is not None and Path(os.path.commonpath([path, tmp_path])) == tmp_path


def test_a_broken_cached_library_is_rebuilt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A zero-byte file under the library's name (a crash, a full disk) is replaced."""
    path = nat.build(nat._compiler(), out_dir=tmp_path / "native")
    path.write_bytes(b"")
    _fresh_state(monkeypatch)
    monkeypatch.setenv("SW_MRO_CACHE", str(tmp_path))
    assert nat.available(), nat.unavailable_reason()
    assert nat.library_path() == path and path.stat().st_size > 0


@pytest.mark.parametrize("temp_usable", [True, False], ids=["temp-ok", "temp-blocked"])
def test_unwritable_cache_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, temp_usable: bool
) -> None:
    """A cache folder that cannot be made falls back to the temporary directory; if that
    fails too, the reason names the folder and SW_MRO_CACHE."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    temp = tmp_path / "tmp"
    temp.mkdir()
    _fresh_state(monkeypatch)
    monkeypatch.setenv("SW_MRO_CACHE", str(blocker))
    monkeypatch.setattr(nat.tempfile, "tempdir", str(temp if temp_usable else blocker))
    if temp_usable:
        assert nat.available(), nat.unavailable_reason()
        assert nat.library_path().is_relative_to(temp)
    else:
        assert not nat.available()
        reason = nat.unavailable_reason()
        assert str(blocker) in reason and "SW_MRO_CACHE" in reason


def test_wrapper_rejects_what_the_cpp_side_cannot_take() -> None:
    p = _params(PARAM_SETS["spec"], False)
    exp = nat.expand_frames(_frames(64, 64, 3), p)
    ref, tgt = _sw_mro_pairs(3)
    with pytest.raises(ValueError, match="pairs but tgt_idx"):
        nat.solve_pairs(exp, ref, tgt[:1], p)
    with pytest.raises(ValueError, match="expansion level 1"):
        nat.solve_pairs([exp[0], exp[1][:2], *exp[2:]], ref, tgt, p)
    with pytest.raises(ValueError, match="init_flow must be"):
        nat.solve_pairs(exp, ref, tgt, p, torch.zeros(1, 2, 64, 64))
    with pytest.raises(ValueError, match="CPU tensor"):
        nat.solve_pairs([e.to("meta") for e in exp], ref, tgt, p)
    with pytest.raises(ValueError, match="pyr_scale"):
        nat.expand_frames(_frames(64, 64, 1), FarnebackParams(pyr_scale=1.5))
    with pytest.raises(ValueError, match=r"\(F, H, W\)"):
        nat.expand_frames(torch.zeros(64, 64), p)
