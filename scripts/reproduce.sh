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
#
# The sweep is a list of steps (one method script call each). First every step is checked without
# running anything (CHECK_ONLY=1): runs that have a result are skipped; finished runs made with other
# settings than those asked for now stop the sweep before it runs anything (exit status 3), unless
# ALLOW_MIXED=1. Then the other steps run in order. A failed run does not stop the others (a test
# step waits for its training step): the failures are listed at the end, and the exit status is 1.
# Ctrl-C (SIGINT) or SIGTERM stops the sweep: the run in progress stops (train.py keeps what it
# saved), and the sweep says what finished, what was interrupted (run the same command again to
# resume it) and what was not started; exit status 130 / 143. (A SIGTERM to this script alone,
# not to its process group, lets the run in progress finish first.)
# Launchers (LAUNCHER): sequential (default: one step after another, here), local (JOBS=N jobs at
# a time, submitit's local executor), gpus (GPUS="0 1 2 3": one job per GPU at a time, each seeing
# its GPU as CUDA_VISIBLE_DEVICES), slurm (submitit: one job array, the SLURM_* settings below). A
# job runs one chain: a training step and the test steps that need it. Jobs' logs, submitit's files
# and the plan are in OUTPUT/sweeps/PROTOCOL-<id>/ (one folder per sweep). The status table (a row
# per method, dataset, seed and step: done, running, queued, failed with its Error line and log,
# ...) is printed while the jobs run and at the end; `--status` as first argument (or
# STATUS_ONLY=1) prints it without running anything.
# Environment: that of the method scripts (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, TOY, SOURCE,
# ALLOW_MIXED; see scripts/lib/protocols.sh), SHOTS_LIST, PARSE_OPTS, LAUNCHER, JOBS, GPUS,
# SLURM_PARTITION, SLURM_TIME, SLURM_GPUS_PER_JOB (> 1: each run through torchrun), SLURM_CPUS_PER_JOB,
# SLURM_MEM, SLURM_ACCOUNT, SLURM_QOS, SLURM_EXTRA, SLURM_MAX_PARALLEL; docs/scripts.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib/protocols.sh"

usage() {
    echo "usage: $0 [--status] base2new|xd|fewshot \"METHODS\" [\"DATASETS\"] [\"SEEDS\"]" >&2
    echo "methods: $(list_methods | cut -d' ' -f1 | tr '\n' ' ')" >&2
    exit 2
}
if [ "${1:-}" = --status ]; then
    STATUS_ONLY=1
    shift
fi
STATUS_ONLY=${STATUS_ONLY:-0}
LAUNCHER=${LAUNCHER:-sequential}
case "$LAUNCHER" in
    sequential | local | gpus | slurm) ;;
    *) echo "Error: LAUNCHER=$LAUNCHER is unknown: expected sequential, local, gpus or slurm" >&2; exit 2 ;;
esac
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
    base2new) STEP_NAMES=(base2new_train base2new_test) ;;
    xd) STEP_NAMES=(xd_train xd_test) ;;
    fewshot) STEP_NAMES=(fewshot) ;;
esac

# Everything is checked before anything runs.
METHOD_DIRS=()
for name in $2; do
    dir=$(method_dir "$name")
    for step_name in "${STEP_NAMES[@]}"; do
        if [ ! -f "$dir/$step_name.sh" ]; then
            echo "Error: $name has no $PROTOCOL scripts (no ${dir#"$REPO_ROOT"/}/$step_name.sh); its scripts:" \
                "$(cd "$dir" && ls -- *.sh | grep -vx env.sh | tr '\n' ' ')" >&2
            exit 2
        fi
    done
    METHOD_DIRS+=("$dir")
done
[ ${#METHOD_DIRS[@]} -gt 0 ] || usage
for dataset in "${DATASET_LIST[@]}"; do check_dataset "$dataset"; done
if [ "$STATUS_ONLY" != 1 ]; then
    for dataset in "${DATASET_LIST[@]}"; do toy_world_if_missing "$dataset"; done
fi

# ------------------------------------------------------------------------------------------------
# The steps of the sweep, in the order they run
# ------------------------------------------------------------------------------------------------
STEP_SCRIPTS=()  # the method script of each step
STEP_ARGS=()     # its arguments, space-separated (dataset names, seeds, shot counts)
STEP_NEEDS=()    # the step that must have finished first (a test step's training), or -1
STEP_STATES=()   # planned, done (had a result), ran, failed, interrupted, or skipped (its training failed)
STEP_CHECKS=()   # what the check of a done step said (printed at its turn)
STEP_LABELS=()   # method, dataset, shots and seed, tab-separated (the status table)
STEP_VERDICTS=() # what the check found: done, run, mixed, refused
STEP_DIRS=()     # "train|eval RUN_FOLDER" of the step's run folder (empty: it has none)

# add_step NEEDS LABEL SCRIPT ARGS...: appends a step; LAST_STEP is its index.
add_step() {
    STEP_NEEDS+=("$1")
    STEP_LABELS+=("$2")
    STEP_SCRIPTS+=("$3")
    STEP_ARGS+=("${*:4}")
    STEP_STATES+=(planned)
    STEP_CHECKS+=("")
    STEP_VERDICTS+=("")
    STEP_DIRS+=("")
    LAST_STEP=$((${#STEP_SCRIPTS[@]} - 1))
}

# label METHOD_DIR DATASET SHOTS SEED: a step's label (add_step).
label() {
    printf '%s\t%s\t%s\t%s\n' "$(load_method "$1" && printf '%s' "$METHOD")" "$2" "$3" "$4"
}

plan_base2new() {
    local dir dataset seed
    for dir in "${METHOD_DIRS[@]}"; do
        for dataset in "${DATASET_LIST[@]}"; do
            for seed in "${SEED_LIST[@]}"; do
                add_step -1 "$(label "$dir" "$dataset" "$SHOTS" "$seed")" "$dir/base2new_train.sh" "$dataset" "$seed"
                add_step "$LAST_STEP" "$(label "$dir" "$dataset" "$SHOTS" "$seed")" "$dir/base2new_test.sh" "$dataset" "$seed"
            done
        done
    done
}

plan_xd() {
    local dir dataset seed training
    for dir in "${METHOD_DIRS[@]}"; do
        for seed in "${SEED_LIST[@]}"; do
            add_step -1 "$(label "$dir" "${SOURCE:-imagenet}" "$SHOTS" "$seed")" "$dir/xd_train.sh" "$seed"
            training=$LAST_STEP
            for dataset in "${DATASET_LIST[@]}"; do
                add_step "$training" "$(label "$dir" "$dataset" "$SHOTS" "$seed")" "$dir/xd_test.sh" "$dataset" "$seed"
            done
        done
    done
}

plan_fewshot() {
    local dir dataset shots seed
    for dir in "${METHOD_DIRS[@]}"; do
        for dataset in "${DATASET_LIST[@]}"; do
            for shots in "${SHOTS_VALUES[@]}"; do
                for seed in "${SEED_LIST[@]}"; do
                    add_step -1 "$(label "$dir" "$dataset" "$shots" "$seed")" "$dir/fewshot.sh" "$dataset" "$shots" "$seed"
                done
            done
        done
    done
}

# describe_step I: the command of step I, as a user would type it.
describe_step() {
    printf 'bash %s %s\n' "${STEP_SCRIPTS[$1]#"$REPO_ROOT"/}" "${STEP_ARGS[$1]}"
}

# ------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM stop the sweep (train.py, in the same process group, stops its run itself)
# ------------------------------------------------------------------------------------------------
INTERRUPTED=""
trap 'INTERRUPTED=SIGINT' INT
trap 'INTERRUPTED=SIGTERM' TERM

# stop_if_interrupted: after a signal, says what finished, what was interrupted and what was not
# started, and exits with 130 (SIGINT) or 143 (SIGTERM).
stop_if_interrupted() {
    [ -n "$INTERRUPTED" ] || return 0
    local i finished=() interrupted=() failed=() not_started=()
    for i in "${!STEP_SCRIPTS[@]}"; do
        case "${STEP_STATES[$i]}" in
            done) finished+=("$(describe_step "$i") (done before)") ;;
            ran) finished+=("$(describe_step "$i")") ;;
            interrupted) interrupted+=("$(describe_step "$i")") ;;
            failed) failed+=("$(describe_step "$i")") ;;
            *) not_started+=("$(describe_step "$i")") ;;
        esac
    done
    {
        echo
        echo "Stopped by $INTERRUPTED: the sweep ends here (run the same command again to go on)."
        echo "Finished (${#finished[@]}):"
        if [ ${#finished[@]} -gt 0 ]; then printf '  %s\n' "${finished[@]}"; fi
        echo "Interrupted (${#interrupted[@]}; it resumes, or starts again, when the sweep runs again):"
        if [ ${#interrupted[@]} -gt 0 ]; then printf '  %s\n' "${interrupted[@]}"; fi
        if [ ${#failed[@]} -gt 0 ]; then
            echo "Failed (${#failed[@]}):"
            printf '  %s\n' "${failed[@]}"
        fi
        echo "Not started (${#not_started[@]}):"
        if [ ${#not_started[@]} -gt 0 ]; then printf '  %s\n' "${not_started[@]}"; fi
    } >&2
    if [ "$INTERRUPTED" = SIGINT ]; then exit 130; fi
    exit 143
}

# ------------------------------------------------------------------------------------------------
# The run steps
# ------------------------------------------------------------------------------------------------

# check_steps: every step asked what it would do (CHECK_ONLY=1: nothing runs). Done steps are
# skipped later; finished runs made with other settings than those asked for now (each step says
# which keys) stop the sweep here, before anything runs (exit status 3), unless ALLOW_MIXED=1.
check_steps() {
    local i args output status mixed=0 dirs
    dirs=$(mktemp)
    for i in "${!STEP_SCRIPTS[@]}"; do
        read -r -a args <<< "${STEP_ARGS[$i]}"
        : > "$dirs"
        if output=$(CHECK_ONLY=1 RUN_DIR_FILE=$dirs bash "${STEP_SCRIPTS[$i]}" "${args[@]}" 2>&1); then status=0; else status=$?; fi
        STEP_DIRS[i]=$(head -n 1 "$dirs")
        stop_if_interrupted
        case "$status" in
            0) STEP_STATES[i]=done STEP_CHECKS[i]=$output STEP_VERDICTS[i]=done ;;
            3) mixed=$((mixed + 1)) STEP_VERDICTS[i]=mixed; printf '%s\n' "$output" >&2 ;;
            10) STEP_VERDICTS[i]=run ;;
            *) STEP_VERDICTS[i]=refused ;;  # the step runs and says why itself
        esac
    done
    rm -f "$dirs"
    if [ "$mixed" -gt 0 ] && [ "$STATUS_ONLY" != 1 ]; then
        echo "Error: $mixed finished run(s) were made with other settings than those asked for now (above); nothing was run." >&2
        echo "Run the new settings into another OUTPUT, delete those runs to redo them, or set ALLOW_MIXED=1 to keep them as they are." >&2
        exit 3
    fi
}

FAILED=()
# run_step I: runs step I (or says that it was done, or that its training failed).
run_step() {
    local i=$1 needs=${STEP_NEEDS[$1]} args
    if [ "$needs" -ge 0 ] && [ "${STEP_STATES[$needs]}" != done ] && [ "${STEP_STATES[$needs]}" != ran ]; then
        STEP_STATES[i]=skipped  # its training failed (listed): nothing to test
        return
    fi
    if [ "${STEP_STATES[$i]}" = done ]; then
        if [ -n "${STEP_CHECKS[$i]}" ]; then printf '%s\n' "${STEP_CHECKS[$i]}"; fi
        return
    fi
    read -r -a args <<< "${STEP_ARGS[$i]}"
    if bash "${STEP_SCRIPTS[$i]}" "${args[@]}"; then
        STEP_STATES[i]=ran
    elif [ -n "$INTERRUPTED" ]; then
        STEP_STATES[i]=interrupted
    else
        STEP_STATES[i]=failed
        FAILED+=("$(describe_step "$i")")
    fi
}

run_steps() {
    local i
    for i in "${!STEP_SCRIPTS[@]}"; do
        stop_if_interrupted
        run_step "$i"
    done
    stop_if_interrupted
}

# ------------------------------------------------------------------------------------------------
# The results
# ------------------------------------------------------------------------------------------------
parse() {
    echo
    if ! "$PYTHON" parse_test_res.py "$@"; then FAILED+=("$PYTHON parse_test_res.py $*"); fi
}

print_results() {
    local seeds_csv dir dataset shots root names=()
    seeds_csv=$(IFS=,; echo "${SEED_LIST[*]}")
    case "$PROTOCOL" in
        base2new)
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
}

# ------------------------------------------------------------------------------------------------
# The sweep's folder: its plan, status and jobs' files (OUTPUT/sweeps/PROTOCOL-<id>, the id a
# checksum of what defines the sweep, so that the same command finds it again)
# ------------------------------------------------------------------------------------------------
sweep_id() {
    printf '%s\n' "$PROTOCOL" "$METHOD_NAMES" "${DATASET_LIST[*]}" "${SEED_LIST[*]}" "${SHOTS_VALUES[*]}" "$SHOTS" \
        "${CFG:-}" "${TOY:-0}" "${SOURCE:-}" "${OPTS:-}" | cksum | cut -d' ' -f1
}

# write_plan: OUTPUT/sweeps/.../plan.tsv (tools/sweep/plan.py reads it) and sweep.txt (the command).
write_plan() {
    local i kind dir script
    mkdir -p "$SWEEP_DIR"
    SWEEP_DIR=$(cd "$SWEEP_DIR" && pwd)
    for i in "${!STEP_SCRIPTS[@]}"; do
        kind="" dir=""
        if [ -n "${STEP_DIRS[$i]}" ]; then kind=${STEP_DIRS[$i]%% *} dir=${STEP_DIRS[$i]#* }; fi
        script=${STEP_SCRIPTS[$i]#"$REPO_ROOT"/}
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "${STEP_NEEDS[$i]}" "${STEP_LABELS[$i]}" \
            "$(basename "$script" .sh)" "$kind" "$dir" "${STEP_VERDICTS[$i]}" "$script" "${STEP_ARGS[$i]}"
    done > "$SWEEP_DIR/plan.tsv"
    printf 'bash scripts/reproduce.sh %s "%s" "%s" "%s"\nSHOTS_LIST=%s SHOTS=%s CFG=%s TOY=%s SOURCE=%s OPTS=%s\n' \
        "$PROTOCOL" "$METHOD_NAMES" "${DATASET_LIST[*]}" "${SEED_LIST[*]}" "${SHOTS_VALUES[*]}" "$SHOTS" \
        "${CFG:-}" "${TOY:-0}" "${SOURCE:-}" "${OPTS:-}" > "$SWEEP_DIR/sweep.txt"
}

# launch_steps: the steps through LAUNCHER (tools/sweep): it prints the status table while its jobs
# run and at the end.
launch_steps() {
    local rc=0
    "$PYTHON" -m tools.sweep launch "$SWEEP_DIR" --launcher "$LAUNCHER" --jobs "${JOBS:-1}" --gpus "${GPUS:-}" \
        --name "reproduce-$PROTOCOL" || rc=$?
    case "$rc" in
        0) ;;
        2 | 130 | 143) exit "$rc" ;;  # a launcher setting, Ctrl-C, SIGTERM: said above
        *) FAILED+=("steps that did not finish: see the status table above (LAUNCHER=$LAUNCHER)") ;;
    esac
}

METHOD_NAMES=$2
SWEEP_DIR=$OUTPUT/sweeps/$PROTOCOL-$(sweep_id)
"plan_$PROTOCOL"
check_steps
write_plan
if [ "$STATUS_ONLY" = 1 ]; then
    exec "$PYTHON" -m tools.sweep status "$SWEEP_DIR"
fi
if [ "$LAUNCHER" = sequential ]; then
    run_steps
    echo
    "$PYTHON" -m tools.sweep status "$SWEEP_DIR"
else
    launch_steps
fi
print_results
if [ ${#FAILED[@]} -gt 0 ]; then
    echo >&2
    echo "Failed (${#FAILED[@]}):" >&2
    printf '  %s\n' "${FAILED[@]}" >&2
    exit 1
fi
