# ALIGN: what scripts/lib/protocols.sh needs to run its protocols (read by the scripts here).
# The official trainer name MMP, with the official configs and keys: scripts/mmp/.
METHOD=ALIGN
TRAINER=ALIGN
CONFIG_DIR=configs/trainers/ALIGN
LEARNER=MultiModalPromptLearner  # the registered module: checkpoints live in <run>/$LEARNER/

BASE2NEW_CFG=vit_b16_c2_ep20_batch4_2ctx  # the official recipe (20 epochs, despite its official name "ep5")
BASE2NEW_CFG_sun397=vit_b16_c2_ep20_batch4_2ctx_sun397  # T = V = 2 prompts, LR 0.002
XD_CFG=vit_b16_c2_ep20_batch4_2ctx_xd
# Few-shot: the epoch count depends on the shots, as the official train.py forced it (here written
# in the configs): 1 shot 30 epochs, 2 or 4 shots 50, 8 or 16 shots 80; ImageNet always 20.
FEWSHOT_CFG=vit_b16_c2_ep80_batch4_2ctx_fewshot
FEWSHOT_CFG_1shots=vit_b16_c2_ep30_batch4_2ctx_fewshot
FEWSHOT_CFG_2shots=vit_b16_c2_ep50_batch4_2ctx_fewshot
FEWSHOT_CFG_4shots=vit_b16_c2_ep50_batch4_2ctx_fewshot
FEWSHOT_CFG_imagenet=vit_b16_c2_ep20_batch4_2ctx_xd

TOY_CFG=toy_clip
DEMO_SEEDS="1 2 3"

# The methods table and make demo (tools/methods.py reads these):
ORDER=100  # position in the tables and the demo
DESCRIPTION="ALIGN"
LEARNS="T = V = 4 coupled deep prompts: 3,582,720"
DOCS=docs/method.md#align-what-the-model-computes
