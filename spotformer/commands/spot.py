"""``spotformer spot``: spot expressions in one video with a trained fold model.

Extracts the video's SW-MRO features in memory (with the settings of the run that
trained the model), predicts per-frame probabilities, post-processes them (SPEC.md
section 5) and writes ``video,onset,offset,type,score,apex`` rows. ``--plot`` draws the
ME and MaE apex and expression probabilities with the intervals, like paper Fig. 8.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import tempfile
from pathlib import Path

from spotformer.commands._spot_args import (
    SPOT_OPTIONS,
    add_spotting_arguments,
    option_words,
    spot_params_from,
)
from sw_mro._cli_util import describe_runs, frame_runs, no_cuda_reason
from sw_mro.io.atomic import atomic_path

#: Printed after "interrupted" on Ctrl-C (sw_mro._cli_util.dispatch).
INTERRUPT_HINT = "--out and --plot are each written whole or not at all (the CSV first)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="video file or frame folder")
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="RUN_DIR/folds/<subject>/model.pt"
    )
    parser.add_argument("--out", type=Path, required=True, help="intervals CSV to write")
    parser.add_argument("--gpu", action="store_true", help="extract and predict on CUDA")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar for the extraction"
    )
    parser.add_argument("--plot", type=Path, help="PNG of the probability curves")
    parser.add_argument(
        "--gt", type=Path,
        help="ground truth to draw (and score): an interval CSV in this run's frames, or "
        "the data set's annotation workbook (CAS(ME)^2 or SAMM-LV .xlsx; SAMM-LV's frames "
        "are converted to this run's stride, CAS(ME)^2's need stride 1)",
    )  # fmt: skip
    parser.add_argument(
        "--video-id",
        help="video id in --gt and --out (default: the file stem or folder name, or the one "
        "id of --gt that the name starts with, e.g. s15/15_0101 for 15_0101disgustingteeth)",
    )
    parser.add_argument(
        "--apex-threshold", type=float,
        help="post-processing: apex candidates where P_apex exceeds this (default: the "
        "model file's, SPEC 0.5)",
    )  # fmt: skip
    parser.add_argument(
        "--top-k", type=int,
        help="post-processing: keep at most this many intervals per type (default: the "
        "model file's, SPEC 5 per video and type, as the evaluation keeps; a long video "
        "of one's own may hold more, and a note says when more passed)",
    )  # fmt: skip
    parser.add_argument(
        "--fps", type=float,
        help="source frame rate (default: the container's; for a frame folder, that of the "
        "model's training data, e.g. 200 for SAMM-LV, else 30)",
    )  # fmt: skip
    parser.add_argument(
        "--stride", type=int,
        help="keep every n-th frame (default: the whole stride that brings the video "
        "nearest the frame rate of the model's training data, e.g. 7 for a 200 fps "
        "SAMM-LV video, 2 for a 60 fps video on a 30 fps model, with a note on stderr "
        "when it is not 1 or the rates still differ; 1 for a model that did not record "
        "its data's rate)",
    )  # fmt: skip
    add_spotting_arguments(parser, override=True)


def _sw_config(info: dict, device: str):  # noqa: ANN202 - SWMROConfig
    """The SW-MRO settings the model was trained with (SWMROConfig defaults otherwise;
    keys another version wrote are left out), on ``device``."""
    import sw_mro

    saved = {k: v for k, v in (info.get("sw_mro") or {}).items() if k != "batch_size"}
    if saved.get("flow_backend") == "cupy" and not device.startswith("cuda"):
        saved["flow_backend"] = "auto"  # a GPU-trained model on CPU: the same flow, in C++
    return sw_mro.SWMROConfig.from_dict({**saved, "device": device}, strict=False)


def _ends_a_word(name: str, k: int) -> bool:
    """Whether ``name[:k]`` ends where a token does: at the end, at punctuation, or where
    a number meets a letter (``15_0101|disgust``); not inside a number (``clip1|2``) or a
    word (``a|pril``), nor where a word goes on with a number (``clip|2``: found in
    review, ``clip2.mp4`` was scored as ``clip``, and ``astro40`` as ``astro``)."""
    if k >= len(name):
        return True
    a, b = name[k - 1], name[k]
    if not (a.isalnum() and b.isalnum()):
        return True
    return a.isdigit() and not b.isdigit()


def casme2_layout_id(video: Path) -> str | None:
    """CAS(ME)^2's id of a video in its data set layout, as training names it:
    ``s16/16_0401`` for ``rawpic/s16/16_0401girlcrashing`` (or ``rawvideo/s16/...``);
    None elsewhere."""
    from spotformer.data.annotations import casme2_video_id

    if not re.fullmatch(r"s\d+", video.parent.name):
        return None
    if video.parent.parent.name not in ("rawpic", "rawvideo"):
        return None
    return casme2_video_id(video.parent.name, video.name)


def ground_truth_id(video: Path, ids: set[str]) -> str | None:
    """The ground-truth id of ``video``: its stem if listed; else the one id whose last
    part starts its name and ends a token there (CAS(ME)^2: ``s15/15_0101`` for
    ``15_0101disgustingteeth``; SAMM-LV: ``006_1``; not ``clip1`` for ``clip12``); None
    when there is no such id or more than one."""
    name = video.stem if video.is_file() else video.name
    if name in ids:
        return name
    tails = {i: i.rsplit("/", 1)[-1] for i in ids}
    hits = {
        i: tail
        for i, tail in tails.items()
        if tail and name.startswith(tail) and _ends_a_word(name, len(tail))
    }
    longest = max(map(len, hits.values()), default=0)
    best = [i for i, tail in hits.items() if len(tail) == longest]
    return best[0] if len(best) == 1 else None


def folder_rate(video: Path, info: dict, fps: float | None) -> float | None:
    """The rate to open ``video`` with: ``fps``, else for a frame folder the rate of the
    model's training data (``info``'s ``source_fps``), else None (the container's)."""
    return info.get("source_fps") if fps is None and video.is_dir() else fps


def open_like_training(
    video: Path,
    info: dict,
    stride: int | None,
    fps: float | None,
    source=None,  # noqa: ANN001
) -> tuple[int, float | None, str]:
    """The stride and frame-folder rate to open ``video`` with, and a note on what was
    taken from the model. ``source``: the video's ``VideoInfo`` opened at
    :func:`folder_rate`, when the caller has it (else it is opened here).

    A frame folder's rate defaults to that of the model's training data (SAMM-LV: 200;
    else 30). Without ``stride``, the video is subsampled to the frame rate the model
    was trained at (its videos' rate after their strides, ``info["fps"]``; SAMM-LV
    200 / 7 ~ 28.6): every 7th frame of a 200 fps folder, every frame of a 30 fps file.
    A model trained on videos of mixed rates takes every frame, with a note; one without
    that record (runs before 2026-11-29) takes the rate from its data's one stride and
    source rate (unknown: 30), and without one stride every frame.
    """
    from spotformer.data.table import rate_scale
    from sw_mro.io.video import open_video

    fps_in = folder_rate(video, info, fps)
    if "fps" in info:
        if info["fps"] is None:  # found in a probe: mixed rates were taken for 30 fps
            mixed = f"{video}: the model was trained on videos of mixed frame rates, so "
            mixed += "every frame is taken (--stride N subsamples)"
            return (1, fps_in, mixed) if stride is None else (stride, fps_in, "")
        target = float(info["fps"])
    else:  # an older run's record: its data's one stride (and rate, unknown = 30)
        trained_stride = info.get("stride")
        if not trained_stride:
            return stride or 1, fps_in, ""
        target = float(info.get("source_fps") or 30.0) / int(trained_stride)
    source = float((source or open_video(video, fps=fps_in).info).source_fps)
    auto = max(1, round(source / target))  # the whole stride nearest the model's rate
    auto_matches = rate_scale(source / auto, target) == 1.0  # as training would treat it
    scoring = (
        "Its intervals count frames at stride {s}: a SAMM-LV workbook scores them with "
        "`spotformer evaluate --stride {s}`; a CAS(ME)^2 workbook only at stride 1 (it "
        "counts every frame), and a ground-truth CSV as it is (its frames must be at "
        "stride {s} too)"
    )
    if stride is not None:
        rate = source / stride
        if rate_scale(rate, target) == 1.0:  # the rates training treats as the same
            return stride, fps_in, ""
        how = (
            f"leave out --stride to match it (stride {auto})"
            if auto_matches
            else f"no whole stride of {source:g} fps gives it"
        )
        return (
            stride,
            fps_in,
            (
                f"{video}: {source:g} fps at --stride {stride} is {rate:.2f} fps, not the "
                f"{target:.2f} fps of the model's training data, whose motion the model "
                f"learnt at that rate; {how}. " + scoring.format(s=stride)
            ),
        )
    chosen, rate = auto, source / auto
    # found in review: "--fps overrides this" was said to a user who had given --fps
    override = "--stride overrides this" if fps is not None else "--stride and --fps override this"
    if not auto_matches:  # found in review: a 25 fps webcam on a 30 fps model, unsaid
        note = (
            f"{video}: {source:g} fps at stride {chosen} is {rate:.2f} fps, not the "
            f"{target:.2f} fps of the model's training data (no whole stride gives it): "
            f"the model sees each motion over {rate / target:.2f}x the frames it learnt "
            "it in, which can cost accuracy (the post-processing's windows are scaled to "
            f"{rate:.2f} fps); {override}"
        )
        if chosen > 1:
            note += ". " + scoring.format(s=chosen)
        return chosen, fps_in, note
    if chosen == 1:
        if fps_in == fps:
            return 1, fps_in, ""
        note = (
            f"{video}: a frame folder, read as {source:g} fps (the rate of the model's "
            "training data); --fps overrides this"
        )
        return 1, fps_in, note
    note = (
        f"{video}: {source:g} fps at stride {chosen} is {rate:.2f} fps, the rate "
        f"of the model's training data ({target:.2f} fps); {override}. " + scoring.format(s=chosen)
    )
    if video.is_dir() and fps is None:  # e.g. a SAMM-LV model on a CAS(ME)^2 folder
        note += (
            f". A frame folder is taken to be {source:g} fps like the model's data: if "
            "this one is not, give its real rate with --fps (CAS(ME)^2's: --fps 30)"
        )
    return chosen, fps_in, note


def _within_the_video(gts: list, last: int, video_id: str, stride: int) -> list:
    """The ground truth of a video whose last frame is ``last`` as it can be scored: an
    expression that runs past that frame is cut there, as training cuts it, and one
    that starts after it is left out; either is said (found in review: an 80-frame clip
    scored against its video's whole annotation counted the expressions past its end
    as misses without a word)."""
    past = [g for g in gts if g.onset > last]
    cut = [g for g in gts if g.onset <= last < g.offset]
    if past or cut:
        end = f"the video's last frame ({last}, at stride {stride})"
        said = []
        if past:
            one = len(past) == 1
            said.append(
                f"{len(past)} start{'s' if one else ''} after {end} and "
                f"{'is' if one else 'are'} not scored"
            )
            end = "it"
        if cut:
            one = len(cut) == 1
            said.append(
                f"{len(cut)} run{'s' if one else ''} past {end} and {'is' if one else 'are'} "
                "cut there, as training cuts them"
            )
        print(
            f"spotformer spot: warning: {video_id}: of its {len(gts)} ground-truth "
            f"expressions, {', and '.join(said)}; is --gt this very video's, at this "
            "stride?",
            file=sys.stderr,
        )
    return [
        dataclasses.replace(g, offset=min(g.offset, last), apex=min(g.apex, last))
        for g in gts
        if g.onset <= last
    ]


def plot_curves(path: Path, logits, fps: float, intervals, gts, title: str) -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spotformer.postprocess import frame_probabilities

    n = logits.shape[0]
    t = range(n)
    fig, axes = plt.subplots(2, 1, figsize=(12, 5.5), sharex=True)
    for ax, kind, name in ((axes[0], "micro", "ME"), (axes[1], "macro", "MaE")):
        p = frame_probabilities(logits, kind)
        ax.plot(t, p.apex.cpu().numpy(), lw=1, label=f"{name} apex")
        ax.plot(t, p.expression.cpu().numpy(), lw=1, label=f"{name} expression")
        for i in intervals:
            if i.kind == kind:
                # Each frame spans half a frame either side of its point: an interval's
                # last frame is in it (found in a probe: drawn a frame short, and a
                # one-frame interval not at all).
                ax.axvspan(i.onset - 0.5, i.offset + 0.5, color="tab:green", alpha=0.25, lw=0)
        for g in gts or []:
            if g.kind == kind:
                ax.plot(
                    [g.onset - 0.5, g.offset + 0.5], [1.06, 1.06], color="tab:red", lw=4,
                    solid_capstyle="butt",
                )  # fmt: skip
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("probability")
        ax.legend(loc="upper right", fontsize=8)
    # The ground truth is named only where --gt gave one (found in review: always).
    truth = ", ground truth (red bars)" if gts is not None else ""
    axes[0].set_title(f"{title}: predicted (green){truth}")
    axes[1].set_xlabel(f"frame ({fps:.2f} fps)")
    fig.tight_layout()
    # Atomically, like every other output: a killed or failed write leaves no half image.
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format=path.suffix.lower().lstrip("."))
    finally:
        plt.close(fig)


def _trained_on(video_id: str, mf, checkpoint: Path) -> str:  # noqa: ANN001 - ModelFile
    """A warning when a CAS(ME)^2 or SAMM-LV model's fold held out another subject than
    ``video_id``'s: LOSO trains each fold on every other subject, so its score on this
    video is not a held-out one (found in a probe: F1 0.80, unsaid). Empty otherwise."""
    dataset, held = mf.info.get("dataset"), mf.subject
    if dataset not in ("casme2", "samm") or not held:
        return ""
    subject = video_id.split("/")[0] if dataset == "casme2" else video_id.split("_")[0]
    if subject == held:
        return ""
    from spotformer.train import fold_dir

    own = fold_dir(checkpoint.parent.parent.parent, subject) / "model.pt"
    use = f"use {own}" if own.is_file() else f"use the fold that held out {subject}"
    return (
        f"video {video_id!r} is subject {subject}'s, and this model's fold held out {held}: "
        f"{subject} was among the subjects it trained on, so its score on this video is "
        f"not a held-out one (LOSO scores each video with its own subject's fold; {use})"
    )


def _near_no_face(intervals: list, missing: list[int], half: int) -> list:
    """The intervals whose windows (frames ``onset - half`` to ``offset + half``) hold a
    frame without a face (found in a probe: a face that left the picture gave intervals
    there, unflagged), in time order."""
    import numpy as np

    gone = np.asarray(sorted(set(missing)), dtype=np.int64)
    near = []
    for i in intervals:
        k = int(np.searchsorted(gone, i.onset - half))
        if k < gone.size and gone[k] <= i.offset + half:
            near.append(i)
    return sorted(near, key=lambda i: (i.onset, i.offset))


def _interval_words(intervals: list, shown: int = 6) -> str:
    """``MaE 10-40, ME 52-60 and 2 more``."""
    words = [f"{'MaE' if i.kind == 'macro' else 'ME'} {i.onset}-{i.offset}" for i in intervals]
    more = len(words) - shown
    return ", ".join(words[:shown]) + (f" and {more} more" if more > 0 else "")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through links, ``..`` and case-insensitive file
    systems where both exist; by their resolved names otherwise)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def keep_top(intervals: list, top_k: int) -> tuple[list, list[str]]:
    """At most ``top_k`` intervals of each type (``intervals`` come best first per type,
    as ``spot_video`` gives them), and the types that had more, in order."""
    seen: dict[str, int] = {}
    kept, capped = [], []
    for i in intervals:
        seen[i.kind] = seen.get(i.kind, 0) + 1
        if seen[i.kind] <= top_k:
            kept.append(i)
        elif seen[i.kind] == top_k + 1:
            capped.append(i.kind)
    return kept, capped


def run(args: argparse.Namespace) -> int:
    import torch

    from spotformer.data.annotations import is_workbook
    from spotformer.errors import SpotFormerError
    from spotformer.features import video_features
    from spotformer.metrics import evaluate, read_ground_truth, write_intervals
    from spotformer.postprocess import SpotParams, spot_video
    from spotformer.train import load_model, predict_logits
    from sw_mro.config import LANDMARK_FALLBACK_WARN_SHARE, LANDMARK_FALLBACK_WORDS
    from sw_mro.errors import ClipTooShortError, SWMROError
    from sw_mro.io.video import open_video
    from sw_mro.pipeline import FaceContrast, NoseMotion, too_short_error

    def fail(msg: str) -> int:
        print(f"spotformer spot: {msg}", file=sys.stderr)
        return 2

    if args.gpu and not torch.cuda.is_available():
        return fail(
            f"--gpu given but no CUDA device is available: {no_cuda_reason()}; drop --gpu to "
            "run on CPU"
        )
    device = "cuda" if args.gpu else "cpu"
    from sw_mro.commands.extract import output_name

    # A folder by its name (found in review: take.v2/ was video "take"), of the absolute
    # path (found in review: `spot .` wrote rows with an empty video id, which `evaluate`
    # refused); a file by its stem
    video_id = args.video_id or output_name(args.video)
    # Everything that can fail without the video is checked before the extraction.
    if args.stride is not None and args.stride < 1:
        return fail(f"--stride must be an int >= 1, got {args.stride}")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        return fail(f"--fps must be a positive frame rate, got {args.fps}")
    # Found in a probe: --out naming the video replaced it with the CSV, and --out and
    # --plot naming one file kept only the plot.
    inputs = {"the video": args.video, "--checkpoint": args.checkpoint, "--gt": args.gt}
    if args.out is not None and args.plot is not None and _same_file(args.out, args.plot):
        return fail(f"--out and --plot name one file ({args.out}); give each its own")
    for opt, path in (("--out", args.out), ("--plot", args.plot)):
        if path is None:
            continue
        clash = next((k for k, v in inputs.items() if v is not None and _same_file(path, v)), None)
        if clash is not None:
            return fail(f"{opt} {path} is {clash}, which it would replace; give another name")
        if path.is_dir():
            return fail(f"{opt} {path} is a folder; give a file name")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return fail(f"{opt} {path}: cannot make its folder ({exc})")
        try:  # found in review: a read-only folder was found only after the extraction
            tempfile.TemporaryFile(dir=path.parent).close()
        except OSError as exc:
            return fail(f"{opt} {path}: cannot write in {path.parent} ({exc.strerror or exc})")
    if args.plot is not None:
        from matplotlib.backend_bases import FigureCanvasBase

        kinds = FigureCanvasBase.get_supported_filetypes()
        if args.plot.suffix.lower().lstrip(".") not in kinds:
            return fail(
                f"--plot {args.plot}: an image name ending in one of "
                f"{', '.join('.' + k for k in sorted(kinds))}"
            )
    try:
        mf = load_model(args.checkpoint, device)
        cfg = _sw_config(mf.info, device)
        # The post-processing options are checked now, not after a long extraction.
        params = spot_params_from(args, mf.config.spot)
        if args.apex_threshold is not None:
            params = dataclasses.replace(params, apex_threshold=args.apex_threshold)
        if args.top_k is not None:
            params = dataclasses.replace(params, top_k=args.top_k)
        opened = open_video(args.video, fps=folder_rate(args.video, mf.info, args.fps)).info
        stride, fps_in, note = open_like_training(
            args.video, mf.info, args.stride, args.fps, source=opened
        )
        # Too short for the model's window at this stride: said before the note on the
        # stride (found in a probe: --stride over the video's frames printed that note,
        # then failed without saying which stride would do).
        n_src = opened.source_num_frames
        if -(-n_src // stride) < cfg.window:
            raise too_short_error(args.video, n_src, stride, cfg.window)
        if note:
            print(f"spotformer spot: {note}", file=sys.stderr)
        # A workbook's frames are converted to this run's stride (SAMM-LV), or refused
        # when they cannot be (CAS(ME)^2 at a stride other than 1).
        all_gts = read_ground_truth(args.gt, stride=stride) if args.gt else []
        if args.video_id is None and all_gts:
            found = ground_truth_id(args.video, {g.video for g in all_gts})
            laid_out = casme2_layout_id(args.video)  # rawpic/s16/16_0401girlcrashing
            if found is None and laid_out is not None:
                found = laid_out  # an unannotated video: the id training gives it
            if found and found != video_id:
                print(f"spotformer spot: video id {found!r}, from --gt", file=sys.stderr)
            video_id = found or video_id
        gts = [g for g in all_gts if g.video == video_id]
        if args.gt and not gts:  # said now, not after a long extraction
            ids = sorted({g.video for g in all_gts})
            some = ", ".join(map(repr, ids[:4])) + (", ..." if len(ids) > 4 else "")
            print(
                f"spotformer spot: note: no ground truth for video {video_id!r} in {args.gt} "
                f"(its ids: {some or 'none'}): every interval will count as a false positive. "
                "If the video has expressions there under another id, pass it with --video-id",
                file=sys.stderr,
            )
        trained_on = _trained_on(video_id, mf, args.checkpoint) if gts else ""
        if trained_on and is_workbook(args.gt):
            print(f"spotformer spot: warning: {trained_on}", file=sys.stderr)
        motion, missing = NoseMotion(cfg.face_size), []
        contrast = FaceContrast(cfg.landmark_segment)
        from tqdm import tqdm

        # Found in a probe: a 4-minute video ran 3 minutes without a word.
        with tqdm(
            total=-(-n_src // stride), unit="frame", desc="SW-MRO", file=sys.stderr,
            disable=args.no_progress,
        ) as bar:  # fmt: skip
            feats, fps = video_features(
                args.video,
                cfg,
                stride=stride,
                fps=fps_in,
                bar=bar,
                motion=motion,
                fallback=missing,
                contrast=contrast,
            )
        if gts:  # the frames extracted: no second opening of the video
            gts = _within_the_video(gts, feats.shape[0] - 1, video_id, stride)
        faceless = describe_runs(frame_runs(missing), stride=stride) if missing else ""
        if len(missing) > LANDMARK_FALLBACK_WARN_SHARE * feats.shape[0]:
            print(
                f"spotformer spot: warning: {args.video}: no face in {len(missing)} of its "
                f"{feats.shape[0]} frames ({faceless}); "
                f"{LANDMARK_FALLBACK_WORDS}",
                file=sys.stderr,
            )
        if motion.jumped():
            print(
                f"spotformer spot: warning: {args.video}: {motion.describe_jumps()}",
                file=sys.stderr,
            )
        if contrast.warns():
            print(
                f"spotformer spot: warning: {args.video}: {contrast.describe()}",
                file=sys.stderr,
            )
        if motion.large() and not cfg.align_from_landmarks:
            print(
                f"spotformer spot: warning: {args.video}: {motion.describe(cfg.face_size)}; "
                "the alignment from 0 loses such head motion, so its features carry some "
                "of it. The model was trained without --align-from-landmarks (a model "
                "trained with it aligns this video from its landmarks too; docs/sw_mro.md)",
                file=sys.stderr,
            )
        logits = predict_logits(mf.model, feats, mf.config.infer_batch)
        # One more than kept: greedy NMS keeps the same best ones first, and the extra
        # one says that the cap cut intervals (found in a probe: a long video got 5 per
        # type, silently).
        more = dataclasses.replace(params, top_k=params.top_k + 1)
        intervals, capped = keep_top(spot_video(logits, video_id, fps, more), params.top_k)
        near = _near_no_face(intervals, missing, cfg.window // 2)
        if near:
            print(
                f"spotformer spot: note: {len(near)} of the {len(intervals)} intervals "
                f"reach{'es' * (len(near) == 1)} frames without a face ({faceless}): "
                f"{_interval_words(near)}; a face lost or found again moves the image as "
                "an expression does, so check them in the video",
                file=sys.stderr,
            )
        k, one = params.top_k, params.top_k == 1
        for kind in capped:
            print(
                f"spotformer spot: note: more than {k} {'MaE' if kind == 'macro' else 'ME'} "
                f"interval{'s' * (not one)} passed the post-processing; the best {k} "
                f"{'is' if one else 'are'} kept (at most --top-k per video and type"
                + (f", SPEC's {k}, as the evaluation keeps" if k == SpotParams().top_k else "")
                + "); give --top-k N for more on a long video",
                file=sys.stderr,
            )
        try:
            write_intervals(intervals, args.out)
        except OSError as exc:
            return fail(f"--out {args.out}: cannot write it ({exc.strerror or exc})")
    except ClipTooShortError as exc:  # the window is the model's: no --window to change
        return fail(
            str(exc).replace(", or a smaller window (--window)", " (the window is the model's)")
        )
    except ValueError as exc:  # a post-processing option's value, in the option's words
        return fail(option_words(str(exc), SPOT_OPTIONS))
    except (SpotFormerError, SWMROError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(str(exc))
    n = len(intervals)
    print(f"{video_id}: {feats.shape[0]} frames at {fps:.2f} fps, {n} interval{'s' * (n != 1)}")
    for i in intervals:
        print(f"  {i.kind:<5} {i.onset:>6} - {i.offset:<6} apex {i.apex:<6} score {i.score:.3f}")
    if args.gt:  # no ground truth for the video (noted above): every interval is an FP
        if params.top_k != SpotParams().top_k:  # found in review: unsaid
            print(
                f"spotformer spot: note: scored with --top-k {params.top_k} intervals per "
                f"type; the evaluation protocol (SPEC 6, MEGC) keeps {SpotParams().top_k}",
                file=sys.stderr,
            )
        print(evaluate(intervals, gts).table())
    print(f"wrote {args.out}")
    if args.plot:
        try:
            plot_curves(args.plot, logits, fps, intervals, gts if args.gt else None, video_id)
        except OSError as exc:
            return fail(f"--plot {args.plot}: cannot write it ({exc.strerror or exc})")
        print(f"wrote {args.plot}")
    return 0
