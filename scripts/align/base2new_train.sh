#!/usr/bin/env bash
# Base-to-new, step 1: train ALIGN on the base classes (SHOTS shots each) of DATASET.
#   bash scripts/align/base2new_train.sh DATASET SEED      e.g. caltech101 1
# Output: $OUTPUT/base2new/train_base/DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED
# Environment: DATA, OUTPUT, PYTHON, OPTS (../common.sh); TRAINER, SHOTS, CFG (env.sh).
source "$(dirname "$0")/../common.sh"
source "$(dirname "$0")/env.sh"
[ $# -eq 2 ] || { echo "usage: $0 DATASET SEED" >&2; exit 2; }
DATASET=$1
SEED=$2
CFG=${CFG:-$(base2new_cfg "$DATASET")}

DIR=$OUTPUT/base2new/train_base/$DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED
skip_if_done "$DIR" train
check_partial_training "$DIR" "$LEARNER"
train_py "$DATASET" "$CFG" "$DIR" "$SEED" \
    DATASET.NUM_SHOTS "$SHOTS" \
    DATASET.SUBSAMPLE_CLASSES base
