#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train PLOT on SOURCE (default imagenet), all
# classes, SHOTS shots.
#   bash scripts/plot/xd_train.sh SEED      e.g. 1
# Output: $OUTPUT/$SOURCE/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, ...): scripts/lib/protocols.sh;
# this method's settings and recipes: env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
protocol_main xd_train "$@"
