#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 2: evaluate the PLOT++ model of xd_train.sh (stage 2)
# on DATASET (all classes): the other datasets, or imagenetv2, imagenet_sketch, imagenet_a, imagenet_r.
#   bash scripts/plotpp/xd_test.sh DATASET SEED      e.g. oxford_pets 1
# Output: $OUTPUT/evaluation/$TRAINER/${CFG}_${SHOTS}shots/DATASET/seed$SEED
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, ...): scripts/lib/protocols.sh;
# this method's settings and recipes: env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
protocol_main xd_test "$@"
