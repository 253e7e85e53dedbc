#!/usr/bin/env bash
# `make demo`: ALIGN on the toy world, end to end on a CPU with no downloads (minutes on 2 cores).
#
# The real path: tools.toy_world writes the ToyShapes dataset, then the protocol scripts run
# train.py (zero-shot CLIP, and ALIGN base-to-new for every seed), parse_test_res.py prints the
# Base / New / HM table, and tools.demo_report checks the targets and draws OUTPUT/demo.png.
# Environment: DEMO_OUTPUT (default output/demo; the data goes to DEMO_OUTPUT/data), SEEDS
# (default 1 2 3), PYTHON, OMP_NUM_THREADS (default 1). Runs whose results exist are skipped, so
# a second call is quick.
source "$(dirname "$0")/common.sh"
export OUTPUT=${DEMO_OUTPUT:-output/demo}
export DATA=$OUTPUT/data
export CFG=toy_clip
# The toy model's operations are tiny: one thread is faster than two, and on a busy 2-core
# machine two threads are several times slower.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SEEDS=${SEEDS:-"1 2 3"}
STARTED=$SECONDS

"$PYTHON" -m tools.toy_world --root "$DATA"
bash scripts/zsclip/zeroshot_base2new.sh toy_shapes 1  # zero-shot CLIP draws nothing: one seed
for seed in $SEEDS; do
    bash scripts/align/base2new_train.sh toy_shapes "$seed"
    bash scripts/align/base2new_test.sh toy_shapes "$seed"
done

echo
"$PYTHON" parse_test_res.py "$OUTPUT/base2new" --base2new --datasets toy_shapes
echo
"$PYTHON" -m tools.demo_report "$OUTPUT"
echo "Demo finished in $((SECONDS - STARTED)) s; logs under $OUTPUT/base2new"
