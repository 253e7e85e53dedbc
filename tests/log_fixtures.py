# ruff: noqa: W291  (the log fixtures keep the trailing spaces that real logs have)
"""Logs in the engine's exact format, for the tests of parse_test_res.py and tools.results.

Each log carries what a real run prints before its result (arguments dump, config dump, env info,
dataset table, iteration lines, per-epoch val results as decoys), so the parser is checked on
whole logs, not on bare result blocks.
"""

import os


def preamble(output_dir, dataset="Caltech101", eval_only=False):
    """Everything a run prints before training: args, config, env info, dataset, model."""
    return f"""\
***************
** Arguments **
***************
backbone: 
config_file: configs/trainers/ALIGN/vit_b16_c2_ep5.yaml
dataset_config_file: configs/datasets/{dataset.lower()}.yaml
eval_only: {eval_only}
head: 
load_epoch: {5 if eval_only else None}
model_dir: {"output/base2new/train_base" if eval_only else ""}
no_train: False
opts: ['DATASET.NUM_SHOTS', '16', 'DATASET.SUBSAMPLE_CLASSES', '{"new" if eval_only else "base"}']
output_dir: {output_dir}
resume: 
root: /data
seed: 1
source_domains: None
target_domains: None
trainer: ALIGN
transforms: None
************
** Config **
************
DATALOADER:
  NUM_WORKERS: 8
  TEST:
    BATCH_SIZE: 100
    SAMPLER: SequentialSampler
DATASET:
  NAME: {dataset}
  NUM_SHOTS: 16
  SUBSAMPLE_CLASSES: {"new" if eval_only else "base"}
OPTIM:
  LR: 0.0035
  MAX_EPOCH: 5
TEST:
  COMPUTE_CMAT: False
  EVALUATOR: Classification
  FINAL_MODEL: best_val
  NO_TEST: False
  PER_CLASS_RESULT: True
  SPLIT: test
TRAINER:
  NAME: ALIGN
Collecting env info ...
** System info **
PyTorch version: 2.4.0
Is debug build: False
CUDA used to build PyTorch: 12.1
OS: Ubuntu 22.04.4 LTS (x86_64)
Python version: 3.10.14 (main) [GCC 11.4.0] (64-bit runtime)
Is CUDA available: True
Versions of relevant libraries:
[pip3] numpy==1.26.4
[pip3] torch==2.4.0
        Pillow (10.3.0)

Loading trainer: ALIGN
Loading dataset: {dataset}
Reading split from /data/{dataset.lower()}/split_zhou_{dataset}.json
Loading preprocessed few-shot data from /data/{dataset.lower()}/split_fewshot/shot_16-seed_1.pkl
SUBSAMPLE {"NEW" if eval_only else "BASE"} CLASSES!
Building transform_train
+ random resized crop (size=(224, 224), scale=(0.08, 1.0))
+ random flip
+ to torch tensor of range [0, 1]
+ normalization (mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711])
Building transform_test
+ resize the smaller edge to 224
+ 224x224 center crop
+ to torch tensor of range [0, 1]
+ normalization (mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711])
---------  ----------
Dataset    {dataset}
# classes  50
# train_x  800
# val      200
# test     1,549
---------  ----------
Loading CLIP (backbone: ViT-B/16)
Building custom CLIP
Turning off gradients in both the image and the text encoder
Parameters to be updated: {{'prompt_learner.ctx', 'prompt_learner.visual_ctx'}}
Loading evaluator: Classification
"""


def result_block(accuracy, macro_f1, split="test"):
    """The evaluator's printout in per-class mode, after the Evaluate line."""
    return f"""\
Evaluate on the *{split}* set
=> result
* total: 1,549
* correct: {round(15.49 * accuracy):,}
* accuracy: {accuracy:.1f}%
* error: {100 - accuracy:.1f}%
* macro_f1: {macro_f1:.1f}%
=> per-class result
* class: 0 (face)\ttotal: 40\tcorrect: 39\tacc: 97.5%
* class: 1 (leopard)\ttotal: 20\tcorrect: 20\tacc: 100.0%
* average: 12.3%
"""


def training_log(output_dir, accuracy, macro_f1=None, end_lines=("Finish training",), finished=True):
    """A training run with best_val: val results each epoch (decoys), then the final test."""
    macro_f1 = accuracy - 0.5 if macro_f1 is None else macro_f1
    text = preamble(output_dir) + f"Initialize tensorboard (log_dir={output_dir}/tensorboard)\n"
    for epoch in (1, 2):
        for batch in (1, 2):
            text += (
                f"epoch [{epoch}/2] batch [{batch}/2] time 0.104 (0.121) data 0.000 (0.018) "
                f"loss 1.0493 (1.1320) acc 65.6250 (62.5000) lr 1.9961e-03 eta 0:00:52\n"
            )
        text += result_block(11.0 + epoch, 10.0, split="val")
        text += f"Checkpoint saved to {output_dir}/prompt_learner/model-best.pth.tar\n"
    if not finished:
        return text
    text += "".join(line + "\n" for line in end_lines)
    text += "Deploy the model with the best val performance\n"
    text += f'Loading weights to prompt_learner from "{output_dir}/prompt_learner/model-best.pth.tar" (epoch = 2)\n'
    text += result_block(accuracy, macro_f1)
    return text + "Elapsed: 0:01:02\n"


def eval_only_log(output_dir, accuracy, macro_f1=None):
    """An --eval-only run: no Finish line, one result block."""
    macro_f1 = accuracy - 0.5 if macro_f1 is None else macro_f1
    text = preamble(output_dir, eval_only=True)
    text += f'Loading weights to prompt_learner from "{output_dir}/prompt_learner/model.pth.tar-5" (epoch = 5)\n'
    return text + result_block(accuracy, macro_f1)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path
