#!/usr/bin/env bash
# Every CUDA check of cnnx in one run, on one GPU, in at most 8 minutes:
#
#   1. the CUDA-only tests (pytest: training on CUDA, bf16 autocast, a CUDA checkpoint loaded on the CPU);
#   2. `cnnx train mnist --device cuda`, without and with --amp, on the full MNIST: time to
#      99.0/99.3/99.4% and the whole command (bench/train_speed.py, seed 0);
#   3. the CUDA-trained checkpoint exported and parity-checked in a process that sees no GPU
#      (CUDA_VISIBLE_DEVICES=""), every format, on all 10,000 test images;
#   4. `cnnx bench` on that run (the formats on this machine's CPU, and the card's name beside them).
#
#   bash bench/gpu_check.sh                 # results in bench/results/gpu_check/ (or $OUT when set)
#   CNNX_MNIST_DIR=/data/mnist bash bench/gpu_check.sh
#
# It states its targets and exits non-zero when one is missed or a step fails.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-bench/results/gpu_check}
mkdir -p "$RESULTS"
DATA=${CNNX_MNIST_DIR:-../shared/data/mnist}
[ -d "$DATA" ] || { echo "gpu_check: no MNIST at $DATA (set CNNX_MNIST_DIR)" >&2; exit 2; }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
LOG=$RESULTS/gpu_check.log
failed=()
step() { echo "== $*" | tee -a "$LOG"; }
run() {  # run NAME SECONDS CMD...: time-limited, logged, failure remembered
    local name=$1 limit=$2; shift 2
    step "$name: $*"
    if ! timeout "$limit" "$@" 2>&1 | tee -a "$LOG"; then failed+=("$name"); fi
}

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG" "$RESULTS/gpu.txt"
python -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))" 2>&1 | tee -a "$LOG" || exit 2

run cuda-tests 120 python -m pytest -q -p no:cacheprovider -m "not realdata" \
    tests/train/test_loop.py -k "cuda" tests/export/test_sources.py::test_checkpoint_saved_on_cuda_exports_on_cpu

# one seed each: the whole command and the time to each accuracy, from metrics.json
run train-cuda 120 python bench/train_speed.py --data-dir "$DATA" --seeds 0 --out "$RESULTS/cuda" -- --device cuda
run train-cuda-amp 120 python bench/train_speed.py --data-dir "$DATA" --seeds 0 --out "$RESULTS/cuda-amp" -- --device cuda --amp

RUN=$RESULTS/run
run train-for-export 90 python -m cnnx train mnist --device cuda --data-dir "$DATA" --out "$RUN" --no-plots
run export-on-cpu 120 env CUDA_VISIBLE_DEVICES= python -m cnnx export "$RUN" --format all --int8 \
    --data-dir "$DATA" --json
run bench 150 python -m cnnx bench "$RUN" --data-dir "$DATA" --seconds 0.5 --cold-runs 1 --json

python - "$RESULTS" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
res = Path(sys.argv[1])
rows = []
for name in ("cuda", "cuda-amp"):
    for f in sorted((res / name).glob("*.json")):
        data = json.loads(f.read_text())
        rows.append((name, data.get("summary", data)))
for name, summary in rows:
    print(f"{name}: {json.dumps(summary)[:400]}")
parity = res / "run" / "parity.json"
if parity.is_file():
    report = json.loads(parity.read_text())
    for fmt, r in report["formats"].items():
        print(f"export on CPU of the CUDA run: {fmt} agreement {r['top1_agreement']:.4%}, passed {r['passed']}")
EOF

if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu_check: FAILED: ${failed[*]} (see $LOG)" >&2
    exit 1
fi
echo "gpu_check: every CUDA check passed; figures in $RESULTS"
