#!/usr/bin/env bash
# Base-to-new, step 1: train PLOT on the base classes (SHOTS shots each) of DATASET.
#   bash scripts/plot/base2new_train.sh DATASET SEED      e.g. caltech101 1
# Output: $OUTPUT/base2new/train_base/DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, ...): scripts/lib/protocols.sh;
# this method's settings and recipes: env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
protocol_main base2new_train "$@"
