#!/usr/bin/env bash
# plot-pp's evaluation script (scripts/evaluation.sh), with its arguments and output layout: for each
# shot count and seed, evaluate a PLOT++ model file (PRETRAIN_DIR; OT logits, TRADE_OFF False) on the
# test split of DATASET, all classes.
#   bash scripts/plotpp/evaluation.sh DATASET M      e.g. caltech101 4
# PRETRAIN_DIR: by default the run of main_joint.sh with the same shot count and seed (the epoch it
# saved last); a file (upstream's released models, a stage-1 file) evaluates that file everywhere.
# Output: $OUTPUT/output_eval/OP_N4/DATASET/PLOTPP/vit_${SHOTS}shots/nctx4_cscFalse_ctpend/seed$SEED
# Environment: SHOTS_LIST (default "1 2 4 8 16"), SEEDS (default "1 2 3"), PRETRAIN_DIR; DATA,
# OUTPUT, PYTHON, OPTS, TOY, CFG (scripts/lib/protocols.sh). Evaluations with a result are skipped.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
source "$SCRIPT_DIR/stages.sh"
upstream_entry "$@"  # sets DATASET and M
for SHOTS in ${SHOTS_LIST:-1 2 4 8 16}; do
    upstream_opts "$SHOTS"
    CONFIG=$(config_file "$(recipe fewshot "$DATASET" "$SHOTS")")
    for SEED in ${SEEDS:-1 2 3}; do
        ( # a subshell: a finished evaluation ends it (the shared rule, run_status, exits), not the loop
            DIR=$(upstream_run_dir output_eval "$SHOTS" "$SEED")
            MODEL=${PRETRAIN_DIR:-}
            if [ -z "$MODEL" ]; then MODEL=$(saved_model_file "$(upstream_run_dir output_joint "$SHOTS" "$SEED")"); fi
            train_args "$DATASET" "$CONFIG" "$DIR" "$SEED" --eval-only \
                "${UPSTREAM_OPTS[@]}" TRAINER.PLOTPP.TRADE_OFF False TRAINER.PLOTPP.PRETRAIN_DIR "$MODEL" \
                TRAINER.PLOTPP.MODEL_UPD joint
            run_status eval "$DIR"
            run_train_py
        )
    done
done
