# PromptSRC: what scripts/lib/protocols.sh needs to run its protocols (read by the scripts here).
# Beside the protocol steps, this folder has upstream's entry points with upstream's arguments:
# few_shot.sh, reproduce_base2novel_setting.sh, reproduce_few_shot.sh, reproduce_xd.sh.
METHOD=PromptSRC
TRAINER=PromptSRC
CONFIG_DIR=configs/trainers/PromptSRC
LEARNER=VLPromptLearner  # the registered module: checkpoints live in <run>/$LEARNER/

BASE2NEW_CFG=vit_b16_c2_ep20_batch4_4+4ctx  # 20 epochs, GPA mean 15 / std 1
# Upstream's xd_train.sh / xd_test.sh name a "..._ep5_..." file that does not exist; this is the
# file its reproduce_xd.sh uses (depth 3, 20 epochs, GPA mean 6 / std 10).
XD_CFG=vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets
# Few-shot: 50 epochs; GPA mean 30 / std 30, or mean 45 / std 5 for the five datasets where
# upstream's config says to edit its GPA lines.
FEWSHOT_CFG=vit_b16_c2_ep50_batch4_4+4ctx_few_shot
FEWSHOT_CFG_stanford_cars=vit_b16_c2_ep50_batch4_4+4ctx_few_shot_gpa45_5
FEWSHOT_CFG_oxford_flowers=vit_b16_c2_ep50_batch4_4+4ctx_few_shot_gpa45_5
FEWSHOT_CFG_fgvc_aircraft=vit_b16_c2_ep50_batch4_4+4ctx_few_shot_gpa45_5
FEWSHOT_CFG_dtd=vit_b16_c2_ep50_batch4_4+4ctx_few_shot_gpa45_5
FEWSHOT_CFG_eurosat=vit_b16_c2_ep50_batch4_4+4ctx_few_shot_gpa45_5

TOY_CFG=toy_clip
DEMO_SEEDS=1

# The methods table and make demo (tools/methods.py reads these):
ORDER=80  # position in the tables and the demo
DESCRIPTION="PromptSRC"
LEARNS="IVLP prompts, self-regulated, GPA: 46,080"
DOCS=docs/methods.md#promptsrc
