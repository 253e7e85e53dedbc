# Shared by the protocol scripts (source it; it is not run on its own).
#
# Environment (all optional):
#   DATA    dataset root, the folder that holds caltech-101/, oxford_pets/, ... (default: ./data)
#   OUTPUT  output root (default: ./output)
#   PYTHON  interpreter (default: python)
#   OPTS    extra "KEY VALUE ..." config overrides appended to every train.py call
# Paths are relative to the repository root, where every script runs.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
DATA=${DATA:-data}
OUTPUT=${OUTPUT:-output}
PYTHON=${PYTHON:-python}
read -r -a EXTRA_OPTS <<< "${OPTS:-}"

# has_result DIR train|eval: DIR/log.txt holds a final test result (after "Finish training" for a
# training run).
has_result() {
    local log="$1/log.txt"
    [ -f "$log" ] || return 1
    grep -q '^\* accuracy: ' "$log" || return 1
    [ "$2" = eval ] || grep -q '^Finish training' "$log"
}

# already_done DIR train|eval: true (and says so) when the run's results exist.
already_done() {
    has_result "$1" "$2" || return 1
    echo "Results are available in $1: skipping (delete the folder to run it again)"
}

# skip_if_done DIR train|eval: a run whose results exist is skipped (the script exits).
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

# check_partial_training DIR LEARNER: an existing training folder without results is resumed from
# its checkpoint (train.py does that by itself), run again when it holds only the logs of failed
# starts (train.py keeps them: a new log never overwrites an old one), and otherwise refused: it
# is never retrained silently over what is there.
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

# load_epoch_args MODEL_DIR LEARNER: the --load-epoch argument for the checkpoint that training
# saved last (its `checkpoint` pointer), or nothing for model-best.pth.tar.
load_epoch_args() {
    local pointer="$1/$2/checkpoint"
    if [ ! -f "$pointer" ]; then
        echo "Error: no trained model in $1 (missing $pointer); run the training script first" >&2
        return 1
    fi
    local saved
    saved=$(head -n 1 "$pointer")
    case "$saved" in
        model.pth.tar-*) echo "--load-epoch ${saved#model.pth.tar-}" ;;
        model-best.pth.tar) echo "" ;;
        *) echo "Error: unexpected checkpoint name '$saved' in $pointer" >&2; return 1 ;;
    esac
}
