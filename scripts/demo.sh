#!/usr/bin/env bash
# `make demo`: zero-shot CLIP, ALIGN and the other methods of DEMO_METHODS on the toy world, end
# to end on a CPU with no downloads (minutes on 2 cores).
#
# The real path: tools.toy_world writes the ToyShapes dataset, then each method's base-to-new
# scripts run train.py with its toy recipe (TOY=1: configs/trainers/<Method>/toy_clip.yaml) for
# its demo seeds, parse_test_res.py prints the comparison table (a row per method, the seeds
# each used), and tools.demo_report checks the targets and draws OUTPUT/demo.png.
# Environment: DEMO_METHODS (default: every method whose env.sh sets DEMO_SEEDS, in the
# registry's order; names as scripts/reproduce.sh takes),
# DEMO_OUTPUT (default output/demo; the data goes to DEMO_OUTPUT/data), SEEDS (default: each
# method's DEMO_SEEDS in its env.sh; a method without training always runs its own: it draws
# nothing), PYTHON, OMP_NUM_THREADS (default 1). Runs whose results exist are skipped, so a second
# call is quick.
source "$(dirname "${BASH_SOURCE[0]}")/lib/protocols.sh"
OUTPUT=$(from_caller "${DEMO_OUTPUT:-}")
export OUTPUT=${OUTPUT:-output/demo}
export DATA=$OUTPUT/data
export TOY=1
unset CFG  # each method's own toy recipe
# The toy model's operations are tiny: one thread is faster than two, and on a busy 2-core
# machine two threads are several times slower.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
STARTED=$SECONDS

# The methods whose env.sh sets DEMO_SEEDS, in the registry's order (tools/methods.py).
DEFAULT_METHODS=$("$PYTHON" -m tools.methods demo)
DIRS=()
for name in ${DEMO_METHODS:-$DEFAULT_METHODS}; do
    dir=$(method_dir "$name")
    DIRS+=("$dir")
done

"$PYTHON" -m tools.toy_world --root "$DATA"
NAMES=()
TIMES=()
for dir in "${DIRS[@]}"; do
    # shellcheck disable=SC2016  # expanded in the subshell that read the method
    read -r name seeds <<< "$(load_method "$dir" && printf '%s %s\n' "$METHOD" \
        "$(if [ -n "$LEARNER" ] && [ -n "${SEEDS:-}" ]; then echo "$SEEDS"; else echo "$DEMO_SEEDS"; fi)")"
    started=$SECONDS
    for seed in $seeds; do
        bash "$dir/base2new_train.sh" toy_shapes "$seed"
        bash "$dir/base2new_test.sh" toy_shapes "$seed"
    done
    NAMES+=("$name")
    TIMES+=("$name $((SECONDS - started)) s")
done

echo
"$PYTHON" parse_test_res.py "$OUTPUT/base2new" --base2new --datasets toy_shapes --methods "$(IFS=,; echo "${NAMES[*]}")"
echo
"$PYTHON" -m tools.demo_report "$OUTPUT" --methods "$(IFS=,; echo "${NAMES[*]}")"
echo "Demo finished in $((SECONDS - STARTED)) s ($(IFS=,; echo "${TIMES[*]}" | sed 's/,/, /g')); logs under $OUTPUT/base2new"
