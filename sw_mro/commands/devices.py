"""Inputs spread over several devices: one worker process per device.

``sw-mro extract --devices cuda:0,cuda:1 ...`` runs :func:`run_on_devices`. Each device
gets a ``spawn``-ed worker process (its own CUDA context, landmark pool and decoder),
and the parent hands out one input at a time, the largest first, to whichever worker
is free, so a long video on one GPU does not leave the others idle at the end.

Failures stay per input:

- an input that raises in a worker is reported, and that worker takes the next one,
  except after a device error (CUDA, GPU memory): then the worker ends, and a fresh
  process (and CUDA context) takes over;
- a worker that dies (a segfault, the kernel's OOM killer) fails the input it held,
  and a new worker starts on that device for the inputs left. After
  :data:`MAX_DEATHS` workers of one device in a row ended without an input done (not
  counting those that ended after their input ran out of GPU memory), the device is
  not used again; when no worker is left, the remaining inputs fail with
  that reason;
- workers end when the parent is killed.

Outputs are written by the workers exactly as by one process (atomically, skipped when
complete), so a killed run resumes the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing import connection, get_context
from pathlib import Path
from typing import Any

from sw_mro._cli_util import cli_warnings, import_numpy, write_line
from sw_mro._threads import signals_blocked, unblock_signals, watch_parent

#: (device, input path, options, progress) -> one line of report; raises to fail the
#: input. ``progress(frames_added_to_total, frames_done)`` feeds the dispatcher's bar.
Job = Callable[[str, str, Any, Callable[[int, int], None]], str]


def input_size(path: str) -> int:
    """Bytes of a video file, or of a frame folder's files (for largest-first order)."""
    p = Path(path)
    try:
        if p.is_dir():
            return sum(f.stat().st_size for f in p.iterdir() if f.is_file())
        return p.stat().st_size
    except OSError:
        return 0  # missing: its worker reports the error


#: What a device's failure says (torch, CuPy), as opposed to an input's: a CUDA error is
#: sticky for the process's context once the device faulted; out of memory may be
#: fragmentation. Patterns, not the word "CUDA": a path may contain that.
_DEVICE_ERRORS = (
    "CUDA error",
    "CUDA out of memory",
    "cudaError",
    "CUDARuntimeError",
    "CUDADriverError",
    "OutOfMemoryError",
    "AcceleratorError",
)


def _device_error(text: str) -> bool:
    """A failure of the device rather than of the input."""
    return any(p in text for p in _DEVICE_ERRORS)


#: Said after an input that ran out of GPU memory.
MEMORY_HINT = (
    "hint: the GPU ran out of memory on this input; a smaller --batch-size (windows per "
    "batch, 128 by default on a GPU) needs less, and gives the same features"
)


def out_of_memory(text: str) -> bool:
    """A device error that says the GPU's memory ran out (torch's ``OutOfMemoryError``,
    CuPy's): a fault of that input's size on this device, not of the device."""
    return "OutOfMemoryError" in text or "out of memory" in text.lower()


#: The signals a worker process stops its input at (cleanly, once): Ctrl-C, SIGTERM, and
#: SIGHUP (a closed terminal or ssh connection; where the process ignores it, as under
#: ``nohup``, it stays ignored).
_STOPS = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None
)


def _ending(code: int | None) -> str:
    """How a worker process ended, in words: a signal by its name (found in review:
    "exit code -9" for a worker the OOM killer took)."""
    if code is None or code >= 0:
        return f"ended (exit code {code})"
    try:
        name = signal.Signals(-code).name
    except ValueError:  # a real-time signal
        name = f"signal {-code}"
    why = " (out of memory? the kernel's OOM killer sends it)" if -code == signal.SIGKILL else ""
    return f"was killed by {name}{why}"


def _ignore(signum: int, frame: object) -> None:
    """A signal taken and dropped (see :func:`_interrupt_once`)."""


#: In a worker process: the stop signal that interrupted it, once one has (its name is
#: sent to the parent, which would otherwise see a clean exit, code 0, and say "ended
#: (exit code 0)" of a worker that a SIGTERM stopped; found in review).
_stopped_by: list[int] = []


def _stop_name() -> str:
    return signal.Signals(_stopped_by[0]).name if _stopped_by else "an interrupt"


def _interrupt_once(*signums: int) -> None:
    """The first of these signals raises KeyboardInterrupt (the input's cleanup runs:
    temp and lock files go); later ones are ignored, so that a Ctrl-C to the whole
    group and the parent's own SIGTERM to this worker do not cut that cleanup short."""

    def handler(signum: int, frame: object) -> None:
        _stopped_by.append(signum)
        for s in signums:
            # A no-op, not SIG_IGN: another of them already caught (SIGHUP to the group,
            # then the parent's SIGINT) would find no Python handler to run and raise
            # "OSError: Signal 2 ignored due to race condition" (found in a test).
            signal.signal(s, _ignore)
        raise KeyboardInterrupt

    for s in signums:
        # An ignored SIGINT or SIGHUP stays ignored, as in the parent (nohup; a
        # background job of a script, which a Ctrl-C in the terminal must not stop:
        # found in review, it stopped the workers and failed their inputs while the
        # parent went on). SIGTERM is always set: the parent stops a worker with it.
        if s == signal.SIGTERM or signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, handler)


def _worker(device: str, job: Job, options: Any, conn: Any, parent: int) -> None:
    """Worker process: take inputs from ``conn`` until told to stop, report each on it.

    After a device error the worker ends, so that the next input gets a fresh process
    and CUDA context; it also ends when its parent is killed."""
    watch_parent(parent)
    _interrupt_once(*_STOPS)
    lock = threading.Lock()  # warnings are logged from the pipeline's threads too

    def send(kind: str, path: Any, line: Any) -> None:
        with lock:
            conn.send((kind, path, line))

    def progress(total: int, done: int) -> None:
        send("progress", total, done)

    def warn(text: str) -> None:  # printed by the parent, above its progress bar
        with contextlib.suppress(OSError):
            send("warning", None, text)

    def stopped(path: Any) -> None:  # why this worker ends: the parent reports it
        with contextlib.suppress(OSError):
            send("stopped", path, _stop_name())

    try:
        # While the stop signals are blocked: see import_numpy (found in a probe: a
        # worker that a SIGTERM hit 0.3 s after its start went on with a half-imported
        # numpy and failed every input it was given).
        import_numpy()
        # tqdm's bars take a multiprocessing lock by default, a semaphore registered with
        # the parent's resource tracker: a worker killed with it registered made the
        # parent warn of "leaked semaphore objects" at its exit (found in a probe). A
        # worker's bars are this process's alone.
        from tqdm import tqdm

        tqdm.set_lock(threading.RLock())
        # Started with both blocked (run_on_devices): one sent while this process
        # imported arrives now, at the handler (found in review: a traceback per worker).
        unblock_signals(*_STOPS)
        send("ready", None, None)
        with cli_warnings(write=warn):  # as the command prints them (found in review)
            while True:
                path = conn.recv()
                if path is None:
                    return
                try:
                    line = job(device, path, options, progress)
                except KeyboardInterrupt:
                    stopped(path)
                    return
                except Exception as exc:  # reported per input; the worker goes on
                    text = f"{type(exc).__name__}: {exc}"
                    if _device_error(text):
                        send("failed, ending", path, text)  # send no more inputs here
                        return
                    send("failed", path, text)
                else:
                    send("done", path, line)
    except KeyboardInterrupt:  # a stop signal while idle
        stopped(None)
        return
    except (EOFError, OSError):  # the parent is gone
        return
    finally:  # EOF for the parent now: it gives the exit a minute, then kills it
        with lock:  # not while a pipeline thread sends a warning (found in review)
            conn.close()


#: Deaths of a device's workers in a row (no input done in between) after which the
#: device is not used again: a broken device, not a few bad inputs.
MAX_DEATHS = 3


@dataclass
class _Slot:
    device: str
    process: Any
    conn: Any  # this worker's own pipe: a worker that dies mid-message breaks only it
    current: str | None = None
    stopped: bool = False  # sent the end marker
    stop_signal: str | None = None  # the worker said a signal stopped it (its name)
    out_of_memory: bool = False  # it ended after its input ran out of GPU memory


@dataclass
class DeviceRun:
    """What :func:`run_on_devices` did: report lines by input, failures by input."""

    done: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def run_on_devices(
    inputs: Iterable[str],
    devices: list[str],
    job: Job,
    options: Any,
    *,
    on_result: Callable[[str, bool, str], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> DeviceRun:
    """Run ``job(device, path, options)`` for every input, one worker process per entry
    of ``devices`` (a device may be listed twice: two workers share it). ``job`` and
    ``options`` must be picklable (a module-level function; plain data). ``on_result``
    is called in this process as each input ends: ``(path, ok, line)``, and
    ``on_progress(path, frames_added_to_total, frames_done)`` as the workers report
    frames of the input ``path``.

    Each worker has its own pipe. (One shared result queue hung the whole run when a
    worker died while writing to it: its write lock stayed taken for the others.)"""
    ctx = get_context("spawn")
    todo = sorted(dict.fromkeys(inputs), key=input_size, reverse=True)
    run = DeviceRun()
    slots: list[_Slot] = []
    deaths = dict.fromkeys(devices, 0)  # per device, since its last input done

    def start(device: str) -> None:
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(
            target=_worker,
            args=(device, job, options, theirs, os.getpid()),
            name=f"sw-mro-{device}",
        )
        with signals_blocked(*_STOPS):  # until _worker handles them
            proc.start()
        theirs.close()  # the worker's end lives in the worker only: EOF when it dies
        slots.append(_Slot(device, proc, ours))

    def report(path: str, ok: bool, line: str) -> None:
        (run.done if ok else run.failed)[path] = line
        if on_result is not None:
            on_result(path, ok, line)

    def send(slot: _Slot, item: str | None) -> None:
        try:
            slot.conn.send(item)
        except OSError:  # it ended: found by the EOF on its pipe
            pass

    def feed(slot: _Slot) -> None:
        if todo:
            slot.current = todo.pop(0)
            send(slot, slot.current)
        elif not slot.stopped:
            slot.stopped = True
            send(slot, None)

    def receive(slot: _Slot) -> bool:
        """Handle one message; False when the pipe is closed or broken (the worker ended)."""
        try:
            kind, path, line = slot.conn.recv()
        except Exception:  # EOF, or a message cut off by the worker's death
            return False
        if kind == "progress":  # (total, done) in the path's and line's places
            if on_progress is not None and slot.current is not None:
                on_progress(slot.current, path, line)
            return True
        if kind == "warning":  # logged or raised in the worker, already prefixed
            write_line(line)
            return True
        if kind == "stopped":  # a signal stopped it; it ends now (bury reports it)
            slot.stop_signal = line
            return True
        if kind != "ready":
            slot.current = None
            if kind == "done":
                deaths[slot.device] = 0
            slot.out_of_memory = kind == "failed, ending" and out_of_memory(line)
            report(path, kind == "done", line)
        if kind != "failed, ending":  # that worker ends; it is replaced once it has
            feed(slot)
        return True

    def bury(slot: _Slot) -> None:
        """A worker that ended: fail what it held, replace it while work is left."""
        slot.process.join(timeout=60)  # its pipe is closed: it is exiting
        if slot.process.is_alive():  # stuck in its exit (a child that does not end)
            slot.process.kill()
            slot.process.join()
        slots.remove(slot)
        slot.conn.close()
        if slot.stopped and slot.current is None:
            return  # ended normally
        ending = (
            _ending(slot.process.exitcode)
            if slot.stop_signal is None
            else f"was stopped by {slot.stop_signal}"
        )
        why = f"the worker process on {slot.device} {ending}"
        if slot.current is not None:
            report(slot.current, False, f"{why} while working on it")
        # Out of memory is the input's size, not a broken device (found in review: the
        # three largest inputs, handed out first, retired the device for the rest).
        if not slot.out_of_memory:
            deaths[slot.device] += 1
        if todo and deaths[slot.device] < MAX_DEATHS:
            start(slot.device)
        elif todo:
            print(f"sw-mro: {why}: {MAX_DEATHS} worker endings in a row without an input "
                  f"done; {slot.device} is not used again", file=sys.stderr, flush=True)  # fmt: skip

    if not todo:
        return run
    for device in devices:
        start(device)
    try:
        while slots:  # each worker is sent the end marker once no input is left (feed)
            by_conn = {s.conn: s for s in slots}
            for ready in connection.wait(list(by_conn)):
                slot = by_conn[ready]
                if slot in slots and not receive(slot):
                    bury(slot)  # its last messages were read before the EOF
            if not slots and todo:
                for path in todo:
                    report(path, False, "no device worker is left (all of them died)")
                todo.clear()
    except BaseException:
        # Ctrl-C to the group, or a signal to this process alone (found in review: the
        # workers went on with their inputs for 10 s each, then were killed without
        # cleaning up): each worker is stopped with SIGTERM (which it always handles; a
        # second stop is ignored there) and given 10 s in all to remove its temp files,
        # then killed.
        for slot in slots:
            send(slot, None)  # an idle worker ends at once
            with contextlib.suppress(OSError):
                if slot.process.is_alive():
                    os.kill(slot.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for slot in slots:
            slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
        raise
    return run


def parse_devices(text: str, cuda_count: int) -> list[str]:
    """``"cuda:0,cuda:1"`` / ``"0,1"`` / ``"all"`` / ``"cpu,cpu"`` -> torch device names.

    Raises ``ValueError`` with the reason for an entry that is not a usable device."""
    from sw_mro._cli_util import no_cuda_reason

    entries = [e.strip() for e in text.split(",") if e.strip()]
    if not entries:
        raise ValueError("--devices is empty")
    out: list[str] = []
    for e in entries:
        if e == "all":
            if cuda_count == 0:
                raise ValueError(f"--devices all: no CUDA device is available: {no_cuda_reason()}")
            out.extend(f"cuda:{i}" for i in range(cuda_count))
            continue
        if e == "cpu":
            out.append("cpu")
            continue
        index = e[5:] if e.startswith("cuda:") else ("0" if e == "cuda" else e)
        if not (index.isascii() and index.isdigit()):  # not "²" (found in a probe)
            raise ValueError(f"--devices: {e!r} is not cpu, cuda, cuda:N, N or all")
        if int(index) >= cuda_count:
            why = no_cuda_reason() if cuda_count == 0 else f"torch sees {cuda_count} CUDA device(s)"
            raise ValueError(f"--devices: {e!r} does not exist ({why})")
        out.append(f"cuda:{int(index)}")
    if len({d.split(":")[0] for d in out}) > 1:
        raise ValueError(
            "--devices mixes cpu and cuda: their features differ (~1e-5 px), and one "
            "output folder must not hold both"
        )
    return out


def per_process_cpus(devices: list[str], usable: int) -> int:
    """CPUs for each worker process when ``devices`` share ``usable`` CPUs."""
    return max(1, usable // len(devices))


__all__ = ["DeviceRun", "input_size", "parse_devices", "per_process_cpus", "run_on_devices"]
