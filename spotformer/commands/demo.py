"""``spotformer demo``: the built-in end-to-end job (``make demo``).

1. Render the demo preset of the synthetic spotting benchmark (real faces with planted
   macro- and micro-expressions, blinks, head motion, H.264) into ``OUT/data``.
2. ``spotformer train --dataset synthetic``: SW-MRO features extracted in memory with
   ``sw_mro.stream``, SpotFormer trained leave-one-subject-out on CPU, MEGC evaluation.
3. Print the TP/FP/FN/precision/recall/F1 table (also in ``OUT/run/report.json``).

The preset is sized for 2 CPU cores: 6 subjects x 1 video x ``--seconds`` at 640x480,
SW-MRO on 128 px face crops (SPEC's default is 256; the ROI and nose sizes scale with
it) and a narrow model (D = ``--dim``), trained with ``--mirror 0.5``; MaE intervals
come from the expression head (``--macro-spotting expression``). Measured on the
2-core dev VM with the C++ Farneback (README): about 9 min in all (render 45 s, SW-MRO
about 2.7 min at ~22 frames/s, LOSO training ~5 min), overall F1 0.37 (MaE 0.32, ME 0.43)
on 2026-11-27 and 0.41 the day before (features 7e-7 px apart on average); over
training seeds 0-2 the recipe averaged 0.44 (0.48 with OpenCV's Farneback, whose
features differ by 7e-7 px on average: the run-to-run spread of 24 ground truths). Every
step is the same code a full run uses; pass larger
values for a closer look. A rerun reuses the rendered data (same seed) and starts a
fresh run folder.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from spotformer.commands._spot_args import add_spotting_arguments, spotting_argv

# The demo's training recipe (docs/spotformer.md, "Measured figures"), chosen by LOSO F1
# on the cached features of this preset among runs that fit the CPU budget (the six
# folds train in ~5 min on one thread of a busy 2-core box, less on an idle one):
# every frame as training data (neutral segments 1.0), 6 epochs of batch 32 at lr 2e-3,
# (k, j) from the training subjects, apex threshold 0.5 (SPEC). Model and loss keep
# the library (SPEC) defaults except the width D = 32.
EPOCHS = 6
BATCH_SIZE = 32
LR = 2e-3
MIRROR = 0.5
MACRO_SPOTTING = "expression"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)"
    )
    parser.add_argument("--subjects", type=int, default=6, help="synthetic subjects (default 6)")
    parser.add_argument(
        "--videos-per-subject", type=int, default=1,
        help="videos per subject (default 1; 2 with --seconds 30 is make-synthetic's default set)",
    )  # fmt: skip
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of each video (default 20)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the data and the training (default 0)"
    )
    parser.add_argument(
        "--face-size", type=int, default=128, help="SW-MRO face crop size (default 128)"
    )
    parser.add_argument("--dim", type=int, default=32, help="model width D (default 32)")
    parser.add_argument(
        "--epochs", type=int, default=EPOCHS, help=f"epochs per fold (default {EPOCHS})"
    )
    parser.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE,
        help=f"windows per step (default {BATCH_SIZE})",
    )  # fmt: skip
    parser.add_argument("--lr", type=float, default=LR, help=f"learning rate (default {LR:g})")
    parser.add_argument(
        "--neutral-segments", type=float, default=1.0, help="see spotformer train (default 1.0)"
    )
    parser.add_argument(
        "--durations", choices=("spec", "train"), default="train",
        help="post-processing (k, j) (default: learned from the training subjects, whose "
        "MaEs last up to 4 s, longer than SPEC's k = 59 frames)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: fastest for D = 32)"
    )
    parser.add_argument(
        "--mirror", type=float, default=MIRROR,
        help=f"left-right mirror augmentation, see spotformer train (default {MIRROR})",
    )  # fmt: skip
    parser.add_argument("--gpu", action="store_true", help="extract and train on CUDA")
    # The preset's MaEs last 16-120 frames; held near the apex they look still in a
    # 17-frame window, so the demo forms MaE intervals from the expression head.
    add_spotting_arguments(parser, macro_default=MACRO_SPOTTING)


def _not_a_run(run_dir: Path) -> str:
    """'' when ``run_dir`` holds only what a training run writes (with a killed write's
    ``.<name>.tmp``), else what else it holds, for the message."""
    from spotformer.train import RUN_ENTRIES
    from sw_mro.io.atomic import temp_name

    own = RUN_ENTRIES | {temp_name(run_dir / n).name for n in RUN_ENTRIES}
    others = sorted(p.name for p in run_dir.iterdir() if p.name not in own)
    if not others:
        return ""
    return _some(others)


def _some(names: list[str]) -> str:
    """The first three of ``names``, and how many more."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


#: Written into ``OUT/data`` after the demo rendered it: only a folder with it (or an
#: empty one, or a render that was killed) is replaced by another demo render.
DEMO_DATA = ".spotformer-demo"


def _manifest(data_dir: Path) -> dict | None:
    """``data_dir/manifest.json`` as the generator writes it, else None (found in review:
    a user's file, or an empty one, that is not a JSON object raised a traceback)."""
    import json

    try:
        saved = json.loads((data_dir / "manifest.json").read_text())
    except (OSError, ValueError):  # absent, unreadable, not JSON
        return None
    return saved if isinstance(saved, dict) else None


def _not_demo_data(data_dir: Path) -> str:
    """'' when the demo may render into ``data_dir`` (absent, empty, its own render, or
    a render that was killed), else what it holds, for the message (found in review: a
    user's own ``OUT/data/annotations.csv`` was replaced without a word)."""
    from spotformer.data.synthetic import _killed_render

    if not data_dir.is_dir():  # absent, or a file: make_synthetic says so
        return ""
    names = sorted(p.name for p in data_dir.iterdir())
    if not names or DEMO_DATA in names or _killed_render(data_dir):
        return ""
    if _manifest(data_dir) is not None:
        return "a synthetic data set of other settings that the demo did not render"
    return _some(names)


def run(args: argparse.Namespace) -> int:
    import json

    from spotformer.commands import train as train_cmd
    from spotformer.commands.make_synthetic import config_error
    from spotformer.data.synthetic import SyntheticConfig, make_synthetic
    from spotformer.data.synthetic_plan import SyntheticConfigError
    from spotformer.errors import SpotFormerError
    from spotformer.train import check_subjects

    t0 = time.perf_counter()
    data_dir = args.out / "data"
    run_dir = args.out / "run"
    try:
        config = SyntheticConfig(
            subjects=args.subjects,
            videos_per_subject=args.videos_per_subject,
            seconds=args.seconds,
            seed=args.seed,
        )
    except SyntheticConfigError as exc:
        print(f"spotformer demo: error: {config_error(exc)}", file=sys.stderr)
        return 2
    argv = [
        # "--root=PATH": an --out that starts with a dash is a value, not an option
        "--dataset", "synthetic", f"--root={data_dir}", f"--out={run_dir}",
        "--face-size", str(args.face_size), "--dim", str(args.dim),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--lr", str(args.lr), "--seed", str(args.seed),
        "--neutral-segments", str(args.neutral_segments), "--durations", args.durations,
        "--threads", str(args.threads), "--mirror", str(args.mirror),
        *spotting_argv(args),
    ]  # fmt: skip
    if args.gpu:
        argv.append("--gpu")
    parser = argparse.ArgumentParser(prog="spotformer train")
    train_cmd.add_arguments(parser)
    train_args = parser.parse_args(argv)
    # Every option training checks, before rendering, not after it (found in review:
    # --epochs 0 rendered the whole data set first), and LOSO's 2 subjects.
    made = train_cmd.configs(train_args)
    if isinstance(made, str):
        print(f"spotformer demo: {made}", file=sys.stderr)
        return 2
    try:
        check_subjects([f"s{i}" for i in range(args.subjects)], made[0])
    except SpotFormerError as exc:
        print(f"spotformer demo: --subjects {args.subjects}: {exc}", file=sys.stderr)
        return 2
    # Refused before rendering: the demo starts a fresh run folder each time, and only a
    # previous run's files may go (found in review: a user's OUT/run was deleted).
    if run_dir.exists() and not run_dir.is_dir():
        print(f"spotformer demo: {run_dir} is a file; choose another --out", file=sys.stderr)
        return 2
    foreign = _not_a_run(run_dir) if run_dir.exists() else ""
    if foreign:
        print(
            f"spotformer demo: {run_dir} holds {foreign}, which a demo run does not write; "
            f"the demo replaces {run_dir} on every run: move them or choose another --out",
            file=sys.stderr,
        )
        return 2
    saved = _manifest(data_dir)
    reuse = saved is not None and saved.get("config") == json.loads(json.dumps(config.to_json()))
    if reuse:
        print(f"[1/2] reusing the synthetic data in {data_dir}")
    else:
        foreign = _not_demo_data(data_dir)
        if foreign:
            print(
                f"spotformer demo: {data_dir} holds {foreign}; the demo renders its data "
                f"set there and would replace them: move them or choose another --out",
                file=sys.stderr,
            )
            return 2
        print(f"[1/2] rendering the synthetic benchmark into {data_dir}")
        try:  # the settings are checked before anything in data_dir is touched
            make_synthetic(data_dir, config, progress=True, overwrite=True)
        except SyntheticConfigError as exc:
            print(f"spotformer demo: error: {config_error(exc)}", file=sys.stderr)
            return 2
    (data_dir / DEMO_DATA).touch()
    print(f"      done in {time.perf_counter() - t0:.0f} s")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    print("[2/2] SW-MRO features in memory -> LOSO SpotFormer training -> MEGC evaluation")
    rc = train_cmd.run(train_args)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s (rc={rc})")
    return rc
