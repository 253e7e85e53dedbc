#!/usr/bin/env bash
# Upstream's entry point: evaluate released cross-dataset weights (trained on ImageNet) on DATASET,
# all classes.
#   bash scripts/promptsrc/reproduce_xd.sh DATASET SEED WEIGHTS
#   e.g. oxford_pets 1 /path/to/weights   (the model: WEIGHTS/seed$SEED/VLPromptLearner/model.pth.tar-$LOADEP)
# Output: $OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/DATASET/seed$SEED, as xd_test.sh.
# Environment: LOADEP (default 20, upstream's), and those of scripts/lib/protocols.sh. An
# evaluation that has a result is skipped.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
[ $# -eq 3 ] || { echo "usage: $0 DATASET SEED WEIGHTS" >&2; exit 2; }
load_method "$SCRIPT_DIR"
check_dataset "$1"
weights=$(from_caller "$3")
cfg=$(recipe xd "${SOURCE:-imagenet}")
evaluate_weights "$cfg" "$(xd_eval_root "$cfg")/$1/seed$2" "$2" "$1" "$weights/seed$2" "${LOADEP:-20}"
