"""PLOT++ (plot-pp): PLOT with M shallow visual prompt sets and N template-initialised text prompts.

Each image goes through the prompted ViT once per visual prompt set (n_v tokens appended after the
patches): M class-token features, which the N text prompts of each class are transported to by
PLOT's optimal transport (trainers/plot.py). Trained in two stages
(docs/methods.md#plot-visual-prompt-sets-and-two-stages):

- stage 1 ("vision only", ``MODEL_UPD vision``, ``TRADE_OFF True``): the visual prompts learn,
  the text contexts stay at their templates; logits = OT + global term;
- stage 2 ("joint", ``MODEL_UPD joint``, ``TRADE_OFF False``): both learn, starting from the
  stage-1 file (``MODEL.INIT_WEIGHTS``, or upstream's ``PRETRAIN_DIR``); logits = OT only.

Parts: the templates per dataset (``TEMPLATES``), ``PLOTPPPromptLearner`` (``ctx`` and
``ctx_vision``, upstream's names), ``PLOTPPCLIP`` and the ``PLOTPP`` trainer (node
``TRAINER.PLOTPP``, checkpoint folder ``prompt_learner``). Upstream files hold the whole model
(``prompt_learner.ctx``, ``prompt_learner.ctx_vision``, the frozen CLIP beside): they load too.
"""

import torch.nn.functional as F
from torch import nn

from dassl.config import ConfigError
from dassl.engine import TRAINER_REGISTRY

from .base import PromptTrainer, check_method_keys, method_node
from .deep_prompts import vision_width
from .ot import OTSettings
from .plot import PromptOTCLIP, PromptSetLearner
from .prompting import placeholder_prefix, random_context

# The initial words of the N text prompts, per DATASET.NAME, in upstream's order (upstream's text,
# spaces included). n = the word count of the first one. The ImageNet variants take ImageNet's
# (upstream has none: they fail there); ToyShapes (the toy world) takes captions the toy CLIP saw.
_IMAGENET = ("a photo of a", "this is a photo ", "this is a", "one picture of a")
TEMPLATES = {
    "Caltech101": ("a photo of a", "this is a photo", "this is picture of", "one picture of a"),
    "DescribableTextures": (
        "a photo of a texture",
        "this is a photo texture",
        "this is a picture texture",
        "one picture of a texture",
    ),
    "EuroSAT": (
        "a centered satellite photo of",
        "a centered satellite picture of",
        "this is centered satellite photo of",
        "one centered satellite photo of a",
    ),
    "FGVCAircraft": (
        "a photo of an aircraft",
        "a picture of an aircraft",
        "this is aircraft picture of",
        "one picture of an aircraft",
    ),
    "Food101": ("a photo of a food", "this is a food photo", " this is food picture of", "one picture of a food"),
    "ImageNet": _IMAGENET,
    "ImageNetV2": _IMAGENET,
    "ImageNetSketch": _IMAGENET,
    "ImageNetA": _IMAGENET,
    "ImageNetR": _IMAGENET,
    # Flowers and Pets list one template twice: those two prompts start, and stay, equal.
    "OxfordFlowers": (
        "a photo of a flower",
        "one picture of a flower",
        "this is flower picture of",
        "one picture of a flower",
    ),
    "OxfordPets": ("a photo of a pet", "one picture of a pet", "this is pet picture of", "one picture of a pet"),
    "StanfordCars": ("a photo of a", "this is a photo ", "this is picture of", "one picture of a"),
    "SUN397": ("a photo of a", "this is a photo", "this is picture of", "one picture of a"),
    "UCF101": (
        "a photo of a person doing",
        "this is a photo people doing",
        "this is picture of people doing",
        "one picture of a person doing",
    ),
    "ToyShapes": ("a photo of a", "a picture of a", "an image of a", "a drawing of a"),
}

MODEL_UPD_CHOICES = ("", "joint", "vision")
# Upstream's freezing rule for MODEL_UPD "vision": the learner tensors whose name contains this.
VISION_ONLY_MARK = "vision"


def add_config(cfg):
    """TRAINER.PLOTPP with plot-pp's keys and defaults, and two of ours (TEMPLATES, STOP_PER_PROBLEM)."""
    node = method_node(cfg, "PLOTPP")
    node.N_CTX = 4  # n of random text contexts (CTX_INIT False); with templates n is their first one's word count
    node.CSC = False  # read nowhere, as upstream (the contexts are shared by all classes)
    node.CTX_INIT = True  # True: the text contexts start from the dataset's templates; False: random, "X X ..."
    node.PREC = "fp16"  # fp16 (upstream, GPU) | fp32 | amp | bf16; CPU: fp16/amp -> fp32. The OT runs in fp32
    node.CLASS_TOKEN_POSITION = "end"  # only "end" (read nowhere upstream)
    node.N = 4  # text prompts per class (prompts beyond the dataset's templates start random)
    node.TRADE_OFF = False  # add the global term exp(logit_scale) * mean image feature . pooled text feature
    node.M = 4  # visual prompt sets: each image goes through the image tower M times
    node.PRETRAIN_DIR = ""  # upstream's stage-1 file for stage 2 (as MODEL.INIT_WEIGHTS; set one of them)
    node.MODEL_UPD = ""  # "vision": only the visual prompts learn (stage 1); "" or "joint": both (stage 2)
    node.N_CTX_V = 2  # n_v, tokens of each visual prompt set
    # The dataset whose templates start the text contexts ("": DATASET.NAME's, upstream). A model
    # evaluated on other datasets (cross-dataset) keeps the templates it was trained with.
    node.TEMPLATES = ""
    # Sinkhorn's stopping rule: False = one rule for a whole batch (upstream); True = per (image, class)
    node.STOP_PER_PROBLEM = False


def template_dataset(cfg):
    """The dataset name whose templates the text contexts start from."""
    return cfg.TRAINER.PLOTPP.TEMPLATES or cfg.DATASET.NAME


def check_config(cfg):
    """Validate TRAINER.PLOTPP; raises ConfigError naming the key."""
    node = cfg.TRAINER.PLOTPP
    check_method_keys(
        "TRAINER.PLOTPP",
        node,
        [
            ("N", node.N >= 1, ">= 1"),
            ("M", node.M >= 1, ">= 1"),
            ("N_CTX_V", node.N_CTX_V >= 1, ">= 1"),
            ("N_CTX", node.CTX_INIT or node.N_CTX >= 1, ">= 1 when CTX_INIT is False"),
            ("CTX_INIT", isinstance(node.CTX_INIT, bool), "True (the dataset's templates) or False (random)"),
            ("CLASS_TOKEN_POSITION", node.CLASS_TOKEN_POSITION == "end", '"end"'),
            ("MODEL_UPD", node.MODEL_UPD in MODEL_UPD_CHOICES, f"one of {MODEL_UPD_CHOICES}"),
        ],
    )
    if node.CTX_INIT and template_dataset(cfg) not in TEMPLATES:
        key = "TRAINER.PLOTPP.TEMPLATES" if node.TEMPLATES else "DATASET.NAME"
        raise ConfigError(
            f"{key} = {template_dataset(cfg)!r} has no PLOT++ templates; known: {sorted(TEMPLATES)} (TEMPLATES in "
            f"trainers/plotpp.py; or set TRAINER.PLOTPP.TEMPLATES to one of them, or CTX_INIT False)"
        )
    if node.PRETRAIN_DIR and cfg.MODEL.INIT_WEIGHTS:
        raise ConfigError("TRAINER.PLOTPP.PRETRAIN_DIR and MODEL.INIT_WEIGHTS are both set: give the stage-1 file once")


def text_prompt_starts(templates, n_prompts, n_ctx):
    """(prefixes, init_words) of the N text prompts: template p while there is one (its first n_ctx
    tokens start ctx[p]), then "X X ..." with a random start. templates: () for CTX_INIT False."""
    prefixes = [templates[p] if p < len(templates) else placeholder_prefix(n_ctx) for p in range(n_prompts)]
    return prefixes, [p < len(templates) for p in range(n_prompts)]


class PLOTPPPromptLearner(PromptSetLearner):
    """PLOT's N text contexts plus M visual prompt sets.

    ctx: (N, n, d_t) and ctx_vision: (M, n_v, d_v), both in the CLIP's dtype (float16 under PREC
    fp16, as upstream); ctx_vision starts from normal(0, 0.02), d_v the backbone's vision width.
    """

    def __init__(self, clip_model, classnames, templates, n_prompts, n_ctx, n_sets, n_ctx_vision):
        prefixes, init_words = text_prompt_starts(templates, n_prompts, n_ctx)
        super().__init__(clip_model, classnames, prefixes, init_words, n_ctx)
        d_vision = vision_width(clip_model, "TRAINER.PLOTPP.M")
        self.ctx_vision = nn.Parameter(random_context(n_sets, n_ctx_vision, d_vision, dtype=clip_model.dtype))


def prompt_set_features(clip_model, images, prompt_sets):
    """images: (B, 3, R, R), prompt_sets: (M, n_v, d_v) -> (B, M, D) unnormalised features: the
    class token of each image through the tower with each prompt set appended (B*M passes, rows
    set-major as upstream's)."""
    n_sets, n_images = prompt_sets.shape[0], images.shape[0]
    features = clip_model.encode_image(
        images.repeat(n_sets, 1, 1, 1), shallow_prompts=prompt_sets.repeat_interleave(n_images, dim=0)
    )  # (M*B, D), row m * B + b
    return features.view(n_sets, n_images, -1).transpose(0, 1)


class PLOTPPCLIP(PromptOTCLIP):
    """PLOT++: the N text prompts of each class transported to the image's M prompted features."""

    def forward(self, image):
        """image: (B, 3, R, R) -> logits (B, C) float32. The global image feature (TRADE_OFF) is the
        normalised mean of the M raw features."""
        features = prompt_set_features(self.clip, image.type(self.dtype), self.prompt_learner.ctx_vision)
        return self.ot_logits(F.normalize(features, dim=-1), F.normalize(features.mean(dim=1), dim=-1))


@TRAINER_REGISTRY.register()
class PLOTPP(PromptTrainer):
    """PLOT++ prompt tuning (TRAINER.PLOTPP), on a ViT CLIP; MODEL_UPD picks the stage's tensors."""

    CONFIG_NODE = "PLOTPP"
    LEARNER_NAME = "prompt_learner"
    CHECKPOINT_KEYS = ("N", "M", "N_CTX_V", "CTX_INIT", "TEMPLATES", "N_CTX")

    def check_cfg(self, cfg):
        check_config(cfg)

    def is_trainable(self, name):
        """Stage 1 (MODEL_UPD "vision") trains the tensors named "...vision..." only (upstream's rule)."""
        return self.method_cfg.MODEL_UPD != "vision" or VISION_ONLY_MARK in name

    def build_prompted_model(self, clip_model, classnames):
        node = self.method_cfg
        templates = TEMPLATES[template_dataset(self.cfg)][: node.N] if node.CTX_INIT else ()
        n_ctx = len(templates[0].split()) if templates else node.N_CTX
        stage = "vision only" if node.MODEL_UPD == "vision" else "joint"
        print(
            f"Building PLOT++ (M = {node.M} visual prompt sets of {node.N_CTX_V} tokens, N = {node.N} text prompts "
            f"of n = {n_ctx} tokens, trains: {stage}, global term {'on' if node.TRADE_OFF else 'off'}, "
            f"Sinkhorn stopping {'per problem' if node.STOP_PER_PROBLEM else 'per batch'}, "
            f"precision = {self.precision.name})"
        )
        if templates:
            print(f"Initial contexts ({template_dataset(self.cfg)}): {list(templates)}")
        learner = PLOTPPPromptLearner(clip_model, classnames, templates, node.N, n_ctx, node.M, node.N_CTX_V)
        settings = OTSettings(hierarchical=False, stop_per_problem=node.STOP_PER_PROBLEM)
        model = PLOTPPCLIP(clip_model, learner, settings, node.TRADE_OFF)
        if node.PRETRAIN_DIR:  # upstream's key for MODEL.INIT_WEIGHTS: the same loading
            print(f"Initialising the learned prompts from {node.PRETRAIN_DIR} (TRAINER.PLOTPP.PRETRAIN_DIR)")
            self.load_learned(learner, node.PRETRAIN_DIR)
        return model
