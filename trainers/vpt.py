"""VPT: deep visual prompts on a frozen CLIP (MaPLe's "deep vision prompting" baseline).

Not Jia et al.'s VPT: the prompts are appended after the patch tokens (not inserted after the
class token) and the classifier is CLIP's frozen text features of "a photo of a {class}." for
every dataset (not a linear head, not the dataset's zero-shot template).

- ``VPTCLIP``: the frozen CLIP with ``VisualPrompts`` (trainers/deep_prompts.py) as its learner.
- ``VPT``: the trainer (``TRAINER.VPT``); the learner is registered as "prompt_learner", the
  upstream folder name.

Differences from the upstream code: PREC is honoured (upstream always runs the CLIP in float32
whatever PREC says, and its amp branch crashes); the prompts take the tower's dtype, so they are
rounded to float16 under PREC fp16 only (upstream rounds them through float16 on entry even in
float32); the fixed text features are computed once on the training device instead of at build
time on the CPU. Upstream full-model checkpoints load through ``VPT.upstream_keys``.
"""

import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from .base import PromptTrainer, check_method_keys
from .deep_prompts import VisualPrompts, upstream_block_prompt_key
from .prompting import PromptedCLIP
from .text import FrozenTextFeatures, ensemble_text_features

LEARNER_NAME = "prompt_learner"
FIXED_TEMPLATE = "a photo of a {}."  # the text of every class, whatever the dataset and CTX_INIT


def add_config(cfg):
    """TRAINER.VPT with the upstream keys and defaults."""
    node = CN()
    node.N_CTX_VISION = 2  # visual prompt tokens
    node.CTX_INIT = "a photo of a"  # read nowhere, as upstream: the text is always "a photo of a {class}."
    node.PREC = "fp16"  # fp16 | fp32 | amp | bf16, honoured (upstream always runs fp32); CPU: fp16/amp -> fp32
    node.PROMPT_DEPTH_VISION = 1  # J >= 1: 1 = appended tokens only, J = prompts enter blocks 0..J-1
    cfg.TRAINER.VPT = node


def check_config(cfg):
    """Validate TRAINER.VPT; raises ConfigError naming the key."""
    node = cfg.TRAINER.VPT
    depth_ok = node.PROMPT_DEPTH_VISION >= 1
    check_method_keys(
        "TRAINER.VPT",
        node,
        [
            ("N_CTX_VISION", node.N_CTX_VISION >= 1, ">= 1"),
            ("PROMPT_DEPTH_VISION", depth_ok, ">= 1 (1 = appended tokens only)"),
        ],
    )


class VPTCLIP(PromptedCLIP):
    """The frozen CLIP with deep visual prompts and fixed text; ``forward(image) -> logits (B, C)``."""

    def __init__(self, clip_model, classnames, n_ctx, depth):
        learner = VisualPrompts(clip_model, n_ctx, depth, "TRAINER.VPT.PROMPT_DEPTH_VISION")
        super().__init__(clip_model, learner)
        self.fixed_text = FrozenTextFeatures(lambda clip: ensemble_text_features(clip, [FIXED_TEMPLATE], classnames))

    def encode_text(self):
        """(C, D) L2-normalised features of "a photo of a {class}." by the unprompted text tower,
        computed once (``trainers.text.FrozenTextFeatures``: on the model's device, outside autocast)."""
        return self.fixed_text.get(self.clip)

    def forward(self, image):
        """image: (B, 3, R, R) -> logits (B, C) = exp(logit_scale) * cosine similarities."""
        image_features = F.normalize(self.prompt_learner.encode(self.clip, image.type(self.dtype)), dim=-1)
        return self.clip.logit_scale.exp() * image_features @ self.text_features().t()


def upstream_keys(key):
    """Upstream VPT checkpoint key -> learner key (the visual prompts), None for frozen entries."""
    return upstream_block_prompt_key(key, visual="")


@TRAINER_REGISTRY.register()
class VPT(PromptTrainer):
    """Deep visual prompt tuning (TRAINER.VPT)."""

    CONFIG_NODE = "VPT"
    LEARNER_NAME = LEARNER_NAME
    CHECKPOINT_KEYS = ("N_CTX_VISION", "PROMPT_DEPTH_VISION")

    upstream_keys = staticmethod(upstream_keys)

    def check_cfg(self, cfg):
        check_config(cfg)

    def build_prompted_model(self, clip_model, classnames):
        node = self.method_cfg
        print(
            f"Building VPT (n_ctx = {node.N_CTX_VISION}, depth = {node.PROMPT_DEPTH_VISION}, "
            f'precision = {self.precision.name}; text: "{FIXED_TEMPLATE.format("{class}")}")'
        )
        return VPTCLIP(clip_model, classnames, node.N_CTX_VISION, node.PROMPT_DEPTH_VISION)
