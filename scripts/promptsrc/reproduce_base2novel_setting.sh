#!/usr/bin/env bash
# Upstream's entry point: evaluate released base-to-new weights on the base and the new classes.
#   bash scripts/promptsrc/reproduce_base2novel_setting.sh DATASET SEED WEIGHTS
#   e.g. caltech101 1 /path/to/promptsrc_weights/caltech101   (the model: WEIGHTS/base/seed$SEED/VLPromptLearner/model.pth.tar-$LOADEP)
# Output: $OUTPUT/base2new/test_{base,new}/DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED, which
# parse_test_res.py --base2new reads (Base from test_base/ when there is no training run).
# Environment: LOADEP (default 20, upstream's), and those of scripts/lib/protocols.sh. Upstream's
# official checkpoints (whole models) load: their frozen weights and second image tower are ignored.
# An evaluation that has a result is skipped (upstream's skip test reads an unset variable).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
[ $# -eq 3 ] || { echo "usage: $0 DATASET SEED WEIGHTS" >&2; exit 2; }
load_method "$SCRIPT_DIR"
check_dataset "$1"
weights=$(from_caller "$3")
cfg=$(recipe base2new "$1")
for sub in base new; do
    evaluate_weights "$cfg" "$(base2new_dir "test_$sub" "$1" "$cfg" "$2")" "$2" "$1" "$weights/base/seed$2" \
        "${LOADEP:-20}" DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$sub"
done
