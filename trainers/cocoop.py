"""CoCoOp: conditional context optimisation (Zhou et al., CVPR 2022).

CoOp's unified context plus a per-image shift: a small meta-net maps the image's L2-normalised
feature f_i to pi_i, and image i is classified with the C sentences "[ctx + pi_i] {class}.".
Behaviour of the official trainer (docs/methods.md). Because the text side depends on the image,
the text tower runs on B x C sentences per batch; ``CoCoOpCLIP`` encodes them in chunks under a
memory budget (TEXT_MEMORY_MB), with the same results as one call.

Parts: ``CoCoOpPromptLearner`` (``ctx`` and ``meta_net``), ``CoCoOpCLIP`` (logits) and the
``CoCoOp`` trainer (registered name "CoCoOp", checkpoint folder ``prompt_learner``).
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from dassl.engine import TRAINER_REGISTRY

from .base import PromptTrainer, method_node
from .prompting import PromptedCLIP, class_sentences, random_context, register_sentence_buffers
from .text import check_context_keys, context_from_words

# Activations of one text-tower position, in units of the width: residual stream, LayerNorm
# output, q/k/v, attention output and the 4x-wide MLP hidden layer before and after its GELU.
ACTIVATIONS_PER_POSITION = 16


def add_config(cfg):
    """TRAINER.COCOOP with the official defaults, and the chunking budget."""
    node = method_node(cfg, "COCOOP")
    node.N_CTX = 16  # context tokens (ignored when CTX_INIT is set: its word count wins)
    node.CTX_INIT = ""  # words that initialise the context, e.g. "a photo of a" ("" = random)
    node.PREC = "fp16"  # fp16 (the official recipe, GPU) | fp32 | amp | bf16; CPU: fp16/amp -> fp32
    # Memory budget (MB) of one text-tower call: the B x C image-conditioned sentences of a batch
    # are encoded in chunks whose estimated activations fit (a 100-image test batch on ImageNet's
    # 1000 classes is 100,000 sentences). Results do not depend on it. It bounds evaluation; in
    # training autograd keeps every chunk's activations until the backward pass.
    node.TEXT_MEMORY_MB = 1024.0


def text_rows_per_chunk(memory_mb, length, width, element_size):
    """Sentences per text-tower call whose activations (estimated) fit in ``memory_mb``.

    One sentence of ``length`` tokens holds about ACTIVATIONS_PER_POSITION x ``width`` values per
    position, plus the attention scores of its heads (OpenAI's text towers: width // 64 heads).
    """
    heads = max(1, width // 64)
    per_row = element_size * length * (ACTIVATIONS_PER_POSITION * width + heads * length)
    return max(1, int(memory_mb * 2**20 // per_row))


class CoCoOpPromptLearner(nn.Module):
    """The learned context, the meta-net, and the frozen pieces of the class sentences.

    Learned tensors (the official names, so official checkpoints load), with D = the image
    feature dimension and d_t the text width:
        ctx: (n, d_t) in the CLIP's dtype, started as CoOp's unified context.
        meta_net: linear1 Linear(D -> D // 16), relu, linear2 Linear(D // 16 -> d_t); PyTorch's
            default init, in the CLIP's dtype (float16 under PREC fp16, as upstream converts it).
    Non-persistent buffers: ``tokenized`` (C, L), ``token_prefix`` (C, 1, d_t), ``token_suffix``
    (C, L - 1 - n, d_t).
    """

    def __init__(self, classnames, clip_model, n_ctx=16, ctx_init=""):
        super().__init__()
        dtype = clip_model.dtype
        d_text = clip_model.ln_final.weight.shape[0]
        d_image = clip_model.visual.output_dim
        context = context_from_words(clip_model, n_ctx, ctx_init)
        self.prefix, self.n_ctx = context.prefix, context.n_ctx
        ctx = random_context(self.n_ctx, d_text, dtype=dtype) if context.words is None else context.words.to(dtype)
        print(f'Initial context: "{self.prefix}"')
        print(f"Number of context words (tokens): {self.n_ctx}")
        self.ctx = nn.Parameter(ctx)
        hidden = d_image // 16
        self.meta_net = nn.Sequential(
            OrderedDict(
                [
                    ("linear1", nn.Linear(d_image, hidden)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("linear2", nn.Linear(hidden, d_text)),
                ]
            )
        ).to(dtype)
        self.set_classnames(classnames, clip_model)

    def set_classnames(self, classnames, clip_model):
        """Rebuild the class buffers for ``classnames``."""
        self.n_classes = len(classnames)
        register_sentence_buffers(self, clip_model, class_sentences(classnames, [self.prefix]), self.n_ctx)

    def contexts(self, image_features):
        """(B, D) normalised image features -> (B, n, d_t) per-image contexts ctx + meta_net(f_i)."""
        return self.ctx + self.meta_net(image_features).unsqueeze(1)

    def text_inputs(self, contexts, images, classes):
        """(R, L, d_t) input embeddings of the sentence of class ``classes[r]`` with the context
        of image ``images[r]``; contexts: (B, n, d_t), images and classes: (R,) int64."""
        return torch.cat([self.token_prefix[classes], contexts[images], self.token_suffix[classes]], dim=1)


class CoCoOpCLIP(PromptedCLIP):
    """The frozen CLIP with CoCoOp's image-conditioned prompts; ``forward(image) -> logits (B, C)``.

    No ``encode_text``: the text features depend on the image, so evaluation cannot cache them.
    """

    def __init__(self, clip_model, prompt_learner, memory_mb):
        super().__init__(clip_model, prompt_learner)
        self.memory_mb = memory_mb

    def rows_per_chunk(self):
        """Sentences per text-tower call under the memory budget."""
        learner = self.prompt_learner
        return text_rows_per_chunk(
            self.memory_mb, learner.tokenized.shape[1], learner.token_prefix.shape[-1], learner.token_prefix.itemsize
        )

    def forward(self, image):
        """image: (B, 3, R, R) -> logits (B, C), in the towers' dtype (float16 under fp16, as upstream).

        Rows r = i * C + c (image-major) are encoded in chunks; each chunk's logits are
        exp(logit_scale) * f_i . g_{i,c} with both features L2-normalised.
        """
        learner = self.prompt_learner
        image_features = F.normalize(self.clip.encode_image(image.type(self.dtype)), dim=-1)  # (B, D)
        contexts = learner.contexts(image_features)  # (B, n, d_t)
        n_images, n_classes = image_features.shape[0], learner.n_classes
        rows = torch.arange(n_images * n_classes, device=image_features.device)
        logits = []
        for chunk in rows.split(self.rows_per_chunk()):
            images, classes = chunk // n_classes, chunk % n_classes
            embeddings = learner.text_inputs(contexts, images, classes)
            text_features = F.normalize(
                self.clip.encode_text(learner.tokenized[classes], prompt_embeddings=embeddings), dim=-1
            )
            logits.append((image_features[images] * text_features).sum(dim=-1))
        return self.clip.logit_scale.exp() * torch.cat(logits).view(n_images, n_classes)


@TRAINER_REGISTRY.register()
class CoCoOp(PromptTrainer):
    """CoCoOp prompt tuning; reads TRAINER.COCOOP."""

    CONFIG_NODE = "COCOOP"
    LEARNER_NAME = "prompt_learner"
    CHECKPOINT_KEYS = ("N_CTX", "CTX_INIT")

    @classmethod
    def check_cfg(cls, cfg):
        node = cls.node_of(cfg)
        check_context_keys(node, cls.node_path(), [("TEXT_MEMORY_MB", node.TEXT_MEMORY_MB > 0, "> 0")])

    def build_prompted_model(self, clip_model, classnames):
        node = self.method_cfg
        print(f"Building CoCoOp (precision = {self.precision.name})")
        learner = CoCoOpPromptLearner(classnames, clip_model, n_ctx=node.N_CTX, ctx_init=node.CTX_INIT)
        return CoCoOpCLIP(clip_model, learner, node.TEXT_MEMORY_MB)
