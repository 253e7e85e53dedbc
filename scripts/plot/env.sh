# PLOT: what scripts/lib/protocols.sh needs to run its protocols (read by the scripts here).
# plot-coop's own entry point, with its arguments and output layout: main.sh.
METHOD=PLOT
TRAINER=PLOT
CONFIG_DIR=configs/trainers/PLOT
LEARNER=prompt_learner  # the registered module: checkpoints live in <run>/$LEARNER/

# Base-to-new and cross-dataset (not in upstream, which has few-shot only): on ViT-B/16 like the
# other methods of the comparison table, with upstream's epochs (200 at 16 shots, ImageNet 50).
BASE2NEW_CFG=vit_b16
BASE2NEW_CFG_imagenet=vit_b16_ep50
XD_CFG=vit_b16_ep50_xd
# Few-shot (PLOT's protocol, RN50): the epochs and batches upstream's train.py forced, written in
# the configs: 1 shot 50 epochs, 2 or 4 shots 100, otherwise 200; ImageNet 50; batch 32 instead
# of 128 on OxfordFlowers, FGVCAircraft and StanfordCars.
FEWSHOT_CFG=rn50_ep200
FEWSHOT_CFG_1shots=rn50
FEWSHOT_CFG_2shots=rn50_ep100
FEWSHOT_CFG_4shots=rn50_ep100
FEWSHOT_CFG_imagenet=rn50
FEWSHOT_CFG_oxford_flowers=rn50_ep200_b32
FEWSHOT_CFG_oxford_flowers_1shots=rn50_b32
FEWSHOT_CFG_oxford_flowers_2shots=rn50_ep100_b32
FEWSHOT_CFG_oxford_flowers_4shots=rn50_ep100_b32
FEWSHOT_CFG_fgvc_aircraft=rn50_ep200_b32
FEWSHOT_CFG_fgvc_aircraft_1shots=rn50_b32
FEWSHOT_CFG_fgvc_aircraft_2shots=rn50_ep100_b32
FEWSHOT_CFG_fgvc_aircraft_4shots=rn50_ep100_b32
FEWSHOT_CFG_stanford_cars=rn50_ep200_b32
FEWSHOT_CFG_stanford_cars_1shots=rn50_b32
FEWSHOT_CFG_stanford_cars_2shots=rn50_ep100_b32
FEWSHOT_CFG_stanford_cars_4shots=rn50_ep100_b32

TOY_CFG=toy_clip
DEMO_SEEDS=1  # train + tests: about 25 s on 2 CPU cores

# The methods table and make demo (tools/methods.py reads these):
ORDER=40  # position in the tables and the demo
DESCRIPTION="PLOT"
LEARNS="N = 4 text prompts: 32,768 (RN50)"
DOCS=docs/methods.md#plot-prompt-learning-with-optimal-transport
