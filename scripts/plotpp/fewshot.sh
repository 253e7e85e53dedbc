#!/usr/bin/env bash
# Few-shot learning, PLOT++'s protocol: train on all classes of DATASET with SHOTS shots, then test.
# The epochs follow the shots (env.sh); each shot count starts stage 2 from its own stage-1 file.
# main_visiononly.sh / main_joint.sh / evaluation.sh take plot-pp's arguments and layouts.
#   bash scripts/plotpp/fewshot.sh DATASET SHOTS SEED      e.g. oxford_pets 4 1
# Output: $OUTPUT/DATASET/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED
# Stage 1 (the visual prompts, OT + global logits) goes to $OUTPUT/visiononly/<the same tail>, then
# stage 2 (both, OT logits) starts from its file.
# Both stages (stages.sh; STAGE1_SEED), each skipped when it has a result and resumed after a kill.
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, ...): scripts/lib/protocols.sh;
# this method's settings and recipes: env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
source "$SCRIPT_DIR/stages.sh"
two_stage_protocol
protocol_main fewshot "$@"
