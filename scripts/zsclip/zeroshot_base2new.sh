#!/usr/bin/env bash
# Zero-shot CLIP in the base-to-new protocol: evaluate on the base and on the new classes of
# DATASET (base2new_train.sh, then base2new_test.sh of this folder).
#   bash scripts/zsclip/zeroshot_base2new.sh DATASET SEED
# The seed only names the folder (zero-shot CLIP draws nothing), so that the results sit beside
# the trained methods' in parse_test_res.py --base2new:
#   $OUTPUT/base2new/test_{base,new}/DATASET/shots_$SHOTS/ZeroshotCLIP/$CFG/seed$SEED
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DATASET SEED" >&2; exit 2; }
HERE=$(dirname "${BASH_SOURCE[0]}")
bash "$HERE/base2new_train.sh" "$1" "$2"
bash "$HERE/base2new_test.sh" "$1" "$2"
