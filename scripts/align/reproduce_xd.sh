#!/usr/bin/env bash
# Cross-dataset transfer and domain generalisation: train on ImageNet (16 shots) per seed, evaluate
# on every target, then the mean and std over seeds per target.
#   bash scripts/align/reproduce_xd.sh
# Environment: TARGETS (default: ImageNet itself, the 10 other datasets and the 4 ImageNet
# variants), SEEDS (default: 1 2 3), and those of xd_train.sh / xd_test.sh.
source "$(dirname "$0")/../common.sh"
source "$(dirname "$0")/env.sh"
TARGETS=${TARGETS:-"imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101 imagenetv2 imagenet_sketch imagenet_a imagenet_r"}
SEEDS=${SEEDS:-"1 2 3"}
CFG=${CFG:-vit_b16_c2_ep20_batch4_2ctx_xd}
export CFG

for seed in $SEEDS; do
    bash scripts/align/xd_train.sh "$seed"
    for dataset in $TARGETS; do
        bash scripts/align/xd_test.sh "$dataset" "$seed"
    done
done
for dataset in $TARGETS; do
    "$PYTHON" parse_test_res.py "$OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/$dataset" --test-log \
        --seeds "$(echo $SEEDS | tr ' ' ',')"
done
