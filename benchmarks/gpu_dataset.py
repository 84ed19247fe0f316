"""Data-set throughput of ``sw-mro extract``: several videos on one or more worker
processes (``--devices``), frames of all videos over the wall time of the command.

``python -m benchmarks.gpu_dataset [VIDEOS [SECONDS [FACE [LIST ...]]]]`` writes
``VIDEOS`` copies of the extraction benchmark's 640x480 clip (``SECONDS`` long, default
4 x 60 s) and runs the CLI once per device list (default ``cuda`` and ``cuda,cuda``:
one process, then two processes sharing the GPU), each in a fresh subprocess and a
fresh output folder, so process start, model loading and each video's pipeline fill and
drain are all counted, as a user would see them. One JSON line per run.

On one GPU the host's CPUs bound ``--gpu`` (run 6: each half of the pipeline alone runs
at about 1,000 frames/s, both together at 656): two processes overlap one video's
decoding and landmarks with another's device work and Python launches. On a CPU host,
``cpu`` and ``cpu,cpu`` check that the script runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main(videos: int = 4, seconds: float = 60.0, face: int = 256, lists: tuple = ()) -> None:
    from benchmarks.bench_extract import FPS, make_frames
    from sw_mro.io.writer import write_video

    lists = lists or ("cuda", "cuda,cuda")
    n = round(seconds * FPS)
    root = Path(f"/tmp/sw_mro_dataset_{n}")
    root.mkdir(exist_ok=True)
    first = root / "v0.mp4"
    if not first.exists():
        frames = make_frames(min(n, 180))
        write_video(first, (frames[t % len(frames)] for t in range(n)), fps=FPS, threads=0)
    paths = [first]
    for i in range(1, videos):
        p = root / f"v{i}.mp4"
        if not p.exists():
            shutil.copy(first, p)
        paths.append(p)
    cli = "import sys; from sw_mro.cli import main; sys.exit(main(sys.argv[1:]))"
    warm = root / "warm"
    shutil.rmtree(warm, ignore_errors=True)  # compile caches, page cache: a short run first
    subprocess.run(
        [sys.executable, "-c", cli, "extract", str(first), "--out-dir", str(warm),
         "--devices", lists[0].split(",")[0], "--window", "5", "--face-size", "64", "--quiet"],
        check=False, capture_output=True,
    )  # fmt: skip
    for devices in lists:
        out = root / f"out_{devices.replace(',', '_').replace(':', '')}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-c", cli, "extract", *map(str, paths), "--out-dir", str(out),
               "--devices", devices, "--face-size", str(face), "--quiet"]  # fmt: skip
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t
        per_video = []
        for p in paths:
            meta = out / f"{p.stem}.json"
            if meta.exists():
                per_video.append(json.loads(meta.read_text())["frames_per_second"])
        rec = {
            "measure": "dataset",
            "devices": devices,
            "videos": videos,
            "frames": n * videos,
            "seconds": round(dt, 2),
            "frames_per_s": round(n * videos / dt, 1),
            "per_video_frames_per_s": per_video,
            "rc": proc.returncode,
        }
        if proc.returncode:
            rec["stderr"] = proc.stderr[-1500:]
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(
        int(a[0]) if a else 4,
        float(a[1]) if len(a) > 1 else 60.0,
        int(a[2]) if len(a) > 2 else 256,
        tuple(a[3:]),
    )
