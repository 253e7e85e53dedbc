#!/usr/bin/env bash
# plot-pp's stage-2 script (scripts/main_joint.sh), with its arguments and output layout: for each
# shot count and seed, train PLOT++'s visual and text prompts (MODEL_UPD joint, OT logits:
# TRADE_OFF False) on all classes of DATASET, starting from the stage-1 file (PRETRAIN_DIR).
#   bash scripts/plotpp/main_joint.sh DATASET M      e.g. caltech101 4
#     M   visual prompt sets, as for main_visiononly.sh
# PRETRAIN_DIR: by default each shot count's own stage-1 run of main_visiononly.sh (seed 1; the file
# of the epoch it saved last). Upstream takes one file for every shot count (a defect); setting
# PRETRAIN_DIR to a file does that.
# Output: $OUTPUT/output_joint/OP_N4/DATASET/PLOTPP/vit_${SHOTS}shots/nctx4_cscFalse_ctpend/seed$SEED
# Environment: SHOTS_LIST (default "1 2 4 8 16"), SEEDS (default "1 2 3"), PRETRAIN_DIR; DATA,
# OUTPUT, PYTHON, OPTS, TOY, CFG (scripts/lib/protocols.sh). Runs that have a result are skipped,
# interrupted ones resumed.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
source "$SCRIPT_DIR/stages.sh"
upstream_entry "$@"  # sets DATASET and M
for SHOTS in ${SHOTS_LIST:-1 2 4 8 16}; do
    upstream_opts "$SHOTS"
    RECIPE=$(recipe fewshot "$DATASET" "$SHOTS")
    if [ -n "${PRETRAIN_DIR:-}" ]; then
        PRETRAINED=$PRETRAIN_DIR
    else
        PRETRAINED=$(saved_model_file "$(upstream_run_dir output_visiononly "$SHOTS" 1)")
    fi
    for SEED in ${SEEDS:-1 2 3}; do
        # A subshell: a finished run ends it (the shared rule, run_status, exits), not the loop.
        (train "$RECIPE" "$(upstream_run_dir output_joint "$SHOTS" "$SEED")" \
            "$SEED" "$DATASET" "${UPSTREAM_OPTS[@]}" TRAINER.PLOTPP.TRADE_OFF False \
            TRAINER.PLOTPP.PRETRAIN_DIR "$PRETRAINED" TRAINER.PLOTPP.MODEL_UPD joint)
    done
done
