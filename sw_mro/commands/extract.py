"""``sw-mro extract``: SW-MRO features of videos or frame folders, one ``.npy`` each.

For each input ``X`` (a video file, or a folder of numbered frames) it writes

- ``OUT/<name>.npy``: float32 ``(N, window, R, 2)`` (``np.load`` reads it), and
- ``OUT/<name>.json``: the resolved config, versions, fps, frame counts, the frames
  whose landmarks fell back to the last good ones, timings, the ``.npy``'s SHA-256
  (``features_sha256``) and ``"complete": true``,

where ``<name>`` is the file's stem or the folder's name. Both files are written to a
temporary name and renamed, the JSON last, so an output is complete exactly when its
JSON exists and says so. Complete outputs made with the same config are skipped unless
``--overwrite`` (a ``.npy`` whose SHA-256 is not the recorded one is damaged: it is
recomputed, with a warning); one made with another config is an error for that input (use
``--overwrite``). A failing input is reported and the others go on; the exit code is
1 when any input failed.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import importlib
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sw_mro._cli_util import describe_runs, frame_runs, no_cuda_reason, stops_held, typed_words
from sw_mro.commands.devices import MEMORY_HINT, out_of_memory
from sw_mro.errors import VideoError
from sw_mro.io.atomic import (
    NAME_MAX,
    NoFileLocks,
    atomic_path,
    fresh_temp,
    hidden_name,
    lock_at,
    temp_name,
    write_temp,
)


def _folder(text: str) -> Path:
    """``--out-dir``: an empty value (an unset shell variable) is not the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give a folder (use . for the current one)")
    return Path(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video files or frame folders"
    )
    parser.add_argument(
        "--out-dir", type=_folder, required=True, help="folder for <name>.npy and <name>.json"
    )
    parser.add_argument("--gpu", action="store_true", help="run on CUDA (frames stay on the GPU)")
    parser.add_argument(
        "--devices",
        default=None,
        metavar="LIST",
        help="spread the inputs over these devices, one worker process each: e.g. "
        "cuda:0,cuda:1 (or 0,1), all (every visible GPU) or cpu,cpu; a device listed "
        "twice gets two workers. The features are those of a one-device run",
    )
    parser.add_argument("--window", type=int, default=17, help="clip length w, odd (default 17)")
    parser.add_argument(
        "--stride", type=int, default=1, help="keep every N-th frame (default 1; SAMM-LV: 7)"
    )
    parser.add_argument(
        "--fps", type=float,
        help="frame rate of frame folders, for the metadata (default 30; SAMM-LV: 200); "
        "video files use their container's",
    )  # fmt: skip
    parser.add_argument(
        "--face-size", type=int, default=256, help="face crop side in px (default 256)"
    )
    parser.add_argument(
        "--landmarks",
        choices=("dlib", "insightface"),
        default="dlib",
        help="landmark backend (default dlib)",
    )
    parser.add_argument(
        "--insightface-root", type=Path, default=None,
        help="folder holding buffalo_l's det_10g.onnx and 1k3d68.onnx (default: "
        "$INSIGHTFACE_ROOT, else ~/.insightface/models/buffalo_l)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows per batch (default 16 on CPU, 128 on GPU)",
    )
    parser.add_argument(
        "--landmark-workers",
        type=int,
        default=None,
        help="landmark workers (dlib: processes) (default 1 on CPU; on GPU the usable CPUs minus "
        "two, at most 16); the features do not depend on it",
    )
    parser.add_argument(
        "--landmark-redetect",
        type=int,
        default=1,
        metavar="N",
        help="dlib: run the face detector every N-th frame and track with the shape "
        "predictor alone between (default 1: every frame; 4 gives about 1.9x faster "
        "landmarks that move by about 0.5 px, and lowered the mean spotting F1 of three "
        "demo runs (seeds 0-2, the 2026-11-27 recipe) from 0.47 to 0.43: not shown safe "
        "for spotting; docs/sw_mro.md)",
    )
    parser.add_argument(
        "--align-from-landmarks",
        action="store_true",
        help="also start each pair's nose alignment from its nose landmarks' motion where "
        "that exceeds 8 px at 256 (the better nose match wins): for hand-held cameras and "
        "heads that move more than ~13 px within a window, which the default (SPEC: from "
        "0) loses (synthetic 24-40 px head moves: spotting F1 0.20 without, 0.65 with)",
    )
    parser.add_argument("--overwrite", action="store_true", help="recompute complete outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _versions() -> dict[str, str]:
    import cv2
    import kornia
    import numpy
    import torch

    import sw_mro

    out = {
        "sw_mro": sw_mro.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "kornia": kornia.__version__,
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
    }
    for name in ("decord", "dlib"):
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            out[name] = "not installed"
    return out


def output_name(path: Path) -> str:
    """``<name>`` of the outputs: a folder's name, a file's stem, of the absolute path
    (``extract .`` is named after the current folder, not ``.npy``)."""
    path = Path(os.path.abspath(path))
    return (path.name if path.is_dir() else path.stem) or "root"


#: Config fields that say how the features are computed, not what they are: a run that
#: was killed can be resumed with another batch size (after running out of GPU memory,
#: say) or another number of landmark workers. Of the device only the type counts
#: (CPU and CUDA features differ by ~1e-5 px), so another GPU is fine. Where the
#: insightface models are is not which they are: a moved model folder, or
#: --insightface-root given with dlib landmarks, refused complete outputs (found in a
#: probe).
_EXECUTION_ONLY = ("batch_size", "chunk_size", "landmark_workers", "insightface_root")


def _feature_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (``SWMROConfig.to_dict()``) without the execution-only fields, and
    with the device's type only (``cuda:1`` -> ``cuda``)."""
    out = {k: v for k, v in config.items() if k not in _EXECUTION_ONLY}
    if "device" in out:
        out["device"] = str(out["device"]).split(":")[0]
    if isinstance(out.get("resolved"), dict):
        out["resolved"] = {k: v for k, v in out["resolved"].items() if k not in _EXECUTION_ONLY}
    return out


#: An input's :func:`input_signature` reads this much of a video file at its start,
#: middle and end, and this many of a frame folder's frames (evenly spaced, whole).
SIGNATURE_BLOCK = 1 << 16
SIGNATURE_FRAMES = 8


def input_signature(path: Path) -> dict[str, Any] | None:
    """What identifies an input's content cheaply: a file's size, or a frame folder's
    file count and total size, and ``sample_sha1``, a SHA-1 of samples of the content
    (a file's first, middle and last :data:`SIGNATURE_BLOCK` bytes; a folder's file names
    and sizes and :data:`SIGNATURE_FRAMES` of its frames), so that sampled frames
    rewritten at the same size (BMP, raw TIFF) are not taken for the old ones; other
    frames rewritten at the same size are (docs/sw_mro.md). No modification times: a
    copied data set keeps its outputs. None when it cannot be read."""
    from sw_mro.io.video import list_frame_files

    digest = hashlib.sha1()
    try:
        if path.is_dir():  # the frame files the loader reads (not Thumbs.db, ._x.jpg)
            files = list_frame_files(path)
            sizes = [f.stat().st_size for f in files]
            for f, size in zip(files, sizes, strict=True):
                # fsencode: a name that is not UTF-8 (found in review: a Latin-1 frame
                # name failed the run; UTF-8 names hash as before)
                digest.update(os.fsencode(f.name) + f"\0{size}\0".encode())
            last = len(files) - 1  # -1 for a folder without frames (open_video says so)
            picks = {last * k // (SIGNATURE_FRAMES - 1) for k in range(SIGNATURE_FRAMES)}
            for i in sorted(picks) if files else []:
                digest.update(files[i].read_bytes())
            return {"files": len(sizes), "bytes": sum(sizes), "sample_sha1": digest.hexdigest()}
        if not path.is_file():  # a FIFO's open would block (open_video refuses it)
            return None
        size = path.stat().st_size
        with open(path, "rb") as fh:
            for at in sorted(
                {0, max(0, (size - SIGNATURE_BLOCK) // 2), max(0, size - SIGNATURE_BLOCK)}
            ):
                fh.seek(at)
                digest.update(fh.read(SIGNATURE_BLOCK))
        return {"bytes": size, "sample_sha1": digest.hexdigest()}
    except (OSError, VideoError):  # e.g. a broken frame link: open_video says so
        return None


def _same_input(made_from: dict[str, Any], now: dict[str, Any] | None) -> bool:
    """Whether two :func:`input_signature` values agree on every key both have (outputs
    made before ``sample_sha1`` was recorded are compared by their sizes)."""
    if now is None:
        return False
    return all(made_from[k] == now[k] for k in made_from.keys() & now.keys())


def _output_state(
    json_path: Path,
    npy_path: Path,
    config: dict[str, Any],
    backend: str,
    src: tuple[Path, dict[str, int] | None],
    folder_fps: float | None,
    cli: bool,
) -> tuple[str, str]:
    """``("done", "")``: complete, from this input with these settings; ``("todo", why)``:
    not complete (``why`` is empty, or says how a written ``.npy`` is damaged: its shape,
    or a SHA-256 other than the recorded ``features_sha256``); ``("conflict", why)``: complete but from another input (``src`` is the
    input and its :func:`input_signature`; the recorded one differs), a frame folder
    recorded at another rate than ``folder_fps`` (None: the default folder rate; the
    metadata would be stale), with other feature settings, or with
    another Farneback backend than ``backend`` (their features differ by ~1e-5 px, and
    one output folder should not mix them). Settings that do not change the features are not compared
    (:func:`_feature_config`). Outputs written before the metadata recorded the backend
    or the input's size are taken as they are. ``cli``: ``why`` names ``sw-mro extract``'s
    options (found in a probe: ``spotformer train --features`` printed "this run: --fps
    200; --fps 30 keeps it", options it does not have)."""
    if not (json_path.is_file() and npy_path.is_file()):
        return "todo", ""
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return "todo", ""
    if not isinstance(meta, dict) or not meta.get("complete"):
        return "todo", ""
    made_from = meta.get("input_signature")
    if isinstance(made_from, dict) and not _same_input(made_from, src[1]):
        recorded = meta.get("input")
        # Older outputs recorded the path as typed (relative to a folder not known now):
        # the same name is then taken for the same input.
        same = recorded and (
            Path(recorded).resolve() == src[0].resolve()
            or (not Path(recorded).is_absolute() and Path(recorded).name == src[0].name)
        )
        if same:
            return "conflict", (
                f"{src[0]} has changed since its features were made "
                f"({_describe(made_from)} then, {_describe(src[1])} now)"
            )
        return "conflict", (
            f"it holds the features of {recorded} ({_describe(made_from)}), not of "
            f"{src[0]} ({_describe(src[1])}); use another --out-dir or rename one of them"
        )
    recorded = meta.get("source_fps")
    if src[0].is_dir() and recorded is not None:
        from sw_mro.io.video import DEFAULT_FOLDER_FPS

        rate = DEFAULT_FOLDER_FPS if folder_fps is None else folder_fps
        if float(recorded) != rate:
            if not cli:
                return "conflict", f"it records the frame folder at {recorded:g} fps, not {rate:g}"
            given = f"--fps {rate:g}" if folder_fps is not None else f"{rate:g} fps, the default"
            return "conflict", (
                f"it records the frame folder at {recorded:g} fps (this run: {given}; "
                f"--fps {recorded:g} keeps it)"
            )
    made = meta.get("config")
    if not isinstance(made, dict):
        return "conflict", "its metadata has no config"
    old, new = _flat(_feature_config(made)), _flat(_feature_config(config))
    if meta.get("flow_backend"):
        # The backend that ran is compared below; the setting that chose it is not
        # (found in review: features made with "auto", which ran "native", were refused
        # by a run that asked for "native" by name).
        old.pop("flow_backend", None)
        new.pop("flow_backend", None)
    diff = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    if diff:
        # The settings given; the resolved values that follow from them only where they
        # alone differ (found in review: --face-size listed nose_margin, roi_size, ...).
        diff = [k for k in diff if not k.startswith("resolved.")] or diff
        shown = ", ".join(f"{k} {old.get(k)!r} (this run: {new.get(k)!r})" for k in diff[:4])
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        return "conflict", f"it was made with other settings: {shown}{more}"
    made_with = meta.get("flow_backend")
    if made_with and made_with != backend:
        return "conflict", (
            f"it was made with the {made_with!r} Farneback backend (this run: {backend!r}); "
            "their features differ by ~1e-5 px"
        )
    import numpy as np

    try:  # the same input and settings, but a damaged .npy (truncated, replaced): redo it
        arr = np.load(npy_path, mmap_mode="r")
        intact = list(arr.shape) == list(meta.get("shape", ())) and arr.dtype == np.float32
        del arr
    except (OSError, ValueError, EOFError):
        intact = False
    if not intact:
        return "todo", f"{npy_path} is damaged (its shape or type is not the recorded one)"
    recorded_sum = meta.get("features_sha256")  # absent in outputs written before it was
    if recorded_sum is not None:
        try:
            now_sum = file_sha256(npy_path)
        except OSError as exc:
            return "todo", f"{npy_path} cannot be read ({exc.strerror})"
        if now_sum != recorded_sum:
            return "todo", (
                f"{npy_path} is damaged: its SHA-256 is not the one its JSON records "
                "(changed since it was written)"
            )
    return "done", ""


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex (what ``sha256sum`` prints): the JSON's
    ``features_sha256`` of its ``.npy``."""
    digest = hashlib.sha256()  # not hashlib.file_digest: Python 3.11+, and we support 3.10
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe(sig: dict[str, Any] | None) -> str:
    if sig is None:
        return "unreadable"
    files = f"{sig['files']} files, " if "files" in sig else ""
    sample = f", content sample {sig['sample_sha1'][:12]}" if "sample_sha1" in sig else ""
    return f"{files}{sig.get('bytes')} bytes{sample}"


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _extract_one(
    src_path: Path,
    out_dir: Path,
    cfg: Any,
    args: argparse.Namespace,
    progress: Any = None,
    *,
    wait: bool = False,
) -> str:
    """One input -> its .npy and .json; ``progress(total, done)``, if given, is told the
    frame count when the video opens and each chunk's frames as they are written.
    ``wait``: wait for another run writing the same output (:func:`output_lock`), then
    skip it if that run completed it."""
    name = output_name(src_path)
    signature = input_signature(src_path)  # read once: the checks and the JSON use it
    # Complete (skip) or made otherwise (conflict): said without the lock, so a read-only
    # folder of finished outputs is still a resumable one. Checked again under the lock.
    told, _ = _existing_output(src_path, signature, out_dir, name, cfg, args)
    if told is not None:
        _tidy(out_dir, name)
        return told
    with output_lock(out_dir, name, wait=wait):
        return _extract_locked(src_path, signature, out_dir, name, cfg, args, progress)


def _tidy(out_dir: Path, name: str) -> None:
    """A complete output's leftovers of a killed run, its temp files and lock file, are
    removed where no other run holds its lock (found in review: they stayed for good
    once the output was completed by a later run); in a read-only folder, kept."""
    temps = [temp_name(out_dir / f"{name}{ext}") for ext in (".npy", ".json")]
    temps.append(_aside_path(out_dir / f"{name}.json"))  # a kill during --overwrite
    if not any(os.path.lexists(p) for p in [*temps, _lock_path(out_dir, name)]):
        return
    try:
        with output_lock(out_dir, name) as held:  # removes the lock file when released
            for p in temps if held else []:  # unguarded (no flock): they may be in use
                p.unlink(missing_ok=True)
    except (OutputBusyError, OSError):  # another run writes it now; or read-only
        pass


def output_state(
    src_path: Path, out_dir: Path, cfg: Any, folder_fps: float | None = None
) -> tuple[str, str]:
    """Whether ``out_dir`` holds ``src_path``'s complete features for ``cfg`` (an
    ``SWMROConfig``): ``("done", "")``, ``("todo", why)`` (none, not complete, or a
    damaged ``.npy``: ``why`` says how) or
    ``("conflict", why)`` (made from another input, frame-folder rate ``folder_fps``
    (None: the default), feature settings or Farneback backend). ``spotformer train --features`` reuses only
    "done" outputs."""
    return _state_of(src_path, input_signature(src_path), out_dir, cfg, folder_fps, cli=False)


def _state_of(
    src_path: Path,
    signature: dict[str, Any] | None,
    out_dir: Path,
    cfg: Any,
    folder_fps: float | None,
    cli: bool,
) -> tuple[str, str]:
    """:func:`output_state` with the input's signature already read."""
    import torch

    from sw_mro.pipeline import flow_backend

    name = output_name(src_path)
    backend = flow_backend(cfg, torch.device(cfg.device))
    npy, meta_path = out_dir / f"{name}.npy", out_dir / f"{name}.json"
    try:
        return _output_state(
            meta_path, npy, cfg.to_dict(), backend, (src_path, signature), folder_fps, cli
        )
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        # Valid JSON with a field of another type ("shape": null, "source_fps": "abc"):
        # found in a probe, the input failed with "TypeError: 'NoneType' object is not
        # iterable", naming neither file. Damaged metadata: the features are made again.
        return "todo", f"{meta_path} is damaged ({type(exc).__name__}: {exc})"


def _existing_output(
    src_path: Path,
    signature: dict[str, Any] | None,
    out_dir: Path,
    name: str,
    cfg: Any,
    args: argparse.Namespace,
) -> tuple[str | None, str]:
    """``("skipped ...", "")`` for a complete output; ``(None, why)`` for one to write,
    where ``why`` says how a written one is damaged (else ""); raises for an output path
    taken by a folder and for an output made from another input or settings."""
    npy, meta_path = out_dir / f"{name}.npy", out_dir / f"{name}.json"
    for target in (npy, meta_path):  # said now, not after the extraction (found in review)
        if target.is_dir():
            raise IsADirectoryError(f"{target} is a folder; move it away to write the output")
    if args.overwrite or not src_path.exists():  # a missing input: open_video says so
        return None, ""
    fps = args.fps if src_path.is_dir() else None
    state, why = _state_of(src_path, signature, out_dir, cfg, fps, cli=True)
    if state == "done":
        return f"skipped {src_path} ({npy} is complete; --overwrite recomputes it)", ""
    if state == "conflict":
        raise FileExistsError(f"{npy} exists: {why}; pass --overwrite to replace it")
    return None, why


class OutputBusyError(RuntimeError):
    """Another process is writing the same output (``.<name>.lock`` is locked)."""


BUSY_LATER = "this run comes back to it after its other inputs, and waits for it then"


def _waiting(n: int) -> str:
    return f"now waiting for {n} input{'s' if n != 1 else ''} that another run is writing"


def _lock_path(out_dir: Path, name: str) -> Path:
    return hidden_name(out_dir / name, ".lock")


def _aside_path(meta_path: Path) -> Path:
    """Where ``--overwrite`` keeps the old JSON while the features are replaced."""
    return hidden_name(meta_path, ".old")


@contextlib.contextmanager
def output_lock(out_dir: Path, name: str, *, wait: bool = False) -> Iterator[bool]:
    """Hold ``out_dir/.<name>.lock`` (an exclusive ``flock``) while ``name``'s outputs are
    written, so that two runs into one ``--out-dir`` cannot mix their ``.npy`` and JSON
    or their temp files (found in review: one run's rename took the other's temp file).
    A second run does not wait (:class:`OutputBusyError`) unless ``wait``: ``run`` comes
    back to such an input after the others and waits then. The lock dies with its
    process; its file is removed when the output is done.

    Without a guard, as before: where the lock file cannot be made (a read-only or full
    folder: writing the output then fails with its own error) and where ``flock`` is not
    supported (some network file systems; warned once per folder). Yields whether the
    lock is held (False: no guard).
    """
    if os.name != "posix":  # no flock (Windows): no guard
        yield False
        return
    path = _lock_path(out_dir, name)
    try:
        fd = lock_at(path, wait=wait)
    except BlockingIOError:
        try:
            holder = path.read_bytes()[:200].decode(errors="replace").strip()
        except OSError:
            holder = ""
        by = f" by {holder}" if holder else ""
        raise OutputBusyError(
            f"another sw-mro run is writing {out_dir / name}.npy now ({path} is locked{by})"
        ) from None
    except NoFileLocks as exc:
        path.unlink(missing_ok=True)
        if out_dir not in _NO_LOCKS:
            _NO_LOCKS.add(out_dir)
            print(
                f"warning: {out_dir}: no file locks here ({exc.strerror}); do not run "
                "two extractions into it at once",
                file=sys.stderr,
            )
        yield False
        return
    except OSError:  # the lock file cannot be made (a read-only or full folder)
        yield False
        return
    try:  # who holds it, for the message of a run that finds it busy (or waits for it)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {platform.node()}".encode(), 0)
    except OSError:
        pass
    try:
        yield True
    finally:
        try:
            path.unlink()
        except OSError:
            pass
        os.close(fd)


_NO_LOCKS: set[Path] = set()  # out-dirs already warned about


def _reserve_file(path: Path) -> None:
    """Allocate every block of ``path`` now. A memory-mapped file on a full disk is not
    an error but SIGBUS at the first write past the space (found in review: "Bus error",
    the batch gone); reserved, a full disk is an ``OSError`` (ENOSPC) naming the file."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return  # a file system without fallocate: nothing reserved, as before
            amount = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"
            why = f"{exc.strerror} (reserving {amount} for the features)"
            raise OSError(exc.errno, why, str(path)) from exc


def _extract_locked(
    src_path: Path,
    signature: dict[str, Any] | None,
    out_dir: Path,
    name: str,
    cfg: Any,
    args: argparse.Namespace,
    progress: Any,
) -> str:
    import numpy as np
    import torch
    from tqdm import tqdm

    from sw_mro.config import LANDMARK_FALLBACK_WARN_SHARE, LANDMARK_FALLBACK_WORDS
    from sw_mro.errors import ClipTooShortError
    from sw_mro.io.video import open_video
    from sw_mro.pipeline import FaceContrast, NoseMotion, flow_backend, stream, window_advice

    npy, meta_path = out_dir / f"{name}.npy", out_dir / f"{name}.json"
    # Again under the lock: another run may have finished it since.
    told, damaged = _existing_output(src_path, signature, out_dir, name, cfg, args)
    if told is not None:
        return told
    cfg_dict = cfg.to_dict()
    backend = flow_backend(cfg, torch.device(cfg.device))
    # A missing input is reported as missing (by open_video), even if its output exists.
    fps = args.fps if src_path.is_dir() else None
    try:
        video = open_video(src_path, stride=cfg.stride, color="rgb", fps=fps)
    except ClipTooShortError as exc:  # a stride over its frames: which strides would do
        raise window_advice(exc, cfg.window) from None
    info = video.info
    if progress is not None:
        progress(info.num_frames, 0)
    n, w, r = info.num_frames, cfg.window, cfg.num_rois
    # Outputs that are links are written through them, both alike, as atomic_path does
    # (found in a probe: the JSON went through its link while the features replaced
    # theirs and the old JSON's link was deleted, splitting the pair); the temp files go
    # next to the files they replace. Messages name the paths given.
    npy_file, meta_file = (
        Path(os.path.realpath(p)) if p.is_symlink() else p for p in (npy, meta_path)
    )
    tmp_npy = temp_name(npy_file)
    fallback: list[int] = []
    stages: dict[str, float] = {}
    motion, contrast = NoseMotion(cfg.face_size), FaceContrast(cfg.landmark_segment)
    t0 = time.perf_counter()
    try:
        try:
            fresh_temp(tmp_npy)  # a leftover (or a link) goes first: never written through
            out = np.lib.format.open_memmap(
                tmp_npy, mode="w+", dtype=np.float32, shape=(n, w, r, 2)
            )
        except OSError as exc:  # a full disk at the header, a read-only folder: say
            if exc.errno is None:  # which output (found in review: only the temp file)
                raise
            why = f"{exc.strerror} (creating the features file for {npy})"
            raise OSError(exc.errno, why, str(exc.filename or tmp_npy)) from exc
        _reserve_file(tmp_npy)
        with tqdm(total=n, unit="frame", desc=name, disable=args.quiet, file=sys.stderr) as bar:

            def done(k: int) -> None:
                bar.update(k)
                if progress is not None:
                    progress(0, k)

            # A chunk's features come back to the host without blocking and are written
            # one chunk later, so the device is not drained between chunks.
            pending: list = []
            for chunk in stream(video, cfg):
                host, copied = _to_host(chunk.features)
                pending.append((chunk, host, copied))
                motion.add(chunk.nose_motion, chunk.start)
                contrast.add(chunk.face_contrast, chunk.start)
                while len(pending) > (0 if copied is None else 1):
                    done(_write_chunk(out, *pending.pop(0), fallback, stages))
            for item in pending:
                done(_write_chunk(out, *item, fallback, stages))
        out.flush()
        del out
        checksum = file_sha256(tmp_npy)  # read back from the page cache: ~1 s per GB
        seconds = time.perf_counter() - t0
        meta = {
            "complete": True,
            "input": os.path.abspath(src_path),
            "input_signature": signature,
            "features": npy.name,
            "shape": [n, w, r, 2],
            "dtype": "float32",
            "features_sha256": checksum,
            # What a reader of the file needs (found in a probe: the signs, the window's
            # anchor, the stride's frames and the landmarks' numbering were only in docs).
            "layout": (
                "frame x window position x ROI x (dx, dy), pixels at face_size, x right, y "
                "down; [i, s] is the motion from frame i - w//2 to frame i - w//2 + s "
                "(clamped to the video), so [:, 0] = 0; frame i is source frame i * stride "
                "(0-based); roi_landmarks are dlib's 68 points numbered from 0"
            ),
            "roi_landmarks": list(cfg.roi_landmarks),
            "roi_groups": [list(g) for g in cfg.roi_groups],
            "fps": info.fps,
            "source_fps": info.source_fps,
            # where source_fps comes from: the container, --fps, or the folder default
            "source_fps_from": "container"
            if not src_path.is_dir()
            else ("--fps" if fps is not None else "default (a frame folder's; --fps sets it)"),
            "num_frames": n,
            "source_num_frames": info.source_num_frames,
            "stride": info.stride,
            "height": info.height,
            "width": info.width,
            "rotation": info.rotation,
            # packets the container marks damaged (decoding order; docs/io.md "Decoders")
            "damaged_packets": list(info.damaged_packets),
            "landmark_fallback_frames": fallback,
            "nose_motion": motion.summary(),
            "face_contrast": contrast.summary(),
            "config": cfg_dict,
            "versions": _versions(),
            "device": _device_name(cfg.device),
            "flow_backend": backend,
            "seconds": round(seconds, 3),
            "frames_per_second": round(n / seconds, 2) if seconds > 0 else None,
            "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        }
        # The metadata is written to its temp file first: a full disk there leaves the
        # old outputs (or none), not features without their JSON (found in review). The
        # old metadata goes before the features are replaced: a kill between the two
        # replaces must not leave a "complete" JSON next to features it does not describe.
        # A stop signal waits for the end of these renames (stops_held).
        with stops_held(), atomic_path(meta_file) as tmp_meta:
            write_temp(tmp_meta, json.dumps(meta, indent=1).encode(), meta_path)
            # The old JSON is moved aside (a rename needs no free space) and back if the
            # features are not replaced (found in review: a failed --overwrite lost it).
            aside = _aside_path(meta_file)
            moved = meta_file.exists()
            if moved:
                os.replace(meta_file, aside)
            try:
                os.replace(tmp_npy, npy_file)
            except BaseException:  # a Ctrl-C can come after the rename: then not back
                if moved and os.path.lexists(tmp_npy):
                    os.replace(aside, meta_file)
                raise
            aside.unlink(missing_ok=True)  # and one a killed --overwrite left
    finally:  # never in place of the error on its way: a read-only folder raises here
        with contextlib.suppress(OSError):  # too, and hid which output failed (review)
            tmp_npy.unlink(missing_ok=True)
    note = f", {len(fallback)} landmark fallback frames" if fallback else ""
    msg = f"wrote {npy} ({n} frames, {n / seconds:.1f} frames/s{note})"
    if damaged:
        msg += f"\nwarning: {damaged}; recomputed it"
    if len(fallback) > LANDMARK_FALLBACK_WARN_SHARE * n:  # read now: tests may change it
        where = describe_runs(frame_runs(fallback), stride=cfg.stride)
        msg += (
            f"\nwarning: {src_path}: no face in {len(fallback)} of its {n} frames "
            f"({100 * len(fallback) / n:.0f} %: {where}); "
            f"{LANDMARK_FALLBACK_WORDS} (the JSON's landmark_fallback_frames)"
        )
    if motion.jumped():
        msg += f"\nwarning: {src_path}: {motion.describe_jumps()}"
    if contrast.warns():
        msg += f"\nwarning: {src_path}: {contrast.describe()}"
    if not cfg.align_from_landmarks and motion.large():
        msg += f"\nhint: {src_path}: {motion.describe(cfg.face_size)}; {NoseMotion.ADVICE}"
    return msg


#: What ``dispatch`` adds to "interrupted" (Ctrl-C) and "terminated" (SIGTERM).
INTERRUPT_HINT = "run the same command again to resume (complete outputs are skipped)"

_TO_STDERR = ("hint: ", "warning: ")


def _failure(path: str | Path, line: str) -> str:
    """The report of an input that failed with ``line`` (``Type: message``), and the
    ``--batch-size`` hint after it where it ran out of GPU memory: one text for one
    device and for ``--devices``."""
    report = f"FAILED {path}: {line}"
    return f"{report}\n{MEMORY_HINT}" if out_of_memory(line) else report


def _split_hints(message: str) -> tuple[str, list[str]]:
    """``_extract_one``'s message without its ``hint:`` and ``warning:`` lines (for
    stdout), and those lines (for stderr)."""
    lines = message.split("\n")
    return "\n".join(x for x in lines if not x.startswith(_TO_STDERR)), [
        x for x in lines if x.startswith(_TO_STDERR)
    ]


def _write_chunk(out: Any, chunk: Any, host: Any, copied: Any, fallback: list, stages: dict) -> int:
    """Write one chunk's features (once its copy is done) and add up its metadata."""
    if copied is not None:
        copied.synchronize()
    k = host.shape[0]
    out[chunk.start : chunk.start + k] = host.numpy()
    fallback.extend(chunk.fallback_frames)
    for key, val in chunk.stats.items():
        stages[key] = stages.get(key, 0.0) + val
    return k


def _to_host(features: Any) -> tuple[Any, Any]:
    """``(host tensor, event)``: on CUDA a copy into pinned memory started without
    blocking, done once ``event`` is; on CPU the features themselves and None."""
    import torch

    if features.device.type != "cuda":
        return features, None
    stream = torch.cuda.current_stream(features.device)
    host = torch.empty(features.shape, dtype=features.dtype, pin_memory=True)
    with torch.cuda.stream(stream):
        host.copy_(features, non_blocking=True)
    event = torch.cuda.Event()
    event.record(stream)
    return host, event


def _device_name(device: str) -> str:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def _extract_on_device(device: str, path: str, options: dict[str, Any], progress: Any) -> str:
    """One input in a ``--devices`` worker process (see ``sw_mro.commands.devices``)."""
    import torch

    from sw_mro._malloc import keep_for_process
    from sw_mro.config import CPU_SHARE_ENV

    keep_for_process()
    # The devices' processes share the cores: this one's share caps usable_cpus(), and
    # so the default landmark workers, and torch's threads.
    os.environ[CPU_SHARE_ENV] = str(options["cpus"])
    torch.set_num_threads(options["cpus"])
    if device != "cpu":
        torch.cuda.set_device(torch.device(device))
    cfg = options["config"].replace(device=device)
    args = argparse.Namespace(overwrite=options["overwrite"], quiet=True, fps=options["fps"])
    out_dir = Path(options["out_dir"])
    return _extract_one(Path(path), out_dir, cfg, args, progress, wait=options["wait"])


def _run_on_devices(
    args: argparse.Namespace, cfg: Any, devices: list[str], inputs: list, wait: bool = False
) -> list:
    """``--devices``: the inputs over one worker process per device; the failed ones.
    Inputs that another run is writing are done last, waiting for it (``wait``)."""
    from tqdm import tqdm

    from sw_mro.commands.devices import per_process_cpus, run_on_devices
    from sw_mro.config import usable_cpus

    cpus = per_process_cpus(devices, usable_cpus())
    print(
        f"sw-mro: {len(inputs)} input{'s' if len(inputs) != 1 else ''} on {len(devices)} "
        "worker processes "
        f"({', '.join(devices)}), {cpus} CPUs each",
        file=sys.stderr,
        flush=True,
    )
    options = {
        "config": cfg,
        "cpus": cpus,
        "out_dir": str(args.out_dir),
        "overwrite": args.overwrite,
        "fps": args.fps,
        "wait": wait,
    }
    ended, known = 0, 0
    seen: set[str] = set()  # inputs opened or ended (skipped, busy, failed: no frames)
    busy: list[str] = []
    distinct = len({str(p) for p in inputs})
    # Frames/s over all devices. The total is shown once every input has been opened or
    # has ended without frames (found in a probe: a total that grew as the workers
    # opened their videos showed 80 % at 27 %); until then the bar counts frames.
    with tqdm(total=None, unit="frame", disable=args.quiet, file=sys.stderr) as bar:
        bar.set_postfix_str(f"inputs 0/{len(inputs)}")

        def settle(path: str) -> None:
            seen.add(path)
            if len(seen) == distinct and bar.total is None and known:
                bar.total = known
                bar.refresh()

        def show(path: str, ok: bool, line: str) -> None:
            nonlocal ended
            ended += 1
            settle(path)
            if ok:
                out, hints = _split_hints(line)
                _say(out, bar)
                for hint in hints:
                    bar.write(hint, file=sys.stderr)
            elif line.startswith(f"{OutputBusyError.__name__}:") and not wait:
                busy.append(path)
                bar.write(f"busy {path}: {line.split(': ', 1)[1]}; {BUSY_LATER}", file=sys.stderr)
            else:
                bar.write(_failure(path, line), file=sys.stderr)
            bar.set_postfix_str(f"inputs {ended}/{len(inputs)}")

        def frames(path: str, total: int, done: int) -> None:
            nonlocal known
            if total:
                known += total
                settle(path)
            if done:
                bar.update(done)

        result = run_on_devices(
            [str(p) for p in inputs],
            devices,
            _extract_on_device,
            options,
            on_result=show,
            on_progress=frames,
        )
    failed = [str(p) for p in inputs if str(p) in result.failed and str(p) not in busy]
    if busy:
        print(_waiting(len(busy)), file=sys.stderr)
        failed += _run_on_devices(args, cfg, devices, busy, wait=True)
    return failed


#: How this command names itself on stderr, as argparse does ("sw-mro extract: error:").
PROG = "sw-mro extract"


def run(args: argparse.Namespace) -> int:
    import torch

    from sw_mro.commands.devices import parse_devices
    from sw_mro.config import SWMROConfig

    devices: list[str] | None = None
    if args.devices is not None:
        try:
            devices = parse_devices(
                args.devices, torch.cuda.device_count() if torch.cuda.is_available() else 0
            )
        except ValueError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        if args.gpu and "cpu" in devices:
            print(f"{PROG}: error: --gpu with a cpu entry in --devices", file=sys.stderr)
            return 2
    device = "cuda" if args.gpu else "cpu"
    if devices is not None:
        device = devices[0]
        if len(devices) == 1:
            devices = None  # one device: this process, as without --devices
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"{PROG}: error: --gpu given but no CUDA device is available: {no_cuda_reason()}; "
            "drop --gpu to run on CPU",
            file=sys.stderr,
        )
        return 2
    if device.startswith("cuda:") and devices is None:
        torch.cuda.set_device(torch.device(device))  # CuPy kernels use the current device
    try:
        cfg = SWMROConfig(
            window=args.window,
            face_size=args.face_size,
            stride=args.stride,
            landmarks=args.landmarks,
            insightface_root=None if args.insightface_root is None else str(args.insightface_root),
            device=device,
            batch_size=args.batch_size,
            landmark_workers=args.landmark_workers,
            landmark_redetect=args.landmark_redetect,
            align_from_landmarks=args.align_from_landmarks,
        )
    except ValueError as exc:
        # "SWMROConfig.face_size=8: ..." -> "--face-size 8: ...", the option the user typed
        flags = {"window", "face_size", "stride", "batch_size", "landmark_workers",
                 "landmark_redetect", "landmarks", "insightface_root"}  # fmt: skip
        msg = re.sub(
            r"SWMROConfig\.(\w+)=",
            lambda m: f"--{m[1].replace('_', '-')} " if m[1] in flags else m[0],
            str(exc),
        )
        msg = typed_words(msg)
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    if args.insightface_root is not None and cfg.landmarks != "insightface":  # review
        print(
            "note: --insightface-root has no effect without --landmarks insightface; the "
            f"landmarks are {cfg.landmarks}'s",
            file=sys.stderr,
        )
    if cfg.landmarks == "insightface":  # a setup error: once, before any input
        from sw_mro.errors import ModelLoadError, ModelNotFoundError
        from sw_mro.io.landmarks import check_insightface_models

        try:  # found in review: a broken model file failed every input, exit 1
            check_insightface_models(cfg.insightface_root)
        except (ModelNotFoundError, ModelLoadError) as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        print(
            f"{PROG}: error: --fps must be a positive frame rate, got {args.fps}", file=sys.stderr
        )
        return 2
    from sw_mro.io.video import _file_decode_threads

    try:
        _file_decode_threads()  # a bad SW_MRO_DECODE_THREADS: once, before any input
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"{PROG}: error: --out-dir {args.out_dir}: cannot make the folder "
            f"({_not_a_folder(args.out_dir) or exc})",
            file=sys.stderr,
        )
        return 2
    unwritable = _unwritable(args.out_dir)
    if unwritable:  # found in review: a cryptic failure per input, on a hidden temp file
        print(
            f"warning: --out-dir {args.out_dir}: cannot write in it ({unwritable}); "
            "complete outputs are skipped, the other inputs fail",
            file=sys.stderr,
        )
    from sw_mro.errors import OutputNameError

    failed: list[str] = []
    seen: dict[str, Path] = {}
    # Each input once, by the file it is (found in a probe: a rejected input given twice
    # was reported and counted twice); its spellings, for the note.
    given: dict[Path, list[Path]] = {}
    todo: list[Path] = []
    for raw in args.inputs:
        path = Path(raw)
        spellings = given.setdefault(path.resolve(), [])
        spellings.append(path)
        if len(spellings) > 1:
            continue
        name = output_name(path)
        longest = len(os.fsencode(f"{name}.json"))
        if name in seen:
            why = (
                f"output name {name!r} is also that of {seen[name]}; rename one of them, "
                "or extract it into another --out-dir"
            )
        elif longest > NAME_MAX:  # found in a probe: a bare "File name too long"
            why = (
                f"its output {name}.json would be a {longest}-byte file name, over the "
                f"{NAME_MAX} that file systems take; rename it shorter"
            )
        elif (own := _is_an_output(path, args.out_dir, name)) is not None:  # found in review:
            why = (  # the input was overwritten by its features
                f"it is {own}, an output path of its own features; extract it into "
                "another --out-dir"
            )
        else:
            seen[name] = path
            todo.append(path)
            continue
        failed.append(str(path))
        print(f"FAILED {path}: {OutputNameError.__name__}: {why}", file=sys.stderr, flush=True)
    for first, *more in given.values():
        if not more:
            continue
        k = len(more) + 1
        if all(str(p) == str(first) for p in more):
            print(f"note: {first} is given {k} times; it is taken once", file=sys.stderr)
        else:  # a link, ./x, a trailing slash (found in a probe: "given 2 times")
            names = ", ".join(dict.fromkeys(str(p) for p in (first, *more)))
            print(
                f"note: {names} are one input, given {k} times; it is taken once, as {first}",
                file=sys.stderr,
            )
    files = [p for p in todo if p.is_file()]  # a missing one fails with its own error
    if args.fps is not None and files:  # found in review: ignored without a word
        which = f"{files[0]}" if len(files) == 1 else f"{len(files)} of the inputs"
        print(
            f"note: --fps {args.fps:g} sets the rate of frame folders only; {which} "
            f"{'is a video file' if len(files) == 1 else 'are video files'}, read at "
            "the container's rate (the features do not depend on it)",
            file=sys.stderr,
        )
    total = len(todo) + len(failed)  # distinct inputs
    if devices is not None:
        failed += _run_on_devices(args, cfg, devices, todo)
        todo = []
    busy: list[Path] = []

    def one(path: Path, wait: bool) -> None:
        try:
            message = _extract_one(path, args.out_dir, cfg, args, wait=wait)
        except KeyboardInterrupt:
            raise
        except OutputBusyError as exc:  # found in review: both of two runs exited 1
            busy.append(path)  # (never raised when waiting)
            print(f"busy {path}: {exc}; {BUSY_LATER}", file=sys.stderr, flush=True)
            return
        except Exception as exc:  # one bad input must not stop the others
            failed.append(str(path))
            line = f"{type(exc).__name__}: {exc}"
            print(_failure(path, line), file=sys.stderr, flush=True)
            return
        out, hints = _split_hints(message)  # said outside the try: the input is done
        _say(out)
        for hint in hints:
            print(hint, file=sys.stderr, flush=True)

    for path in todo:
        one(path, wait=False)
    if busy:  # the inputs another run was writing: now waiting for it
        print(_waiting(len(busy)), file=sys.stderr)
        for path in list(busy):
            one(path, wait=True)
    done = total - len(failed)
    _say(f"{done} of {total} inputs done" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _not_a_folder(path: Path) -> str:
    """Why ``path`` cannot be made as a folder, where something in its way says it: a
    file, a broken link or a device at it or above it (found in review: a broken link
    was "File exists"); "" where nothing is in the way."""
    for p in (path, *path.parents):
        if p.is_symlink() and not p.exists():
            return f"{p} is a broken link, to {os.readlink(p)}"
        if p.exists() and not p.is_dir():
            return f"{p} is a file" if p.is_file() else f"{p} is not a folder"
    return ""


def _unwritable(folder: Path) -> str:
    """Why no file can be made in ``folder`` ("Read-only file system", "Permission
    denied"), or "" where one can: a hidden file is made and removed."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sw_mro-", suffix=".probe", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    return ""


def _is_an_output(path: Path, out_dir: Path, name: str) -> Path | None:
    """The output path (``name``'s ``.npy`` or JSON in ``out_dir``) that the input
    ``path`` itself is, or None."""
    for out in (out_dir / f"{name}.npy", out_dir / f"{name}.json"):
        with contextlib.suppress(OSError):
            if os.path.samefile(path, out):
                return out
    return None


def _say(text: str, bar: Any = None) -> None:
    """A line on stdout (through the progress ``bar``, if any, which is redrawn below
    it). Once stdout's reader is gone (``| head``, a ``tee`` that ended), the run goes
    on with stdout sent to the null device: found in review, every input was reported
    FAILED with a BrokenPipeError, though its outputs were written, and the run ended
    in a traceback."""
    try:
        if bar is not None:
            bar.write(text, file=sys.stdout)
        else:
            print(text)
        sys.stdout.flush()
    except OSError as exc:  # a full disk under `> log` too (found in review of the fix)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes there too
        except (OSError, ValueError, AttributeError):  # a stdout with no file descriptor
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the run
        finally:
            os.close(devnull)
        if not isinstance(exc, BrokenPipeError):  # a reader that left needs no word
            with contextlib.suppress(OSError):  # `> log 2>&1` on a full disk: both fail
                print(
                    f"warning: cannot write to stdout ({exc.strerror or exc}); the run goes "
                    "on without it",
                    file=sys.stderr,
                    flush=True,
                )
