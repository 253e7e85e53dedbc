#!/usr/bin/env bash
# plot-pp's stage-1 script (scripts/main_visiononly.sh), with its arguments and output layout: for
# each shot count, train PLOT++'s M visual prompts (MODEL_UPD vision, OT + global logits: TRADE_OFF
# True) on all classes of DATASET, seed 1, N = 4 text prompts from the dataset's templates.
#   bash scripts/plotpp/main_visiononly.sh DATASET M      e.g. caltech101 4
#     M   visual prompt sets (TRAINER.PLOTPP.M)
# Output: $OUTPUT/output_visiononly/OP_N4/DATASET/PLOTPP/vit_${SHOTS}shots/nctx4_cscFalse_ctpend/seed1
# (upstream's folder names vit whatever the recipe: the few-shot recipe of the shot count, env.sh,
# i.e. the epochs upstream's train.py forced). main_joint.sh continues from these runs.
# Environment: SHOTS_LIST (default "1 2 4 8 16"), SEEDS (default "1"); DATA, OUTPUT, PYTHON, OPTS,
# TOY, CFG (scripts/lib/protocols.sh). Runs that have a result are skipped, interrupted ones resumed.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
source "$SCRIPT_DIR/stages.sh"
upstream_entry "$@"  # sets DATASET and M
for SHOTS in ${SHOTS_LIST:-1 2 4 8 16}; do
    upstream_opts "$SHOTS"
    RECIPE=$(recipe fewshot "$DATASET" "$SHOTS")
    for SEED in ${SEEDS:-1}; do
        # A subshell: a finished run ends it (the shared rule, run_status, exits), not the loop.
        (train "$RECIPE" "$(upstream_run_dir output_visiononly "$SHOTS" "$SEED")" \
            "$SEED" "$DATASET" "${UPSTREAM_OPTS[@]}" TRAINER.PLOTPP.TRADE_OFF True TRAINER.PLOTPP.MODEL_UPD vision)
    done
done
