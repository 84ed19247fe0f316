"""The feature provider of a run: data set -> annotation table -> SW-MRO features in memory.

``spotformer train`` extracts every video once, with :func:`sw_mro.stream`, into a
tensor on the training device, and trains on those tensors. Nothing is written to disk
between extraction and training (SPEC/issue 6); a resumed run that has not finished
extracts again.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from spotformer.data.labels import lies_outside
from spotformer.data.table import AnnotationTable, Expression, VideoRef
from spotformer.errors import SpotFormerError

Dataset = Literal["synthetic", "casme2", "samm", "csv"]
DATASETS: tuple[str, ...] = ("synthetic", "casme2", "samm", "csv")


class DatasetError(SpotFormerError):
    """A data set folder or annotation file cannot be used; the message says how to fix it."""


def _one(root: Path, patterns: Sequence[str], what: str, kind: str) -> Path:
    """The data set's workbook in ``root``: the last match of the first of ``patterns``
    that matches (the newest ``V*`` release), or, for ``*.xlsx``, the one workbook of
    that ``kind`` (found in a probe: the first by name, ``aaa_notes.xlsx``, was taken
    and said to be the other data set's workbook, and a right one was taken unsaid)."""
    from spotformer.data.annotations import workbook_kind
    from spotformer.errors import AnnotationError

    for pat in patterns:
        hits = sorted(root.glob(pat))
        if not hits:
            continue
        if not pat.startswith("*"):
            return hits[-1]
        ours = []
        for h in hits:
            try:
                if workbook_kind(h) == kind:
                    ours.append(h)
            except AnnotationError:
                continue
        names = ", ".join(repr(h.name) for h in (ours or hits)[:6])
        if len(ours) == 1:
            print(f"spotformer: annotations: {ours[0]}", file=sys.stderr)
            return ours[0]
        if ours:
            raise DatasetError(
                f"{root}: {len(ours)} {what} workbooks ({names}); pass one with --annotations"
            )
        raise DatasetError(
            f"{root}: none of its .xlsx files is a {what} workbook ({names}); pass it with "
            "--annotations"
        )
    raise DatasetError(f"{root}: no {what} workbook found (looked for {', '.join(patterns)})")


def load_dataset(
    dataset: Dataset, root: str | os.PathLike, annotations: str | os.PathLike | None = None
) -> AnnotationTable:
    """Load a data set's annotation table, with the location of every video.

    - ``synthetic``: ``root`` is a ``spotformer make-synthetic`` folder (its
      ``annotations.csv``);
    - ``casme2``: ``root`` holds ``rawpic/`` or ``rawvideo/`` and the annotation file
      ``CAS(ME)^2code_final.xlsx`` (or pass ``annotations``);
    - ``samm``: ``root`` holds ``SAMM_longvideos/`` and ``SAMM_LongVideos_V*_Release.xlsx``;
      frames are subsampled by 7 (SPEC.md section 1);
    - ``csv``: ``root`` is a generic CSV with ``path`` and ``fps`` columns, or a folder
      holding ``annotations.csv``.
    """
    from spotformer.data import annotations as A

    r = Path(root)
    if not r.exists():
        raise DatasetError(f"{r}: no such file or folder (--root)")
    if dataset in ("casme2", "samm") and not r.is_dir():  # found in review: a workbook
        frames = "rawpic/ or rawvideo/" if dataset == "casme2" else "SAMM_longvideos/"
        book = A.is_workbook(r)  # CAS(ME)^2's names need quotes:
        raise DatasetError(
            f"{r}: --root is the data set's folder (the one holding {frames}), not a file; "
            f"e.g. --root {shlex.quote(str(r.parent))}"
            + (f" --annotations {shlex.quote(str(r))}" if book else "")
        )
    if dataset in ("synthetic", "csv"):
        path = Path(annotations) if annotations else (r / "annotations.csv" if r.is_dir() else r)
        if not path.is_file():
            others = sorted(p.name for p in r.glob("*.csv")) if r.is_dir() else []
            if others and not annotations and dataset == "csv":  # found in review: it read
                listed = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
                raise DatasetError(  # "<root>/annotations.csv: no annotation CSV; it holds"
                    f"{r}: no annotations.csv in this folder; it holds {len(others)} .csv "
                    f"file(s) ({listed}): pass one as --root (or --annotations)"
                )
            if annotations:  # found in review: it said to run make-synthetic
                raise DatasetError(f"{path}: --annotations: no such file")
            hint = "; run `spotformer make-synthetic --out DIR` first"
            raise DatasetError(f"{path}: no annotation CSV{hint if dataset == 'synthetic' else ''}")
        table = A.load_csv(path)
    elif dataset == "casme2":
        x = (
            Path(annotations)
            if annotations
            else _one(r, ["CAS(ME)^2code_final.xlsx", "*.xlsx"], "CAS(ME)^2", "casme2")
        )
        table = A.load_casme2(x, root=r)
    elif dataset == "samm":
        x = (
            Path(annotations)
            if annotations
            else _one(r, ["SAMM_LongVideos_V*_Release.xlsx", "*.xlsx"], "SAMM-LV", "samm")
        )
        table = A.load_samm(x, root=r)
    else:
        raise DatasetError(f"unknown data set {dataset!r}; use one of {', '.join(DATASETS)}")
    missing = sorted({e.video for e in table.expressions} - set(table.sources))
    if missing and dataset == "csv":  # found in review: "check --root" did not apply
        raise DatasetError(
            f"{path}: {len(missing)} annotated video(s) have no video file or frame folder, "
            f"e.g. {missing[0]!r}; give each one in the CSV's path column (relative to the "
            "CSV's folder; docs/io.md, 'Generic CSV')"
        )
    if missing:
        raise DatasetError(_not_found(r, dataset, missing, table))
    return table


def _not_found(root: Path, dataset: str, missing: list[str], table: AnnotationTable) -> str:
    """Which annotated videos of a CAS(ME)^2 or SAMM-LV root were not found, where they
    were looked for, and the unannotated videos found whose id differs only in the
    subject folder's name or in case (found in a probe: ``rawpic/S16`` or ``sub16`` gave
    "e.g. 's16/16_0101'; check --root", though --root was right)."""
    where = {v: f"rawpic/{v}*" if dataset == "casme2" else f"SAMM_longvideos/{v}" for v in missing}
    unused = set(table.sources) - {e.video for e in table.expressions}
    near = []
    for v in missing:
        tail = v.rsplit("/", 1)[-1].lower()
        near += [f"{u!r} for {v!r}" for u in sorted(unused) if u.rsplit("/", 1)[-1].lower() == tail]
    listed = _first_8([f"{v!r} ({where[v]})" for v in missing])
    msg = f"{root}: {len(missing)} annotated video{'s' * (len(missing) > 1)} not found: {listed}"
    if near:
        rule = (
            "naming rule1's subject folders (s15, s16, ...)"
            if dataset == "casme2"
            else "the workbook's names"
        )
        msg += (
            f". Found under another name: {_first_8(near)}; name the folders as {rule}, "
            "or give the videos in a CSV (docs/io.md, 'Generic CSV')"
        )
    else:
        msg += "; check --root (the folder holding the frames or videos)"
    return msg


@dataclass
class FeatureSet:
    """What the provider hands to training: per-video features, rates and subjects."""

    features: dict[str, Tensor] = field(default_factory=dict)
    fps: dict[str, float] = field(default_factory=dict)
    subjects: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)  # read from ``features_dir``
    extract_seconds: float = 0.0  # extracting only (not reading the reused)

    @property
    def frames(self) -> int:
        return sum(int(x.shape[0]) for x in self.features.values())

    @property
    def extracted_frames(self) -> int:
        """Frames extracted here, not reused (found in a probe: ``train`` printed the
        frames/s of extracted and reused ones together, 79 for 20)."""
        reused = set(self.reused)
        return sum(int(x.shape[0]) for n, x in self.features.items() if n not in reused)

    def summary(self, device: object) -> str:
        """One line: the videos and frames, how many reused, the extraction's rate."""
        head = f"SW-MRO: {len(self.features)} videos, {self.frames} frames"
        n, secs = self.extracted_frames, self.extract_seconds
        rate = f"in {secs:.1f} s ({n / max(secs, 1e-9):.1f} frames/s) on {device}"
        if not self.reused:
            return f"{head} {rate}"
        if len(self.reused) == len(self.features):
            return f"{head}: all reused"
        return (
            f"{head}: {len(self.reused)} video{'s' if len(self.reused) > 1 else ''} "
            f"({self.frames - n} frames) reused, "
            f"{n} frames extracted {rate}"
        )


def video_features(
    path: str | os.PathLike,
    config=None,  # noqa: ANN001 - SWMROConfig (imported lazily)
    *,
    stride: int = 1,
    fps: float | None = None,
    bar=None,  # noqa: ANN001
    motion=None,  # noqa: ANN001
    fallback: list[int] | None = None,
    contrast=None,  # noqa: ANN001
) -> tuple[Tensor, float]:
    """SW-MRO features ``(N, w, R, 2)`` of one video, on ``config.device``, and its fps;
    ``motion`` (a :class:`sw_mro.pipeline.NoseMotion`), if given, adds up the video's
    nose landmark motion, ``fallback``, if given, receives the frames without a face
    (``FeatureChunk.fallback_frames``), and ``contrast`` (a
    :class:`sw_mro.pipeline.FaceContrast`), if given, the face's contrast."""
    import sw_mro
    from sw_mro.io.video import open_video

    cfg = config or sw_mro.SWMROConfig()
    src = open_video(path, stride=stride, fps=fps)
    chunks = []
    for c in sw_mro.stream(src, cfg):
        chunks.append(c.features)
        if motion is not None:
            motion.add(c.nose_motion, c.start)
        if fallback is not None:
            fallback.extend(c.fallback_frames)
        if contrast is not None:
            contrast.add(c.face_contrast, c.start)
        if bar is not None:
            bar.update(int(c.features.shape[0]))
    return torch.cat(chunks), float(src.info.fps)


@dataclass(frozen=True)
class PlannedVideo:
    """A video of a run as opened before extraction: frames and fps after any stride."""

    ref: VideoRef
    subject: str
    frames: int
    fps: float
    source_fps: float  # before the stride (a frame folder: at the rate it was given)


def plan_videos(table: AnnotationTable, window: int) -> dict[str, PlannedVideo]:
    """Open every video of ``table.sources`` (sorted by id) to count its frames, and check
    the annotations against them, before any extraction: a mistake found after the
    extraction would cost a whole data set's.

    A video shorter than ``window`` without annotations is left out, with a note on
    stderr; an expression that runs past its video's end gets a warning (it is cut there).

    Raises:
        DatasetError: videos that do not exist (all of them listed), a video's subject is
            unknown, or annotations lie outside their videos or on videos shorter than
            the window (every problem is listed).
    """
    from sw_mro.io.video import open_video

    # Every missing path at once (found in a walk-through: a CSV with wrong paths failed
    # on the first, then, fixed, on the next).
    gone = [
        f"{name!r} ({ref.path})"
        for name, ref in sorted(table.sources.items())
        if not ref.path.exists()
    ]
    if gone:
        raise DatasetError(
            f"{len(gone)} of the {len(table.sources)} videos do not exist: {_first_8(gone)} "
            "(a CSV data set's paths are relative to the CSV's folder; docs/io.md, "
            "'Generic CSV')"
        )
    # One file under two ids (found in a probe: accepted, and under two subjects LOSO
    # then tested a video it had trained on).
    by_file: dict[Path, list[str]] = {}
    for name, ref in sorted(table.sources.items()):
        by_file.setdefault(ref.path.resolve(), []).append(name)
    twice = [
        f"{path} as {' and '.join(map(repr, names))}"
        for path, names in by_file.items()
        if len(names) > 1
    ]
    if twice:
        raise DatasetError(
            f"{len(twice)} file(s) listed as more than one video: {_first_8(twice)}; a "
            "leave-one-subject-out fold would test a video that it trained on (under "
            "another id): list each file once"
        )
    subj = {e.video: e.subject for e in table.expressions}
    by_video: dict[str, list] = {}
    for e in table.expressions:
        by_video.setdefault(e.video, []).append(e)
    plan: dict[str, PlannedVideo] = {}
    problems = []
    for name, ref in sorted(table.sources.items()):
        if ref.subject is None and name not in subj:
            raise DatasetError(f"video {name!r} ({ref.path}): its subject is unknown")
        info = open_video(ref.path, stride=ref.stride, fps=ref.fps).info
        n = int(info.num_frames)
        exprs = by_video.get(name, [])
        if n < window:
            if exprs:
                problems.append(
                    f"{name} ({ref.path}): {n} frames after stride {ref.stride}, shorter than "
                    f"the window of {window}, but annotated"
                )
            else:  # nothing to learn or score in it: left out, with a warning
                print(
                    f"spotformer: leaving out video {name!r} ({ref.path}): {n} frames after "
                    f"stride {ref.stride}, shorter than the window of {window}, no annotation",
                    file=sys.stderr,
                )
            continue
        for e in exprs:
            if lies_outside(e, n):
                problems.append(
                    f"{name} ({ref.path}, {n} frames after stride {ref.stride}): {e.kind} "
                    f"expression {e.onset}-{e.offset}{_at(e)} lies outside it"
                )
            elif e.offset >= n:
                # far past the end: more likely a wrong fps or stride than a late offset
                far = (
                    f"; {e.offset} is {e.offset / n:.1f}x its {n} frames: check the "
                    "annotation's stride and fps (frames are 0-based after any subsampling)"
                    if e.offset > OVERRUN_HINT * n
                    else ""
                )
                print(
                    f"spotformer: video {name!r} ({ref.path}): {e.kind} expression "
                    f"{e.onset}-{e.offset}{_at(e)} runs past its last frame {n - 1} (after "
                    f"stride {ref.stride}); cut there for training and scoring{far}",
                    file=sys.stderr,
                )
        plan[name] = PlannedVideo(
            ref, ref.subject or subj[name], n, float(info.fps), float(info.source_fps)
        )
    if problems:
        shown = "; ".join(problems[:8]) + (
            f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
        )
        raise DatasetError(
            f"{len(problems)} annotation problem(s), found before extraction: {shown}. Frames "
            "are 0-based after any subsampling (CAS(ME)^2 files are 1-based; SAMM-LV frames "
            "are divided by 7)"
        )
    return plan


def _at(e: Expression) -> str:
    """`` (FILE line N)``: where the annotation gives ``e``, for messages ("" if unknown)."""
    return f" ({e.where})" if e.where else ""


#: An expression whose offset is over this times a video's frame count gets a hint that
#: its stride or fps may be wrong (found in review: a 391 on a 240-frame video was cut
#: without one).
OVERRUN_HINT = 1.2


def extracted_features(
    features_dir: str | os.PathLike,
    planned: PlannedVideo,
    config,  # noqa: ANN001 - SWMROConfig (imported lazily)
) -> tuple[Tensor, float, list[int], Any, Any] | str:
    """``sw-mro extract``'s features of ``planned``'s video in ``features_dir``, with its
    fps, frames without a face, and its nose motion and face contrast as recorded
    (:class:`~sw_mro.pipeline.NoseMotion`, :class:`~sw_mro.pipeline.FaceContrast`, for
    the same warnings as extracting gives), where they are what extracting here would give:
    complete and intact, from this very input (size and content samples), with these
    feature settings at this stride (and frame-folder rate), by the same Farneback
    backend, with the planned frame count and rate. Otherwise why not (a str)."""
    import dataclasses
    import json

    import numpy as np

    from sw_mro.commands.extract import output_name, output_state

    path, folder = Path(planned.ref.path), Path(features_dir)
    cfg = dataclasses.replace(config, stride=planned.ref.stride)
    folder_fps = planned.ref.fps if path.is_dir() else None
    state, why = output_state(path, folder, cfg, folder_fps)
    if state != "done":
        return why or f"no complete {output_name(path)}.npy"
    name = output_name(path)
    try:
        meta = json.loads((folder / f"{name}.json").read_text())
        frames, fps = int(meta["num_frames"]), float(meta["fps"])
        # A file's rate given by the CSV (docs/io.md: 25 for 30 fps files) labels its
        # frames and changes no feature: `sw-mro extract` records the container's, and
        # has no --fps for files (found in review: such files were never reused).
        if frames != planned.frames or (path.is_dir() and fps != planned.fps):
            return f"it has {frames} frames at {fps:g} fps, not {planned.frames} at {planned.fps:g}"
        missing = [int(i) for i in meta.get("landmark_fallback_frames", [])]
        x = torch.from_numpy(np.load(folder / f"{name}.npy")).to(cfg.device)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable ({exc})"
    from sw_mro.pipeline import FaceContrast, NoseMotion

    motion = NoseMotion.from_summary(meta.get("nose_motion"))
    # The saved config matched this run's (output_state), so its landmark segment too.
    contrast = FaceContrast.from_summary(meta.get("face_contrast"), cfg.landmark_segment)
    return x, planned.fps, missing, motion, contrast


def dataset_features(
    table: AnnotationTable,
    config=None,  # noqa: ANN001 - SWMROConfig (imported lazily)
    progress: bool = True,
    plan: dict[str, PlannedVideo] | None = None,
    features_dir: str | os.PathLike | None = None,
) -> FeatureSet:
    """Extract every video of ``table.sources`` once (sorted by id), after
    :func:`plan_videos` (or the ``plan`` it returned for this table and window).

    ``features_dir``: a ``sw-mro extract --out-dir``; a video's features there are used
    instead of extracting it where :func:`extracted_features` finds them the same.
    """
    from tqdm import tqdm

    import sw_mro
    from sw_mro.config import (
        LANDMARK_FALLBACK_WARN_SHARE,
        LANDMARK_FALLBACK_WORDS,
        LARGE_NOSE_MOTION_SHARE,
    )
    from sw_mro.pipeline import FaceContrast, NoseMotion

    cfg = config or sw_mro.SWMROConfig()
    if plan is None:
        plan = plan_videos(table, cfg.window)
    total = sum(p.frames for p in plan.values())
    out = FeatureSet()
    reused = out.reused
    not_reused: dict[str, str] = {}  # video -> why its features in features_dir were not used
    moved: list[tuple[str, NoseMotion]] = []
    faceless: list[tuple[str, float]] = []  # videos over the share of frames without a face
    jumped: list[str] = []  # videos whose tracked face changed within a clip
    dim: list[tuple[str, FaceContrast]] = []  # videos whose face spans few grey levels
    with tqdm(
        total=total, unit="frame", desc="SW-MRO", disable=not progress, file=sys.stderr
    ) as bar:
        for name, planned in plan.items():
            ref = planned.ref
            bar.set_postfix_str(name, refresh=False)
            motion, missing = NoseMotion(cfg.face_size), []
            contrast = FaceContrast(cfg.landmark_segment)
            got = extracted_features(features_dir, planned, cfg) if features_dir else None
            if isinstance(got, tuple):
                x, r, missing, motion, contrast = got
                reused.append(name)
                bar.update(int(x.shape[0]))
            else:
                if got is not None:
                    not_reused[name] = got
                started = time.perf_counter()
                x, r = video_features(
                    ref.path,
                    config,
                    stride=ref.stride,
                    fps=ref.fps,
                    bar=bar,
                    motion=motion,
                    fallback=missing,
                    contrast=contrast,
                )
                out.extract_seconds += time.perf_counter() - started
            out.features[name], out.fps[name] = x, r
            out.subjects[name] = planned.subject
            if motion.large():
                moved.append((name, motion))
            if motion.jumped():
                first = motion.first_jump
                jumped.append(name if first is None else f"{name} (frame {first})")
            if contrast.warns():
                dim.append((name, contrast))
            if len(missing) > LANDMARK_FALLBACK_WARN_SHARE * x.shape[0]:
                faceless.append((name, len(missing) / x.shape[0]))
    if features_dir is not None:
        why = ""
        if not_reused:
            first = next(iter(not_reused))
            why = (
                f"; extracted {len(not_reused)}, e.g. {first}: {not_reused[first]}. Files "
                f"this run reuses come from `{_extract_command(cfg, plan[first], features_dir)}`"
            )
        print(
            f"spotformer: reused the features of {len(reused)} of {len(plan)} videos from "
            f"{features_dir}{why}",
            file=sys.stderr,
        )
    if faceless:
        shown = _first_8([f"{n} ({100 * share:.0f} %)" for n, share in faceless])
        print(
            f"spotformer: warning: no face in over {100 * LANDMARK_FALLBACK_WARN_SHARE:g} % "
            f"of the frames of {len(faceless)} of {len(plan)} videos: {shown}; "
            f"{LANDMARK_FALLBACK_WORDS}",
            file=sys.stderr,
        )
    if jumped:
        print(
            f"spotformer: warning: in {len(jumped)} of {len(plan)} videos the tracked face "
            f"changed within a clip (the nose landmarks crossed half the face crop): "
            f"{_first_8(jumped)}; another face of similar size in view? Those "
            "windows' features compare two faces (docs/sw_mro.md, 'A face that jumps')",
            file=sys.stderr,
        )
    if dim:
        print(
            f"spotformer: warning: in {len(dim)} of {len(plan)} videos the face spans fewer "
            f"than {FaceContrast().limit:g} grey levels (1st-99th percentile), at the "
            f"median or in a stretch: {_first_8([f'{n} ({c.short()})' for n, c in dim])}; "
            "dim or washed-out video: Farneback's flow, and so the features, shrink with "
            "the contrast; brighten or stretch those videos first (docs/io.md, 'Contrast')",
            file=sys.stderr,
        )
    if moved and not cfg.align_from_landmarks:
        shown = _first_8([f"{n} ({100 * m.share:.1f} %, up to {m.max:.0f} px)" for n, m in moved])
        print(
            f"spotformer: in {len(moved)} of {len(plan)} videos the nose landmarks moved more "
            f"than {moved[0][1].limit:g} px (at face size {cfg.face_size}) within a clip in over "
            f"{100 * LARGE_NOSE_MOTION_SHARE:g} % of the frame pairs: {shown}; "
            f"{NoseMotion.ADVICE}",
            file=sys.stderr,
        )
    return out


def _extract_command(cfg, planned: PlannedVideo, features_dir) -> str:  # noqa: ANN001
    """The ``sw-mro extract`` line that makes features this run reuses, for a video
    opened as ``planned`` (found in a probe: the reasons a file was not reused named
    extract's options as if the user ran it, e.g. "--fps 30 keeps it" to a SAMM-LV run)."""
    import sw_mro

    base = sw_mro.SWMROConfig()
    words = ["sw-mro extract", "VIDEOS", "--out-dir", shlex.quote(str(features_dir))]
    if cfg.window != base.window:
        words += ["--window", str(cfg.window)]
    if cfg.face_size != base.face_size:
        words += ["--face-size", str(cfg.face_size)]
    if planned.ref.stride != 1:
        words += ["--stride", str(planned.ref.stride)]
    if planned.ref.fps is not None and Path(planned.ref.path).is_dir():
        words += ["--fps", f"{planned.ref.fps:g}"]
    if cfg.landmarks != base.landmarks:
        words += ["--landmarks", cfg.landmarks]
    if cfg.landmark_redetect != base.landmark_redetect:
        words += ["--landmark-redetect", str(cfg.landmark_redetect)]
    if cfg.align_from_landmarks:
        words.append("--align-from-landmarks")
    return " ".join(words) + (" --gpu" if cfg.device.startswith("cuda") else "")


def _first_8(items: list[str]) -> str:
    """``a, b, c`` or ``a, ..., h and 3 more``: the videos a summary names."""
    more = f" and {len(items) - 8} more" if len(items) > 8 else ""
    return ", ".join(items[:8]) + more
