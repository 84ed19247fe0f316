"""``spotformer evaluate``: score a prediction CSV against a ground-truth CSV or a data
set's annotation workbook (MEGC protocol).

Needs no model: the CSVs hold ``video,onset,offset,type[,score]`` rows (SPEC.md
section 6); the ground truth may also be CAS(ME)^2's or SAMM-LV's ``.xlsx``, read as
training reads it. Prints a TP/FP/FN/precision/recall/F1 table, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", type=Path, required=True, help="predictions CSV")
    parser.add_argument(
        "--gt", type=Path, required=True,
        help="ground-truth CSV, or the data set's annotation workbook (CAS(ME)^2 or "
        "SAMM-LV .xlsx; SAMM-LV frames divided by 7, as in training)",
    )  # fmt: skip
    parser.add_argument(
        "--stride", type=int,
        help="with a workbook: the stride of the predictions' frames (default the data "
        "set's: SAMM-LV 7, CAS(ME)^2 1; e.g. 1 for 'spotformer spot --stride 1' on a "
        "SAMM-LV folder)",
    )  # fmt: skip
    parser.add_argument(
        "--iou", type=float, default=0.5, help="IoU a proposal needs to be a TP (default 0.5)"
    )
    parser.add_argument(
        "--protocol", choices=("megc", "authors"), default="megc",
        help="megc (SPEC, default) or authors: the SpotFormer authors' scripts (IoU from "
        "end - start lengths, each ground truth in turn takes its best remaining proposal), "
        "to compare with figures they computed; never more TPs than megc",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")


def run(args: argparse.Namespace) -> int:
    from spotformer.data.annotations import is_workbook
    from spotformer.metrics import EvaluationError, evaluate, read_ground_truth, read_intervals

    if not 0.0 < args.iou <= 1.0:
        print(f"spotformer evaluate: --iou must be in (0, 1], got {args.iou}", file=sys.stderr)
        return 2
    if args.stride is not None and args.stride < 1:
        print(f"spotformer evaluate: --stride must be >= 1, got {args.stride}", file=sys.stderr)
        return 2
    if args.stride is not None and not is_workbook(args.gt):
        print(  # found in review: ignored without a word
            f"spotformer evaluate: note: --stride {args.stride} converts a workbook's frames; "
            f"{args.gt} is an interval CSV, whose frames are used as they are (they must "
            "count the predictions' frames)",
            file=sys.stderr,
        )
    try:
        preds = read_intervals(args.pred)
        gt_videos: set[str] = set()  # with or without expressions
        # Resolved once, and passed on: the JSON records the stride that was used.
        stride = _scored_stride(args.gt, args.stride)
        gts = read_ground_truth(args.gt, videos=gt_videos, stride=stride)
    except EvaluationError as exc:
        print(f"spotformer evaluate: {exc}", file=sys.stderr)
        return 2
    pred_videos = {p.video for p in preds}
    unknown = sorted(pred_videos - gt_videos)
    if unknown and gt_videos:
        shown = ", ".join(map(repr, unknown[:3])) + (", ..." if len(unknown) > 3 else "")
        if len(unknown) == len(pred_videos):
            print(
                f"spotformer evaluate: warning: none of the {len(pred_videos)} prediction "
                f"videos ({shown}) is in the ground truth (e.g. {sorted(gt_videos)[0]!r}); check "
                "the video ids (spotformer spot --video-id)",
                file=sys.stderr,
            )
        else:
            print(
                f"spotformer evaluate: note: {len(unknown)} of {len(pred_videos)} prediction "
                f"videos are not in the ground truth ({shown}); their proposals count as FPs"
                + (
                    ""
                    if is_workbook(args.gt)
                    else " (a ground-truth CSV names a video without expressions in a row "
                    "with its video and no onset, offset or type)"
                ),
                file=sys.stderr,
            )
    annotated = {g.video for g in gts}
    if not preds and gts:  # found in review: a header-only file was scored in silence
        print(
            f"spotformer evaluate: note: {args.pred} has no predictions; every "
            f"expression of the ground truth ({len(gts)}) counts as an FN",
            file=sys.stderr,
        )
    silent = sorted(annotated - pred_videos) if pred_videos else []
    if silent:  # found in review: a one-video `spot` CSV scored every other video's as FN
        shown = ", ".join(map(repr, silent[:3])) + (", ..." if len(silent) > 3 else "")
        print(
            f"spotformer evaluate: note: {len(silent)} of {len(annotated)} annotated videos "
            f"have no predictions ({shown}); their expressions count as FNs (right for a "
            "run's predictions.csv, which has no rows for videos where nothing was spotted; "
            "for one video's `spot` output, score against its ground truth alone)",
            file=sys.stderr,
        )
    result = evaluate(preds, gts, args.iou, args.protocol)
    if args.json:
        # What was scored and how, beside the counts, so a saved file says which protocol.
        scored = {"iou": args.iou, "protocol": args.protocol, "stride": stride,
                  "proposals": len(preds), "ground_truths": len(gts)}  # fmt: skip
        print(json.dumps({**result.to_dict(), **scored}, indent=2))
    else:
        how = "" if args.protocol == "megc" else " (the authors' protocol: end - start IoU)"
        print(f"{len(preds)} proposals, {len(gts)} ground truths, IoU >= {args.iou:g}{how}")
        print(result.table())
    return 0


def _scored_stride(gt: Path, stride: int | None) -> int | None:
    """The stride a workbook's frames were converted to: the one given, else its data
    set's (SAMM-LV 7, CAS(ME)^2 1); None for a CSV, whose frames are taken as they are
    (found in a probe: the JSON said null for a SAMM-LV workbook scored at 7)."""
    from spotformer.data.annotations import SAMM_SUBSAMPLE, is_workbook, workbook_kind
    from spotformer.errors import AnnotationError
    from spotformer.metrics import EvaluationError

    if not is_workbook(gt):
        return None
    try:
        kind = workbook_kind(gt)
    except AnnotationError as exc:  # not a workbook of either data set, unreadable
        raise EvaluationError(str(exc)) from exc
    return stride or (SAMM_SUBSAMPLE if kind == "samm" else 1)
