#!/usr/bin/env bash
# The official ALIGN entry point: evaluate the model of base_to_new_train.sh on the NEW classes of
# DATASET (SUB=base: the base classes).
#   cd scripts/mmp; bash base_to_new_test.sh [DATASET] [SEED]      (defaults: caltech101 1)
#   bash scripts/mmp/base_to_new_test.sh caltech101 1             (or from anywhere)
# Unlike the official file, which loads epoch 15 (never saved) and evaluates the base classes into
# the training folder, it loads the model that training deployed and writes to its own folder, as
# scripts/align/base2new_test.sh (the same code, scripts/lib/protocols.sh):
# Output: $OUTPUT/base2new/test_$SUB/DATASET/shots_$SHOTS/MMP/$CFG/seed$SEED
# Environment: DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, SUB (see scripts/lib/protocols.sh).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
[ $# -le 2 ] || { echo "usage: $0 [DATASET] [SEED]" >&2; exit 2; }
protocol_main base2new_test "${1:-caltech101}" "${2:-1}"
