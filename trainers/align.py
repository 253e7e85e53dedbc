"""ALIGN: multi-mode token-level prompt alignment across modalities (NeurIPS 2023).

Behaviour of the official code (docs/method.md). Three parts:

- ``MultiModalPromptLearner``: the learned tensors. T textual prompts (shallow ``ctx`` and J-1
  deep ones) and their visual images through linear maps (MaPLe's coupling, V == T).
- ``ALIGNCLIP``: the frozen CLIP run with those prompts; image and text features (global and
  token-level) go through the hierarchical optimal transport of ``trainers/ot.py`` to logits.
- ``ALIGN`` (and its alias ``MMP``, the official trainer name reading ``TRAINER.MMP``): the
  trainer, on the shared ``PromptTrainer``.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.config import ConfigError
from dassl.engine import TRAINER_REGISTRY

from .base import PromptTrainer, check_method_keys
from .deep_prompts import MAX_INIT_WORDS_CONTEXT, CoupledPromptLearner, context_prefix
from .ot import OTNumericalError, OTSettings, OTSettingsError, hierarchical_ot
from .prompting import PromptedCLIP

TEXT_TOKEN_MODES = ("reference", "per_prompt")

# The registered name of the learned module: the official trainer's, so output folders match.
LEARNER_NAME = "MultiModalPromptLearner"


def align_config_node():
    """The config node of ALIGN (TRAINER.ALIGN) and of its official name MMP (TRAINER.MMP)."""
    node = CN()
    node.N_CTX = 2  # context tokens per prompt
    # Initial words, one piece per textual prompt separated by TAB: prompt t's context starts
    # from the first N_CTX word embeddings of piece t and reads the whole piece. Prompts without
    # a piece, or whose piece is empty or blank (the official code then writes "" and its context
    # overwrites the class name: a defect), and all prompts when N_CTX > 4 or this is "", start
    # random and read "X X ... {class}."
    node.CTX_INIT = "a photo of a"
    node.PREC = "fp16"  # fp16 (the official recipe, GPU) | fp32 | amp | bf16; CPU: fp16/amp -> fp32
    node.TEXT_PROMPT_DEPTH = 9  # J: prompts enter blocks 0..J-1 of BOTH towers
    node.VISION_PROMPT_DEPTH = 9  # read nowhere, as in the official code (kept for its configs)
    node.TEXT_PROMPT_NUMBER = 4  # T textual prompts
    node.VISION_PROMPT_NUMBER = 4  # V visual prompts; must equal T (coupled prompts)
    node.HIERARCHICAL = True  # token-level OT feeds the prompt-level cost
    node.USECT = False  # conditional transport: cannot run in the official code; True is rejected
    node.EPS = 0.1  # entropic regularisation of both Sinkhorn levels
    node.OT_MAX_ITER = 100  # Sinkhorn iterations at most
    node.OT_THRESH = 0.01  # stop when mean |r - r_prev| over a group < this
    # How the token-level result enters the prompt-level cost: "similarity" adds s_tok (the
    # official code), "distance" adds 1 - s_tok (the paper's reading)
    node.TOKEN_COST = "similarity"
    # Text tokens of the token-level OT: "reference" slices every prompt of a class at prompt
    # 0's length (the official code), "per_prompt" takes each prompt's own tokens
    node.TEXT_TOKENS = "reference"
    node.TOKEN_WEIGHT = 1.0  # scale of the token-level term (the official code: 1)
    node.OT_MEMORY_MB = 1024.0  # budget of the token-level OT; chunks over classes
    return node


def add_config(cfg):
    """TRAINER.ALIGN and TRAINER.MMP: the same keys and defaults (the shipped recipe's values)."""
    cfg.TRAINER.ALIGN = align_config_node()
    cfg.TRAINER.MMP = align_config_node()


# OTSettings field -> config key, to name the key when a value is rejected.
_OT_KEYS = {
    "eps": "EPS",
    "max_iter": "OT_MAX_ITER",
    "thresh": "OT_THRESH",
    "hierarchical": "HIERARCHICAL",
    "token_cost": "TOKEN_COST",
    "token_weight": "TOKEN_WEIGHT",
    "memory_budget_mb": "OT_MEMORY_MB",
}


@dataclass(frozen=True)
class ALIGNSettings:
    """The method's settings, read from one config node and validated in one place."""

    n_ctx: int  # context tokens per prompt
    ctx_init: str  # TAB-separated initial words
    prec: str  # precision flag
    depth: int  # J
    n_prompts: int  # T = V
    text_tokens: str  # "reference" | "per_prompt"
    ot: OTSettings

    @classmethod
    def from_cfg(cls, cfg, node_name="ALIGN"):
        """Read and validate TRAINER.<node_name>; raises ConfigError naming the key."""
        node = cfg.TRAINER[node_name]
        where = "TRAINER." + node_name
        if node.USECT:
            raise ConfigError(
                f"{where}.USECT True is not supported: the conditional-transport branch of the "
                f"official code cannot run (it reads an attribute that is never defined). Set "
                f"{where}.USECT False (as every shipped config does)."
            )
        if node.TEXT_PROMPT_NUMBER != node.VISION_PROMPT_NUMBER:
            raise ConfigError(
                f"{where}.VISION_PROMPT_NUMBER ({node.VISION_PROMPT_NUMBER}) must equal "
                f"{where}.TEXT_PROMPT_NUMBER ({node.TEXT_PROMPT_NUMBER}): visual prompts are linear "
                f"images of the textual ones"
            )
        check_method_keys(
            where,
            node,
            [
                ("N_CTX", node.N_CTX >= 1, ">= 1"),
                ("TEXT_PROMPT_DEPTH", node.TEXT_PROMPT_DEPTH >= 1, ">= 1"),
                ("TEXT_PROMPT_NUMBER", node.TEXT_PROMPT_NUMBER >= 1, ">= 1"),
                ("TEXT_TOKENS", node.TEXT_TOKENS in TEXT_TOKEN_MODES, f"one of {TEXT_TOKEN_MODES}"),
            ],
        )
        try:
            ot = OTSettings(**{field: node[key] for field, key in _OT_KEYS.items()})
        except OTSettingsError as error:
            key = _OT_KEYS[error.field]
            raise ConfigError(f"{where}.{key} = {node[key]!r} is invalid: {error}") from None
        return cls(
            n_ctx=node.N_CTX,
            ctx_init=node.CTX_INIT,
            prec=node.PREC,
            depth=node.TEXT_PROMPT_DEPTH,
            n_prompts=node.TEXT_PROMPT_NUMBER,
            text_tokens=node.TEXT_TOKENS,
            ot=ot,
        )


def prompt_prefixes(ctx_init, n_ctx, n_prompts):
    """The text in front of the class name for each prompt, and which prompts start from words.

    Returns (prefixes, init_words): prefixes[t] is the whole CTX_INIT piece of prompt t, or
    "X X ..." (n_ctx X's) for a random prompt; init_words[t] is True where ctx[t] is initialised
    from the piece's first n_ctx word embeddings. An empty or blank piece gives a random prompt.
    """
    pieces = ctx_init.split("\t") if (ctx_init and n_ctx <= MAX_INIT_WORDS_CONTEXT) else []
    starts = [context_prefix(pieces[t] if t < len(pieces) else "", n_ctx) for t in range(n_prompts)]
    return [prefix for prefix, _ in starts], [from_words for _, from_words in starts]


class MultiModalPromptLearner(CoupledPromptLearner):
    """T textual prompts, shallow and deep, and their visual images (V == T): MaPLe's coupled
    learner with a prompt dimension.

    Learned tensors (the official names, so official checkpoints load), with d_t / d_v the
    backbone's text / vision widths: ``ctx`` (T, n_ctx, d_t) and ``proj`` Linear(d_t -> d_v) in the
    CLIP's dtype; ``compound_prompts_text`` J-1 x (T, n_ctx, d_t) and
    ``compound_prompt_projections`` J-1 x Linear(d_t -> d_v) in float32, the projections starting
    as copies of one Linear. See ``CoupledPromptLearner`` for the dtypes under each precision.
    """

    def __init__(self, settings, classnames, clip_model):
        prefixes, init_words = prompt_prefixes(settings.ctx_init, settings.n_ctx, settings.n_prompts)
        super().__init__(
            clip_model,
            classnames,
            prefixes,
            init_words,
            settings.n_ctx,
            settings.depth,
            depth_key="TEXT_PROMPT_DEPTH",
            stacked=True,
        )


@dataclass
class TextFeatures:
    """The text side of all classes.

    global_: (C, T, D) L2-normalised EOT features.
    tokens: (C, T, L, D) L2-normalised token features, padded.
    token_mask: (C, T, L) bool, True = a token kept for the token-level OT.
    """

    global_: torch.Tensor
    tokens: torch.Tensor
    token_mask: torch.Tensor


class ALIGNCLIP(PromptedCLIP):
    """The frozen CLIP with ALIGN's prompts; ``forward(image) -> logits (B, C)``."""

    def __init__(self, settings, classnames, clip_model):
        super().__init__(clip_model, MultiModalPromptLearner(settings, classnames, clip_model))
        self.settings = settings

    def encode_text(self):
        """Run the text tower on all C*T prompted sentences -> TextFeatures."""
        learner = self.prompt_learner
        n_classes, n_prompts = learner.n_classes, learner.n_prompts
        embeddings, deep = learner.text_inputs()
        tokens = self.clip.encode_text(
            learner.tokenized, prompt_embeddings=embeddings, deep_prompts=deep or None, return_tokens=True
        )  # (C*T, L, D), rows class-major, prompt-minor
        tokens = F.normalize(tokens, dim=-1).view(n_classes, n_prompts, tokens.shape[1], -1)
        eot = learner.tokenized.argmax(dim=-1).view(n_classes, n_prompts)  # (C, T)
        global_ = torch.gather(tokens, 2, eot[:, :, None, None].expand(-1, -1, 1, tokens.shape[-1])).squeeze(2)
        # Kept tokens: positions 0 .. e-2 (drops "." and EOT), where e is prompt 0's EOT for every
        # prompt of the class ("reference") or each prompt's own EOT ("per_prompt").
        last_kept = eot[:, :1].expand_as(eot) if self.settings.text_tokens == "reference" else eot
        last_kept = last_kept - 2
        length = int(last_kept.max()) + 1
        positions = torch.arange(length, device=eot.device)
        token_mask = positions[None, None, :] <= last_kept[:, :, None]
        return TextFeatures(global_=global_, tokens=tokens[:, :, :length], token_mask=token_mask)

    def encode_image(self, image):
        """image: (B, 3, R, R) -> global (B, V, D) and token (B, V, P, D) L2-normalised features.

        Each image is encoded once per visual prompt (rows b*V + v); the tokens are the patch
        tokens plus the prompt tokens (P = G*G + n_ctx).
        """
        n_images, n_prompts = image.shape[0], self.prompt_learner.n_prompts
        shallow, deep = self.prompt_learner.vision_prompts(n_images)
        images = image.type(self.dtype).repeat_interleave(n_prompts, dim=0)
        tokens = self.clip.encode_image(
            images, shallow_prompts=shallow, deep_prompts=deep or None, return_tokens=True
        )  # (B*V, 1 + P, D)
        tokens = F.normalize(tokens, dim=-1).view(n_images, n_prompts, tokens.shape[1], -1)
        return tokens[:, :, 0], tokens[:, :, 1:]

    def transport(self, image):
        """image: (B, 3, R, R) -> ``Transport``: logits (B, C) float32 and the prompt-level plan
        (B, C, V, T) (trainers/ot.py)."""
        img_global, img_tokens = self.encode_image(image)
        text = self.text_features()
        return hierarchical_ot(
            img_global,
            img_tokens,
            text.global_,
            text.tokens,
            text.token_mask,
            self.clip.logit_scale.exp(),
            self.settings.ot,
        )

    def forward(self, image):
        """image: (B, 3, R, R) -> logits (B, C) float32."""
        return self.transport(image).logits


@TRAINER_REGISTRY.register()
class ALIGN(PromptTrainer):
    """ALIGN prompt tuning. Reads TRAINER.ALIGN; the MMP alias reads the official TRAINER.MMP keys."""

    CONFIG_NODE = "ALIGN"
    LEARNER_NAME = LEARNER_NAME
    CHECKPOINT_KEYS = ("N_CTX", "TEXT_PROMPT_NUMBER", "TEXT_PROMPT_DEPTH")

    def check_cfg(self, cfg):
        ALIGNSettings.from_cfg(cfg, self.CONFIG_NODE)
        if cfg.MODEL.BACKBONE.NAME.startswith("RN") and not cfg.MODEL.BACKBONE.PATH:
            raise ConfigError(
                f"ALIGN needs a ViT backbone (token sequences for the token-level OT); got "
                f"MODEL.BACKBONE.NAME = {cfg.MODEL.BACKBONE.NAME}"
            )

    def build_prompted_model(self, clip_model, classnames):
        self.settings = ALIGNSettings.from_cfg(self.cfg, self.CONFIG_NODE)
        s = self.settings
        print(
            f"Building ALIGN (T = V = {s.n_prompts}, n_ctx = {s.n_ctx}, depth = {s.depth}, "
            f"precision = {self.precision.name})"
        )
        return ALIGNCLIP(s, classnames, clip_model)

    def run_model(self, model, image, stage):
        """As PromptTrainer's; a non-finite OT names the batch (epoch, batch, first image)."""
        try:
            return super().run_model(model, image, stage)
        except OTNumericalError as err:
            paths = list(self.batch_paths)
            batch = self.batch_idx + 1 if stage == "training" else "?"
            raise FloatingPointError(
                f"Non-finite optimal transport in {stage} (epoch {self.epoch + 1}, batch {batch}; "
                f"{len(paths)} images, first: {paths[0] if paths else '-'}): {err}"
            ) from err


@TRAINER_REGISTRY.register()
class MMP(ALIGN):
    """The official trainer's name: same method, configured by the official TRAINER.MMP keys."""

    CONFIG_NODE = "MMP"
