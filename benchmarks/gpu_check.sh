#!/usr/bin/env bash
# One prepared GPU check for a session that has a device (see the developers' guide).
#
# Here, once, in the repo root (wheels the device lacks travel in .whl/):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl cupy-cuda13x==14.2.0 kornia==0.9.0 \
#     kornia-rs==0.2.0 decord==0.6.0 av==18.1.0 dlib-bin==20.0.1.post1 \
#     opencv-python-headless==5.0.0.93 pytest-benchmark==5.3.1 py-cpuinfo2==10.1.1 openpyxl==3.1.5 et_xmlfile==2.0.0
#   (face-recognition-models is an sdist: build its wheel here with `pip wheel --no-deps -w .whl face-recognition-models==0.3.0`)
# Then on the device:  run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Results land in $OUT (when set) and in benchmarks/results/; commit them with the device name.
set -uo pipefail
cd "$(dirname "$0")/.."
RES="${OUT:-benchmarks/results}"
mkdir -p "$RES" benchmarks/results
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" || exit 1
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$RES/gpu_device.txt"
python3 -c "import torch, cupy; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0)); print('cupy', cupy.__version__)" | tee -a "$RES/gpu_device.txt"
python3 -m pytest tests -m cuda --device cuda -q -p no:cacheprovider 2>&1 | tee "$RES/gpu_tests.txt"
python3 -m pytest benchmarks -q -p no:cacheprovider -k "cuda or gpu or cupy" \
  --benchmark-json="$RES/gpu_bench.json" --benchmark-columns=min,median,ops,rounds 2>&1 | tee "$RES/gpu_bench.txt"
cp -f "$RES"/gpu_* benchmarks/results/ 2>/dev/null || true
