#!/usr/bin/env bash
# Few-shot learning on every dataset, shot count and seed, then the mean and std over seeds.
#   bash scripts/align/reproduce_fewshot.sh
# Environment: DATASETS (default: the 11 datasets), SHOTS_LIST (default: 1 2 4 8 16), SEEDS
# (default: 1 2 3), and those of fewshot.sh. The recipe per shot count is chosen by fewshot.sh.
source "$(dirname "$0")/../common.sh"
source "$(dirname "$0")/env.sh"
DATASETS=${DATASETS:-"imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"}
SHOTS_LIST=${SHOTS_LIST:-"1 2 4 8 16"}
SEEDS=${SEEDS:-"1 2 3"}

for dataset in $DATASETS; do
    for shots in $SHOTS_LIST; do
        for seed in $SEEDS; do
            bash scripts/align/fewshot.sh "$dataset" "$shots" "$seed"
        done
    done
done
shopt -s nullglob  # the recipe (and so the folder name) per shot count is fewshot.sh's choice
for dataset in $DATASETS; do
    for shots in $SHOTS_LIST; do
        for run in "$OUTPUT/$dataset/$TRAINER/"*"_${shots}shots"; do
            "$PYTHON" parse_test_res.py "$run" --seeds "$(echo $SEEDS | tr ' ' ',')"
        done
    done
done
