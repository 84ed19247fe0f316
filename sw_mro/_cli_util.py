"""A lazy sub-command dispatcher shared by the ``sw-mro`` and ``spotformer`` CLIs.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so
``--help`` is fast and one command's heavy imports never slow another.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from sw_mro import _malloc
from sw_mro._docs import docs_line


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``docker stop``, a scheduler) or SIGHUP (the terminal or the
    ssh connection closed), raised like Ctrl-C so that the same cleanup runs: temp and
    lock files removed, worker processes and their shared memory ended (found in review:
    SIGTERM left all of them; later SIGHUP did, and multiprocessing's resource tracker,
    which ignores only SIGINT and SIGTERM, died with the group and freed nothing)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def _terminating_signals() -> list[int]:
    """SIGTERM, and SIGHUP where the process does not ignore it (``nohup`` sets it to
    ignored: such a run goes on after its terminal closes, as asked)."""
    out = [signal.SIGTERM]
    hup = getattr(signal, "SIGHUP", None)  # not on Windows
    if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
        out.append(hup)
    return out


@contextmanager
def terminate_as_interrupt(exiting: bool = False) -> Iterator[None]:
    """In the main thread: the first SIGTERM, or SIGHUP unless it is ignored (``nohup``), raises
    :class:`Terminated`. After it, a second SIGTERM acts as before (by default, ends the
    process at once), except within :data:`HUP_GRACE` seconds of a first SIGHUP, and a
    second SIGHUP is dropped: a closed terminal sends two (the shell's, then the
    kernel's when the shell exits), and a scheduler may send SIGTERM with it; neither
    must cut the cleanup short (found in review). A SIGTERM later still ends a cleanup
    that hangs. Both stay Python handlers, so a signal that arrived with the first does
    not fail as "ignored due to race condition". The handlers are set back when the
    block ends, except with ``exiting`` (a command's whole run) after a SIGHUP: the
    process is on its way out, and the hang-up's second SIGHUP can come after the
    cleanup (found in CI: it killed the process as it printed its last line, exit -1
    instead of 129)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = _terminating_signals()
    restore = {}
    for s in signums:
        previous = signal.getsignal(s)
        restore[s] = signal.SIG_DFL if previous is None else previous

    first: list[tuple[int, float]] = []  # the first signal and when it came

    def again(signum: int, frame: object) -> None:
        if signum != signal.SIGTERM:
            return  # a second SIGHUP: dropped
        was, at = first[0]
        if was != signal.SIGTERM and time.monotonic() - at < HUP_GRACE:
            return  # a SIGTERM with the SIGHUP (the same hang-up, or a scheduler's)
        before = restore[signum]
        if callable(before):
            before(signum, frame)
        elif before == signal.SIG_DFL:  # end at once, as SIGTERM does by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def on_signal(signum: int, frame: object) -> None:
        first.append((signum, time.monotonic()))
        for s in signums:
            signal.signal(s, again)
        raise Terminated(signum)

    for s in signums:
        signal.signal(s, on_signal)
    try:
        yield
    finally:
        # Blocked while they are set back: a pending one would run (and may raise, e.g.
        # a caller's handler calling sys.exit) between two of these calls and leave the
        # other signal on our handler (found in review). It arrives once both are set.
        masked = hasattr(signal, "pthread_sigmask")
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signums) if masked else None
        try:
            if not (exiting and first and first[0][0] != signal.SIGTERM):  # see above
                for s in signums:
                    signal.signal(s, restore[s])
        finally:
            if masked:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def stops_held() -> Iterator[None]:
    """In the main thread: the first Ctrl-C, SIGTERM or SIGHUP (unless ignored) that
    arrives inside is held and acted on, as its handler would have, when the block ends;
    later ones act at once (a second stop still ends a cleanup that hangs). For steps
    that must not be cut in two, such as an output's final renames (found in a probe: a
    SIGTERM between the features' rename and their JSON's threw the finished features
    away, and with --overwrite left the old JSON aside). Elsewhere (or where a handler
    was set outside Python) nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = [signal.SIGINT, *_terminating_signals()]
    previous = {s: signal.getsignal(s) for s in signums}
    signums = [s for s in signums if previous[s] is not None]
    held: list[tuple[int, object]] = []
    holding = [True]

    def act(signum: int, frame: object) -> None:  # what the signal would have done
        then = previous[signum]
        if callable(then):
            then(signum, frame)  # e.g. raises KeyboardInterrupt or Terminated
        elif then == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def hold(signum: int, frame: object) -> None:
        if holding[0] and not held:
            held.append((signum, frame))
        else:  # a second stop, or one during the handlers' return (found in review)
            held.clear()  # acted on now: not again at the end
            act(signum, frame)

    for s in signums:
        signal.signal(s, hold)
    try:
        yield
    finally:
        holding[0] = False
        # Set back with the signals blocked (see terminate_as_interrupt); one that another
        # thread takes meanwhile reaches ``hold``, which passes it on.
        masked = hasattr(signal, "pthread_sigmask")
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signums) if masked else None
        try:
            for s in signums:
                if signal.getsignal(s) is hold:  # not one that a handler has set since
                    signal.signal(s, previous[s])
        finally:
            if masked:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if held:
            act(*held[0])


#: Seconds after a first SIGHUP in which a SIGTERM is taken as part of the same hang-up
#: (dropped); a SIGTERM later ends a cleanup that hangs, as a second SIGTERM does.
HUP_GRACE = 2.0


#: The packages whose logged and ``warnings.warn`` warnings a command prints in its own
#: style.
_OURS = ("sw_mro", "spotformer")
_OUR_DIRS = tuple(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep + p + os.sep for p in _OURS
)


def write_line(text: str, file: object = None) -> None:
    """A line on stderr through ``tqdm.write``, so a progress bar is redrawn below it."""
    from tqdm import tqdm

    tqdm.write(text, file=file or sys.stderr)


class _Prefixed(logging.Handler):
    """``warning: message`` (``error: ...`` at ERROR and above), through ``write``."""

    def __init__(self, level: int, write: Callable[[str], None]) -> None:
        super().__init__(level)
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = "error" if record.levelno >= logging.ERROR else "warning"
            self.write(f"{level}: {record.getMessage()}")
        except Exception:  # a broken stderr must not end the command
            self.handleError(record)


def _prints_already(logger: logging.Logger) -> bool:
    """Whether a warning of ``logger`` already reaches the terminal through a handler the
    user set up (``logging.basicConfig()`` before ``main()``): one on a stream of
    stderr/stdout, at WARNING or below, without filters, on the logger or an ancestor it
    propagates to. Then a second, prefixed copy is left out (found in review: each
    printed twice); a handler at ERROR, a filter or ``propagate = False`` keep ours."""
    terminal = {id(s) for s in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)}
    node: logging.Logger | None = logger
    while node is not None:
        for h in node.handlers:
            if (
                isinstance(h, logging.StreamHandler)
                and id(getattr(h, "stream", None)) in terminal
                and h.level <= logging.WARNING
                and not h.filters
            ):
                return True
        if not node.propagate:
            return False
        node = node.parent
    return False


@contextmanager
def cli_warnings(write: Callable[[str], None] | None = None) -> Iterator[None]:
    """While a command runs: warnings that sw_mro and spotformer log, and those they
    raise with ``warnings.warn``, are printed as ``warning: message``, the way the
    commands print their own (found in review: a variable frame rate or a gap in a frame
    folder was printed bare, and a failed worker start as ``path:line: RuntimeWarning:
    ...`` with its source line). Others' warnings keep Python's format. ``write``: where
    the lines go (a ``--devices`` worker sends them to its parent); by default stderr,
    above any progress bar. Logged ones are left to the user's logging where that
    already prints them to the terminal."""
    out = write or write_line
    handler = _Prefixed(logging.WARNING, out)
    loggers = [logging.getLogger(n) for n in _OURS]
    if write is None:
        loggers = [lg for lg in loggers if not _prints_already(lg)]
    for lg in loggers:
        lg.addHandler(handler)
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        text = str(message)
        if not (text.startswith("sw_mro:") or os.path.abspath(filename).startswith(_OUR_DIRS)):
            return shown(message, category, filename, lineno, file, line)
        if write is None:
            write_line(f"warning: {text}", file)
        else:
            write(f"warning: {text}")

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown
        for lg in loggers:
            lg.removeHandler(handler)


def import_numpy() -> None:
    """Import numpy before anything imports torch. Found in a probe: a KeyboardInterrupt
    (Ctrl-C, or a SIGTERM or SIGHUP through :func:`terminate_as_interrupt`) that lands
    while torch's C start-up imports numpy is swallowed there, and numpy is left half
    imported: the run went on and failed every input with "module 'numpy' has no
    attribute 'add'" (or blamed the video). Imported here, in Python, the interrupt
    stops the import and the run as it should, and torch finds numpy whole."""
    import numpy  # noqa: F401


def _close_worker_pools() -> None:
    """End the landmark worker processes while the stop signals are still handled.
    Found in a probe: left to the exit, a SIGTERM in its half second killed the process
    (exit -15, no message) and the resource tracker warned of leaked shared memory."""
    pools = sys.modules.get("sw_mro.io.landmark_pool")  # only if the command used them
    if pools is not None:
        with stops_held():  # not cut short: a stop waits the ~0.5 s for the blocks' release
            pools.close_pools()


def dispatch(
    prog: str,
    description: str,
    commands: dict[str, tuple[str, str]],
    argv: Sequence[str] | None = None,
    version: str = "",
) -> int:
    """Run ``prog CMD [args]``; ``commands`` maps CMD -> (module path, one-line help)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # A closed stdout or stderr (``>&-``, a service started without them) is None in
    # Python: found in a probe, `extract` stopped with a traceback after its first input
    # (no stdout), or failed every input at its progress bar (no stderr). What would be
    # written there goes to the null device (opened on the closed descriptor, the lowest
    # free one, so that C code and worker processes writing to it lose nothing else).
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (for the whole run)
    width = max((len(c) for c in commands), default=7)
    listing = "\n".join(f"  {c:<{width}}  {h}" for c, (_, h) in commands.items())
    top = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"commands:\n{listing}\n\nRun '{prog} COMMAND --help' for a command's options."
        f"\n{docs_line()}",
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
    # OpenCV's own "[ WARN:0@0.2] global grfmt_tiff.cpp ..." lines before our errors say
    # the same less clearly (found in review): errors only, unless the user set a level.
    # Read when cv2 is first imported (below, or by the command), and by worker processes.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    # Paths are printed as they are: a name that is not UTF-8 (its bytes kept as
    # surrogates) stopped a run with a UnicodeEncodeError where stdout is strict, as in
    # en_US.UTF-8 (found in review); stderr already escapes them.
    # (Where it escapes them already, the C locale's surrogateescape, it is kept: that
    # prints the name's own bytes.)
    if getattr(sys.stdout, "errors", None) == "strict":
        with contextlib.suppress(AttributeError, ValueError):
            sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    module_path, help_line = commands[ns.command]
    module = importlib.import_module(module_path)
    parser = _Parser(prog=f"{prog} {ns.command}", description=help_line)
    module.add_arguments(parser)
    options = argv[1 : argv.index("--")] if "--" in argv else argv[1:]  # not after --
    parser.dashed = [a for a in options if _dashed_path(parser, a)]
    parser.abbreviated = _abbreviated(parser, options)
    parser.unknown = _unknown(parser, options)
    args = parser.parse_args(argv[1:])
    try:
        with terminate_as_interrupt(exiting=True), cli_warnings():
            import_numpy()
            _malloc.keep_for_process()  # a command's freed host memory is reused (sw_mro/_malloc.py)
            rc = int(module.run(args) or 0)
            _close_worker_pools()  # not on the way out of a stop: the exit closes them
            return rc
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: no traceback; outputs are atomic
        hint = getattr(module, "INTERRUPT_HINT", "")  # what to run next, if the command says
        ended = isinstance(exc, Terminated)
        what = f"terminated ({exc.name})" if ended else "interrupted"
        try:
            print(f"\n{prog} {ns.command}: {what}{'; ' + hint if hint else ''}", file=sys.stderr)
            sys.stderr.flush()
        except OSError:  # after SIGHUP the terminal may be gone (EIO)
            _to_null()  # else the exit's own flush fails too, and Python exits with 120
        return 128 + exc.signum if ended else 130


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors add a hint for files whose names start with a
    dash (found in review: ``extract -clip.mp4`` said the input was missing)."""

    dashed: list[str] = []
    abbreviated: dict[str, str] = {}
    unknown: list[str] = []

    def error(self, message: str) -> NoReturn:
        # argparse names a missing required option before an unknown one (found in
        # review: `--outdir` said only "the following arguments are required: --out-dir").
        if message.startswith("the following arguments are required") and self.unknown:
            names = [o[2:] for o in self._option_string_actions if o.startswith("--")]
            for typed in self.unknown:
                close = difflib.get_close_matches(typed[2:], names, n=1)  # not by "--"
                message += f"\nhint: {self.prog} has no {typed} option" + (
                    f"; did you mean --{close[0]}?" if close else ""
                )
        if self.dashed:
            names = ", ".join(self.dashed)
            taken = "is taken as an option" if len(self.dashed) == 1 else "are taken as options"
            message += f"\nhint: {names} {taken}; write it as ./{self.dashed[0]} or after --"
        # argparse takes a prefix for the option it starts (found in a walkthrough:
        # `demo --macro 0`, an option of make-synthetic, said only "argument
        # --macro-spotting: invalid choice: '0'").
        for typed, full in self.abbreviated.items():
            if full in message:
                message += (
                    f"\nhint: {typed} is read as {full}, the only option it starts; "
                    f"{self.prog} has no {typed} option"
                )
        super().error(message)


def _not_spelled_out(
    parser: argparse.ArgumentParser, options: list[str]
) -> Iterator[tuple[str, list[str]]]:
    """Each ``--option`` in ``options`` that is not one of ``parser``'s by its full name,
    with the options whose names it starts."""
    known = [o for o in parser._option_string_actions if o.startswith("--")]
    for arg in options:
        typed = arg.split("=", 1)[0]
        if typed.startswith("--") and len(typed) > 2 and typed not in known:
            yield typed, [o for o in known if o.startswith(typed)]


def _abbreviated(parser: argparse.ArgumentParser, options: list[str]) -> dict[str, str]:
    """The options in ``options`` given as a prefix of one of ``parser``'s, with it."""
    return {t: m[0] for t, m in _not_spelled_out(parser, options) if len(m) == 1}


def _unknown(parser: argparse.ArgumentParser, options: list[str]) -> list[str]:
    """The ``--options`` in ``options`` that are neither ``parser``'s nor a prefix of one."""
    return [t for t, m in _not_spelled_out(parser, options) if not m]


def _dashed_path(parser: argparse.ArgumentParser, arg: str) -> bool:
    """Whether ``arg`` is an existing file or folder whose name starts with a dash and
    that is not one of ``parser``'s options."""
    if (
        not arg.startswith("-")
        or arg == "-"
        or arg.split("=", 1)[0] in parser._option_string_actions
    ):
        return False
    return os.path.lexists(arg)


def _to_null() -> None:
    """stdout and stderr to the null device (their terminal is gone), what is still
    buffered included."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(null, stream.fileno())
    finally:
        os.close(null)


def typed_words(msg: str) -> str:
    """A config error as a command-line user reads it: a value left out is None in the
    API, which cannot be typed (found in review: "must be a positive integer or None")."""
    return msg.replace(" or None (", " (left out: ")


def frame_runs(frames: Iterable[int]) -> list[tuple[int, int]]:
    """Runs of consecutive frame numbers, ``(first, last)`` inclusive, in order."""
    runs: list[tuple[int, int]] = []
    for f in sorted(set(frames)):
        if runs and f == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], f)
        else:
            runs.append((f, f))
    return runs


def describe_runs(runs: list[tuple[int, int]], shown: int = 3, stride: int = 1) -> str:
    """``frames 3, 10-20, 25 and 2 more runs`` (the first ``shown`` runs, and the longest
    where it is not one of them: found in a probe, a 300-frame stretch without a face
    went unnamed behind three 1-frame misses), with ``at stride s`` when ``stride`` > 1:
    the frames are then those kept, not the file's."""
    words = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:shown]]
    more = len(runs) - len(words)
    if more:
        text = ", ".join(words) + f" and {more} more run{'s' * (more != 1)}"
        a, b = max(runs, key=lambda r: r[1] - r[0])
        if b - a > max(y - x for x, y in runs[:shown]):  # longer than every run shown
            text += f" (the longest {a}-{b}, {b - a + 1} frames)"
    elif len(words) > 1:
        text = ", ".join(words[:-1]) + " and " + words[-1]
    else:
        text = words[0]
    at = f" at stride {stride}" if stride > 1 else ""
    return f"frame{'s' * (len(runs) > 1 or runs[0][0] != runs[0][1])} {text}{at}"


def no_cuda_reason() -> str:
    """Why torch sees no CUDA device, and what to do about it (for ``--gpu`` errors)."""
    import os

    import torch

    if torch.version.cuda is None:
        version = torch.__version__.split("+")[0]
        return (
            f"this torch ({torch.__version__}) is a CPU-only build; install the CUDA build of "
            f"the same version for your driver: pip install torch=={version} --index-url "
            "https://download.pytorch.org/whl/cuXYZ, with cuXYZ from pytorch.org's install "
            "selector (README, 'Install by hand')"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hint = f"CUDA_VISIBLE_DEVICES={visible!r} hides them, or " if visible is not None else ""
    return (
        f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU: {hint}the driver "
        "or device is missing (check nvidia-smi)"
    )
