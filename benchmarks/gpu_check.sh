#!/usr/bin/env bash
# The prepared GPU check for a session that is lent a device (see the developers' guide).
#
# Here, once: bash benchmarks/gpu_prepare.sh   (wheels and the dlib model, in .gpu/a and .gpu/b)
# Then two back-to-back calls on one warm machine (files in /tmp survive between them):
#   run(command="bash benchmarks/gpu_check.sh a", carry=[".gpu/a"], timeout_s=300)
#   run(command="bash benchmarks/gpu_check.sh b", carry=[".gpu/b"], timeout_s=420)
# Budget: a session has 15 device minutes, starts included. Size the knobs so that both
# calls fit; every step below has its own limit (see step()).
# (Stage "setup" only installs, for a rerun of stage b on a fresh machine.)
# Stage a: the CuPy kernels (tiled and split solvers) against torch and cv2 on the GPU,
#          the device-work profile (benchmarks/gpu_profile.py: per stage, per kernel) and
#          the Farneback GPU benchmarks. TESTS_A="tests/test_models.py tests/test_train.py"
#          adds the model's cuda tests, BENCH_A=benchmarks/bench_spotformer.py and
#          BENCH_A_K=cuda its benchmarks.
# Stage b: `sw_mro` on the GPU (GPU equals CPU, the CLI), the extraction benchmarks (CPU,
#          naive precedent, --gpu on a 600-frame and a long clip, side by side); with
#          MEM_S=90 GPU memory over a long stream, DEMO_S=120 the demo with --gpu,
#          DIAG_S=150 benchmarks/gpu_diag.py (producer alone, device work alone, end to
#          end), TESTS_B="tests/test_cuda_kernels.py ..." more cuda-marked tests,
#          AB_S=60 end to end of an older sw_mro (old_sw_mro.tar.gz carried in .gpu/a,
#          `git archive REV sw_mro | gzip`) against this one, old / new / old,
#          POOL_TESTS=1 the landmark-pool tests, DATASET_S=90 benchmarks/gpu_dataset.py
#          (several videos on `--devices cuda` against `cuda,cuda`; DATASET_ARGS).
#          Needs stage a's files (the first part of the model) in /tmp.
# Every step has its own time limit and the script goes on after a failure. Results land
# in $OUT (when set) and in benchmarks/results/; commit them with the device name.
set -uo pipefail
cd "$(dirname "$0")/.."
STAGE="${1:-a}"
RES="${OUT:-$PWD/benchmarks/results}"  # absolute: the A/B steps run from other folders
mkdir -p "$RES" benchmarks/results /tmp/keep /tmp/site
export PYTHONUNBUFFERED=1
log() { echo "== $(date +%T) $*" | tee -a "$RES/gpu_steps_$STAGE.txt"; }
# step SECONDS FILE CMD...: run CMD with a time limit, its output to FILE (appended), then
# show FILE. Never through a pipe: a landmark worker process that outlives a killed
# command keeps a pipe open, and `| tee` then waits for ever (it hung a run on
# 2026-11-26); a file does not wait. -k: SIGKILL 10 s after the SIGTERM.
step() {
  local secs=$1 file=$2; shift 2
  local mark=0; [ -f "$file" ] && mark=$(wc -c < "$file")
  timeout -k 10 "$secs" "$@" >> "$file" 2>&1 < /dev/null
  local rc=$?
  tail -c +"$((mark + 1))" "$file"
  [ $rc -eq 0 ] || log "exit status $rc (124: over the ${secs} s limit)"
  return 0
}

# -- install what the image lacks (wheels and model parts carried in .gpu/*)
cp -n .gpu/*/* /tmp/keep/ 2>/dev/null
ls /tmp/keep/*.whl >/dev/null 2>&1 && python3 -m pip install -q --no-index --no-deps \
  --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/keep/*.whl
model=/tmp/site/face_recognition_models/models/shape_predictor_68_face_landmarks.dat
if [ ! -f "$model" ] && [ -f /tmp/keep/sp68.xz.part-a ] && [ -f /tmp/keep/sp68.xz.part-b ]; then
  mkdir -p "$(dirname "$model")" && touch /tmp/site/face_recognition_models/__init__.py
  cat /tmp/keep/sp68.xz.part-a /tmp/keep/sp68.xz.part-b |
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)" > "$model.tmp" &&
    [ "$(sha256sum "$model.tmp" | cut -d' ' -f1)" = "$(cat /tmp/keep/sp68.sha256)" ] &&
    mv "$model.tmp" "$model" && log "dlib model assembled"
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"

log "stage $STAGE on $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$RES/gpu_device.txt"
# Which code ran (found in a review: results that named only the session's first commit).
{ echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "changed files: $(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)"
} | tee -a "$RES/gpu_device.txt"
python3 - <<'EOF' 2>&1 | tee -a "$RES/gpu_device.txt"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
for m in ("cupy", "cv2", "numba", "kornia", "decord", "av", "dlib", "numpy"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as exc:  # report and go on
        print(m, "MISSING:", exc)
EOF

PYT="python3 -m pytest -q -p no:cacheprovider -rfE --tb=short"
BENCH="--benchmark-columns=min,median,ops,rounds --benchmark-sort=name"
if [ "$STAGE" = setup ]; then
  log "installed; the model waits for stage b's part"
elif [ "$STAGE" = a ]; then
  log "cuda-marked tests: kernels (tiled and split solvers), CuPy parity with cv2, SpotFormer AMP training and float32 inference"
  step 120 "$RES/gpu_tests_a.txt" $PYT tests/test_cuda_kernels.py tests/test_farneback.py tests/test_train.py ${TESTS_A:-} -m cuda
  log "profile: device work per window and per kernel, split vs tiled vs box solver"
  step 120 "$RES/gpu_profile.txt" python3 -m benchmarks.gpu_profile 5
  log "GPU benchmarks: Farneback pairs (cupy box, tiled, split; torch) and the cv2 baseline"
  step 150 "$RES/gpu_bench_a.txt" $PYT benchmarks/bench_farneback.py ${BENCH_A:-} \
    -k "${BENCH_A_K:-cupy or torch_cuda or (cv2_per_pair and 1thread)}" \
    --benchmark-json="$RES/gpu_bench_a.json" $BENCH
else
  [ -f "$model" ] || { log "no dlib model: stage b needs stage a's files in /tmp/keep"; exit 3; }
  if [ "${SKIP_TESTS_B:-0}" != 1 ]; then
    log "cuda-marked sw_mro tests (GPU equals CPU, CLI --gpu) ${TESTS_B:-}"
    step 200 "$RES/gpu_tests_b.txt" $PYT tests/test_sw_mro.py tests/test_extract_cli.py ${TESTS_B:-} -m cuda
  fi
  if [ "${POOL_TESTS:-0}" = 1 ]; then
    log "landmark worker processes"
    step 60 "$RES/gpu_tests_b.txt" $PYT tests/test_landmark_pool.py
  fi
  if [ "${BENCH_B_S:-240}" -gt 0 ]; then
    log "extraction benchmarks: CPU, naive precedent, --gpu (cupy box/tiled/split, torch flow; 600 f, long)"
    step "${BENCH_B_S:-240}" "$RES/gpu_bench_b.txt" $PYT benchmarks/bench_extract.py \
      -k "${BENCH_K:-not memory}" --benchmark-json="$RES/gpu_bench_b.json" $BENCH
  fi
  if [ "${AB_S:-0}" -gt 0 ] && [ ! -f /tmp/keep/old_sw_mro.tar.gz ]; then
    log "ERROR: AB_S is set but no old_sw_mro.tar.gz was carried (gpu_prepare.sh makes it)"
  fi
  if [ "${AB_S:-0}" -gt 0 ] && [ -f /tmp/keep/old_sw_mro.tar.gz ]; then
    # AB_ORDER: "old" is the carried sw_mro; "new" this one, "newN" with N decord readers
    # per file, "tK" after it K FFmpeg threads per reader (SW_MRO_DECODE_THREADS), a
    # trailing "m" with the masked alignment, "c" with the compact one, and after all of
    # them "h" with glibc's default thresholds (SW_MRO_MALLOC=0; sw_mro/_malloc.py)
    # (new1m, new2c, newm, new2t2, newt1c, newh, ...).
    log "A/B on this machine: ${AB_ORDER:=old new old}"
    rm -rf /tmp/old && mkdir -p /tmp/old && tar -xzf /tmp/keep/old_sw_mro.tar.gz -C /tmp/old
    echo "old: $(gzip -dc /tmp/keep/old_sw_mro.tar.gz | git get-tar-commit-id 2>/dev/null)" >> "$RES/gpu_ab.txt"
    # The clip first, in its own step: made inside the first A/B step it took that
    # step's whole limit in run 9.
    step 120 "$RES/gpu_ab.txt" python3 -m benchmarks.gpu_diag "${DIAG_CLIP_S:-120}" cuda 256 clip
    for who in $AB_ORDER; do
      if [ "$who" = old ]; then dir=/tmp/old; else dir="$PWD"; fi
      readers="${who#new}"; compact=""; threads=""; malloc=""
      case "$readers" in *h) malloc=0; readers="${readers%h}";; esac
      case "$readers" in *m) compact=0; readers="${readers%m}";; *c) compact=1; readers="${readers%c}";; esac
      case "$readers" in *t*) threads="${readers#*t}"; readers="${readers%%t*}";; esac
      [ "$who" = old ] && readers="" && compact="" && threads="" && malloc=""
      (cd "$dir" && DIAG_LABEL="$who" DIAG_READERS="$readers" DIAG_COMPACT="$compact" \
        SW_MRO_DECODE_THREADS="$threads" SW_MRO_MALLOC="$malloc" \
        PYTHONPATH="$dir:/tmp/site:$OLDPWD" \
        step "$AB_S" "$RES/gpu_ab.txt" python3 -m benchmarks.gpu_diag "${DIAG_CLIP_S:-120}" cuda 256 e2e)
    done
  fi
  if [ "${DIAG_S:-0}" -gt 0 ]; then
    log "producer alone, device work alone, end to end (benchmarks/gpu_diag.py)"
    step "${DIAG_S}" "$RES/gpu_diag.txt" python3 -m benchmarks.gpu_diag "${DIAG_CLIP_S:-120}"
  fi
  if [ "${DATASET_S:-0}" -gt 0 ]; then
    log "data-set throughput: videos on one process vs two sharing the GPU (--devices)"
    step "${DATASET_S}" "$RES/gpu_dataset.txt" python3 -m benchmarks.gpu_dataset ${DATASET_ARGS:-4 60}
  fi
  if [ "${MEM_S:-0}" -gt 0 ]; then
    log "GPU memory over a long stream (face 256, window 17)"
    step "${MEM_S}" "$RES/gpu_memory.txt" \
      python3 -m benchmarks.bench_extract memory "${MEM_FRAMES:-20000}" 17 cuda 256
  fi
  if [ "${DEMO_S:-0}" -gt 0 ]; then
    log "demo with --gpu"
    step "${DEMO_S}" "$RES/gpu_demo.txt" python3 -m spotformer.cli demo --gpu --out /tmp/demo_gpu
  fi
fi
log "done"
cp -f "$RES"/gpu_* benchmarks/results/ 2>/dev/null || true
