"""Prompt-learning methods on a frozen CLIP; importing this package registers the trainers.

- ``align``: ALIGN (registered as "ALIGN" and, with the official config keys, "MMP").
- ``zsclip``: zero-shot CLIP ("ZeroshotCLIP", and "ZeroshotCLIP2" with a template ensemble), the
  baseline of every protocol.
- ``coop`` ("CoOp") and ``cocoop`` ("CoCoOp"): learned text context, without and with an
  image-conditioned shift.
- ``maple`` ("MaPLe"), ``ivlp`` ("IVLP", also "language prompting") and ``vpt`` ("VPT"): the
  deep-prompt baselines; ``deep_prompts``: their learned prompt modules (ALIGN's learner is
  MaPLe's coupled one with T prompts).
- ``base``: ``PromptTrainer``, the trainer plumbing every prompt-learning method shares;
  ``prompting``: the model-side shared pieces (sentences, contexts, the text cache);
  ``checkpoints``: loading learned prompts (this project's files and upstream full models);
  ``backbone``: the frozen CLIP named by MODEL.BACKBONE.
- ``ot`` (hierarchical OT) and ``sinkhorn`` (the batched solver): pure tensor code.

A method module that has config keys defines ``add_config(cfg)``, which adds its
``TRAINER.<NODE>`` node; ``add_method_configs`` (called by train.py) adds them all.
"""

from . import align, cocoop, coop, ivlp, maple, vpt, zsclip

METHOD_MODULES = (align, coop, cocoop, maple, ivlp, vpt)


def add_method_configs(cfg):
    """Add every method's TRAINER.<NODE> config node(s) to ``cfg``."""
    for module in METHOD_MODULES:
        module.add_config(cfg)
