#!/usr/bin/env bash
# Base-to-new on every dataset and seed, then the Base / New / HM table (as papers report it).
#   bash scripts/align/reproduce_base2new.sh
# Environment: DATASETS (default: the 11 base-to-new datasets), SEEDS (default: 1 2 3), and those
# of base2new_train.sh / base2new_test.sh. Runs that already have results are skipped.
# The same for several methods at once: scripts/reproduce.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../reproduce.sh" base2new ALIGN "${DATASETS:-}" "${SEEDS:-}"
