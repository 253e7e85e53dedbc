# The protocols, written once for every method (source it; it is not run on its own).
#
# A method's folder scripts/<method>/ holds env.sh, which describes the method, and one small
# script per protocol step, each sourcing this file and calling `protocol_main STEP "$@"`:
#   base2new_train.sh DATASET SEED     train on the base classes (SHOTS shots each)
#   base2new_test.sh DATASET SEED      evaluate that model on the new classes (SUB=base: the base ones)
#   xd_train.sh SEED                   train on SOURCE (default imagenet), all classes
#   xd_test.sh DATASET SEED            evaluate that model on DATASET, all classes
#   fewshot.sh DATASET SHOTS SEED      train on all classes with SHOTS shots, then test
# Output layout (the CoOp/MaPLe convention):
#   $OUTPUT/base2new/train_base/DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED
#   $OUTPUT/base2new/test_{new,base}/...same tail...
#   $OUTPUT/$SOURCE/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED                  (xd training)
#   $OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/DATASET/seed$SEED       (xd tests)
#   $OUTPUT/DATASET/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED                  (few-shot)
# Environment: DATA, OUTPUT, PYTHON, OPTS (../common.sh); SHOTS (default 16); CFG (the recipe,
# overriding the method's choice); TOY=1 (the method's toy-world recipe); SUB; SOURCE.
#
# env.sh sets (docs/scripts.md has an example):
#   METHOD      the name that reproduce.sh and demo.sh take (ALIGN, CoOp, ...)
#   TRAINER     the registered trainer (train.py --trainer)
#   CONFIG_DIR  the folder of its recipes, e.g. configs/trainers/CoOp
#   LEARNER     the registered module whose checkpoints training writes (<run>/$LEARNER/); empty
#               for a method without training (zero-shot): its base2new_train step evaluates the
#               base classes into test_base/, and xd_train has nothing to do
#   BASE2NEW_CFG, XD_CFG, FEWSHOT_CFG   each protocol's recipe: a file of CONFIG_DIR without .yaml
#   BASE2NEW_CFG_<dataset>, XD_CFG_<dataset>, FEWSHOT_CFG_<dataset>   a dataset's own recipe
#   FEWSHOT_CFG_<K>shots   the few-shot recipe for K shots (a dataset's own recipe comes first)
#   FEWSHOT_CFG_<dataset>_<K>shots   a dataset's recipe for K shots (before all the others)
#   TOY_CFG     the toy-world recipe, chosen by TOY=1 (default toy_clip)
#   DEMO_SEEDS  the seeds that `make demo` runs (default 1)

# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
SHOTS=${SHOTS:-16}

# The variables an env.sh may set: cleared before one is read, so that no method inherits
# another's (reproduce.sh reads several).
METHOD_VARIABLES=(METHOD TRAINER CONFIG_DIR LEARNER TOY_CFG DEMO_SEEDS)

# load_method DIR: read DIR/env.sh and check what it sets.
load_method() {
    local dir=$1 name
    # shellcheck disable=SC2046  # the names of every recipe variable, to clear them
    unset "${METHOD_VARIABLES[@]}" $(compgen -v | grep -E '^(BASE2NEW|XD|FEWSHOT)_CFG' || true)
    if [ ! -f "$dir/env.sh" ]; then
        echo "Error: $dir has no env.sh (the method's settings; see docs/scripts.md)" >&2
        exit 1
    fi
    # shellcheck disable=SC1091
    source "$dir/env.sh"
    for name in TRAINER CONFIG_DIR; do
        if [ -z "${!name:-}" ]; then
            echo "Error: $dir/env.sh does not set $name (see docs/scripts.md)" >&2
            exit 1
        fi
    done
    METHOD=${METHOD:-$TRAINER}
    LEARNER=${LEARNER:-}
    TOY_CFG=${TOY_CFG:-toy_clip}
    DEMO_SEEDS=${DEMO_SEEDS:-1}
}

# recipe PROTOCOL DATASET [SHOTS]: the recipe name (PROTOCOL: base2new, xd or fewshot). CFG wins,
# then TOY=1's toy recipe, then the method's: the dataset's for the shot count, the dataset's own,
# the shot count's, the protocol's.
recipe() {
    local protocol=${1^^} dataset=$2 shots=${3:-} name
    if [ -n "${CFG:-}" ]; then
        printf '%s\n' "$CFG"
        return
    fi
    if [ "${TOY:-0}" = 1 ]; then
        printf '%s\n' "$TOY_CFG"
        return
    fi
    for name in ${shots:+"${protocol}_CFG_${dataset}_${shots}shots"} "${protocol}_CFG_$dataset" \
        ${shots:+"${protocol}_CFG_${shots}shots"} "${protocol}_CFG"; do
        if [ -n "${!name:-}" ]; then
            printf '%s\n' "${!name}"
            return
        fi
    done
    echo "Error: $METHOD has no $1 recipe (${protocol}_CFG in its env.sh); set CFG to one of $CONFIG_DIR/*.yaml" >&2
    return 1
}

# config_file CFG: the recipe's file, which must exist.
config_file() {
    local file=$CONFIG_DIR/$1.yaml
    if [ ! -f "$file" ]; then
        echo "Error: no recipe $file for $METHOD (CFG=$1); recipes there: $(cd "$CONFIG_DIR" 2> /dev/null && ls -- *.yaml | tr '\n' ' ')" >&2
        return 1
    fi
    printf '%s\n' "$file"
}

# check_dataset DATASET: a dataset that has a config in configs/datasets/.
check_dataset() {
    if [[ ! "$1" =~ ^[A-Za-z0-9_]+$ ]] || [ ! -f "configs/datasets/$1.yaml" ]; then
        echo "Error: unknown dataset '$1' (no configs/datasets/$1.yaml); datasets:" \
            "$(cd configs/datasets && ls -- *.yaml | sed 's/\.yaml$//' | tr '\n' ' ')" >&2
        exit 2
    fi
}

# toy_world_if_missing DATASET: the toy world's ToyShapes is written into DATA when it is asked for
# and DATA does not hold it (rendered in seconds, nothing downloaded; its split file comes last, so
# a folder without it is an interrupted write). CHECK_ONLY=1 writes nothing.
toy_world_if_missing() {
    if [ "$1" = toy_shapes ] && [ "${CHECK_ONLY:-0}" != 1 ] && [ ! -f "$DATA/toy_shapes/split_zhou_ToyShapes.json" ]; then
        echo "The toy world is not in $DATA: writing it ($PYTHON -m tools.toy_world --root $DATA)"
        "$PYTHON" -m tools.toy_world --root "$DATA"
    fi
}

# Folders of the protocols (the layout above).
base2new_dir() { # SIDE DATASET CFG SEED
    printf '%s\n' "$OUTPUT/base2new/$1/$2/shots_$SHOTS/$TRAINER/$3/seed$4"
}
xd_model_dir() { # CFG SEED
    printf '%s\n' "$OUTPUT/${SOURCE:-imagenet}/$TRAINER/${1}_${SHOTS}shots/seed$2"
}
xd_eval_root() { # CFG: the folder of the targets (DATASET/seed$SEED below it)
    printf '%s\n' "$OUTPUT/evaluation/$TRAINER/${1}_${SHOTS}shots"
}
fewshot_root() { # DATASET CFG SHOTS: the folder of the seeds
    printf '%s\n' "$OUTPUT/$1/$TRAINER/${2}_${3}shots"
}

# evaluate CFG DIR SEED DATASET MODEL_DIR [KEY VALUE...]: an eval-only run into DIR; with a
# MODEL_DIR (methods that train), of the model that its training deployed. Skipped when DIR has a
# result of that model made with these settings (run_status).
evaluate() {
    local cfg=$1 dir=$2 seed=$3 dataset=$4 model_dir=$5 config
    local model_args=()
    shift 5
    config=$(config_file "$cfg")
    train_args "$dataset" "$config" "$dir" "$seed" --eval-only "$@"
    if [ -n "$LEARNER" ]; then
        run_status eval "$dir" --model-dir "$model_dir" --learner "$LEARNER"
        model_args=(--model-dir "$model_dir")
        if [ -n "$LOAD_EPOCH" ]; then model_args+=(--load-epoch "$LOAD_EPOCH"); fi
    else
        run_status eval "$dir"
    fi
    train_py "$dataset" "$config" "$dir" "$seed" ${model_args[@]+"${model_args[@]}"} --eval-only "$@"
}

# evaluate_weights CFG DIR SEED DATASET MODEL_DIR EPOCH [KEY VALUE...]: an eval-only run into DIR
# of the model file MODEL_DIR/$LEARNER/model.pth.tar-EPOCH, e.g. released weights (which come
# without a training log); skipped when DIR has a result made with these settings (run_status, in
# a subshell: it exits when there is nothing to run, and the caller goes on with its next run).
evaluate_weights() {
    local cfg=$1 dir=$2 seed=$3 dataset=$4 model_dir=$5 epoch=$6 config
    shift 6
    config=$(config_file "$cfg")
    train_args "$dataset" "$config" "$dir" "$seed" --model-dir "$model_dir" --load-epoch "$epoch" --eval-only "$@"
    (
        run_status eval "$dir"
        run_train_py
    )
}

# train CFG DIR SEED DATASET [KEY VALUE...]: a training run into DIR: skipped when DIR has a result
# made with these settings, resumed when it holds a checkpoint, started again when its logs say why
# it stopped before one (run_status).
train() {
    local cfg=$1 dir=$2 seed=$3 dataset=$4 config
    shift 4
    config=$(config_file "$cfg")
    train_args "$dataset" "$config" "$dir" "$seed" "$@"
    run_status train "$dir" --learner "$LEARNER"
    run_train_py
}

base2new_train() { # DATASET SEED
    local cfg
    cfg=$(recipe base2new "$1")
    if [ -z "$LEARNER" ]; then  # nothing to train: the base accuracy is an evaluation
        SUB=base base2new_test "$1" "$2"
        return
    fi
    train "$cfg" "$(base2new_dir train_base "$1" "$cfg" "$2")" "$2" "$1" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base
}

base2new_test() { # DATASET SEED
    local cfg sub=${SUB:-new}
    cfg=$(recipe base2new "$1")
    evaluate "$cfg" "$(base2new_dir "test_$sub" "$1" "$cfg" "$2")" "$2" "$1" "$(base2new_dir train_base "$1" "$cfg" "$2")" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$sub"
}

xd_train() { # SEED
    local cfg source=${SOURCE:-imagenet}
    check_dataset "$source"
    cfg=$(recipe xd "$source")
    if [ -z "$LEARNER" ]; then
        echo "$METHOD has nothing to train: xd_test.sh evaluates it directly"
        return
    fi
    train "$cfg" "$(xd_model_dir "$cfg" "$1")" "$1" "$source" DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES all
}

xd_test() { # DATASET SEED
    local cfg
    cfg=$(recipe xd "${SOURCE:-imagenet}")
    evaluate "$cfg" "$(xd_eval_root "$cfg")/$1/seed$2" "$2" "$1" "$(xd_model_dir "$cfg" "$2")"
}

fewshot() { # DATASET SHOTS SEED
    local cfg
    if [ -z "$LEARNER" ]; then
        echo "Error: $METHOD has no training, so no few-shot protocol" >&2
        exit 1
    fi
    cfg=$(recipe fewshot "$1" "$2")
    train "$cfg" "$(fewshot_root "$1" "$cfg" "$2")/seed$3" "$3" "$1" DATASET.NUM_SHOTS "$2" DATASET.SUBSAMPLE_CLASSES all
}

# The folder of the script that sourced this file (a method's folder), found before common.sh
# moved to the repository root, while a relative path still points at it.
SCRIPT_DIR=$(cd "$CALLER_DIR" && cd "$(dirname "${BASH_SOURCE[1]:-$0}")" && pwd)

# protocol_main STEP ARGS...: a method script's body: read the method, check the arguments, run.
protocol_main() {
    local step=$1 usage names
    shift
    case "$step" in
        base2new_train | base2new_test | xd_test) usage="DATASET SEED" ;;
        xd_train) usage="SEED" ;;
        fewshot) usage="DATASET SHOTS SEED" ;;
        *) echo "Error: unknown protocol step '$step'" >&2; exit 2 ;;
    esac
    read -r -a names <<< "$usage"
    if [ $# -ne ${#names[@]} ]; then
        echo "usage: $0 $usage" >&2
        exit 2
    fi
    load_method "$SCRIPT_DIR"
    if [ "$usage" != SEED ]; then
        check_dataset "$1"
        toy_world_if_missing "$1"
    fi
    "$step" "$@"
}

# ------------------------------------------------------------------------------------------------
# Methods by name (reproduce.sh, demo.sh)
# ------------------------------------------------------------------------------------------------

# list_methods: "NAME FOLDER" for every method, in the registry's order: the scripts/<folder>/env.sh
# files that set METHOD, read by tools/methods.py (the one reader of the registry).
list_methods() {
    "$PYTHON" -m tools.methods list
}

# method_dir NAME: the folder of the method called NAME (its METHOD or its folder name, in any
# case); an unknown name is an error that lists the available methods.
method_dir() {
    local name folder
    while read -r name folder; do
        if [ "${name,,}" = "${1,,}" ] || [ "${folder##*/}" = "${1,,}" ]; then
            printf '%s\n' "$folder"
            return 0
        fi
    done <<< "$(list_methods)"  # the whole list first: an early return must not cut the lister's pipe
    echo "Error: unknown method '$1' (or not available yet); available: $(list_methods | cut -d' ' -f1 | tr '\n' ' ')" >&2
    exit 2
}
