# Shared by every script here (source it; it is not run on its own): the environment, what to do
# with a run folder (done, run, resumed, started again, refused), and the train.py call.
#
# Environment (all optional):
#   DATA    dataset root, the folder that holds caltech-101/, oxford_pets/, ... (default: data)
#   OUTPUT  output root (default: output)
#   PYTHON  interpreter (default: python)
#   OPTS    extra "KEY VALUE ..." config overrides appended to every train.py call
#   ALLOW_MIXED  1: a finished run made with other settings than those asked for now is kept and
#           skipped (with a warning) instead of refused
#   CHECK_ONLY   1: say what the step would do (skip, run, refuse) and exit without running it
#   NPROC_PER_NODE  N > 1: train.py runs as N processes through torchrun (DDP, one per GPU)
#   RUN_DIR_FILE    a file to which each step appends "train|eval RUN_FOLDER" for the run folder
#           it decides about (scripts/reproduce.sh: the status table of a sweep)
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

# SIGTERM (a scheduler's stop, scripts/reproduce.sh's process group) stops the script once its
# train.py has stopped: train.py saves what it can, says where it stopped, and exits with 143.
trap 'exit 143' TERM

# ------------------------------------------------------------------------------------------------
# What to do with a run folder: tools/results/status.py (parse_test_res.py's rule, one code path)
#
# A run folder holds log.txt (its first start) and a log.txt-<time> for every later start in
# the same folder (the engine never overwrites a log: a resumed training, a repeated test writes
# there). The folder's result is in its newest log that holds a complete result: a
# "* accuracy: X%" line after "Finish training" (or the older "Finished training") for a training
# run, after "=> result" for an evaluation; a malformed or unreadable newest log never counts.
# A folder with a result is skipped when it was made with the settings asked for now (and, for an
# evaluation, of the model its training folder holds now); made with other settings, it is refused
# unless ALLOW_MIXED=1. A training folder without a result resumes from its checkpoint, or starts
# again when its logs explain why it stopped; it is refused when something else is in it.
# Earlier logs are always kept. docs/scripts.md has the details.
# ------------------------------------------------------------------------------------------------

# train_args DATASET CONFIG_FILE OUTPUT_DIR SEED [flags and KEY VALUE opts...]: sets TRAIN_ARGS to
# the arguments of one train.py call with the method's TRAINER; OPTS come last, so they override
# everything.
train_args() {
    local dataset=$1 config=$2 dir=$3 seed=$4
    shift 4
    TRAIN_ARGS=(
        --root "$DATA"
        --seed "$seed"
        --trainer "$TRAINER"
        --dataset-config-file "configs/datasets/$dataset.yaml"
        --config-file "$config"
        --output-dir "$dir"
        "$@" ${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}
    )
}

# run_status train|eval DIR [--learner L] [--model-dir M]: what to do with the run folder DIR for
# the train.py call TRAIN_ARGS, as tools/results/status.py says. Prints its lines; exits the script
# when there is nothing to run (0: done; 3: made with other settings; 1: refused, or no model to
# evaluate); returns when the run is to be made, with LOAD_EPOCH set for an evaluation (empty:
# model-best.pth.tar). With CHECK_ONLY=1 it only says: exit 0 done, 10 to run, 3 other settings,
# 1 refused (scripts/reproduce.sh checks a whole sweep this way before running it).
run_status() {
    local kind=$1 dir=$2 report line key value verdict=""
    shift 2
    if [ -n "${RUN_DIR_FILE:-}" ]; then printf '%s %s\n' "$kind" "$dir" >> "$RUN_DIR_FILE"; fi
    if [ "${ALLOW_MIXED:-0}" = 1 ]; then set -- "$@" --allow-mixed; fi
    if ! report=$("$PYTHON" -m tools.results.status "$kind" "$dir" "$@" -- ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"}); then
        echo "Error: cannot check $dir ($PYTHON -m tools.results.status failed)" >&2
        exit 1
    fi
    LOAD_EPOCH=""
    while IFS= read -r line; do
        key=${line%% *}
        value=${line#"$key"}
        value=${value# }
        case "$key" in
            verdict) verdict=$value ;;
            say) printf '%s\n' "$value" ;;
            error) printf '%s\n' "$value" >&2 ;;
            load_epoch) LOAD_EPOCH=$value ;;
        esac
    done <<< "$report"
    if [ "${CHECK_ONLY:-0}" = 1 ]; then
        case "$verdict" in
            done) exit 0 ;;
            run | nomodel) exit 10 ;;
            mixed) exit 3 ;;
            *) exit 1 ;;
        esac
    fi
    case "$verdict" in
        run) return 0 ;;
        done) exit 0 ;;
        mixed) exit 3 ;;
        *) exit 1 ;;
    esac
}

# run_train_py: train.py with TRAIN_ARGS, in one process, or as NPROC_PER_NODE processes through
# torchrun when NPROC_PER_NODE > 1 (DistributedDataParallel, one process per GPU; the batch size of
# the config is then that of each process: docs/engine.md).
run_train_py() {
    if [ "${NPROC_PER_NODE:-1}" -gt 1 ]; then
        "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC_PER_NODE" train.py "${TRAIN_ARGS[@]}"
    else
        "$PYTHON" train.py "${TRAIN_ARGS[@]}"
    fi
}

# train_py DATASET CONFIG_FILE OUTPUT_DIR SEED [flags and KEY VALUE opts...]: one train.py call
# with the method's TRAINER (train_args); OPTS come last, so they override everything.
train_py() {
    train_args "$@"
    run_train_py
}
