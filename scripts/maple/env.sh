# MaPLe: what scripts/lib/protocols.sh needs to run its protocols (read by the scripts here).
METHOD=MaPLe
TRAINER=MaPLe
CONFIG_DIR=configs/trainers/MaPLe
LEARNER=MultiModalPromptLearner  # the registered module: checkpoints live in <run>/$LEARNER/

BASE2NEW_CFG=vit_b16_c2_ep5_batch4_2ctx  # 5 epochs, MaPLe's recipe (the ALIGN repository's copy trains 10)
XD_CFG=vit_b16_c2_ep5_batch4_2ctx_cross_datasets  # depth 3, 2 epochs on ImageNet
# Few-shot (the ALIGN repository's scripts/maple/fst.sh): MaPLe's recipe with the epochs that
# repository's train.py forced, written in the configs: 1 shot 30, 2 or 4 shots 50, 8 or 16
# shots 80; ImageNet always 20.
FEWSHOT_CFG=vit_b16_c2_ep80_batch4_2ctx_fewshot
FEWSHOT_CFG_1shots=vit_b16_c2_ep30_batch4_2ctx_fewshot
FEWSHOT_CFG_2shots=vit_b16_c2_ep50_batch4_2ctx_fewshot
FEWSHOT_CFG_4shots=vit_b16_c2_ep50_batch4_2ctx_fewshot
FEWSHOT_CFG_imagenet=vit_b16_c2_ep20_batch4_2ctx_fewshot

TOY_CFG=toy_clip
DEMO_SEEDS=1

# The methods table and make demo (tools/methods.py reads these):
ORDER=50  # position in the tables and the demo
DESCRIPTION="MaPLe"
LEARNS="coupled deep prompts: 3,555,072"
DOCS=docs/methods.md#maple
