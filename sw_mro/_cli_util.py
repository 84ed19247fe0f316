"""A lazy sub-command dispatcher shared by the ``sw-mro`` and ``spotformer`` CLIs.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so
``--help`` is fast and one command's heavy imports never slow another.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence


def dispatch(
    prog: str,
    description: str,
    commands: dict[str, tuple[str, str]],
    argv: Sequence[str] | None = None,
    version: str = "",
) -> int:
    """Run ``prog CMD [args]``; ``commands`` maps CMD -> (module path, one-line help)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    width = max((len(c) for c in commands), default=7)
    listing = "\n".join(f"  {c:<{width}}  {h}" for c, (_, h) in commands.items())
    top = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"commands:\n{listing}\n\nRun '{prog} COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"{prog} {version}")
    top.add_argument("command", choices=list(commands), metavar="COMMAND")
    if not argv:  # no command: the help, as an error (exit 2, like a missing argument)
        top.print_help(sys.stderr)
        return 2
    if argv[0] in {"-h", "--help", "--version"}:
        top.parse_args(argv)
        return 0
    ns, rest = top.parse_known_args(argv[:1])
    module_path, help_line = commands[ns.command]
    module = importlib.import_module(module_path)
    parser = argparse.ArgumentParser(prog=f"{prog} {ns.command}", description=help_line)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: no traceback; outputs are atomic, so nothing half-made
        hint = getattr(module, "INTERRUPT_HINT", "")  # what to run next, if the command says
        print(f"\n{prog} {ns.command}: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130


def no_cuda_reason() -> str:
    """Why torch sees no CUDA device, and what to do about it (for ``--gpu`` errors)."""
    import os

    import torch

    if torch.version.cuda is None:
        return (
            f"this torch ({torch.__version__}) is a CPU-only build; install the CUDA build of "
            "the same torch version for your driver (README, 'Install by hand')"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hint = f"CUDA_VISIBLE_DEVICES={visible!r} hides them, or " if visible is not None else ""
    return (
        f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU: {hint}the driver "
        "or device is missing (check nvidia-smi)"
    )
