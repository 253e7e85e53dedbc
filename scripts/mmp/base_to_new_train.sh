#!/usr/bin/env bash
# The official ALIGN entry point: train on the base classes of DATASET (16 shots each).
#   cd scripts/mmp; bash base_to_new_train.sh [DATASET] [SEED]     (defaults: caltech101 1)
#   bash scripts/mmp/base_to_new_train.sh caltech101 1            (or from anywhere)
# The official file, with --trainer MMP and configs/trainers/MMP/vit_b16_c2_ep5_batch4_2ctx.yaml
# (sun397.yaml for sun397); the protocol is scripts/align/base2new_train.sh's (the same code,
# scripts/lib/protocols.sh): a run with a result is skipped, an interrupted one resumes.
# Output: $OUTPUT/base2new/train_base/DATASET/shots_$SHOTS/MMP/$CFG/seed$SEED
# Environment: DATA, OUTPUT, PYTHON, OPTS, SHOTS, CFG (see scripts/lib/protocols.sh).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
[ $# -le 2 ] || { echo "usage: $0 [DATASET] [SEED]" >&2; exit 2; }
protocol_main base2new_train "${1:-caltech101}" "${2:-1}"
