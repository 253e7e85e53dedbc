#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train PLOT++ on SOURCE (default imagenet), all
# classes, SHOTS shots.
#   bash scripts/plotpp/xd_train.sh SEED      e.g. 1
# Output: $OUTPUT/$SOURCE/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED
# Stage 1 (the visual prompts, OT + global logits) goes to $OUTPUT/visiononly/<the same tail>, then
# stage 2 (both, OT logits) starts from its file.
# Both stages (stages.sh; STAGE1_SEED), each skipped when it has a result and resumed after a kill.
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, ...): scripts/lib/protocols.sh;
# this method's settings and recipes: env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
source "$SCRIPT_DIR/stages.sh"
two_stage_protocol
protocol_main xd_train "$@"
