#!/usr/bin/env bash
# Zero-shot CLIP in the base-to-new protocol: evaluate on the base and on the new classes of DATASET.
#   bash scripts/zsclip/zeroshot_base2new.sh DATASET SEED
# The seed only names the folder (zero-shot CLIP draws nothing), so that the results sit beside
# the trained methods' in parse_test_res.py --base2new:
#   $OUTPUT/base2new/test_{base,new}/DATASET/shots_$SHOTS/ZeroshotCLIP/$CFG/seed$SEED
# Environment: DATA, OUTPUT, PYTHON, OPTS (../common.sh); SHOTS (default 16), CFG (default vit_b16).
source "$(dirname "$0")/../common.sh"
[ $# -eq 2 ] || { echo "usage: $0 DATASET SEED" >&2; exit 2; }
DATASET=$1
SEED=$2
SHOTS=${SHOTS:-16}
CFG=${CFG:-vit_b16}

for sub in base new; do
    DIR=$OUTPUT/base2new/test_$sub/$DATASET/shots_$SHOTS/ZeroshotCLIP/$CFG/seed$SEED
    already_done "$DIR" eval && continue
    "$PYTHON" train.py --root "$DATA" --seed "$SEED" --trainer ZeroshotCLIP \
        --dataset-config-file "configs/datasets/$DATASET.yaml" \
        --config-file "configs/trainers/CoOp/$CFG.yaml" \
        --output-dir "$DIR" --eval-only \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$sub" ${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}
done
