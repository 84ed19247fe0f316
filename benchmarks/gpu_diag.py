"""Which half of ``extract --gpu`` bounds it: the producer (decode + landmarks) or the
main thread (device work), each timed alone and then together, on the GPU host.

``python -m benchmarks.gpu_diag [SECONDS [DEVICE [FACE [MODE]]]]`` (stage b of ``gpu_check.sh``) writes the
benchmark's 640x480 clip (``SECONDS`` long, default 120, so 3,600 frames), warms up,
then prints one JSON line per measurement:

- ``host``: CPU model, logical CPUs, threads per core;
- ``decode``: decoding alone, chunks of ``chunk_size``, with one decord reader and with
  ``FILE_DECODE_READERS`` (auto: 2 on a host of >= 8 usable cores) on alternate chunks;
- ``landmarks``: the landmark workers alone on decoded chunks, one chunk at a time
  (as before 2026-11-27) and with two chunks in flight (the producer's way);
- ``landmarks_redetect4``: the same with ``landmark_redetect=4``;
- ``producer``: the producer thread alone (decode, landmarks, upload), nothing consuming
  but a loop that drops the chunks, with ``landmark_redetect`` 4 and 1;
- ``device``: the main thread alone, fed chunks prepared in advance (no decoding or
  landmarks running), stage seconds from CUDA events: the alignment without device
  syncs (``COMPACT_ALIGNMENT = False``), the compact one (the default), the first again;
- ``end_to_end``: ``sw_mro.stream`` as the benchmark runs it, with the detector on
  every frame and on every 4th, with the other alignment, and with the landmark
  workers 10 nice levels down (``worker_nice``); ``cpu`` says where the host's CPU
  time went (:class:`CpuProbe`: this process by thread, native threads by the thread
  that started them, and the landmark workers);
- ``decode_threads`` (with ``DIAG_DECODE_THREADS=1``): decode alone with decord's
  ``num_threads`` 1, 2, 4 and its default (0), wall and CPU seconds.

Frames/s are the clip's frames over wall seconds. The ``end_to_end`` rows also give
``first_chunk_s`` (until the first features came out) and ``steady_frames_per_s`` (the
frames after the first chunk over the time from it to the last): the rate that a long
video approaches once the pipeline is full, without its fill and drain. MODE ``e2e`` runs only the end-to-end
measurement twice, with public API only, so that another commit's ``sw_mro`` (first on
``PYTHONPATH``, run from another folder) can be timed on the same machine;
``DIAG_READERS=N`` sets ``FILE_DECODE_READERS``, ``SW_MRO_DECODE_THREADS=K`` FFmpeg's
threads per reader (versions since 2026-11-27, sixth session), ``DIAG_COMPACT=1|0`` the compact or
masked alignment (``COMPACT_ALIGNMENT``), ``DIAG_WORKER_NICE=N`` the landmark workers'
niceness (``landmark_pool.WORKER_NICE``), and ``DIAG_LABEL`` names the run.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import re
import sys
import threading
import time
from pathlib import Path

import torch


def host_info() -> dict:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    sib = "/sys/devices/system/cpu/cpu0/topology/thread_siblings_list"
    try:
        text = Path(sib).read_text().strip()
        threads = sum(
            (int(b) - int(a) + 1) if "-" in part else 1
            for part in text.split(",")
            for a, _, b in [part.partition("-")]
        )
    except OSError:
        threads = None
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "threads_per_core": threads,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def emit(name: str, **rec) -> None:
    print(json.dumps({"measure": name, **rec}), flush=True)


def main(seconds: float, dev: str = "cuda", face_size: int = 256, mode: str = "all") -> None:
    from benchmarks.bench_extract import FPS, make_frames
    from sw_mro import SWMROConfig
    from sw_mro import pipeline as pl
    from sw_mro.io.video import open_video
    from sw_mro.io.writer import write_video

    emit("host", sw_mro=str(Path(sw_mro_file()).parent), **host_info())
    if os.environ.get("DIAG_READERS"):  # decord readers of a file (this version on)
        import sw_mro.io.video as vid

        vid.FILE_DECODE_READERS = int(os.environ["DIAG_READERS"])
    if os.environ.get("DIAG_COMPACT"):  # "1": compact alignment rounds, "0": masked
        pl.COMPACT_ALIGNMENT = os.environ["DIAG_COMPACT"] == "1"
    if os.environ.get("DIAG_WORKER_NICE"):  # niceness of the landmark worker processes
        from sw_mro.io import landmark_pool

        landmark_pool.WORKER_NICE = int(os.environ["DIAG_WORKER_NICE"])
    n = round(seconds * FPS)
    path = Path(f"/tmp/sw_mro_diag_{n}.mp4")
    if not path.exists():
        frames = make_frames(min(n, 180))
        write_video(path, (frames[t % len(frames)] for t in range(n)), fps=FPS, threads=0)
    if mode == "clip":  # only the clip, in a step of its own (gpu_check.sh's A/B)
        emit("clip", path=str(path), frames=n)
        return
    device = torch.device(dev)
    cfg = SWMROConfig(device=dev, face_size=face_size)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(run):  # noqa: ANN001, ANN202 - (result, wall seconds including the device)
        t = time.perf_counter()
        out = run()
        sync()
        return out, time.perf_counter() - t

    import contextlib

    import sw_mro

    try:  # not in the older sw_mro that mode e2e may time
        from sw_mro._threads import os_thread_name, set_os_thread_name
    except ImportError:
        os_thread_name = lambda _: contextlib.nullcontext()  # noqa: E731
        set_os_thread_name = lambda _: None  # noqa: E731

    # Native threads inherit the OS name of the thread that starts them: CpuProbe then
    # tells those started in the warm-up (CUDA's, torch's, CuPy's) from those started
    # later by this thread ("diag-main") and from sw_mro's own (sw_mro-*).
    set_os_thread_name("diag-main")
    with os_thread_name("diag-warmup"):
        sw_mro.extract(path, cfg.replace(window=5))  # warm-up: pool, kernels, caches
        sync()

    if mode == "e2e":  # only what any version of sw_mro has: an A/B of two commits
        for _ in range(2):
            t = time.perf_counter()
            _, times = _paced(sw_mro.stream(path, cfg), sync)
            dt = time.perf_counter() - t
            emit(
                "end_to_end",
                label=os.environ.get("DIAG_LABEL", ""),
                decode_readers=os.environ.get("DIAG_READERS", "default"),
                decode_threads=os.environ.get("SW_MRO_DECODE_THREADS") or "default",
                compact_alignment=getattr(pl, "COMPACT_ALIGNMENT", "n/a"),
                seconds=round(dt, 3),
                frames_per_s=round(n / dt, 1),
                **_steady(times, t),
            )
        return

    # -- decode alone, one decord reader and FILE_DECODE_READERS (the default)
    import sw_mro.io.video as vid

    readers = vid.FILE_DECODE_READERS
    for k in sorted({1, vid._file_decode_readers()}):
        vid.FILE_DECODE_READERS = k
        t, c = time.perf_counter(), sum(os.times()[:2])
        chunks = [(s, rgb.numpy()) for s, rgb in open_video(path).chunks(cfg.resolved_chunk_size)]
        dt, dc = time.perf_counter() - t, sum(os.times()[:2]) - c
        emit(
            "decode",
            readers=k,
            seconds=round(dt, 3),
            frames_per_s=round(n / dt, 1),
            cpu_ms_per_frame=round(dc / n * 1e3, 3),
        )
    vid.FILE_DECODE_READERS = readers
    if os.environ.get("DIAG_DECODE_THREADS"):
        emit("decode_threads", **_decode_threads(path, cfg.resolved_chunk_size, n))

    # -- landmarks alone, one chunk at a time and two in flight
    marks = pl._Landmarks(cfg, device)
    t = time.perf_counter()
    for s, rgb in chunks:
        marks.detect(s, rgb)
    one = time.perf_counter() - t
    marks.close()
    two = _two_in_flight(pl._Landmarks(cfg, device), chunks)
    emit(
        "landmarks",
        workers=cfg.resolved_landmark_workers,
        one_chunk_at_a_time_s=round(one, 3),
        one_chunk_fps=round(n / one, 1),
        two_in_flight_s=round(two, 3),
        two_in_flight_fps=round(n / two, 1),
    )
    fast = cfg.replace(landmark_redetect=4)
    sw_mro.extract(path, fast.replace(window=5))  # start the pool of this option
    dt = _two_in_flight(pl._Landmarks(fast, device), chunks)
    emit("landmarks_redetect4", seconds=round(dt, 3), frames_per_s=round(n / dt, 1))
    del chunks

    # -- the producer alone (the detector on every frame, then on every 4th)
    for redetect in (4, 1):  # the last run's chunks feed the device below
        c = cfg.replace(landmark_redetect=redetect)
        src = pl._SerialSource(pl._open(path, c))
        q: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()
        items = []
        t = time.perf_counter()
        worker = threading.Thread(target=pl._producer, args=(src, c, device, q, stop), daemon=True)
        worker.start()
        while True:
            item = q.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            items.append(item)
        sync()
        dt = time.perf_counter() - t
        worker.join()
        emit(
            "producer",
            landmark_redetect=redetect,
            seconds=round(dt, 3),
            frames_per_s=round(n / dt, 1),
        )

    # -- the main thread alone, fed the producer's chunks at once
    def fed_producer(src, config, device, out, stop, ready=tuple(items)) -> None:  # noqa: ARG001
        for item in ready:
            out.put(item)
        out.put(None)

    real, compact = pl._producer, pl.COMPACT_ALIGNMENT
    pl._producer = fed_producer
    try:  # the alignment without device syncs, the compact one (the default), the first
        for mode_ in (False, True, False):
            pl.COMPACT_ALIGNMENT = mode_
            got, dt = timed(lambda: list(pl.stream(path, cfg)))
            emit(
                "device",
                compact_alignment=mode_,
                seconds=round(dt, 3),
                frames_per_s=round(n / dt, 1),
                **_stages(got),
            )
            del got
    finally:
        pl._producer, pl.COMPACT_ALIGNMENT = real, compact
    del items

    # -- end to end: the detector on every frame and on every 4th; the other alignment;
    # landmark workers 10 nice levels down
    from sw_mro.io import landmark_pool

    w0, nice0 = cfg.resolved_landmark_workers, landmark_pool.WORKER_NICE
    rows = ((1, compact, nice0), (4, compact, nice0), (1, not compact, nice0), (1, compact, 10))
    for redetect, mode_, nice in rows:
        c = cfg.replace(landmark_redetect=redetect)
        pl.COMPACT_ALIGNMENT, landmark_pool.WORKER_NICE = mode_, nice
        try:
            sw_mro.extract(path, c.replace(window=5))  # start this pool
            sync()
            with CpuProbe(_worker_pids(c)) as probe:
                t = time.perf_counter()
                got, times = _paced(sw_mro.stream(path, c), sync)
                dt = time.perf_counter() - t
        finally:
            pl.COMPACT_ALIGNMENT, landmark_pool.WORKER_NICE = compact, nice0
        emit(
            "end_to_end",
            landmark_workers=w0,
            landmark_redetect=redetect,
            compact_alignment=mode_,
            worker_nice=nice,
            seconds=round(dt, 3),
            frames_per_s=round(n / dt, 1),
            **_stages(got),
            **_steady(times, t),
            cpu=probe.result,
        )


def _decode_threads(path: Path, chunk: int, n: int) -> dict:
    """Decode alone with decord's ``num_threads`` (0: FFmpeg's choice, one per core)."""
    import decord
    from decord.bridge.torchdl import to_torch

    out = {}
    for threads in (0, 1, 2, 4):
        vr = decord.VideoReader(str(path), num_threads=threads)
        t, c = time.perf_counter(), sum(os.times()[:2])
        for a in range(0, n, chunk):
            to_torch(vr.get_batch(list(range(a, min(n, a + chunk))))).numpy()
        dt, dc = time.perf_counter() - t, sum(os.times()[:2]) - c
        out[f"threads_{threads}"] = {
            "frames_per_s": round(n / dt, 1),
            "cpu_ms_per_frame": round(dc / n * 1e3, 3),
        }
        del vr
    return out


class CpuProbe:
    """CPU seconds of this process by thread (sampled every ``period`` s from
    ``/proc/self/task``; a thread that ends loses at most its last period) and of the
    landmark worker processes, over a ``with`` block. Threads are named by ``sw_mro``
    (``sw_mro-decode``, ``sw_mro-submit``, ``sw_mro-landmarks``) and ``MainThread``;
    native threads (FFmpeg's decoders, CUDA's, torch's) are "other": this process's
    total minus the named ones; ``native_cpu_s`` splits the part of it that was sampled by
    the threads' OS names (``/proc/self/task/*/comm``, digits as ``#``). A native thread
    inherits the OS name of the thread that started it: ``sw_mro-ffmpeg`` (decord's and
    FFmpeg's, started while a file is opened), ``sw_mro-decode``/``sw_mro-decoder_#``
    (decord's, started on a seek), ``diag-warmup`` (started in the warm-up: CUDA's,
    torch's, CuPy's), ``diag-main`` (started later by the main thread)."""

    def __init__(self, worker_pids: list[int], period: float = 0.05) -> None:
        self.pids, self.period = worker_pids, period
        self.tick = os.sysconf("SC_CLK_TCK")

    def _cpu(self, path: str) -> float | None:
        try:
            fields = Path(path).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / self.tick

    def _sample(self) -> None:
        names = {t.native_id: t.name for t in threading.enumerate()}
        for tid in os.listdir("/proc/self/task"):
            cpu = self._cpu(f"/proc/self/task/{tid}/stat")
            if cpu is not None:
                self.last[int(tid)] = cpu
                if int(tid) not in self.names:
                    name = names.get(int(tid))
                    if name is None:  # a native thread: its kernel name, digits dropped
                        try:
                            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
                        except OSError:
                            comm = "?"
                        name = "native:" + re.sub(r"\d+", "#", comm)
                    self.names[int(tid)] = name

    def _loop(self) -> None:
        while not self.done.wait(self.period):
            self._sample()

    def __enter__(self) -> CpuProbe:
        self.names: dict[int, str] = {}
        self.last: dict[int, float] = {}
        self._sample()
        self.first = dict(self.last)
        self.workers0 = {p: self._cpu(f"/proc/{p}/stat") or 0.0 for p in self.pids}
        self.total0 = sum(os.times()[:2])
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="cpu-probe")
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self._sample()
        total = sum(os.times()[:2]) - self.total0
        by_name: dict[str, float] = {}
        native: dict[str, float] = {}
        counts: dict[str, int] = {}
        for tid, cpu in self.last.items():
            name = self.names[tid]
            used = cpu - self.first.get(tid, 0.0)
            if name.startswith(("sw_mro-", "MainThread")):
                by_name[name] = by_name.get(name, 0.0) + used
            elif name.startswith("native:"):
                native[name[7:]] = native.get(name[7:], 0.0) + used
                counts[name[7:]] = counts.get(name[7:], 0) + 1
        by_name["other"] = max(0.0, total - sum(by_name.values()))
        workers = sum((self._cpu(f"/proc/{p}/stat") or 0.0) - c0 for p, c0 in self.workers0.items())
        self.result = {
            "process_cpu_s": round(total, 2),
            "threads_cpu_s": {k: round(v, 2) for k, v in sorted(by_name.items())},
            # "other" in part: native threads by kernel name (with how many were seen)
            "native_cpu_s": {
                f"{k} x{counts[k]}": round(v, 2)
                for k, v in sorted(native.items(), key=lambda kv: -kv[1])
                if v >= 0.05
            },
            "landmark_workers_cpu_s": round(workers, 2),
        }


def _worker_pids(config) -> list[int]:
    """PIDs of the landmark worker processes that ``config`` uses (started already)."""
    from sw_mro.io import landmark_pool

    if config.landmarks != "dlib" or config.resolved_landmark_workers < 2:
        return []
    pool = landmark_pool.shared_pool(
        config.resolved_landmark_workers,
        redetect=config.landmark_redetect,
        nice=landmark_pool.WORKER_NICE,
    )
    return list(pool._pool._processes or {})


def _two_in_flight(marks, chunks: list) -> float:
    """Seconds to landmark ``chunks`` with two in flight, as the producer does."""
    t = time.perf_counter()
    pending = []
    for s, rgb in chunks:
        pending.append(marks.submit(s, rgb))
        if len(pending) == 2:
            marks.collect(pending.pop(0))
    for p in pending:
        marks.collect(p)
    dt = time.perf_counter() - t
    marks.close()
    return dt


def sw_mro_file() -> str:
    import sw_mro

    return sw_mro.__file__


def _paced(chunks, sync) -> tuple[list, list[tuple[float, int]]]:  # noqa: ANN001
    """The chunks of a stream, and (time each one was yielded, its frames), then a sync.
    No sync per chunk (that would stop the main thread's launches from overlapping the
    device): a chunk's kernels may still run when it is yielded, a lag that the CUDA
    queue bounds and that a rate over many chunks does not see."""
    got, times = [], []
    for c in chunks:
        got.append(c)
        times.append((time.perf_counter(), len(c.frames)))
    sync()
    return got, times


def _steady(times: list[tuple[float, int]], t0: float) -> dict:
    """Seconds to the first chunk, and frames/s from then to the last chunk: the rate a
    long video approaches, without the pipeline's fill (first chunk) and drain."""
    if len(times) < 2:
        return {}
    span = times[-1][0] - times[0][0]
    frames = sum(k for _, k in times[1:])
    return {
        "first_chunk_s": round(times[0][0] - t0, 3),
        "steady_frames_per_s": round(frames / span, 1) if span > 0 else None,
    }


def _stages(chunks: list) -> dict:
    out: dict[str, float] = {}
    for c in chunks:
        for k, v in c.stats.items():
            out[k] = out.get(k, 0.0) + v
    return {"stage_seconds": {k: round(v, 3) for k, v in out.items()}}


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        float(args[0]) if args else 120.0,
        args[1] if len(args) > 1 else "cuda",
        int(args[2]) if len(args) > 2 else 256,
        args[3] if len(args) > 3 else "all",
    )
