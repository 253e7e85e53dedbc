#!/usr/bin/env bash
# Few-shot learning with ProGrad's recipes (16 context tokens from its template's words, LAMBDA 1):
# train on all classes of DATASET with SHOTS shots, then test. The epochs follow the shots (env.sh).
#   bash scripts/prograd/fewshot.sh DATASET SHOTS SEED      e.g. oxford_pets 4 1
# Output: $OUTPUT/DATASET/$TRAINER/${CFG}_${SHOTS}shots/seed$SEED
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, ...): scripts/lib/protocols.sh;
# this method's settings and recipes: env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
protocol_main fewshot "$@"
