#!/usr/bin/env bash
# plot-coop's few-shot script (scripts/main.sh), with its arguments and output layout: for each shot
# count and seed, train PLOT (RN50, 16 context tokens, class name at the end) on all classes of
# DATASET, then test (the accuracy is that final test's).
#   bash scripts/plot/main.sh DATASET N      e.g. caltech101 4
#     N   text prompts per class (TRAINER.PLOT.N)
# Output: $OUTPUT/OP_N$N/DATASET/PLOT/rn50_${SHOTS}shots/nctx16_cscFalse_ctpend/seed$SEED (upstream's
# folder names rn50 whatever the recipe: the few-shot recipe of the shot count and dataset, env.sh,
# i.e. the epochs and batch upstream's train.py forced).
# Environment: SHOTS_LIST (default "1 2 4 8 16"), SEEDS (default "1 2 3"); DATA, OUTPUT, PYTHON, OPTS,
# TOY, CFG (scripts/lib/protocols.sh). Runs that have a result are skipped, interrupted ones
# resumed, as in every protocol script.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
if [ $# -ne 2 ]; then
    echo "usage: $0 DATASET N" >&2
    exit 2
fi
DATASET=$1 N=$2 NCTX=16 CSC=False CTP=end
load_method "$SCRIPT_DIR"
check_dataset "$DATASET"
for SHOTS in ${SHOTS_LIST:-1 2 4 8 16}; do
    RECIPE=$(recipe fewshot "$DATASET" "$SHOTS")
    for SEED in ${SEEDS:-1 2 3}; do
        DIR=$OUTPUT/OP_N$N/$DATASET/$TRAINER/rn50_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed$SEED
        # A subshell: a finished run ends it (the shared rule, run_status, exits), not the loop.
        (train "$RECIPE" "$DIR" "$SEED" "$DATASET" \
            TRAINER.PLOT.N_CTX "$NCTX" \
            TRAINER.PLOT.CSC "$CSC" \
            TRAINER.PLOT.CLASS_TOKEN_POSITION "$CTP" \
            DATASET.NUM_SHOTS "$SHOTS" \
            TRAINER.PLOT.N "$N")
    done
done
