#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train ALIGN on ImageNet (all classes, SHOTS shots).
#   bash scripts/align/xd_train.sh SEED
# Output: $OUTPUT/imagenet/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED
# Environment: DATA, OUTPUT, PYTHON, OPTS (../common.sh); TRAINER, SHOTS, CFG, SOURCE.
source "$(dirname "$0")/../common.sh"
source "$(dirname "$0")/env.sh"
[ $# -eq 1 ] || { echo "usage: $0 SEED" >&2; exit 2; }
SEED=$1
CFG=${CFG:-vit_b16_c2_ep20_batch4_2ctx_xd}
SOURCE=${SOURCE:-imagenet}  # the source dataset (the protocol's is ImageNet)

DIR=$OUTPUT/$SOURCE/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED
skip_if_done "$DIR" train
check_partial_training "$DIR" "$LEARNER"
train_py "$SOURCE" "$CFG" "$DIR" "$SEED" \
    DATASET.NUM_SHOTS "$SHOTS" \
    DATASET.SUBSAMPLE_CLASSES all
