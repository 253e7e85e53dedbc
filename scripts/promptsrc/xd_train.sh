#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train on SOURCE (default imagenet), all
# classes, SHOTS shots.
#   bash scripts/promptsrc/xd_train.sh SEED              e.g. 1
#   bash scripts/promptsrc/xd_train.sh DATASET SEED      upstream's arguments, e.g. imagenet 1 (DATASET is SOURCE)
# Output: $OUTPUT/$SOURCE/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, ...): scripts/lib/protocols.sh;
# this method's settings and recipes: env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
if [ $# -eq 2 ]; then
    SOURCE=$1
    shift
fi
protocol_main xd_train "$@"
