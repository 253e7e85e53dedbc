"""The learned prompts of the deep-prompt methods (MaPLe, IVLP, VPT, and ALIGN's coupled prompts).

- ``context_prefix`` and ``text_context``: how a learned text context starts (init words or random).
- ``CoupledPromptLearner``: text prompts, shallow and deep, whose visual prompts are their images
  through linear maps (MaPLe's coupling); ALIGN's learner is the same with T prompts.
- ``VisualPrompts``: free visual prompts, one appended after the patch tokens and one per deeper
  block (IVLP's vision side, VPT).
- ``upstream_block_prompt_key``: upstream IVLP/VPT checkpoints keep those per-block prompts inside
  the CLIP blocks (``...resblocks.{k}.VPT_shallow``); this maps them onto the learners' keys.
- ``vision_width``, ``check_depth``: the model checks these methods share, each error naming
  the key.

Prompt depth J counts the input: J = 1 is a shallow prompt only, and for k = 1..J-1 the deep
prompt k-1 overwrites the prompt positions at the input of block k (the frozen CLIP's
``encode_text`` / ``encode_image`` do the writing; they cast prompts to the tower's dtype).
"""

import copy
import re

import torch
from torch import nn

from clip.model import VisionTransformer
from dassl.config import ConfigError

from .prompting import class_sentences, placeholder_prefix, random_context, register_sentence_buffers, word_context

# The upstream rule: init words are used only for contexts of at most this many tokens.
MAX_INIT_WORDS_CONTEXT = 4


def vision_width(clip_model, key):
    """The ViT's width d_v; visual prompts are tokens, so a ResNet image tower is refused naming ``key``."""
    if not isinstance(clip_model.visual, VisionTransformer):
        raise ConfigError(
            f"{key} asks for visual prompts, which need a ViT image tower (prompts are extra tokens); "
            f"the backbone has a ResNet: use a ViT (e.g. MODEL.BACKBONE.NAME ViT-B/16)"
        )
    return clip_model.visual.width


def check_depth(depth, transformer, key):
    """Refuse a prompt depth above the blocks of ``transformer`` (prompts would enter missing blocks)."""
    n_blocks = len(transformer.resblocks)
    if depth > n_blocks:
        raise ConfigError(f"{key} = {depth} exceeds the {n_blocks} transformer blocks of the backbone")


def context_prefix(ctx_init, n_ctx):
    """(prefix, from_words): the text read before the class name, and whether the context starts
    from its words.

    The init words (underscores read as spaces) are used when given and n_ctx <= 4; the prefix is
    then the WHOLE init text, so with n_ctx 2 and "a photo of a" the learned "a photo" is followed
    by the fixed words "of a". Otherwise (no words, or a longer context) the context starts random
    and the prefix is n_ctx placeholders "X" that only reserve positions.
    """
    words = ctx_init.replace("_", " ").strip()
    if words and n_ctx <= MAX_INIT_WORDS_CONTEXT:
        return words, True
    return placeholder_prefix(n_ctx), False


def text_context(clip_model, prefixes, init_words, n_ctx):
    """(P, n_ctx, d_t) initial contexts in the CLIP's dtype, P = len(prefixes).

    Row p holds the embeddings of the first n_ctx tokens of prefixes[p] where init_words[p], else
    normal(0, 0.02) (drawn for all rows first, so the random stream does not depend on the words).
    """
    d_text = clip_model.ln_final.weight.shape[0]
    ctx = random_context(len(prefixes), n_ctx, d_text, dtype=clip_model.dtype)
    for p, from_words in enumerate(init_words):
        if from_words:
            ctx[p] = word_context(clip_model, prefixes[p], n_ctx).to(clip_model.dtype)
    return ctx


def sentence_embeddings(token_prefix, ctx, token_suffix):
    """[SOS][ctx][suffix] input embeddings (N, L, d_t).

    token_prefix (N, 1, d_t), token_suffix (N, L-1-n, d_t): rows class-major over P prompts
    (row = c * P + p); ctx (P, n, d_t) is repeated over the N / P classes.
    """
    ctx = ctx.repeat(token_prefix.shape[0] // ctx.shape[0], 1, 1)
    return torch.cat([token_prefix, ctx, token_suffix], dim=1)


class CoupledPromptLearner(nn.Module):
    """P text prompts, shallow and deep, and their visual images through linear maps.

    MaPLe has one prompt (P = 1, ``stacked=False``: its tensors have no prompt dimension, as the
    upstream ones); ALIGN has T (``stacked=True``, tensors (T, ...)). Learned tensors under the
    upstream names, so upstream checkpoints load; d_t / d_v are the backbone's text / vision widths:
        ctx: ([P,] n_ctx, d_t) shallow text prompts, in the CLIP's dtype.
        proj: Linear(d_t -> d_v), in the CLIP's dtype; the shallow visual prompts are proj(ctx).
        compound_prompts_text: J-1 tensors ([P,] n_ctx, d_t) float32, the deep text prompts of
            blocks 1..J-1.
        compound_prompt_projections: J-1 Linear(d_t -> d_v) float32, their visual images. They
            start as copies of ONE initialised Linear (identical weights and biases), as upstream.
    Under PREC fp16 (float16 CLIP) ``ctx`` and ``proj`` are float16 and train in half precision
    while the deep tensors stay float32, as the upstream learner stores them; other precisions
    store all in float32. Class-dependent inputs are non-persistent buffers (``set_classnames``).
    """

    def __init__(self, clip_model, classnames, prefixes, init_words, n_ctx, depth, depth_key, stacked):
        """prefixes / init_words: per prompt, from ``context_prefix``; depth_key names J in errors."""
        super().__init__()
        if not stacked and len(prefixes) != 1:
            raise ValueError(f"an unstacked learner holds one prompt, got {len(prefixes)} prefixes")
        d_vision = vision_width(clip_model, depth_key)
        for tower in (clip_model.transformer, clip_model.visual.transformer):
            check_depth(depth, tower, depth_key)
        dtype = clip_model.dtype
        d_text = clip_model.ln_final.weight.shape[0]
        self.n_ctx = n_ctx
        self.n_prompts = len(prefixes)
        self.stacked = stacked
        self.prefixes = list(prefixes)

        ctx = text_context(clip_model, prefixes, init_words, n_ctx)
        self.ctx = nn.Parameter(ctx if stacked else ctx[0])
        self.proj = nn.Linear(d_text, d_vision).to(dtype)
        prompt_shape = (self.n_prompts, n_ctx, d_text) if stacked else (n_ctx, d_text)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(random_context(*prompt_shape)) for _ in range(depth - 1)]
        )
        projection = nn.Linear(d_text, d_vision)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(projection) for _ in range(depth - 1)])
        self.set_classnames(classnames, clip_model)

    def set_classnames(self, classnames, clip_model):
        """Buffers for "{prefix_p} {class}." of every class and prompt (row = c*P + p):
        ``tokenized`` (C*P, L), ``token_prefix`` (C*P, 1, d_t), ``token_suffix`` (C*P, L-1-n_ctx, d_t)."""
        self.n_classes = len(classnames)
        register_sentence_buffers(self, clip_model, class_sentences(classnames, self.prefixes), self.n_ctx)

    def _per_prompt(self, tensor):
        """A tensor with the prompt dimension: (P, ...), also for the unstacked (MaPLe) layout."""
        return tensor if self.stacked else tensor.unsqueeze(0)

    def text_inputs(self):
        """Prompted text embeddings (C*P, L, d_t) and deep text prompts, J-1 x (C*P, n_ctx, d_t)."""
        embeddings = sentence_embeddings(self.token_prefix, self._per_prompt(self.ctx), self.token_suffix)
        deep = [self._per_prompt(prompt).repeat(self.n_classes, 1, 1) for prompt in self.compound_prompts_text]
        return embeddings, deep

    def vision_prompts(self, n_images):
        """Shallow (B*P, n_ctx, d_v) and deep (J-1 x (B*P, n_ctx, d_v)) visual prompts, row b*P + p."""
        shallow = self._per_prompt(self.proj(self.ctx)).repeat(n_images, 1, 1)
        deep = [
            self._per_prompt(layer(prompt)).repeat(n_images, 1, 1)
            for layer, prompt in zip(self.compound_prompt_projections, self.compound_prompts_text)
        ]
        return shallow, deep


class VisualPrompts(nn.Module):
    """Free visual prompts (IVLP's vision side, VPT), float32 as upstream stores them.

    shallow: (n, d_v), appended after the class and patch tokens (no positional embedding).
    deep: J-1 tensors (n, d_v); entry k-1 overwrites those n last tokens at the input of block k.
    All start from normal(0, 0.02); d_v is the backbone's vision width.
    """

    def __init__(self, clip_model, n_ctx, depth, depth_key):
        """depth (J >= 1) and depth_key (its config key, named in errors)."""
        super().__init__()
        d_vision = vision_width(clip_model, depth_key)
        check_depth(depth, clip_model.visual.transformer, depth_key)
        self.shallow = nn.Parameter(random_context(n_ctx, d_vision))
        self.deep = nn.ParameterList([nn.Parameter(random_context(n_ctx, d_vision)) for _ in range(depth - 1)])

    def encode(self, clip_model, images):
        """images: (B, 3, R, R) -> (B, D) image features (not normalised) through the prompted tower."""
        return clip_model.encode_image(images, shallow_prompts=self.shallow, deep_prompts=list(self.deep) or None)


# Upstream IVLP/VPT keys of per-block prompts: "<tower>.transformer.resblocks.<k>.VPT_shallow".
_BLOCK_PROMPT = re.compile(r"(text_encoder|image_encoder)\.transformer\.resblocks\.(\d+)\.VPT_shallow")
_UPSTREAM_SHALLOW_VISUAL = "image_encoder.VPT"


def upstream_block_prompt_key(key, text_deep=None, visual=None):
    """The learner key of an upstream IVLP/VPT full-model key, or None for a frozen CLIP entry.

    Upstream keeps the prompts inside its CLIP: ``image_encoder.VPT`` (the shallow visual prompt)
    and ``{text,image}_encoder.transformer.resblocks.{k}.VPT_shallow`` (despite the name, the deep
    prompt entering block k, k >= 1).
    Args:
        text_deep: the learner's key of its deep text prompt list (e.g. "deep_text_prompts"), or
            None when it has no text prompts.
        visual: the learner's key prefix of its ``VisualPrompts`` ("visual." or "" when the
            learner is one), or None when it has none.
    A prompt key the learner cannot hold (block 0, a tower it does not prompt) is returned as it
    is, so that the loader reports it as an entry the model does not have instead of dropping it.
    """
    if key == _UPSTREAM_SHALLOW_VISUAL:
        return key if visual is None else visual + "shallow"
    match = _BLOCK_PROMPT.fullmatch(key)
    if match is None:
        return key if "VPT" in key else None
    tower, block = match.group(1), int(match.group(2))
    target = text_deep + "." if tower == "text_encoder" and text_deep is not None else None
    if tower == "image_encoder" and visual is not None:
        target = visual + "deep."
    return key if target is None or block == 0 else f"{target}{block - 1}"
