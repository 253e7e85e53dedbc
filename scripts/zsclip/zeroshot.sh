#!/usr/bin/env bash
# Zero-shot CLIP on all classes of DATASET (one hand-written template per dataset).
#   bash scripts/zsclip/zeroshot.sh DATASET
# Output: $OUTPUT/ZeroshotCLIP/$CFG/DATASET
# Environment: DATA, OUTPUT, PYTHON, OPTS (../common.sh); CFG (default vit_b16, in configs/trainers/CoOp/).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
[ $# -eq 1 ] || { echo "usage: $0 DATASET" >&2; exit 2; }
load_method "$SCRIPT_DIR"
check_dataset "$1"
CFG=$(recipe xd "$1")

DIR=$OUTPUT/ZeroshotCLIP/$CFG/$1
TRAIN_ARGS=(
    --root "$DATA" --trainer "$TRAINER"
    --dataset-config-file "configs/datasets/$1.yaml"
    --config-file "$(config_file "$CFG")"
    --output-dir "$DIR" --eval-only ${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}
)
run_status eval "$DIR"  # skipped when it has a result made with these settings
run_train_py
