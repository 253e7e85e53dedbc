#!/usr/bin/env bash
# Upstream's entry point: evaluate released few-shot weights (all classes) for seeds 1 2 3.
#   bash scripts/promptsrc/reproduce_few_shot.sh DATASET SHOTS WEIGHTS
#   e.g. oxford_pets 4 /path/to/weights   (the model: WEIGHTS/${SHOTS}shot/seed$SEED/VLPromptLearner/model.pth.tar-$LOADEP)
# Output: $OUTPUT/few_shot/DATASET/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED, upstream's layout, with
# the recipe fewshot.sh chooses for DATASET (the GPA settings do not change an evaluation).
# Environment: LOADEP (default 50, upstream's), SEEDS (default 1 2 3), and those of
# scripts/lib/protocols.sh. An evaluation that has a result is skipped.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
[ $# -eq 3 ] || { echo "usage: $0 DATASET SHOTS WEIGHTS" >&2; exit 2; }
load_method "$SCRIPT_DIR"
check_dataset "$1"
weights=$(from_caller "$3")
cfg=$(recipe fewshot "$1" "$2")
for seed in ${SEEDS:-1 2 3}; do
    evaluate_weights "$cfg" "$(OUTPUT=$OUTPUT/few_shot fewshot_root "$1" "$cfg" "$2")/seed$seed" \
        "$seed" "$1" "$weights/${2}shot/seed$seed" "${LOADEP:-50}" DATASET.NUM_SHOTS "$2"
done
