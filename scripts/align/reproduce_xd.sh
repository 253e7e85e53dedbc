#!/usr/bin/env bash
# Cross-dataset transfer and domain generalisation: train on ImageNet (16 shots) per seed, evaluate
# on every target, then the mean and std over seeds per target.
#   bash scripts/align/reproduce_xd.sh
# Environment: TARGETS (default: ImageNet itself, the 10 other datasets and the 4 ImageNet
# variants), SEEDS (default: 1 2 3), and those of xd_train.sh / xd_test.sh.
# The same for several methods at once: scripts/reproduce.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../reproduce.sh" xd ALIGN "${TARGETS:-}" "${SEEDS:-}"
