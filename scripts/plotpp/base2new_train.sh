#!/usr/bin/env bash
# Base-to-new, step 1: train PLOT++ on the base classes (SHOTS shots each) of DATASET.
#   bash scripts/plotpp/base2new_train.sh DATASET SEED      e.g. caltech101 1
# Output: $OUTPUT/base2new/train_base/DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED
# Stage 1 (the visual prompts, OT + global logits) goes to $OUTPUT/visiononly/<the same tail>, then
# stage 2 (both, OT logits) starts from its file.
# Both stages (stages.sh; STAGE1_SEED), each skipped when it has a result and resumed after a kill.
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, ...): scripts/lib/protocols.sh;
# this method's settings and recipes: env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
source "$SCRIPT_DIR/stages.sh"
two_stage_protocol
protocol_main base2new_train "$@"
