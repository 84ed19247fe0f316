"""Post-processing options shared by ``spotformer train``, ``spot`` and ``demo``."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import TYPE_CHECKING

from sw_mro._cli_util import typed_words

if TYPE_CHECKING:
    from spotformer.postprocess import SpotParams

_EXPR = (
    ("expr_threshold", float, "P_expression (moving average) above this forms a segment"),
    ("expr_smooth", float, "moving-average width, frames at 30 fps"),
    ("expr_gap", float, "merge segments at most this many frames apart (at 30 fps)"),
    ("expr_min_len", float, "drop merged segments shorter than this (frames at 30 fps)"),
    ("expr_extend", float, "widen each segment by this on both sides (frames at 30 fps)"),
)


def add_spotting_arguments(
    parser: argparse.ArgumentParser, *, override: bool = False, macro_default: str = "apex"
) -> None:
    """``--macro-spotting``, ``--micro-spotting`` and the expression-segment numbers.

    ``override``: the defaults are None (keep what the model file says), for ``spot``.
    ``macro_default``: the MaE mode when not given (the demo uses "expression").
    """
    from spotformer.postprocess import SpotParams

    base = SpotParams()
    g = parser.add_argument_group(
        "post-processing",
        "apex: SPEC section 5 (apex candidates, onset/offset search); expression: segments "
        "of the expression head's probability (docs/spotformer.md, 'Expression segments')",
    )
    for kind in ("macro", "micro"):
        default = macro_default if kind == "macro" else base.micro_mode
        shown = f"default {default}" + (", SPEC" if default == "apex" else "")
        g.add_argument(
            f"--{kind}-spotting",
            choices=("apex", "expression"),
            default=None if override else default,
            help=f"how {'MaE' if kind == 'macro' else 'ME'} intervals are formed "
            + ("(default: the model file's)" if override else f"({shown})"),
        )
    for name, typ, text in _EXPR:
        default = getattr(base, name)
        g.add_argument(
            "--" + name.replace("_", "-"),
            type=typ,
            default=None if override else default,
            help=f"expression mode: {text} (default "
            + ("the model file's)" if override else f"{default:g})"),
        )


# (argparse dest, SpotParams field) of every option above.
_FIELDS = (
    ("macro_spotting", "macro_mode"),
    ("micro_spotting", "micro_mode"),
    *((name, name) for name, _, _ in _EXPR),
)


# The SpotParams fields these options set, as the options (for error messages).
SPOT_OPTIONS = {
    **{field: "--" + dest.replace("_", "-") for dest, field in _FIELDS},
    "apex_threshold": "--apex-threshold",
    "top_k": "--top-k",
}
_FIELD_FIRST = re.compile(r"(?:SWMROConfig\.)?(\w+)(?=[ =])(?:=(\S+):)?")


def option_words(msg: str, options: dict[str, str]) -> str:
    """A config's ValueError in a command's words: a message that starts with a field
    an option sets (``options``: field -> option) names the option (found in review:
    "batch_size must be >= 2", and "SWMROConfig.face_size=16: ..." for --face-size 16)."""
    m = _FIELD_FIRST.match(msg)
    if m is None or m[1] not in options:
        return msg
    rest = typed_words(msg[m.end() :])
    return options[m[1]] + (f" {m[2]}:" if m[2] is not None else "") + rest


def _given(args: argparse.Namespace) -> dict[str, object]:
    """dest -> value of the options that are set (not None) in ``args``."""
    return {d: getattr(args, d) for d, _ in _FIELDS if getattr(args, d, None) is not None}


def spot_params_from(args: argparse.Namespace, base: SpotParams) -> SpotParams:
    """``base`` with the options given on the command line (None: keep ``base``'s)."""
    field = dict(_FIELDS)
    return dataclasses.replace(base, **{field[d]: v for d, v in _given(args).items()})


def spotting_argv(args: argparse.Namespace) -> list[str]:
    """The options back as command-line words (for the demo, which calls ``train``)."""
    out: list[str] = []
    for dest, value in _given(args).items():
        out += ["--" + dest.replace("_", "-"), value if isinstance(value, str) else repr(value)]
    return out
