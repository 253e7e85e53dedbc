# PLOT++'s two stages in the scripts (source it after ../lib/protocols.sh; not run on its own).
#
# The protocol steps (two_stage_protocol): wherever a step trains (base2new_train, xd_train,
# fewshot: the shared `train`), PLOT++ trains twice with the step's recipe and options:
#   stage 1 ("vision only": MODEL_UPD vision, TRADE_OFF True; the visual prompts learn with OT +
#     global logits) into $OUTPUT/visiononly/<the step's folder below $OUTPUT>, with seed
#     STAGE1_SEED (default 1: as upstream, one stage-1 run serves every seed of a shot count;
#     "same": each seed its own);
#   stage 2 ("joint": MODEL_UPD joint, TRADE_OFF False; both learn, OT logits only) into the
#     step's folder, started from the file of that stage-1 run (MODEL.INIT_WEIGHTS).
# Each stage follows the shared rules (scripts/common.sh): skipped when it has a result, resumed
# from its checkpoint after a kill; a finished stage 2 needs nothing else. OPTS still come last.
#
# plot-pp's entry points (main_visiononly.sh, main_joint.sh, evaluation.sh) share upstream_run_dir
# and upstream_opts.

STAGE1_OPTS=(TRAINER.PLOTPP.MODEL_UPD vision TRAINER.PLOTPP.TRADE_OFF True)
STAGE2_OPTS=(TRAINER.PLOTPP.MODEL_UPD joint TRAINER.PLOTPP.TRADE_OFF False)

# saved_model_file DIR: the model file that the finished training run in DIR tested (the epoch it
# saved last, or its best-validation model); an error when DIR holds no finished training.
saved_model_file() {
    "$PYTHON" -m tools.results.status model "$1" --learner "$LEARNER"
}

# stage1_seed SEED: the seed of the stage-1 run that a stage-2 run with seed SEED starts from.
stage1_seed() {
    if [ "${STAGE1_SEED:-1}" = same ]; then printf '%s\n' "$1"; else printf '%s\n' "${STAGE1_SEED:-1}"; fi
}

# stage1_dir DIR SEED: the folder of the stage-1 run with seed SEED for the stage-2 run folder DIR.
stage1_dir() {
    printf '%s\n' "$OUTPUT/visiononly/$(dirname "${1#"$OUTPUT"/}")/seed$2"
}

# two_stage_train CFG DIR SEED DATASET [KEY VALUE...]: both stages of the training run into DIR.
# Stage 1 runs in a subshell: the shared rule ends it when that stage is done (or, with CHECK_ONLY=1,
# after saying what it would do), not the step. The step's run folder (RUN_DIR_FILE) is stage 2's.
two_stage_train() {
    local cfg=$1 dir=$2 seed=$3 dataset=$4 seed1 first file status=0
    shift 4
    seed1=$(stage1_seed "$seed")
    first=$(stage1_dir "$dir" "$seed1")
    # A finished stage 2 needs nothing else: the shared rule says so and ends the step.
    if file=$(saved_model_file "$first" 2> /dev/null) && (CHECK_ONLY=1 RUN_DIR_FILE="" \
        train_one_stage "$cfg" "$dir" "$seed" "$dataset" "$@" "${STAGE2_OPTS[@]}" MODEL.INIT_WEIGHTS "$file") > /dev/null 2>&1; then
        train_one_stage "$cfg" "$dir" "$seed" "$dataset" "$@" "${STAGE2_OPTS[@]}" MODEL.INIT_WEIGHTS "$file"
    fi
    (RUN_DIR_FILE="" train_one_stage "$cfg" "$first" "$seed1" "$dataset" "$@" "${STAGE1_OPTS[@]}") || status=$?
    if [ "${CHECK_ONLY:-0}" = 1 ] && [ "$status" != 0 ]; then
        # stage 1 is to run (10), was made with other settings (3) or is refused (1): so is the step
        if [ -n "${RUN_DIR_FILE:-}" ]; then printf 'train %s\n' "$dir" >> "$RUN_DIR_FILE"; fi
        exit "$status"
    elif [ "$status" != 0 ]; then
        exit "$status"
    fi
    file=$(saved_model_file "$first")
    if [ "${CHECK_ONLY:-0}" != 1 ]; then echo "Stage 2 starts from the stage-1 file $file"; fi
    train_one_stage "$cfg" "$dir" "$seed" "$dataset" "$@" "${STAGE2_OPTS[@]}" MODEL.INIT_WEIGHTS "$file"
}

# two_stage_protocol: from here on the protocol steps' `train` runs both stages (the shared
# `train`, kept as train_one_stage, runs each).
two_stage_protocol() {
    eval "train_one_stage() $(declare -f train | tail -n +2)"
    train() { two_stage_train "$@"; }
}

# upstream_entry DATASET M: the arguments of plot-pp's entry points, checked; sets DATASET and M
# (the visual prompt sets) and reads the method.
upstream_entry() {
    if [ $# -ne 2 ]; then
        echo "usage: $0 DATASET M" >&2
        exit 2
    fi
    DATASET=$1 M=$2
    load_method "$SCRIPT_DIR"
    check_dataset "$DATASET"
    toy_world_if_missing "$DATASET"
}

# upstream_run_dir ROOT SHOTS SEED: a run folder of plot-pp's layout for DATASET (ROOT:
# output_visiononly, output_joint or output_eval).
upstream_run_dir() {
    printf '%s\n' "$OUTPUT/$1/OP_N4/$DATASET/$TRAINER/vit_$2shots/nctx4_cscFalse_ctpend/seed$3"
}

# upstream_opts SHOTS: sets UPSTREAM_OPTS to the settings every plot-pp script passes: N = 4 text
# prompts from the dataset's templates (CTX_INIT True; N_CTX 4 is then only a folder name), M
# visual prompt sets of 2 tokens, SHOTS shots.
upstream_opts() {
    UPSTREAM_OPTS=(
        TRAINER.PLOTPP.N_CTX 4 TRAINER.PLOTPP.CSC False TRAINER.PLOTPP.CLASS_TOKEN_POSITION end
        DATASET.NUM_SHOTS "$1" TRAINER.PLOTPP.M "$M" TRAINER.PLOTPP.N 4 TRAINER.PLOTPP.N_CTX_V 2
        TRAINER.PLOTPP.CTX_INIT True
    )
}
