#!/usr/bin/env bash
# Base-to-new, step 2: evaluate the PLOT++ model of base2new_train.sh (stage 2) on the NEW classes
# (SUB=base: the base classes), loading the epoch that its training saved.
#   bash scripts/plotpp/base2new_test.sh DATASET SEED      e.g. caltech101 1
# Output: $OUTPUT/base2new/test_$SUB/DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, ...): scripts/lib/protocols.sh;
# this method's settings and recipes: env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
protocol_main base2new_test "$@"
