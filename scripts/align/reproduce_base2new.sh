#!/usr/bin/env bash
# Base-to-new on every dataset and seed, then the Base / New / HM table (as papers report it).
#   bash scripts/align/reproduce_base2new.sh
# Environment: DATASETS (default: the 11 base-to-new datasets), SEEDS (default: 1 2 3), and those
# of base2new_train.sh / base2new_test.sh. Runs that already have results are skipped.
source "$(dirname "$0")/../common.sh"
DATASETS=${DATASETS:-"imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"}
SEEDS=${SEEDS:-"1 2 3"}

for dataset in $DATASETS; do
    for seed in $SEEDS; do
        bash scripts/align/base2new_train.sh "$dataset" "$seed"
        bash scripts/align/base2new_test.sh "$dataset" "$seed"
    done
done
"$PYTHON" parse_test_res.py "$OUTPUT/base2new" --base2new \
    --datasets "$(echo $DATASETS | tr ' ' ',')" --seeds "$(echo $SEEDS | tr ' ' ',')"
