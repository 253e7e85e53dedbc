# Language prompting (deep text prompts only, "Deep language prompting" in MaPLe's tables): the
# IVLP trainer with its language-only recipes. What scripts/lib/protocols.sh needs to run its
# protocols (read by the scripts here). Its recipe names differ from IVLP's (output folders and
# the results table tell the two apart by them).
METHOD=LanguagePrompting
TRAINER=IVLP
CONFIG_DIR=configs/trainers/IVLP
LEARNER=VLPromptLearner  # the registered module: checkpoints live in <run>/$LEARNER/

BASE2NEW_CFG=vit_b16_c2_ep5_batch4_4ctx_language_only
XD_CFG=vit_b16_c2_ep5_batch4_4ctx_language_only  # upstream has no cross-dataset recipe: the base-to-new one

TOY_CFG=toy_clip_language_only

# The methods table and make demo (tools/methods.py reads these):
ORDER=61  # position in the tables and the demo
DESCRIPTION="language prompting"
LEARNS="deep text prompts: 24,576"
DOCS=docs/methods.md#ivlp-and-language-prompting
