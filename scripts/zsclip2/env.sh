# Zero-shot CLIP with prompt ensembling (7 ImageNet templates + the dataset's own): what
# scripts/lib/protocols.sh needs. No training, as scripts/zsclip/ (ZeroshotCLIP): base2new_train.sh
# evaluates the base classes (into test_base/), base2new_test.sh the new ones; xd_train.sh has
# nothing to do, xd_test.sh evaluates a target. The seed only names the folder.
METHOD=ZeroshotCLIP2
TRAINER=ZeroshotCLIP2
CONFIG_DIR=configs/trainers/CoOp  # CoOp's recipes: only their backbone and input settings are read
LEARNER=

BASE2NEW_CFG=vit_b16
XD_CFG=vit_b16

TOY_CFG=toy_clip

# The methods table and make demo (tools/methods.py reads these):
ORDER=11  # position in the tables and the demo
DESCRIPTION="zero-shot CLIP, 7 + 1 templates"
LEARNS="nothing"
DOCS=docs/methods.md#zero-shot-clip-zeroshotclip-and-zeroshotclip2
