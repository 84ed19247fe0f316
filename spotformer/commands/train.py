"""``spotformer train``: SW-MRO features in memory -> leave-one-subject-out SpotFormer -> F1 table.

Every video is extracted once with ``sw_mro.stream`` onto the training device; one
model is trained per held-out subject (SPEC.md section 4) and all predictions are
scored together with the MEGC protocol (SPEC.md section 6). Writes RUN_DIR/config.json,
RUN_DIR/report.json, RUN_DIR/predictions.csv and one folder per fold.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from spotformer.commands._spot_args import (
    SPOT_OPTIONS,
    add_spotting_arguments,
    option_words,
    spot_params_from,
)
from sw_mro._cli_util import no_cuda_reason


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spotformer.features import DATASETS
    from spotformer.models import VARIANTS

    parser.add_argument("--dataset", choices=DATASETS, required=True, help="annotation format")
    parser.add_argument(
        "--root",
        type=Path,
        required=True,
        help="data set folder (csv: the CSV file or its folder)",
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder RUN_DIR")
    parser.add_argument(
        "--annotations",
        type=Path,
        help="annotation file, if not the default (synthetic and csv: ROOT/annotations.csv "
        "or ROOT itself; casme2: CAS(ME)^2code_final.xlsx in ROOT; samm: "
        "SAMM_LongVideos_V*_Release.xlsx in ROOT)",
    )
    parser.add_argument("--gpu", action="store_true", help="extract and train on CUDA")
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="simul-st",
        help="SpotFormer's spatio-temporal attention variant (default simul-st, the paper's)",
    )
    parser.add_argument("--epochs", type=int, default=100, help="epochs per fold (default 100)")
    parser.add_argument(
        "--batch-size", type=int, default=512, help="windows per step (default 512)"
    )
    parser.add_argument(
        "--dim", type=int, default=256, help="model width D, a multiple of 4 (default 256)"
    )
    parser.add_argument("--lr", type=float, default=2e-4, help="learning rate (default 2e-4)")
    parser.add_argument(
        "--selection",
        choices=("fixed", "val"),
        default="fixed",
        help="fixed: last epoch (default); val: best epoch on held-out *training* "
        "subjects, scored every epoch",
    )
    parser.add_argument(
        "--val-subjects",
        type=int,
        default=1,
        help="--selection val: training subjects held out per fold to pick the epoch (default 1)",
    )
    parser.add_argument(
        "--neutral-segments",
        type=float,
        default=1.0,
        help="fraction of expression-free 16-frame segments to train on too (default 1.0, "
        "every frame: blinks and head moves are seen as negatives; 0 is the authors' "
        "choice, expression segments only)",
    )
    parser.add_argument(
        "--durations",
        choices=("spec", "train"),
        default="spec",
        help="post-processing (k, j): spec (default): SPEC's (16, 5) ME / (59, 16) MaE; "
        "train: the mean and min durations of the training subjects' expressions",
    )
    parser.add_argument(
        "--apex-threshold",
        type=float,
        default=0.5,
        help="post-processing: apex candidates where P_apex exceeds this (default 0.5, SPEC)",
    )
    add_spotting_arguments(parser)
    parser.add_argument(
        "--macro-ratio", type=float, help="m of the loss (default 0.5; SAMM-LV 0.55)"
    )
    parser.add_argument(
        "--supcon", choices=("normalized", "authors"), default="normalized",
        help="contrastive loss form: normalized (L2-normalised features, Khosla et al.; "
        "default) or authors (the authors' code exactly: raw features, loss x tau / 0.07, "
        "the form lambda = 0.005 was tuned for); docs/spotformer.md, 'Losses'",
    )  # fmt: skip
    parser.add_argument(
        "--supcon-weight", type=float, default=0.005,
        help="lambda of the contrastive term (default 0.005, SPEC)",
    )  # fmt: skip
    parser.add_argument(
        "--mirror",
        type=float,
        default=0.0,
        help="probability of mirroring a training window left-right (augmentation; "
        "default 0, the authors' recipe)",
    )
    parser.add_argument(
        "--amp", choices=("bfloat16", "float16", "off"), default="bfloat16",
        help="mixed precision of training on CUDA (default bfloat16; float16 with a "
        "gradient scaler; off: float32, as the authors' code). Inference is float32",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of initialisation and batch order (default 0)"
    )
    parser.add_argument(
        "--face-size", type=int,
        help="SW-MRO face crop size (default 256; 320 for --dataset samm, as in the paper)",
    )  # fmt: skip
    parser.add_argument(
        "--align-from-landmarks", action="store_true",
        help="SW-MRO: also start each pair's nose alignment from its nose landmarks' motion "
        "(opt-in; for hand-held cameras and large head motion; docs/sw_mro.md)",
    )  # fmt: skip
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads for training (default: torch's, one per core; with --resume, "
        "the run's; 1 is fastest for small models on a busy box; the count changes the "
        "float sums: a run resumed at another count differs from an uninterrupted one); "
        "SW-MRO extraction keeps every core",
    )
    parser.add_argument("--resume", action="store_true", help="continue a stopped run in --out")
    parser.add_argument(
        "--features",
        type=Path,
        metavar="DIR",
        help="a `sw-mro extract --out-dir`: use a video's features there (DIR/<video file "
        "or folder name>.npy) instead of extracting it, where they were made from that "
        "very file with this run's SW-MRO settings (the rest are extracted)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


#: Printed after "interrupted" on Ctrl-C (sw_mro._cli_util.dispatch).
INTERRUPT_HINT = "run the same command with --resume to continue (finished folds are kept)"


def data_summary(table, videos: set[str]) -> str:  # noqa: ANN001 - AnnotationTable
    """What a run trains and scores on, in one line (found in a probe: the videos without
    annotations, which count for false positives, and the dropped rows were not counted
    anywhere a researcher comparing with the paper could see)."""
    used = [e for e in table.expressions if e.video in videos]
    annotated = {e.video for e in used}
    mae = sum(e.kind == "macro" for e in used)
    dropped = len(table.dropped)
    return (
        f"Data: {len(videos)} videos, {len(annotated)} annotated ({len(used)} expressions: "
        f"{mae} MaE, {len(used) - mae} ME), {len(videos - annotated)} without annotations "
        "(their intervals count as false positives)"
        + (
            f"; {dropped} annotation row{'s' * (dropped != 1)} dropped (warned above)"
            if dropped
            else ""
        )
    )


# SPEC 2.2: SW-MRO's face crop is 256 px by default; SAMM-LV's precedent used 320.
FACE_SIZE: dict[str, int] = {"samm": 320}


def run(args: argparse.Namespace) -> int:
    import torch

    from spotformer.data.table import common_rate
    from spotformer.errors import SpotFormerError
    from spotformer.features import dataset_features, load_dataset, plan_videos
    from spotformer.train import (
        SpottingData,
        check_run_dir,
        check_subjects,
        finished_run,
        labels_digest,
        run_loso,
        run_record,
    )
    from sw_mro.errors import SWMROError
    from sw_mro.io import landmark_pool

    def fail(msg: str) -> int:
        print(f"spotformer train: {msg}", file=sys.stderr)
        return 2

    made = configs(args)
    if isinstance(made, str):
        return fail(made)
    cfg, sw_cfg = made
    if args.val_subjects != 1 and args.selection != "val":
        print(
            "spotformer train: note: --val-subjects applies only with --selection val; ignored",
            file=sys.stderr,
        )
    device = sw_cfg.device
    progress = not args.no_progress
    try:
        # The run folder first: a mistake there must not cost a data set's extraction.
        check_run_dir(args.out, cfg, resume=args.resume)
        if args.resume and not (args.out / "config.json").is_file():  # a typo in --out?
            print(
                f"spotformer train: note: --resume: {args.out} holds no run to resume; "
                "a new run starts there",
                file=sys.stderr,
            )
        table = load_dataset(args.dataset, args.root, args.annotations)
        # Before extraction: leave-one-subject-out needs 2 subjects (3 with validation).
        annotated = {e.video: e.subject for e in table.expressions}
        subjects = [ref.subject or annotated.get(v) for v, ref in table.sources.items()]
        check_subjects([s for s in subjects if s is not None], cfg)
        # Dropped annotation rows are reported once, by the loader's logging warnings.
        # Every video opened (frames counted, annotations checked) before extraction.
        plan = plan_videos(table, sw_cfg.window)
        strides = {p.ref.stride for p in plan.values()}
        # The rates as opened (found in review: a CSV without fps recorded None, so
        # `spot` took the model for a 30 fps one; a file's rate is its container's).
        rates = {p.source_fps for p in plan.values()}
        trained_fps = common_rate([p.fps for p in plan.values()])
        if trained_fps is None and plan:
            shown = ", ".join(f"{r:g}" for r in sorted({round(p.fps, 2) for p in plan.values()}))
            print(
                f"spotformer train: note: the videos' frame rates after their strides differ "
                f"({shown} fps): the model sees a motion over more frames in the faster "
                "ones, and `spot` takes every frame of a new video. Give the faster videos "
                "a stride (a CSV's stride column) to train at one rate",
                file=sys.stderr,
            )
        info = {
            "dataset": args.dataset,
            "root": str(args.root.resolve()),
            "annotations": str(args.annotations.resolve()) if args.annotations else None,
            "sw_mro": sw_cfg.to_dict(),
            # What `spotformer spot` needs to open a video as the training data was
            # (SAMM-LV: frame folders at 200 fps, every 7th frame).
            "stride": strides.pop() if len(strides) == 1 else None,
            "source_fps": rates.pop() if len(rates) == 1 else None,
            # The rate after the stride that the model learnt motion at, where the
            # videos share one (found in a probe: 30 fps files with 60 fps ones at
            # stride 2 recorded neither stride nor rate, and `spot` read a 60 fps video
            # at stride 1); None for mixed rates.
            "fps": trained_fps,
            # The labels themselves: a resumed run must train on the same ones.
            "labels_sha1": labels_digest(table.expressions),
            # Training's CPU threads: they change the float sums, so a resumed run
            # takes the run's own (found in an audit: a resume at torch's default after
            # a start with --threads 1 trained other weights without a word).
            "threads": _training_threads(args),
        }
        check_run_dir(args.out, cfg, resume=args.resume, info=info)
        if args.resume and (args.out / "config.json").is_file():
            # The data too, before extraction: a changed data set is refused, and a run
            # that finished is reported again, not extracted again.
            videos = {n: (p.subject, p.fps, p.frames) for n, p in plan.items()}
            check_run_dir(args.out, cfg, resume=True, info=info, data=run_record(videos))
            done = finished_run(args.out)
            if done is not None:
                print(
                    f"{args.out} holds a finished run with these options and data; nothing "
                    "to train (choose a new --out to train again). Its results:"
                )
                _print_report(done, cfg)
                return 0
        feats = dataset_features(
            table, sw_cfg, progress=progress, plan=plan, features_dir=args.features
        )
        # Training needs no landmark workers: their processes and shared blocks go now.
        landmark_pool.close_pools()
        print(feats.summary(device))
        print(data_summary(table, set(feats.features)))
        data = SpottingData.build(
            feats.features, table.expressions, feats.subjects, feats.fps, cfg.labels
        )
        del feats  # the concatenated copy in `data` is all training needs
        # For training only: extraction keeps every core (2x on 2 cores).
        torch.set_num_threads(info["threads"])
        report = run_loso(data, cfg, args.out, resume=args.resume, progress=progress, info=info)
    except (SpotFormerError, SWMROError) as exc:
        return fail(str(exc))
    _print_report(report, cfg)
    print(f"\nwrote {report.path / 'report.json'} and {report.path / 'predictions.csv'}")
    return 0


def _training_threads(args: argparse.Namespace) -> int:
    """The torch CPU threads training runs on: ``--threads`` (resuming a run that
    started on another count: with a warning); resuming without it, the saved run's
    (with a note); else torch's default (one per core)."""
    import json

    import torch

    saved = None
    if args.resume:
        try:
            saved = json.loads((args.out / "config.json").read_text())["info"]["threads"]
        except (OSError, ValueError, TypeError, KeyError):
            saved = None  # no run, or one saved before 2026-11-29 (which recorded none)
        if not (isinstance(saved, int) and not isinstance(saved, bool) and saved >= 1):
            saved = None
    if args.threads:
        if saved is not None and saved != args.threads:  # allowed (another machine), said
            print(
                f"spotformer train: warning: --resume: the run started on {saved} CPU "
                f"thread(s); on {args.threads} its remaining epochs give other float sums, "
                "so its results differ from an uninterrupted run's",
                file=sys.stderr,
            )
        return int(args.threads)
    if saved is not None:
        if saved != torch.get_num_threads():
            print(
                f"spotformer train: note: --resume: training on the run's {saved} CPU "
                f"thread(s), as it started (other counts change the results; --threads "
                "sets one)",
                file=sys.stderr,
            )
        return saved
    return torch.get_num_threads()


def configs(args: argparse.Namespace):  # noqa: ANN201 - (TrainConfig, SWMROConfig) | str
    """The training and extraction configurations that ``args`` (this command's options)
    give, or why they cannot be made: everything that can be checked without the data
    (`spotformer demo` checks its options with it before rendering; found in review:
    `demo --epochs 0` rendered the data set, then failed)."""
    import dataclasses

    import torch

    import sw_mro
    from spotformer.losses import MACRO_RATIO, LossConfig
    from spotformer.models import SpotFormerConfig
    from spotformer.postprocess import SpotParams
    from spotformer.train import TrainConfig

    if args.gpu and not torch.cuda.is_available():
        return (
            f"--gpu given but no CUDA device is available: {no_cuda_reason()}; drop --gpu to "
            "run on CPU"
        )
    if args.features is not None and not args.features.is_dir():
        return f"--features {args.features}: not a folder (a `sw-mro extract --out-dir`)"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be >= 1, got {args.threads}"
    if not (math.isfinite(args.supcon_weight) and args.supcon_weight >= 0):
        return f"--supcon-weight must be a finite number >= 0, got {args.supcon_weight}"
    if problem := dim_problem(args.dim):
        return problem
    device = "cuda" if args.gpu else "cpu"
    m = args.macro_ratio if args.macro_ratio is not None else MACRO_RATIO.get(args.dataset, 0.5)
    try:
        cfg = TrainConfig(
            model=SpotFormerConfig(
                variant=args.variant,
                dim=args.dim,
                heads=4,
                head_dim=args.dim // 4,
                mlp_dim=args.dim,
            ),  # fmt: skip
            loss=LossConfig(
                macro_ratio=m,
                contrastive=args.supcon_weight,
                # --supcon authors: the authors' loss, on raw features, times tau / 0.07
                normalize_features=args.supcon == "normalized",
                base_temperature=0.07 if args.supcon == "authors" else None,
                supcon_form="khosla" if args.supcon == "normalized" else "authors",
            ),
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            selection=args.selection,
            val_subjects=args.val_subjects,  # 1 unless selection 'val' (TrainConfig)
            durations=args.durations,
            spot=spot_params_from(args, SpotParams(apex_threshold=args.apex_threshold)),
            neutral_segments=args.neutral_segments,
            mirror=args.mirror,
            seed=args.seed,
            amp=args.amp != "off",
            amp_dtype="float16" if args.amp == "float16" else "bfloat16",
        )
        sw_cfg = sw_mro.SWMROConfig(
            device=device, window=cfg.model.window, align_from_landmarks=args.align_from_landmarks
        )
        face_size = args.face_size or FACE_SIZE.get(args.dataset)
        if face_size:
            sw_cfg = dataclasses.replace(sw_cfg, face_size=face_size)
    except ValueError as exc:
        return option_words(str(exc), _OPTIONS)
    return cfg, sw_cfg


def dim_problem(dim: int) -> str:
    """Why ``--dim`` cannot be used ('' when it can): the model has 4 attention heads of
    D/4 (found in review: another D silently built one head of D)."""
    if dim < 4 or dim % 4:
        return f"--dim must be a multiple of 4 (4 attention heads of D/4), got {dim}"
    return ""


# The config fields that this command's options set, as the options (for its messages).
_OPTIONS = {
    **SPOT_OPTIONS,
    **{
        f: "--" + f.replace("_", "-")
        for f in ("epochs", "batch_size", "lr", "val_subjects", "neutral_segments", "mirror",
                  "macro_ratio", "face_size")
    },
}  # fmt: skip


def _print_report(report, cfg) -> None:  # noqa: ANN001 - RunReport, TrainConfig
    n_gt = report.result.overall.n_gt
    print(
        f"\nLOSO over {len(report.folds)} subjects, {n_gt} ground truths ({cfg.selection} selection):"
    )
    print(report.table())
