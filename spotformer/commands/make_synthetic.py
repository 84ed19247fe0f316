"""``spotformer make-synthetic``: render the synthetic spotting benchmark into a folder.

Writes ``rawvideo/<subject>/<video>.mp4``, ``annotations.csv``,
``CAS(ME)^2code_final.xlsx`` and ``manifest.json`` (last); see
``spotformer.data.synthetic`` and docs/synthetic.md. Refuses a non-empty ``--out``
unless ``--overwrite`` (which replaces only the files this command writes).
Exit code 0 on success, 2 on a usage error (the message names the value and the fix).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output folder (empty or new)"
    )
    parser.add_argument(
        "--subjects", metavar="N", type=int, default=6, help="number of subjects (default 6)"
    )
    parser.add_argument(
        "--videos-per-subject",
        metavar="N",
        type=int,
        default=2,
        help="videos per subject (default 2)",
    )
    parser.add_argument(
        "--seconds", metavar="S", type=float, default=30.0, help="video length (default 30)"
    )
    parser.add_argument("--seed", metavar="N", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--width", metavar="PX", type=int, default=640, help="frame width (default 640)"
    )
    parser.add_argument(
        "--height", metavar="PX", type=int, default=480, help="frame height (default 480)"
    )
    parser.add_argument(
        "--fps", metavar="FPS", type=float, default=30.0, help="frame rate (default 30)"
    )
    parser.add_argument(
        "--macro", metavar="N", type=int, default=None,
        help="macro-expressions per video (default: 6 per minute, rounded)",
    )  # fmt: skip
    parser.add_argument(
        "--micro", metavar="N", type=int, default=None,
        help="micro-expressions per video (default: 6 per minute, rounded)",
    )  # fmt: skip
    parser.add_argument(
        "--crf", metavar="CRF", type=int, default=None, help="H.264 crf (default 14)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a previous output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    from spotformer.data.synthetic import SyntheticConfig, make_synthetic
    from spotformer.data.synthetic_plan import SyntheticConfigError
    from spotformer.errors import SpotFormerError

    extra = {} if args.crf is None else {"crf": args.crf}
    try:
        config = SyntheticConfig(
            subjects=args.subjects,
            videos_per_subject=args.videos_per_subject,
            seconds=args.seconds,
            fps=args.fps,
            width=args.width,
            height=args.height,
            macro_per_video=args.macro,
            micro_per_video=args.micro,
            seed=args.seed,
            **extra,
        )
        t0 = time.perf_counter()
        manifest = make_synthetic(
            args.out, config, progress=not args.quiet, overwrite=args.overwrite
        )
    except SyntheticConfigError as exc:  # a setting: named as this command's option
        print(f"spotformer make-synthetic: error: {config_error(exc)}", file=sys.stderr)
        return 2
    except SpotFormerError as exc:
        print(f"spotformer make-synthetic: error: {exc}", file=sys.stderr)
        return 2
    n_expr = sum(len(v["expressions"]) for v in manifest["videos"])
    if n_expr == 0:
        print(
            "spotformer make-synthetic: warning: no expression was planted (the rates give "
            "none in videos this short); pass --macro N and --micro N, or longer --seconds",
            file=sys.stderr,
        )
    if not args.quiet:
        print(
            f"wrote {len(manifest['videos'])} videos, {n_expr} expressions to {args.out} "
            f"in {time.perf_counter() - t0:.1f} s (annotations.csv, "
            f"CAS(ME)^2code_final.xlsx, manifest.json)"
        )
    return 0


# SyntheticConfig's fields as this command's options, where their names differ.
_OPTIONS = {
    "macro_per_video": "--macro",
    "micro_per_video": "--micro",
    "width/height": "--width/--height",
}


def _option(field: str) -> str:
    return _OPTIONS.get(field, "--" + field.replace("_", "-"))


def config_error(exc: Exception) -> str:
    """A ``SyntheticConfigError`` in the words of the options (``--macro 3: ...``; the
    demo's options have the same names)."""
    field = getattr(exc, "field", None)
    return f"{_option(field)} {exc.value!r}: {exc.want}" if field else str(exc)
