# ProGrad: what scripts/lib/protocols.sh needs to run its protocols (read by the scripts here).
METHOD=ProGrad
TRAINER=ProGrad
CONFIG_DIR=configs/trainers/ProGrad
LEARNER=prompt_learner  # the registered module: checkpoints live in <run>/$LEARNER/

# The recipes of ProGrad's own scripts (BeierZhu/Prompt-align; KgCoOp's repository ships the trainer
# and the configs only), RN50, 16 context tokens, LAMBDA 1. They train with 4 shots in base-to-new
# and on ImageNet for the distribution shifts: set SHOTS=4 for their runs (the default here is 16).
# Base-to-new: 100 epochs (ImageNet 50).
BASE2NEW_CFG=rn50_ep100
BASE2NEW_CFG_imagenet=rn50_ep50
# Cross-dataset / domain generalisation: the models learned on ImageNet (50 epochs).
XD_CFG=rn50_ep50
# Few-shot (its README): 1 shot 50 epochs, 2 and 4 shots 100, 8 and 16 shots 200 (on Flowers102, DTD
# and EuroSAT with 8 and 16 shots it used LAMBDA 0.8: CFG=rn50_lambda0.8); ImageNet 50, as CoOp.
FEWSHOT_CFG=rn50
FEWSHOT_CFG_1shots=rn50_ep50
FEWSHOT_CFG_2shots=rn50_ep100
FEWSHOT_CFG_4shots=rn50_ep100
FEWSHOT_CFG_imagenet=rn50_ep50

TOY_CFG=toy_clip
DEMO_SEEDS=1

# The methods table and make demo (tools/methods.py reads these):
ORDER=34  # position in the tables and the demo: after KgCoOp
DESCRIPTION="ProGrad"
LEARNS="text context: 8,192"
DOCS=docs/methods.md#prograd-prompt-aligned-gradient
