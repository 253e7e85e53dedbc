# Zero-shot CLIP (one hand-written template per dataset): what scripts/lib/protocols.sh needs.
# No training: base2new_train.sh evaluates the base classes (into test_base/), base2new_test.sh
# the new ones; xd_train.sh has nothing to do, xd_test.sh evaluates a target. The seed only names
# the folder (zero-shot CLIP draws nothing), so that the results sit beside the trained methods'.
METHOD=ZeroshotCLIP
TRAINER=ZeroshotCLIP
CONFIG_DIR=configs/trainers/CoOp  # CoOp's recipes: only their backbone and input settings are read
LEARNER=

BASE2NEW_CFG=vit_b16
XD_CFG=vit_b16

TOY_CFG=toy_clip
DEMO_SEEDS=1

# The methods table and make demo (tools/methods.py reads these):
ORDER=10  # position in the tables and the demo
DESCRIPTION="zero-shot CLIP"
LEARNS="nothing"
DOCS=docs/methods.md#zero-shot-clip-zeroshotclip-and-zeroshotclip2
