#!/usr/bin/env bash
# One protocol for several methods, datasets and seeds, then the results.
#   bash scripts/reproduce.sh PROTOCOL "METHODS" ["DATASETS"] ["SEEDS"]
#   e.g. bash scripts/reproduce.sh base2new "ZeroshotCLIP CoOp CoCoOp MaPLe ALIGN" "caltech101 dtd" "1 2 3"
# PROTOCOL:
#   base2new  per dataset and seed: base2new_train.sh, then base2new_test.sh; then the comparison
#             table of parse_test_res.py --base2new (a row per method; PARSE_OPTS adds options, e.g.
#             "--per-dataset --reference docs/published_base2new.csv")
#   xd        per seed: xd_train.sh (on SOURCE, default imagenet), then xd_test.sh on every DATASET
#             (the targets); then mean +- std over seeds per method and target
#   fewshot   per dataset, shot count (SHOTS_LIST, default "1 2 4 8 16") and seed: fewshot.sh; then
#             mean +- std over seeds per method, dataset and shot count
# METHODS: the METHOD of a scripts/<folder>/env.sh, or the folder name (run without arguments to
# list them). DATASETS default: the 11 datasets (base2new, fewshot) or ImageNet and the 14 targets
# (xd). SEEDS default: 1 2 3.
# Runs that have a result are skipped. A failed run does not stop the others: it is listed at the
# end, and the exit status is 1.
# Environment: that of the method scripts (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, TOY, SOURCE; see
# scripts/lib/protocols.sh), SHOTS_LIST, PARSE_OPTS.
source "$(dirname "${BASH_SOURCE[0]}")/lib/protocols.sh"

usage() {
    echo "usage: $0 base2new|xd|fewshot \"METHODS\" [\"DATASETS\"] [\"SEEDS\"]" >&2
    echo "methods: $(list_methods | cut -d' ' -f1 | tr '\n' ' ')" >&2
    exit 2
}
[ $# -ge 2 ] && [ $# -le 4 ] || usage
PROTOCOL=$1
case "$PROTOCOL" in
    base2new | fewshot) DEFAULT_DATASETS="imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101" ;;
    xd) DEFAULT_DATASETS="imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101 imagenetv2 imagenet_sketch imagenet_a imagenet_r" ;;
    *) echo "Error: unknown protocol '$PROTOCOL' (base2new, xd or fewshot)" >&2; usage ;;
esac
read -r -a DATASET_LIST <<< "${3:-$DEFAULT_DATASETS}"
read -r -a SEED_LIST <<< "${4:-1 2 3}"
read -r -a SHOTS_VALUES <<< "${SHOTS_LIST:-1 2 4 8 16}"
read -r -a PARSE_EXTRA <<< "${PARSE_OPTS:-}"
case "$PROTOCOL" in
    base2new) STEPS=(base2new_train base2new_test) ;;
    xd) STEPS=(xd_train xd_test) ;;
    fewshot) STEPS=(fewshot) ;;
esac

# Everything is checked before anything runs.
METHOD_DIRS=()
for name in $2; do
    dir=$(method_dir "$name")
    for step in "${STEPS[@]}"; do
        if [ ! -f "$dir/$step.sh" ]; then
            echo "Error: $name has no $PROTOCOL scripts (no ${dir#"$REPO_ROOT"/}/$step.sh); its scripts:" \
                "$(cd "$dir" && ls -- *.sh | grep -vx env.sh | tr '\n' ' ')" >&2
            exit 2
        fi
    done
    METHOD_DIRS+=("$dir")
done
[ ${#METHOD_DIRS[@]} -gt 0 ] || usage
for dataset in "${DATASET_LIST[@]}"; do check_dataset "$dataset"; done

FAILED=()
# step SCRIPT ARGS...: run one method script; a failure is recorded, and returns 1.
step() {
    if bash "$@"; then return 0; fi
    FAILED+=("bash ${1#"$REPO_ROOT"/} ${*:2}")
    return 1
}

for dir in "${METHOD_DIRS[@]}"; do
    case "$PROTOCOL" in
        base2new)
            for dataset in "${DATASET_LIST[@]}"; do
                for seed in "${SEED_LIST[@]}"; do
                    step "$dir/base2new_train.sh" "$dataset" "$seed" && step "$dir/base2new_test.sh" "$dataset" "$seed" || true
                done
            done
            ;;
        xd)
            for seed in "${SEED_LIST[@]}"; do
                step "$dir/xd_train.sh" "$seed" || continue
                for dataset in "${DATASET_LIST[@]}"; do step "$dir/xd_test.sh" "$dataset" "$seed" || true; done
            done
            ;;
        fewshot)
            for dataset in "${DATASET_LIST[@]}"; do
                for shots in "${SHOTS_VALUES[@]}"; do
                    for seed in "${SEED_LIST[@]}"; do step "$dir/fewshot.sh" "$dataset" "$shots" "$seed" || true; done
                done
            done
            ;;
    esac
done

# The results.
seeds_csv=$(IFS=,; echo "${SEED_LIST[*]}")
parse() {
    echo
    if ! "$PYTHON" parse_test_res.py "$@"; then FAILED+=("$PYTHON parse_test_res.py $*"); fi
}
case "$PROTOCOL" in
    base2new)
        names=()
        for dir in "${METHOD_DIRS[@]}"; do names+=("$(load_method "$dir" && printf '%s\n' "$METHOD")"); done
        parse "$OUTPUT/base2new" --base2new --datasets "$(IFS=,; echo "${DATASET_LIST[*]}")" --seeds "$seeds_csv" \
            --methods "$(IFS=,; echo "${names[*]}")" ${PARSE_EXTRA[@]+"${PARSE_EXTRA[@]}"}
        ;;
    xd)
        for dir in "${METHOD_DIRS[@]}"; do
            root=$(load_method "$dir" && xd_eval_root "$(recipe xd "${SOURCE:-imagenet}")")
            for dataset in "${DATASET_LIST[@]}"; do parse "$root/$dataset" --test-log --seeds "$seeds_csv"; done
        done
        ;;
    fewshot)
        for dir in "${METHOD_DIRS[@]}"; do
            for dataset in "${DATASET_LIST[@]}"; do
                for shots in "${SHOTS_VALUES[@]}"; do
                    root=$(load_method "$dir" && fewshot_root "$dataset" "$(recipe fewshot "$dataset" "$shots")" "$shots")
                    parse "$root" --seeds "$seeds_csv"
                done
            done
        done
        ;;
esac

if [ ${#FAILED[@]} -gt 0 ]; then
    echo >&2
    echo "Failed (${#FAILED[@]}):" >&2
    printf '  %s\n' "${FAILED[@]}" >&2
    exit 1
fi
