#!/usr/bin/env bash
# Few-shot learning, PLOT's protocol (RN50, N = 4 prompts of 16 random tokens): train on all classes
# of DATASET with SHOTS shots, then test. The epochs (and the batch on Flowers, Aircraft, Cars)
# follow the shots and the dataset (env.sh). main.sh takes plot-coop's arguments and layout.
#   bash scripts/plot/fewshot.sh DATASET SHOTS SEED      e.g. oxford_pets 4 1
# Output: $OUTPUT/DATASET/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, ...): scripts/lib/protocols.sh;
# this method's settings and recipes: env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
protocol_main fewshot "$@"
