"""MaPLe: multi-modal prompt learning (Khattak et al., CVPR 2023), a baseline of ALIGN's paper.

One text prompt, shallow and deep, whose visual prompts are its images through linear maps:

- ``MaPLeCLIP``: the frozen CLIP with a ``CoupledPromptLearner`` (trainers/deep_prompts.py, the
  learner ALIGN uses with T prompts); one set of text features for all images.
- ``MaPLe``: the trainer (``TRAINER.MAPLE``); the learner is registered as
  "MultiModalPromptLearner", the upstream name (checkpoint folder).

Differences from the upstream code: every precision runs (upstream runs only under fp16: fp32 and
amp fail on its float16 ``proj``), the widths are read from the backbone (upstream hard-codes
ViT-B's 512 and 768), a depth above the backbone's blocks is refused (upstream creates deep
prompts that are never used), and the text features are computed once per evaluation.
"""

import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from .base import PromptTrainer, check_method_keys
from .deep_prompts import CoupledPromptLearner, context_prefix
from .prompting import PromptedCLIP

LEARNER_NAME = "MultiModalPromptLearner"


def add_config(cfg):
    """TRAINER.MAPLE with the upstream keys and defaults."""
    node = CN()
    # Context tokens of the prompt: 16 as in ALIGN's train.py (MaPLe's own says 2; every shipped
    # config sets 2, and with more than 4 tokens CTX_INIT is not used)
    node.N_CTX = 16
    # Initial words, used when N_CTX <= 4: the context starts from their first N_CTX embeddings
    # and the sentence reads the whole text ("[v1][v2] of a {class}." for N_CTX 2); otherwise
    # random context and "X X ... {class}."
    node.CTX_INIT = "a photo of a"
    node.PREC = "fp16"  # fp16 (upstream, GPU) | fp32 | amp | bf16; CPU: fp16/amp -> fp32
    node.PROMPT_DEPTH = 9  # J: prompts enter blocks 0..J-1 of both towers (1 = the input only)
    cfg.TRAINER.MAPLE = node


def check_config(cfg):
    """Validate TRAINER.MAPLE; raises ConfigError naming the key."""
    node = cfg.TRAINER.MAPLE
    check_method_keys(
        "TRAINER.MAPLE",
        node,
        [
            ("N_CTX", node.N_CTX >= 1, ">= 1"),
            ("PROMPT_DEPTH", node.PROMPT_DEPTH >= 1, ">= 1 (1 = shallow prompts only)"),
        ],
    )


class MaPLeCLIP(PromptedCLIP):
    """The frozen CLIP with MaPLe's coupled prompts; ``forward(image) -> logits (B, C)``.

    Text: [SOS][ctx][suffix] for every class, the deep text prompts overwriting positions
    1..n_ctx at the input of blocks 1..J-1. Image: proj(ctx) appended after the patch tokens, the
    projected deep prompts overwriting those last n_ctx tokens at the input of blocks 1..J-1.
    """

    def __init__(self, clip_model, classnames, n_ctx, ctx_init, depth):
        prefix, from_words = context_prefix(ctx_init, n_ctx)
        learner = CoupledPromptLearner(
            clip_model,
            classnames,
            [prefix],
            [from_words],
            n_ctx,
            depth,
            depth_key="TRAINER.MAPLE.PROMPT_DEPTH",
            stacked=False,
        )
        super().__init__(clip_model, learner)

    def encode_text(self):
        """(C, D) L2-normalised text features of the prompted sentences."""
        learner = self.prompt_learner
        embeddings, deep = learner.text_inputs()
        features = self.clip.encode_text(learner.tokenized, prompt_embeddings=embeddings, deep_prompts=deep or None)
        return F.normalize(features, dim=-1)

    def forward(self, image):
        """image: (B, 3, R, R) -> logits (B, C) = exp(logit_scale) * cosine similarities."""
        shallow, deep = self.prompt_learner.vision_prompts(image.shape[0])  # (B, n_ctx, d_v) each
        image_features = self.clip.encode_image(
            image.type(self.dtype), shallow_prompts=shallow, deep_prompts=deep or None
        )
        image_features = F.normalize(image_features, dim=-1)
        return self.clip.logit_scale.exp() * image_features @ self.text_features().t()


@TRAINER_REGISTRY.register()
class MaPLe(PromptTrainer):
    """MaPLe prompt tuning (TRAINER.MAPLE)."""

    CONFIG_NODE = "MAPLE"
    LEARNER_NAME = LEARNER_NAME
    CHECKPOINT_KEYS = ("N_CTX", "PROMPT_DEPTH")

    def check_cfg(self, cfg):
        check_config(cfg)

    def build_prompted_model(self, clip_model, classnames):
        node = self.method_cfg
        print(f"Building MaPLe (n_ctx = {node.N_CTX}, depth = {node.PROMPT_DEPTH}, precision = {self.precision.name})")
        return MaPLeCLIP(clip_model, classnames, node.N_CTX, node.CTX_INIT, node.PROMPT_DEPTH)
