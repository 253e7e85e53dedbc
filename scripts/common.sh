# Shared by every script here (source it; it is not run on its own): the environment, the rule
# that says whether a run folder holds a result, and the checks around a run folder.
#
# Environment (all optional):
#   DATA    dataset root, the folder that holds caltech-101/, oxford_pets/, ... (default: data)
#   OUTPUT  output root (default: output)
#   PYTHON  interpreter (default: python)
#   OPTS    extra "KEY VALUE ..." config overrides appended to every train.py call
# The scripts run in the repository root, wherever they are called from: the defaults are
# relative to it, and a relative DATA, OUTPUT or PYTHON path that you set is relative to the
# folder you call the script from.
set -euo pipefail
CALLER_DIR=$PWD
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# from_caller PATH: PATH as seen from the repository root (a relative path is the caller's).
from_caller() {
    case "$1" in
        /* | "") printf '%s\n' "$1" ;;
        *) if [ "$CALLER_DIR" = "$REPO_ROOT" ]; then printf '%s\n' "$1"; else printf '%s\n' "$CALLER_DIR/$1"; fi ;;
    esac
}

DATA=$(from_caller "${DATA:-}")
OUTPUT=$(from_caller "${OUTPUT:-}")
case "${PYTHON:-}" in
    */*) PYTHON=$(from_caller "$PYTHON") ;;  # a path; a bare name is looked up in PATH
esac
cd "$REPO_ROOT"
DATA=${DATA:-data}
OUTPUT=${OUTPUT:-output}
PYTHON=${PYTHON:-python}
export DATA OUTPUT PYTHON  # the scripts that this one starts see the same, resolved, values
read -r -a EXTRA_OPTS <<< "${OPTS:-}"

# ------------------------------------------------------------------------------------------------
# The result of a run folder (parse_test_res.py applies the same rule: tools/results/logs.py)
#
# A run folder holds log.txt (its first start) and a log.txt-<time> for every later start in
# the same folder (the engine never overwrites a log: a resumed training, a repeated test writes
# there). The names sort in time order and log.txt is the oldest. The folder's result is in its
# newest log that holds a complete result: a "* accuracy: X%" line after "Finish training" (or
# the older "Finished training") for a training run, after "=> result" for an evaluation.
# A folder with a result is never run again; earlier logs are kept.
# ------------------------------------------------------------------------------------------------

# run_logs DIR: DIR's logs, newest first, one per line.
run_logs() {
    local log
    for log in "$1"/log.txt-*; do
        if [ -f "$log" ]; then printf '%s\n' "$log"; fi
    done | LC_ALL=C sort -r
    if [ -f "$1/log.txt" ]; then printf '%s\n' "$1/log.txt"; fi
}

# log_has_result LOG train|eval: LOG holds a complete result of that kind of run.
log_has_result() {
    awk -v kind="$2" '
        { line = $0; sub(/^[ \t\r]+/, "", line); sub(/[ \t\r]+$/, "", line) }
        !started {
            if (kind == "train") started = (line == "Finish training" || line == "Finished training")
            else started = (line == "=> result")
            next
        }
        line ~ /\* accuracy: [-+.0-9eE]+%/ { found = 1 }
        END { exit !found }
    ' "$1"
}

# result_log DIR train|eval: prints the log that holds DIR's result; fails when none does.
result_log() {
    local log
    while IFS= read -r log; do
        if log_has_result "$log" "$2"; then
            printf '%s\n' "$log"
            return 0
        fi
    done < <(run_logs "$1")
    return 1
}

# has_result DIR train|eval
has_result() {
    result_log "$1" "$2" > /dev/null
}

# already_done DIR train|eval: true (and says so) when the run has a result.
already_done() {
    local log
    log=$(result_log "$1" "$2") || return 1
    echo "Results are available in $1: skipping (delete the folder to run it again; result in ${log##*/})"
}

# skip_if_done DIR train|eval: a run that has a result is skipped (the script exits).
skip_if_done() {
    if already_done "$1" "$2"; then exit 0; fi
}

# only_failed_starts DIR: DIR holds log files (log.txt, log.txt-<time>) and nothing else, and none
# of them shows a training epoch: runs that stopped before training began (missing data, a bad
# option), which left nothing to keep.
# (An empty DIR is not: its unmatched glob stays the literal "*", which is no log.)
only_failed_starts() {
    local entry
    for entry in "$1"/*; do
        case "${entry##*/}" in
            log.txt | log.txt-*) ;;
            *) return 1 ;;
        esac
    done
    ! grep -q '^epoch \[' "$1"/log.txt*
}

# check_partial_training DIR LEARNER: an existing training folder without a result is resumed
# from its checkpoint (train.py does that by itself, logging to a new log.txt-<time>), run again
# when it holds only the logs of failed starts, and otherwise refused: it is never retrained
# silently over what is there.
check_partial_training() {
    local dir=$1 learner=$2
    [ -d "$dir" ] || return 0
    if [ -f "$dir/$learner/checkpoint" ]; then
        echo "Found an unfinished run with a checkpoint in $dir: resuming"
    elif only_failed_starts "$dir"; then
        echo "Found only the logs of runs that stopped before training in $dir: running again"
    else
        echo "Error: $dir exists but holds no result and no checkpoint (an interrupted run?)." >&2
        echo "Delete it to train again: rm -r $dir" >&2
        exit 1
    fi
}

# trained_model_args MODEL_DIR LEARNER: sets the array MODEL_ARGS to the train.py flags that load
# the model whose test gave the training run's result: model-best.pth.tar when that run deployed
# its best val model (TEST.FINAL_MODEL best_val), else the epoch that training saved last (its
# `checkpoint` pointer). A training run without a result is an error.
trained_model_args() {
    local model_dir=$1 learner=$2 log pointer saved
    if ! log=$(result_log "$model_dir" train); then
        echo "Error: no trained model in $model_dir: no log there shows a finished training;" \
            "run the training script first (it resumes an interrupted run)" >&2
        return 1
    fi
    MODEL_ARGS=(--model-dir "$model_dir")
    if grep -qx 'Deploy the model with the best val performance' "$log"; then
        if [ ! -f "$model_dir/$learner/model-best.pth.tar" ]; then
            echo "Error: ${log##*/} in $model_dir deployed the best val model, but $model_dir/$learner/model-best.pth.tar is missing" >&2
            return 1
        fi
        return 0  # no --load-epoch: train.py loads model-best.pth.tar
    fi
    pointer=$model_dir/$learner/checkpoint
    if [ ! -f "$pointer" ]; then
        echo "Error: no trained model in $model_dir (missing $pointer)" >&2
        return 1
    fi
    saved=$(head -n 1 "$pointer")
    case "$saved" in
        model.pth.tar-*) MODEL_ARGS+=(--load-epoch "${saved#model.pth.tar-}") ;;
        model-best.pth.tar) ;;
        *) echo "Error: unexpected checkpoint name '$saved' in $pointer" >&2; return 1 ;;
    esac
}

# train_py DATASET CONFIG_FILE OUTPUT_DIR SEED [flags and KEY VALUE opts...]: one train.py call
# with the method's TRAINER; OPTS come last, so they override everything.
train_py() {
    local dataset=$1 config=$2 dir=$3 seed=$4
    shift 4
    "$PYTHON" train.py \
        --root "$DATA" \
        --seed "$seed" \
        --trainer "$TRAINER" \
        --dataset-config-file "configs/datasets/$dataset.yaml" \
        --config-file "$config" \
        --output-dir "$dir" \
        "$@" ${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}
}
