#!/usr/bin/env bash
# Issue 7's GPU check: the ALIGN benchmark on CUDA at C = 100, 500, 1000 in fp16 and bf16
# (preset "gpu" of benchmarks/bench_align.py: training steps at C = 100, 500 with B = 4;
# evaluation of 2 batches and the OT stage alone with B = 100; 3 repeats after 1 warm-up; the
# reference's token loop on at most 200 (image, class) pairs per forward, extrapolated).
# Targets checked and printed at the end: training step at C = 500 >= 10x faster than the
# reference; evaluation at C = 1000, B = 100 under 16 GB (torch.cuda.max_memory_allocated).
#
# Needs python3 with torch and numpy, and yacs importable (e.g. on PYTHONPATH); nothing else.
# Run from anywhere:   bash benchmarks/gpu_check.sh
# Output:              $OUT/bench_gpu.json and $OUT/bench_gpu.log (OUT defaults to ./output/gpu)
# Extra arguments go to bench_align after the defaults, e.g. a CPU smoke test of this script:
#                      bash benchmarks/gpu_check.sh --tiny --device cpu
set -euo pipefail
export PYTHONUNBUFFERED=1

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-./output/gpu}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"

echo "[gpu_check] $(date -u +%FT%TZ) start in $(pwd); output in $OUT"
"$PYTHON" - <<'EOF'
import torch
print(f"[gpu_check] python torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    print(f"[gpu_check] device: {props.name}, {props.total_memory / 2**30:.1f} GiB")
EOF
if ! "$PYTHON" -c "import yacs" 2>/dev/null; then
    echo "[gpu_check] error: the package yacs is not importable (put it on PYTHONPATH)" >&2
    exit 2
fi

"$PYTHON" -m benchmarks.bench_align --preset gpu --device cuda --json "$OUT/bench_gpu.json" "$@" 2>&1 \
    | tee "$OUT/bench_gpu.log"
echo "[gpu_check] $(date -u +%FT%TZ) done in ${SECONDS}s; results: $OUT/bench_gpu.json"
