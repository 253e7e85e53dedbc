# IVLP (independent vision-language prompting): what scripts/lib/protocols.sh needs to run its
# protocols (read by the scripts here). Language prompting (the same trainer, text prompts only):
# scripts/lp/.
METHOD=IVLP
TRAINER=IVLP
CONFIG_DIR=configs/trainers/IVLP
LEARNER=VLPromptLearner  # the registered module: checkpoints live in <run>/$LEARNER/

BASE2NEW_CFG=vit_b16_c2_ep5_batch4_2+2ctx
XD_CFG=vit_b16_c2_ep5_batch4_2+2ctx  # upstream has no cross-dataset recipe: the base-to-new one (5 epochs)

TOY_CFG=toy_clip
DEMO_SEEDS=1

# The methods table and make demo (tools/methods.py reads these):
ORDER=60  # position in the tables and the demo
DESCRIPTION="IVLP"
LEARNS="independent deep prompts: 30,720"
DOCS=docs/methods.md#ivlp-and-language-prompting
