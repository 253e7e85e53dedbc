#!/usr/bin/env bash
# Zero-shot CLIP on all classes of DATASET (one hand-written template per dataset).
#   bash scripts/zsclip/zeroshot.sh DATASET
# Output: $OUTPUT/ZeroshotCLIP/$CFG/DATASET
# Environment: DATA, OUTPUT, PYTHON, OPTS (../common.sh); CFG (default vit_b16, in configs/trainers/CoOp/).
source "$(dirname "$0")/../common.sh"
[ $# -eq 1 ] || { echo "usage: $0 DATASET" >&2; exit 2; }
DATASET=$1
CFG=${CFG:-vit_b16}

DIR=$OUTPUT/ZeroshotCLIP/$CFG/$DATASET
skip_if_done "$DIR" eval
"$PYTHON" train.py --root "$DATA" --trainer ZeroshotCLIP \
    --dataset-config-file "configs/datasets/$DATASET.yaml" \
    --config-file "configs/trainers/CoOp/$CFG.yaml" \
    --output-dir "$DIR" --eval-only ${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}
