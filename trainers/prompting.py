"""What the prompted models of every method share: sentences, context vectors, the text cache.

- ``class_sentences`` and ``register_sentence_buffers``: the frozen sentences "{prefix} {name}."
  of the classes, tokenised, and the embeddings around the learned context slots (CoOp's
  ``token_prefix`` / ``token_suffix``), as non-persistent buffers: checkpoints hold only what is
  learned, so a learner trained on base classes loads for new ones.
- ``random_context`` and ``word_context``: the two ways a learned context starts.
- ``PromptedCLIP``: a frozen CLIP plus a method's ``prompt_learner``; text features that do not
  depend on the image are computed once per evaluation inside ``cached_text_features()``.
- ``LossTerm`` and ``TrainingOutput``: what a training forward returns when its method adds loss
  terms to the cross-entropy (the shared step in ``trainers/base.py`` sums and logs them).
"""

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

import clip

CONTEXT_INIT_STD = 0.02  # every method's random context: normal(0, 0.02)


def class_sentences(classnames, prefixes):
    """ "{prefix} {name}." for every class name and prefix: class-major rows (row = c * P + p).

    Underscores in class names become spaces (the datasets' folder names use them).
    """
    names = [name.replace("_", " ") for name in classnames]
    return [f"{prefix} {name}." for name in names for prefix in prefixes]


@torch.no_grad()
def register_sentence_buffers(module, clip_model, sentences, n_ctx):
    """Tokenise ``sentences`` and register the frozen pieces around positions 1..n_ctx on ``module``.

    Non-persistent buffers (N = len(sentences), L = 1 + the last EOT position over all sentences):
        tokenized: (N, L) int64 token ids; the EOT of a row is at tokenized.argmax(-1). Cut after
            the longest sentence: the causal text tower's outputs up to an EOT do not depend on
            the padding after it.
        token_prefix: (N, 1, d_t) the embedding of SOS.
        token_suffix: (N, L - 1 - n_ctx, d_t) the embeddings after the n_ctx context slots.
    The embeddings are stored in the CLIP's dtype (float16 under PREC fp16), as the context they
    are concatenated with.
    """
    device = clip_model.token_embedding.weight.device
    tokenized = clip.tokenize(sentences).to(device)
    length = int(tokenized.argmax(dim=-1).max()) + 1
    tokenized = tokenized[:, :length]
    embedding = clip_model.token_embedding(tokenized).to(clip_model.dtype)
    module.register_buffer("tokenized", tokenized, persistent=False)
    module.register_buffer("token_prefix", embedding[:, :1], persistent=False)
    module.register_buffer("token_suffix", embedding[:, 1 + n_ctx :], persistent=False)


def placeholder_prefix(n_ctx):
    """ "X X ... X": n_ctx placeholder tokens that reserve the positions of a random context."""
    return " ".join(["X"] * n_ctx)


def random_context(*shape, dtype=torch.float32):
    """A learned context of ``shape`` drawn from normal(0, 0.02), created in ``dtype``."""
    return nn.init.normal_(torch.empty(*shape, dtype=dtype), std=CONTEXT_INIT_STD)


@torch.no_grad()
def word_context(clip_model, text, n_ctx):
    """(n_ctx, d_t) float32: the token embeddings of the first n_ctx tokens of ``text`` after SOS."""
    ids = clip.tokenize(text).to(clip_model.token_embedding.weight.device)
    return clip_model.token_embedding(ids)[0, 1 : 1 + n_ctx].float()


@dataclass
class LossTerm:
    """One named term of a training loss.

    value: a scalar tensor (differentiable w.r.t. the learned tensors).
    weight: its factor in the optimised loss; 0 = computed and logged but not optimised (e.g. a
        term whose gradient a method only uses to alter the update: ProGrad).
    """

    value: torch.Tensor
    weight: float = 1.0


@dataclass
class TrainingOutput:
    """What a prompted model's ``forward(image)`` returns in training mode when its method adds
    loss terms: the logits (B, C) and the extra terms by name, e.g. ``{"loss_kg": LossTerm(s, 8.0)}``.
    The shared step adds the cross-entropy of the logits as ``loss_ce``. Outside a training step
    (``PromptedCLIP.training_step`` False: evaluation) a forward returns the logits alone."""

    logits: torch.Tensor
    terms: dict = field(default_factory=dict)


class PromptedCLIP(nn.Module):
    """A frozen CLIP (``clip``) with a method's learned prompts (``prompt_learner``).

    ``forward(image) -> logits (B, C)``; in a training step (``training_step``) a method with extra
    loss terms returns a ``TrainingOutput`` instead. A method whose text side does not depend on the image
    implements ``encode_text()`` (the text features of all classes, in whatever structure its
    forward uses) and gets them through ``text_features()``, which reuses one computation for
    everything run inside ``cached_text_features()`` (an evaluation).
    """

    def __init__(self, clip_model, prompt_learner):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.clip = clip_model
        self._text_cache_enabled = False
        self._text_cache = None

    @property
    def training_step(self):
        """True while training: the engine switches the registered learner between train and eval
        mode (``set_model_mode``), never the frozen CLIP (its ResNet BatchNorms stay in eval mode),
        so a forward that adds loss terms asks the learner."""
        return self.prompt_learner.training

    @property
    def dtype(self):
        """The frozen CLIP's compute dtype (inputs are cast to it)."""
        return self.clip.dtype

    def encode_text(self):
        raise NotImplementedError(f"{type(self).__name__} computes no image-independent text features")

    def text_features(self):
        """``encode_text()``, computed once while ``cached_text_features`` is active."""
        if not self._text_cache_enabled:
            return self.encode_text()
        if self._text_cache is None:
            self._text_cache = self.encode_text()
        return self._text_cache

    @contextlib.contextmanager
    def cached_text_features(self):
        """Compute the text side once for everything run inside (an evaluation)."""
        self._text_cache_enabled, self._text_cache = True, None
        try:
            yield
        finally:
            self._text_cache_enabled, self._text_cache = False, None
