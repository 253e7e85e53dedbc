# PLOT++: what scripts/lib/protocols.sh needs to run its protocols (read by the scripts here).
# Its training steps run two stages (stages.sh). plot-pp's own entry points, with their arguments
# and output layouts: main_visiononly.sh (stage 1), main_joint.sh (stage 2), evaluation.sh.
METHOD=PLOTPP
TRAINER=PLOTPP
CONFIG_DIR=configs/trainers/PLOTPP
LEARNER=prompt_learner  # the registered module: checkpoints live in <run>/$LEARNER/

# Base-to-new and cross-dataset (not in upstream, which has few-shot only), with upstream's epochs
# (200 at 16 shots, ImageNet 50); cross-dataset keeps ImageNet's templates on the targets.
BASE2NEW_CFG=vit_ep200
BASE2NEW_CFG_imagenet=vit
XD_CFG=vit_xd
# Few-shot (PLOT++'s protocol): the epochs upstream's train.py forced, written in the configs:
# 1 shot 50 epochs, 2 or 4 shots 100, otherwise 200; ImageNet 50. Both stages use them.
FEWSHOT_CFG=vit_ep200
FEWSHOT_CFG_1shots=vit
FEWSHOT_CFG_2shots=vit_ep100
FEWSHOT_CFG_4shots=vit_ep100
FEWSHOT_CFG_imagenet=vit

TOY_CFG=toy_clip
DEMO_SEEDS=1  # both stages and the tests: about 50 s on 2 CPU cores

# The methods table and make demo (tools/methods.py reads these):
ORDER=41  # position in the tables and the demo
DESCRIPTION="PLOT++"
LEARNS="M = 4 visual prompt sets: 6,144 (stage 1); + N = 4 text prompts: 14,336 (stage 2, n = 4)"
DOCS=docs/methods.md#plot-visual-prompt-sets-and-two-stages
