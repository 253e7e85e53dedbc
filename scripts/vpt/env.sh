# VPT (deep visual prompts, fixed text "a photo of a {class}."): what scripts/lib/protocols.sh
# needs to run its protocols (read by the scripts here).
METHOD=VPT
TRAINER=VPT
CONFIG_DIR=configs/trainers/VPT
LEARNER=prompt_learner  # the registered module (upstream's folder name): checkpoints in <run>/$LEARNER/

BASE2NEW_CFG=vit_b16_c2_ep5_batch4_4
XD_CFG=vit_b16_c2_ep5_batch4_4  # upstream has no cross-dataset recipe: the base-to-new one (5 epochs)

TOY_CFG=toy_clip
DEMO_SEEDS=1

# The methods table and make demo (tools/methods.py reads these):
ORDER=70  # position in the tables and the demo
DESCRIPTION="VPT"
LEARNS="deep visual prompts: 73,728"
DOCS=docs/methods.md#vpt
