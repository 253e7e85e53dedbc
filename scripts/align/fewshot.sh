#!/usr/bin/env bash
# Few-shot learning: train ALIGN on all classes of DATASET with SHOTS shots, then test.
#   bash scripts/align/fewshot.sh DATASET SHOTS SEED      e.g. oxford_pets 4 1
# The recipe's epoch count depends on the shots, as the official train.py forced it (now written
# in the configs): 1 shot 30 epochs, 2 or 4 shots 50, 8 or 16 shots 80; ImageNet always 20.
# Output: $OUTPUT/DATASET/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED
# Environment: DATA, OUTPUT, PYTHON, OPTS (../common.sh); TRAINER, CFG.
source "$(dirname "$0")/../common.sh"
source "$(dirname "$0")/env.sh"
[ $# -eq 3 ] || { echo "usage: $0 DATASET SHOTS SEED" >&2; exit 2; }
DATASET=$1
SHOTS=$2
SEED=$3
if [ -z "${CFG:-}" ]; then
    case "$DATASET:$SHOTS" in
        imagenet:*) CFG=vit_b16_c2_ep20_batch4_2ctx_xd ;;
        *:1) CFG=vit_b16_c2_ep30_batch4_2ctx_fewshot ;;
        *:2 | *:4) CFG=vit_b16_c2_ep50_batch4_2ctx_fewshot ;;
        *) CFG=vit_b16_c2_ep80_batch4_2ctx_fewshot ;;
    esac
fi

DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED
skip_if_done "$DIR" train
check_partial_training "$DIR" "$LEARNER"
train_py "$DATASET" "$CFG" "$DIR" "$SEED" \
    DATASET.NUM_SHOTS "$SHOTS" \
    DATASET.SUBSAMPLE_CLASSES all
