#!/usr/bin/env bash
# Base-to-new, step 2: evaluate the model trained by base2new_train.sh on the NEW classes.
#   bash scripts/align/base2new_test.sh DATASET SEED      e.g. caltech101 1
# Loads the checkpoint that training saved last (its `checkpoint` pointer); SUB=base evaluates the
# base classes instead. Output, separate from the training run:
#   $OUTPUT/base2new/test_$SUB/DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED
# Environment: DATA, OUTPUT, PYTHON, OPTS (../common.sh); TRAINER, SHOTS, CFG (env.sh); SUB.
source "$(dirname "$0")/../common.sh"
source "$(dirname "$0")/env.sh"
[ $# -eq 2 ] || { echo "usage: $0 DATASET SEED" >&2; exit 2; }
DATASET=$1
SEED=$2
CFG=${CFG:-$(base2new_cfg "$DATASET")}
SUB=${SUB:-new}

MODEL_DIR=$OUTPUT/base2new/train_base/$DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED
DIR=$OUTPUT/base2new/test_$SUB/$DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED
skip_if_done "$DIR" eval
LOAD_EPOCH=$(load_epoch_args "$MODEL_DIR" "$LEARNER")
# shellcheck disable=SC2086  # LOAD_EPOCH is "--load-epoch N" or empty
train_py "$DATASET" "$CFG" "$DIR" "$SEED" \
    --model-dir "$MODEL_DIR" $LOAD_EPOCH --eval-only \
    DATASET.NUM_SHOTS "$SHOTS" \
    DATASET.SUBSAMPLE_CLASSES "$SUB"
