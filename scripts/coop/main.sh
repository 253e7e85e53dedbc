#!/usr/bin/env bash
# CoOp's few-shot script, with its arguments and output layout: for each seed, train on all classes
# of DATASET with SHOTS shots, then test (the accuracy is that final test's).
#   bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC      e.g. caltech101 rn50_ep50 end 16 1 False
#     CFG   a recipe of configs/trainers/CoOp (CoOp's README: 1 shot *_ep50, 2-4 shots *_ep100,
#           8-16 shots the 200-epoch file; ImageNet always *_ep50)
#     CTP   class token position: end, middle or front
#     NCTX  context tokens;  SHOTS  shots per class;  CSC  class-specific context: False or True
# Output: $OUTPUT/DATASET/CoOp/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed$SEED
# Environment: SEEDS (default "1 2 3"); DATA, OUTPUT, PYTHON, OPTS (scripts/lib/protocols.sh).
# Runs that have a result are skipped, interrupted ones resumed, as in every protocol script.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
if [ $# -ne 6 ]; then
    echo "usage: $0 DATASET CFG CTP NCTX SHOTS CSC" >&2
    exit 2
fi
DATASET=$1 RECIPE=$2 CTP=$3 NCTX=$4 SHOTS=$5 CSC=$6
load_method "$SCRIPT_DIR"
check_dataset "$DATASET"
for SEED in ${SEEDS:-1 2 3}; do
    DIR=$(fewshot_root "$DATASET" "$RECIPE" "$SHOTS")/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed$SEED
    # A subshell: a finished seed ends it (run_status exits), not the loop.
    (train "$RECIPE" "$DIR" "$SEED" "$DATASET" \
        TRAINER.COOP.N_CTX "$NCTX" \
        TRAINER.COOP.CSC "$CSC" \
        TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP" \
        DATASET.NUM_SHOTS "$SHOTS")
done
