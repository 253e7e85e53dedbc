#!/usr/bin/env bash
# Few-shot learning on every dataset, shot count and seed, then the mean and std over seeds.
#   bash scripts/align/reproduce_fewshot.sh
# Environment: DATASETS (default: the 11 datasets), SHOTS_LIST (default: 1 2 4 8 16), SEEDS
# (default: 1 2 3), and those of fewshot.sh. The recipe per shot count is chosen by fewshot.sh.
# The same for several methods at once: scripts/reproduce.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../reproduce.sh" fewshot ALIGN "${DATASETS:-}" "${SEEDS:-}"
