"""``spotformer``: synthetic data, training, spotting and MEGC evaluation."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from spotformer import __version__
from sw_mro._cli_util import dispatch

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("spotformer.commands.demo", "run the built-in end-to-end demo"),
    "make-synthetic": ("spotformer.commands.make_synthetic", "render the synthetic spotting benchmark"),
    "evaluate": ("spotformer.commands.evaluate", "score predicted intervals (MEGC protocol)"),
    "train": ("spotformer.commands.train", "extract SW-MRO features, train SpotFormer with LOSO"),
    "spot": ("spotformer.commands.spot", "spot expressions in one video with a trained model"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(
        "spotformer",
        "SpotFormer facial expression spotting: demo, make-synthetic, train, spot, evaluate.",
        COMMANDS,
        argv,
        __version__,
    )


if __name__ == "__main__":
    sys.exit(main())
