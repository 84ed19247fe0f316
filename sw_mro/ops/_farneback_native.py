"""Farneback in C++ for CPU (``backend="native"``), built on first use.

``farneback_cpu.cpp`` (next to this file) has two entry points:

- ``fb_expand``: every frame's pyramid levels and polynomial expansions, with the torch
  engine's operators and taps (:mod:`sw_mro.ops._farneback_expand`), summed in float32
  in another order (about 4e-7 relative apart, tested); 2.6x the torch expansion's
  speed per core.
- ``fb_solve_pairs``: the per-pair iterations on shared expansions. They compute exactly
  what the numba engine (:mod:`sw_mro.ops._farneback_numba`) computes, operation for
  operation (tested bit for bit on the same expansions), with loops the compiler
  vectorises and, where the CPU has AVX-512 or AVX2, an intrinsics update-matrices
  (gathers);
  about 2x the numba solver's speed per core.

Both run on their own ``std::thread`` workers; ctypes releases the GIL for the call.

Building: the first call compiles the source with the system C++ compiler (``$CXX``, else
``g++``, ``c++`` or ``clang++``) with ``-O3 -march=native -ffp-contract=off`` into a cache
folder (``$SW_MRO_CACHE``, else ``$XDG_CACHE_HOME/sw_mro``, else ``~/.cache/sw_mro``),
under a name that hashes the source, the flags, the compiler's version and this
machine's CPU, so a cluster node never loads
a library built for another CPU. The build writes a temporary file and renames it
(atomic; concurrent first calls are safe). 1-3 s once per machine. When no compiler
is found, or the build fails, :func:`available` is False and says why in
:func:`unavailable_reason`; ``backend="auto"`` then falls back (sw_mro.ops.farneback).
Set ``SW_MRO_NATIVE=0`` to turn the backend off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from sw_mro.ops._farneback_kernels import (
    BORDER_WEIGHTS,
    DET_EPS,
    FarnebackParams,
    correlation_matrix,
    gaussian_kernel_1d,
    linear_resize_matrix,
    plan_levels,
    poly_kernels,
    window_kernel,
)

__all__ = [
    "NativeBuildError",
    "available",
    "build",
    "expand_frames",
    "library_path",
    "load",
    "solve_pairs",
    "unavailable_reason",
]

SOURCE = Path(__file__).with_name("farneback_cpu.cpp")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-pthread")
FLAGS += ("-std=c++17", "-shared", "-fPIC")
_BORDER = np.array(BORDER_WEIGHTS, dtype=np.float32)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_reason: str | None = None
_path: Path | None = None


class NativeBuildError(RuntimeError):
    """The C++ backend could not be built or loaded; the message says why."""


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_tag() -> str:
    """What identifies this CPU's instruction set (``-march=native`` depends on it)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith(("flags", "Features")):
                return line + platform.machine()
    except OSError:
        pass
    return platform.processor() + platform.machine()


def _cache_dir() -> Path:
    """``$SW_MRO_CACHE``, else ``$XDG_CACHE_HOME/sw_mro``, else ``~/.cache/sw_mro``."""
    root = os.environ.get("SW_MRO_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        if base.startswith("~"):  # no home directory to expand into
            base = os.path.join(tempfile.gettempdir(), f"sw_mro-cache-{os.getuid()}")
        root = os.path.join(base, "sw_mro")
    return Path(root) / "native"


def build(compiler: str, flags: tuple[str, ...] = FLAGS, out_dir: Path | None = None) -> Path:
    """Compile ``farneback_cpu.cpp`` (or find it already compiled) and return the library.

    The file name hashes the source, the flags, the compiler's version and the CPU. The
    compiler writes a temporary file, which is flushed to disk, made readable by other
    users (a shared cache) and then renamed into place (atomic). Raises
    :class:`NativeBuildError` with the compiler's message if it fails, and ``OSError`` if
    the folder cannot be written.
    """
    src = SOURCE.read_bytes()
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, check=False
    ).stdout
    key = hashlib.sha256(
        b"\0".join([src, " ".join(flags).encode(), version.encode(), _cpu_tag().encode()])
    ).hexdigest()[:16]
    out_dir = out_dir or _cache_dir()
    lib = out_dir / f"farneback_cpu-{key}.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=lib.name + ".", suffix=".tmp", dir=out_dir)
    os.close(fd)
    try:
        run = subprocess.run(
            [compiler, *flags, "-o", tmp, str(SOURCE)], capture_output=True, text=True
        )
        if run.returncode != 0:
            raise NativeBuildError(
                f"{compiler} failed to build {SOURCE} (exit {run.returncode}):\n"
                f"{(run.stderr or run.stdout).strip()[-2000:]}"
            )
        with open(tmp, "rb") as fh:  # on disk before the name appears (power loss)
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)  # mkstemp made it owner-only
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def load(path: Path) -> ctypes.CDLL:
    """Load a built library and declare its two entry points."""
    lib = ctypes.CDLL(str(path))
    c = ctypes
    ptrs = c.POINTER(c.c_void_p)
    ints = c.POINTER(c.c_int)
    lib.fb_solve_pairs.restype = c.c_int
    lib.fb_solve_pairs.argtypes = [
        ptrs, ints, ints, c.c_int,
        c.c_void_p, c.c_void_p, c.c_int64, c.c_void_p, c.c_void_p,
        c.c_int, c.c_int, c.c_int, c.c_void_p,
        c.c_double, c.c_double, c.c_float, c.c_void_p, c.c_int,
    ]  # fmt: skip
    lib.fb_expand.restype = c.c_int
    lib.fb_expand.argtypes = [
        c.c_void_p, c.c_int64, c.c_int, c.c_int, c.c_int, ints, ints,
        ptrs, ptrs, ints, ptrs, ptrs, ints, c.c_int,
        c.c_void_p, c.c_void_p, ptrs, c.c_int,
    ]  # fmt: skip
    return lib


def _build_and_load(compiler: str, out_dir: Path) -> tuple[Path, ctypes.CDLL]:
    """Build (or find) the library in ``out_dir`` and load it. A cached file that does not
    load (truncated, or missing a symbol) is removed and built once more."""
    path = build(compiler, out_dir=out_dir)
    try:
        return path, load(path)
    except (OSError, AttributeError):
        path.unlink(missing_ok=True)
        path = build(compiler, out_dir=out_dir)
        return path, load(path)


def _load() -> ctypes.CDLL | None:
    """The library of this process: built and loaded once; None (and ``_reason``) if not.

    If the cache folder cannot be written, a folder under the system's temporary
    directory is tried before giving up; the reason names both.
    """
    global _lib, _reason, _path
    with _lock:
        if _lib is not None or _reason is not None:
            return _lib
        if os.environ.get("SW_MRO_NATIVE", "1") == "0":
            _reason = "turned off by SW_MRO_NATIVE=0"
            return None
        compiler = _compiler()
        if compiler is None:
            _reason = "no C++ compiler found (install g++, or set CXX to one)"
            return None
        cache = _cache_dir()
        fallback = Path(tempfile.gettempdir()) / f"sw_mro-native-{os.getuid()}"
        try:
            try:
                _path, _lib = _build_and_load(compiler, cache)
            except OSError as exc:  # e.g. a read-only cache folder
                first = f"cannot use the cache folder {cache} ({exc}); set SW_MRO_CACHE"
                try:
                    _path, _lib = _build_and_load(compiler, fallback)
                except OSError as exc2:
                    raise NativeBuildError(f"{first}; {fallback} failed too ({exc2})") from exc2
        except Exception as exc:  # anything else: fall back, never crash the caller
            _reason = str(exc) or type(exc).__name__
        return _lib


def _check(status: int, what: str) -> None:
    if status == 1:
        raise MemoryError(f"native Farneback: out of memory in {what}")
    if status != 0:
        raise RuntimeError(f"native Farneback: {what} failed (C++ error {status})")


def _require(lib: ctypes.CDLL | None) -> ctypes.CDLL:
    lib = lib or _load()
    if lib is None:
        raise NativeBuildError(f"the native Farneback backend is unavailable: {_reason}")
    return lib


def available() -> bool:
    """Whether the C++ solver is built and loaded (builds it on the first call)."""
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why :func:`available` is False (None when it is True or was not asked yet)."""
    _load()
    return _reason


def library_path() -> Path | None:
    """The cached shared library in use (None when unavailable)."""
    _load()
    return _path


def solve_pairs(
    expansions: list[torch.Tensor],
    ref_idx: torch.Tensor,
    tgt_idx: torch.Tensor,
    params: FarnebackParams,
    init_flow: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    threads: int | None = None,
    lib: ctypes.CDLL | None = None,
) -> torch.Tensor:
    """Flows (P, 2, H, W) of pairs (ref_idx[i] -> tgt_idx[i]) of CPU expansions.

    ``expansions``: per level (F, 5, h, w) float32 as :func:`expand_frames` returns;
    ``init_flow``: (P, 2, H, W) float32 or None; ``threads``: worker threads (default
    ``torch.get_num_threads()``); ``lib``: a library from :func:`load` (default: this
    process's). Raises :class:`NativeBuildError` if the library is unavailable.
    """
    from sw_mro.ops._farneback_torch import resize_area

    lib = _require(lib)
    _check_params(params)
    height, width = expansions[0].shape[-2:]
    levels = plan_levels(height, width, params)
    if len(levels) != len(expansions):
        raise ValueError(f"{len(expansions)} expansion levels for a {len(levels)}-level plan")
    frames = expansions[0].shape[0]
    for e, lv in zip(expansions, levels, strict=True):
        _cpu(e, "expansions")
        if tuple(e.shape) != (frames, 5, lv.height, lv.width):
            raise ValueError(
                f"expansion level {lv.k} must be {(frames, 5, lv.height, lv.width)}; "
                f"got {tuple(e.shape)}"
            )
    exps = [e.contiguous().float() for e in expansions]  # keeps them alive during the call
    ref = _cpu(ref_idx, "ref_idx").to(torch.int64).contiguous().view(-1)
    tgt = _cpu(tgt_idx, "tgt_idx").to(torch.int64).contiguous().view(-1)
    pairs = ref.numel()
    if tgt.numel() != pairs:
        raise ValueError(f"ref_idx has {pairs} pairs but tgt_idx {tgt.numel()}")
    if pairs and not (0 <= int(ref.min()) and int(ref.max()) < frames):
        raise IndexError(f"ref_idx out of range for {frames} frames")
    if pairs and not (0 <= int(tgt.min()) and int(tgt.max()) < frames):
        raise IndexError(f"tgt_idx out of range for {frames} frames")
    init = None
    if init_flow is not None:
        if tuple(_cpu(init_flow, "init_flow").shape) != (pairs, 2, height, width):
            raise ValueError(
                f"init_flow must be {(pairs, 2, height, width)}; got {tuple(init_flow.shape)}"
            )
        top = levels[-1]
        init = (resize_area(init_flow.float(), top.height, top.width) * top.scale).contiguous()
    if out is None:
        out = torch.empty(pairs, 2, height, width)
    elif (
        out.shape != (pairs, 2, height, width)
        or out.dtype != torch.float32
        or out.device.type != "cpu"
        or not out.is_contiguous()
    ):
        raise ValueError(
            f"out must be a contiguous float32 CPU tensor of shape {(pairs, 2, height, width)}"
            f"; got {out.dtype} {tuple(out.shape)} on {out.device}"
        )
    if pairs == 0:
        return out
    k = params.winsize // 2
    kern = np.ascontiguousarray(window_kernel(params.winsize)[k:], dtype=np.float32)
    n = len(levels)
    bases = (ctypes.c_void_p * n)(*[e.data_ptr() for e in exps])
    hts = (ctypes.c_int * n)(*[lv.height for lv in levels])
    wds = (ctypes.c_int * n)(*[lv.width for lv in levels])
    status = lib.fb_solve_pairs(
        bases, hts, wds, n,
        ref.data_ptr(), tgt.data_ptr(), pairs,
        None if init is None else init.data_ptr(), out.data_ptr(),
        params.iterations, k, int(params.gaussian), kern.ctypes.data,
        1.0 / float(params.winsize) ** 2, DET_EPS,
        float(np.float32(1.0 / params.pyr_scale)), _BORDER.ctypes.data,
        max(1, threads if threads is not None else torch.get_num_threads()),
    )  # fmt: skip
    _check(status, f"solving {pairs} pairs of {height}x{width}")
    return out


def _cpu(t: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
        where = t.device if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a CPU tensor for the native backend; got {where}")
    return t


def _check_params(params: FarnebackParams) -> None:
    if not 0 < params.pyr_scale < 1:  # a coarser level must be smaller than level 0
        raise ValueError(f"pyr_scale must be in (0, 1); got {params.pyr_scale!r}")


# --------------------------------------------------------------------------- expansion


def _band(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dst, src) operator -> band form: start (dst,) int32 and weights (dst, len) float32."""
    dense = dense.astype(np.float32)
    dst, src = dense.shape
    nz = dense != 0
    lo = np.where(nz.any(1), nz.argmax(1), 0)
    hi = np.where(nz.any(1), src - 1 - nz[:, ::-1].argmax(1), 0)
    length = int((hi - lo).max()) + 1
    start = np.minimum(lo, src - length).astype(np.int32)
    rows = np.arange(dst)[:, None]
    wt = dense[rows, start[:, None] + np.arange(length)[None]]
    return np.ascontiguousarray(start), np.ascontiguousarray(wt, dtype=np.float32)


@functools.lru_cache(maxsize=32)
def _plan(height: int, width: int, params: FarnebackParams) -> tuple:
    """Per level: (h, w, band y, band x); then the polynomial taps along x and y.

    The operators are the torch engine's (sw_mro.ops._farneback_expand): level 0 a
    reflect-101 blur, the others blur then linear resize, as float32 matrices.
    """
    levels = []
    for lv in plan_levels(height, width, params):
        g = gaussian_kernel_1d(lv.smooth_size, lv.sigma)
        ops = []
        for src, dst in ((height, lv.height), (width, lv.width)):
            blur = correlation_matrix(src, g, "reflect101")
            ops.append(_band(blur if src == dst else linear_resize_matrix(src, dst) @ blur))
        levels.append((lv.height, lv.width, ops[0], ops[1]))
    kern = poly_kernels(params.poly_n, params.poly_sigma)
    g, xg, xxg = (a.astype(np.float64) for a in (kern.g, kern.xg, kern.xxg))
    c = kern.ig03 * g + kern.ig33 * xxg
    hk = np.ascontiguousarray(np.stack([g, xg, c]), dtype=np.float32)
    vk = np.stack([kern.ig11 * xg, kern.ig11 * g, c, kern.ig55 * xg, g])  # Y X YY XY XX
    return levels, hk, np.ascontiguousarray(vk, dtype=np.float32)


def expand_frames(
    frames: torch.Tensor,
    params: FarnebackParams,
    threads: int | None = None,
    lib: ctypes.CDLL | None = None,
) -> list[torch.Tensor]:
    """Expansions of float32 CPU frames (F, H, W) per level: list of (F, 5, h, w), finest
    first, as :func:`sw_mro.ops._farneback_expand.expand_frames` (same operators and
    taps, float32 sums in another order: about 1e-7 relative apart, tested)."""
    lib = _require(lib)
    _check_params(params)
    src = _cpu(frames, "frames").float().contiguous()
    if src.dim() != 3:
        raise ValueError(f"frames must be (F, H, W); got {tuple(src.shape)}")
    count, height, width = src.shape
    levels, hk, vk = _plan(height, width, params)
    out = [torch.empty(count, 5, h, w) for h, w, _, _ in levels]
    if count == 0:
        return out
    n = len(levels)
    c = ctypes

    def arr(kind, values):
        return (kind * n)(*values)

    status = lib.fb_expand(
        src.data_ptr(), count, height, width, n,
        arr(c.c_int, [lv[0] for lv in levels]), arr(c.c_int, [lv[1] for lv in levels]),
        arr(c.c_void_p, [lv[2][0].ctypes.data for lv in levels]),
        arr(c.c_void_p, [lv[2][1].ctypes.data for lv in levels]),
        arr(c.c_int, [lv[2][1].shape[1] for lv in levels]),
        arr(c.c_void_p, [lv[3][0].ctypes.data for lv in levels]),
        arr(c.c_void_p, [lv[3][1].ctypes.data for lv in levels]),
        arr(c.c_int, [lv[3][1].shape[1] for lv in levels]),
        params.poly_n, hk.ctypes.data, vk.ctypes.data,
        arr(c.c_void_p, [o.data_ptr() for o in out]),
        max(1, threads if threads is not None else torch.get_num_threads()),
    )  # fmt: skip
    _check(status, f"expanding {count} frames of {height}x{width}")
    return out
