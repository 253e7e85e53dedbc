# KgCoOp: what scripts/lib/protocols.sh needs to run its protocols (read by the scripts here).
METHOD=KgCoOp
TRAINER=KgCoOp
CONFIG_DIR=configs/trainers/KgCoOp
LEARNER=prompt_learner  # the registered module: checkpoints live in <run>/$LEARNER/

# Every protocol runs upstream's recipe as its scripts call it: vit_b16_ep100_ctxv1 ("a photo of a",
# 100 epochs, batch 128) with W 8.0, in a file of its own so that the folder names the weight
# (upstream: TRAINER.COOP.W on the command line and folders shots_16_8.0). Upstream's scripts:
# base-to-new (16 shots, ImageNet included) and 4-shot all-class training (our few-shot protocol);
# it has no cross-dataset script: ours trains the same recipe on ImageNet.
BASE2NEW_CFG=vit_b16_ep100_ctxv1_w8
XD_CFG=vit_b16_ep100_ctxv1_w8
FEWSHOT_CFG=vit_b16_ep100_ctxv1_w8

TOY_CFG=toy_clip
DEMO_SEEDS=1

# The methods table and make demo (tools/methods.py reads these):
ORDER=32  # position in the tables and the demo: after CoCoOp
DESCRIPTION="KgCoOp"
LEARNS='text context from "a photo of a": 2,048'
DOCS=docs/methods.md#kgcoop-knowledge-guided-context-optimisation
