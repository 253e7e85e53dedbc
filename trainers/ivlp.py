"""IVLP: independent vision and language deep prompts (MaPLe's baseline), and "language prompting".

Text and image prompts are free tensors with no coupling. With PROMPT_DEPTH_VISION 0 there are no
visual prompts: the shipped "language prompting" config (a deep CoOp).

- ``VLPromptLearner``: the learned tensors (the upstream registered name, checkpoint folder).
- ``IVLPCLIP``: the frozen CLIP run with them; one set of text features for all images.
- ``IVLP``: the trainer (``TRAINER.IVLP``).

Upstream keeps the per-block prompts inside its CLIP blocks; ``IVLP.upstream_keys`` maps those
keys of its full-model checkpoints onto the learner's. Upstream casts every such prompt to float16
on entry whatever PREC says (under fp32 the values are rounded to float16 and promoted back); here
prompts take the tower's dtype, so that rounding happens under PREC fp16 only, where float16 is the
tower's dtype.
"""

import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from .base import PromptTrainer, check_method_keys
from .deep_prompts import (
    VisualPrompts,
    check_depth,
    context_prefix,
    sentence_embeddings,
    text_context,
    upstream_block_prompt_key,
)
from .prompting import PromptedCLIP, class_sentences, random_context, register_sentence_buffers

LEARNER_NAME = "VLPromptLearner"


def add_config(cfg):
    """TRAINER.IVLP with the upstream keys and defaults."""
    node = CN()
    node.N_CTX_VISION = 2  # visual prompt tokens (read only when PROMPT_DEPTH_VISION >= 1)
    node.N_CTX_TEXT = 2  # text context tokens
    # Initial words, used when N_CTX_TEXT <= 4: the context starts from their first N_CTX_TEXT
    # embeddings and the sentence reads the whole text; otherwise random and "X X ... {class}."
    node.CTX_INIT = "a photo of a"
    node.PREC = "fp16"  # fp16 (upstream, GPU) | fp32 | amp | bf16; CPU: fp16/amp -> fp32
    node.PROMPT_DEPTH_VISION = 9  # J_v: 0 = no visual prompts, 1 = appended tokens only, J = blocks 0..J-1
    node.PROMPT_DEPTH_TEXT = 9  # J_t >= 1: text prompts enter blocks 0..J_t-1
    cfg.TRAINER.IVLP = node


def check_config(cfg):
    """Validate TRAINER.IVLP; raises ConfigError naming the key."""
    check_prompt_keys(cfg.TRAINER.IVLP, "TRAINER.IVLP")


def check_prompt_keys(node, where, checks=()):
    """Validate the IVLP prompt keys (and PREC) of ``node``, the config node ``where`` (a method
    that runs IVLP's prompts under its own node, e.g. "TRAINER.PROMPTSRC"), then ``checks``.

    Raises ConfigError naming ``where``.KEY and its value.
    """
    vision = node.PROMPT_DEPTH_VISION >= 1
    check_method_keys(
        where,
        node,
        [
            ("N_CTX_TEXT", node.N_CTX_TEXT >= 1, ">= 1"),
            ("PROMPT_DEPTH_TEXT", node.PROMPT_DEPTH_TEXT >= 1, ">= 1 (for visual prompts only, use the VPT trainer)"),
            ("PROMPT_DEPTH_VISION", node.PROMPT_DEPTH_VISION >= 0, ">= 0 (0 = no visual prompts)"),
            ("N_CTX_VISION", not vision or node.N_CTX_VISION >= 1, ">= 1 when PROMPT_DEPTH_VISION >= 1"),
            *checks,
        ],
    )


class VLPromptLearner(nn.Module):
    """Free text and visual prompts; d_t / d_v are the backbone's widths.

    ctx: (n_t, d_t) shallow text context, in the CLIP's dtype (float16 under PREC fp16).
    deep_text_prompts: J_t-1 tensors (n_t, d_t) float32; entry k-1 overwrites positions 1..n_t
        at the input of text block k.
    visual: ``VisualPrompts`` (shallow (n_v, d_v) and J_v-1 deep, float32), or None when J_v = 0.
    The float32 tensors start from normal(0, 0.02); ``ctx`` as ``context_prefix`` says.
    Class-dependent inputs (``tokenized``, ``token_prefix``, ``token_suffix``) are non-persistent
    buffers, so a learner trained on base classes loads for new ones.
    """

    def __init__(
        self, clip_model, classnames, n_ctx_text, ctx_init, depth_text, n_ctx_vision, depth_vision, where="TRAINER.IVLP"
    ):
        """where: the config node of the keys, named in errors."""
        super().__init__()
        check_depth(depth_text, clip_model.transformer, f"{where}.PROMPT_DEPTH_TEXT")
        d_text = clip_model.ln_final.weight.shape[0]
        prefix, from_words = context_prefix(ctx_init, n_ctx_text)
        self.n_ctx = n_ctx_text
        self.prefix = prefix
        self.ctx = nn.Parameter(text_context(clip_model, [prefix], [from_words], n_ctx_text)[0])
        self.deep_text_prompts = nn.ParameterList(
            [nn.Parameter(random_context(n_ctx_text, d_text)) for _ in range(depth_text - 1)]
        )
        self.visual = None
        if depth_vision >= 1:
            self.visual = VisualPrompts(clip_model, n_ctx_vision, depth_vision, f"{where}.PROMPT_DEPTH_VISION")
        register_sentence_buffers(self, clip_model, class_sentences(classnames, [prefix]), n_ctx_text)


class IVLPCLIP(PromptedCLIP):
    """The frozen CLIP with IVLP's prompts; ``forward(image) -> logits (B, C)``."""

    def __init__(self, clip_model, classnames, node, where="TRAINER.IVLP"):
        """node: the validated config node ``where`` that holds IVLP's keys (TRAINER.IVLP, or the
        node of a method built on IVLP's prompts)."""
        learner = VLPromptLearner(
            clip_model,
            classnames,
            node.N_CTX_TEXT,
            node.CTX_INIT,
            node.PROMPT_DEPTH_TEXT,
            node.N_CTX_VISION,
            node.PROMPT_DEPTH_VISION,
            where,
        )
        super().__init__(clip_model, learner)

    def encode_text(self):
        """(C, D) L2-normalised features of [SOS][ctx][suffix] with the deep text prompts."""
        learner = self.prompt_learner
        embeddings = sentence_embeddings(learner.token_prefix, learner.ctx.unsqueeze(0), learner.token_suffix)
        deep = list(learner.deep_text_prompts) or None
        features = self.clip.encode_text(learner.tokenized, prompt_embeddings=embeddings, deep_prompts=deep)
        return F.normalize(features, dim=-1)

    def encode_image(self, image):
        """image: (B, 3, R, R) -> (B, D) L2-normalised features through the prompted image tower."""
        image = image.type(self.dtype)
        visual = self.prompt_learner.visual
        image_features = self.clip.encode_image(image) if visual is None else visual.encode(self.clip, image)
        return F.normalize(image_features, dim=-1)

    def similarity_logits(self, image_features, text_features):
        """(B, D), (C, D) normalised features -> logits (B, C) = exp(logit_scale) * cosines."""
        return self.clip.logit_scale.exp() * image_features @ text_features.t()

    def forward(self, image):
        """image: (B, 3, R, R) -> logits (B, C) = exp(logit_scale) * cosine similarities."""
        return self.similarity_logits(self.encode_image(image), self.text_features())


def upstream_keys(key):
    """Upstream IVLP checkpoint key -> learner key (per-block prompts), None for frozen entries."""
    return upstream_block_prompt_key(key, text_deep="deep_text_prompts", visual="visual.")


@TRAINER_REGISTRY.register()
class IVLP(PromptTrainer):
    """Independent vision-language prompting (TRAINER.IVLP); also "language prompting"."""

    CONFIG_NODE = "IVLP"
    LEARNER_NAME = LEARNER_NAME
    CHECKPOINT_KEYS = ("N_CTX_TEXT", "PROMPT_DEPTH_TEXT", "N_CTX_VISION", "PROMPT_DEPTH_VISION")

    upstream_keys = staticmethod(upstream_keys)

    def check_cfg(self, cfg):
        check_config(cfg)

    def build_prompted_model(self, clip_model, classnames):
        node = self.method_cfg
        vision = (
            f"n_ctx = {node.N_CTX_VISION}, depth = {node.PROMPT_DEPTH_VISION}"
            if node.PROMPT_DEPTH_VISION
            else "none (language prompting)"
        )
        print(
            f"Building IVLP (text: n_ctx = {node.N_CTX_TEXT}, depth = {node.PROMPT_DEPTH_TEXT}; vision: {vision}; "
            f"precision = {self.precision.name})"
        )
        return IVLPCLIP(clip_model, classnames, node)
