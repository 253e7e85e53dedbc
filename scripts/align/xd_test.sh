#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 2: evaluate the model of xd_train.sh on DATASET (all
# its classes): the 10 other datasets, or imagenetv2, imagenet_sketch, imagenet_a, imagenet_r.
#   bash scripts/align/xd_test.sh DATASET SEED
# Output: $OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/DATASET/seed$SEED
# Environment: DATA, OUTPUT, PYTHON, OPTS (../common.sh); TRAINER, SHOTS, CFG, SOURCE.
source "$(dirname "$0")/../common.sh"
source "$(dirname "$0")/env.sh"
[ $# -eq 2 ] || { echo "usage: $0 DATASET SEED" >&2; exit 2; }
DATASET=$1
SEED=$2
CFG=${CFG:-vit_b16_c2_ep20_batch4_2ctx_xd}
SOURCE=${SOURCE:-imagenet}

MODEL_DIR=$OUTPUT/$SOURCE/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED
DIR=$OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/$DATASET/seed$SEED
skip_if_done "$DIR" eval
LOAD_EPOCH=$(load_epoch_args "$MODEL_DIR" "$LEARNER")
# shellcheck disable=SC2086  # LOAD_EPOCH is "--load-epoch N" or empty
train_py "$DATASET" "$CFG" "$DIR" "$SEED" \
    --model-dir "$MODEL_DIR" $LOAD_EPOCH --eval-only
