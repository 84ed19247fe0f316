"""``sw-mro``: SW-MRO optical-flow feature extraction."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sw_mro import __version__
from sw_mro._cli_util import dispatch

COMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("sw_mro.commands.extract", "SW-MRO features of videos or frame folders -> .npy + .json"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(
        "sw-mro", "SW-MRO optical-flow features for expression spotting.", COMMANDS, argv, __version__
    )


if __name__ == "__main__":
    sys.exit(main())
