# CoCoOp: what scripts/lib/protocols.sh needs to run its protocols (read by the scripts here).
# No few-shot recipe (the official repository has no few-shot protocol for CoCoOp): no fewshot.sh.
METHOD=CoCoOp
TRAINER=CoCoOp
CONFIG_DIR=configs/trainers/CoCoOp
LEARNER=prompt_learner  # the registered module: checkpoints live in <run>/$LEARNER/

BASE2NEW_CFG=vit_b16_c4_ep10_batch1_ctxv1  # the recipe of every official CoCoOp script
XD_CFG=vit_b16_c4_ep10_batch1_ctxv1

TOY_CFG=toy_clip
DEMO_SEEDS=1

# The methods table and make demo (tools/methods.py reads these):
ORDER=30  # position in the tables and the demo
DESCRIPTION="CoCoOp"
LEARNS="context + meta-net: 35,360"
DOCS=docs/methods.md#cocoop-conditional-context-optimisation
