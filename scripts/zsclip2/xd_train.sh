#!/usr/bin/env bash
# Cross-dataset, step 1: nothing to train for zero-shot CLIP (kept so every method has the step).
#   bash scripts/zsclip2/xd_train.sh SEED      e.g. 1
# Output: none
# The protocol and its environment (DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG, ...): scripts/lib/protocols.sh;
# this method's settings and recipes: env.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
protocol_main xd_train "$@"
