# ALIGN under the official trainer name MMP, with the official configs (configs/trainers/MMP/) and
# keys (TRAINER.MMP): what scripts/lib/protocols.sh needs for the official entry points here.
# (No METHOD: reproduce.sh and demo.sh run ALIGN through scripts/align/.)
TRAINER=MMP
CONFIG_DIR=configs/trainers/MMP
LEARNER=MultiModalPromptLearner  # the registered module: checkpoints live in <run>/$LEARNER/

BASE2NEW_CFG=vit_b16_c2_ep5_batch4_2ctx  # the official file: 20 epochs despite its name
BASE2NEW_CFG_sun397=sun397  # the official SUN397 file: T = V = 2 prompts, LR 0.002
