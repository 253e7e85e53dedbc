# CoOp: what scripts/lib/protocols.sh needs to run its protocols (read by the scripts here).
METHOD=CoOp
TRAINER=CoOp
CONFIG_DIR=configs/trainers/CoOp
LEARNER=prompt_learner  # the registered module: checkpoints live in <run>/$LEARNER/

# Base-to-new and cross-dataset: CoOp's own recipe for them (CoOp's repository runs it through its
# CoCoOp scripts): 4 context tokens started from "a photo of a", 200 epochs, ImageNet 50.
BASE2NEW_CFG=vit_b16_ctxv1
BASE2NEW_CFG_imagenet=vit_b16_ep50_ctxv1
XD_CFG=vit_b16_ep50_ctxv1
# Few-shot (CoOp's README): 16 random context tokens; 1 shot 50 epochs, 2 and 4 shots 100, 8 and
# 16 shots 200; ImageNet always 50.
FEWSHOT_CFG=vit_b16
FEWSHOT_CFG_1shots=vit_b16_ep50
FEWSHOT_CFG_2shots=vit_b16_ep100
FEWSHOT_CFG_4shots=vit_b16_ep100
FEWSHOT_CFG_imagenet=vit_b16_ep50

TOY_CFG=toy_clip
DEMO_SEEDS=1

# The methods table and make demo (tools/methods.py reads these):
ORDER=20  # position in the tables and the demo
DESCRIPTION="CoOp"
LEARNS='text context: 8,192 (2,048 from "a photo of a")'
DOCS=docs/methods.md#coop-context-optimisation
