#!/usr/bin/env bash
# Upstream's few-shot entry point: fewshot.sh for seeds 1 2 3 (SEEDS overrides them).
#   bash scripts/promptsrc/few_shot.sh DATASET SHOTS      e.g. oxford_pets 4
# Output: $OUTPUT/DATASET/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED, upstream's layout; the recipe is
# chosen per dataset (env.sh: GPA 45 / 5 for StanfordCars, Flowers102, FGVCAircraft, DTD, EuroSAT).
# A seed that fails does not stop the others; they are listed at the end (exit status 1).
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, CFG, ...): scripts/lib/protocols.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
[ $# -eq 2 ] || { echo "usage: $0 DATASET SHOTS" >&2; exit 2; }
check_dataset "$1"
failed=()
for seed in ${SEEDS:-1 2 3}; do
    bash "$SCRIPT_DIR/fewshot.sh" "$1" "$2" "$seed" || failed+=("seed $seed")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "Failed: $1, $2 shots: ${failed[*]}" >&2
    exit 1
fi
