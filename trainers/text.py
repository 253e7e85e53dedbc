"""Text pieces the methods share: dataset templates, frozen class text features, CoOp's context rule.

- Templates: ``CUSTOM_TEMPLATES`` (ZeroshotCLIP's hand-written template per dataset, keyed by the
  registered dataset name) and ``IMAGENET_TEMPLATES_SELECT`` (the 7 ImageNet templates OpenAI
  selected for prompt ensembling). A method with its own table keeps it in its module.
- Frozen class text features, computed one way: ``ensemble_text_features`` (OpenAI's prompt
  ensembling) inside a ``FrozenTextFeatures`` cache: on the device the CLIP is on, outside
  autocast (the tower's storage dtype decides their precision), without gradient, once, and
  never saved (a plain attribute, rebuilt for the current class names).
- CoOp's context rule (``Context``, ``context_from_words``, ``check_context_keys``), used by CoOp,
  CoCoOp and the methods built on them with their own config node.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import clip
from dassl.config import ConfigError

from .base import check_method_keys
from .prompting import placeholder_prefix, word_context

CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
    "ToyShapes": "a photo of a {}.",
}

# The "selected" ImageNet templates of OpenAI's prompt-engineering notebook, in its order. A tuple:
# each user builds its own list from it (the official ZeroshotCLIP2 appends to a class-level list,
# so a second instance in one process got the dataset template twice).
IMAGENET_TEMPLATES_SELECT = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def dataset_template(dataset_name, templates=CUSTOM_TEMPLATES, table="CUSTOM_TEMPLATES in trainers/text.py"):
    """The template of ``dataset_name`` (a registered dataset name) in ``templates``.

    Raises ConfigError naming DATASET.NAME, the known names and the table to extend.
    """
    template = templates.get(dataset_name)
    if template is None:
        raise ConfigError(
            f"No template for DATASET.NAME = {dataset_name!r}; known: {sorted(templates)} (add one to {table})"
        )
    return template


def clip_device(clip_model):
    """The device the CLIP's weights are on."""
    return clip_model.token_embedding.weight.device


@torch.no_grad()
def encode_sentences(clip_model, sentences):
    """(N, D) unnormalised text features of ``sentences`` by the unprompted text tower, on the
    CLIP's device, outside autocast, in the tower's storage dtype."""
    device = clip_device(clip_model)
    with torch.autocast(device.type, enabled=False):
        return clip_model.encode_text(clip.tokenize(sentences).to(device))


@torch.no_grad()
def ensemble_text_features(clip_model, templates, classnames):
    """(C, D) L2-normalised class text features: per template, the normalised features of
    template.format(name) for every class ("_" read as a space), averaged over the templates and
    normalised again (OpenAI's prompt ensembling; one template: its normalised features)."""
    names = [name.replace("_", " ") for name in classnames]
    per_template = [
        F.normalize(encode_sentences(clip_model, [template.format(name) for name in names]), dim=-1)
        for template in templates
    ]
    if len(per_template) == 1:
        return per_template[0]
    return F.normalize(torch.stack(per_template).mean(dim=0), dim=-1)


class FrozenTextFeatures:
    """Text features that never change (hand-written prompts of the current classes), computed once.

    ``compute(clip_model) -> Tensor`` is called on first use, without gradient and outside
    autocast, and again only when the CLIP has moved to another device. Keep an instance as a
    plain attribute of the prompted model: it is never part of a state dict (checkpoints hold
    learned tensors only) and is rebuilt with the model for other class names.
    """

    def __init__(self, compute):
        self._compute = compute
        self._value = None

    def get(self, clip_model):
        """The features, on ``clip_model``'s device."""
        device = clip_device(clip_model)
        if self._value is None or self._value.device != device:
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                self._value = self._compute(clip_model)
        return self._value


# ------------------------------------------------------------------------------------------------
# CoOp's context rule
# ------------------------------------------------------------------------------------------------

# CTX_INIT of TRAINER.COOP (and nodes like it) may also be a YAML bool, as KgCoOp's and ProGrad's
# configs write it: dassl's config merge stores True as this text and False as "" (a random start).
CTX_INIT_SWITCH_ON = "True"


@dataclass(frozen=True)
class Context:
    """How a CoOp-style context starts.

    prefix: the text in front of the class name in the tokenised sentences ("X X ..." or the
        initial words); it reserves the context positions 1..n.
    n_ctx: n, the number of learned context tokens.
    words: the initial (n_ctx, d_t) float32 vectors when the context starts from words (CoOp's
        rule: the embeddings of the words' first n tokens), or None for a random start.
    """

    prefix: str
    n_ctx: int
    words: torch.Tensor | None


def initial_words(ctx_init, switch_words):
    """The words a CTX_INIT value stands for: the value itself, or ``switch_words`` (the method's
    own initial words) when CTX_INIT was set to the bool True."""
    return switch_words if ctx_init == CTX_INIT_SWITCH_ON else ctx_init


def context_from_words(clip_model, n_ctx, words):
    """The official context rule of CoOp and CoCoOp.

    With words (underscores read as spaces), n is their number and the context starts from the
    embeddings of the first n tokens of the words; a word that splits into several BPE tokens
    leaves the last tokens as fixed words after the context. Without, n = ``n_ctx`` and the
    sentences read "X X ... {class}." (one placeholder token per context position).
    """
    words = words.replace("_", " ").strip()
    if not words:
        return Context(prefix=placeholder_prefix(n_ctx), n_ctx=n_ctx, words=None)
    n_words = len(words.split())
    return Context(prefix=words, n_ctx=n_words, words=word_context(clip_model, words, n_words))


def check_context_keys(node, where, checks=()):
    """Validate N_CTX, PREC and ``checks`` of a CoOp-style node ``where`` (e.g. "TRAINER.COOP").

    Raises ConfigError naming the key and its value.
    """
    has_words = bool(str(node.CTX_INIT).replace("_", " ").strip())
    check_method_keys(where, node, [("N_CTX", has_words or node.N_CTX >= 1, ">= 1 (or words in CTX_INIT)"), *checks])
