"""PLOT: prompt learning with optimal transport (Chen et al., ICLR 2023), the plot-coop method.

N learned text prompts per class are matched to M local visual features of an image by entropic
optimal transport; the logit of class c is exp(logit_scale) times the transport-weighted cosine
similarity sum_{m,p} plan[m, p] * sim[m, p] (docs/methods.md#plot-prompt-learning-with-optimal-transport).

Parts, shared with PLOT++ (trainers/plotpp.py):

- ``PromptSetLearner``: N learned contexts (N, n, d_t) and the frozen sentences of every
  (class, prompt).
- ``PromptOTCLIP``: the frozen CLIP with such a learner: text features per prompt and class (and
  their pool), the OT logits through ``trainers/ot.py`` with the token level off (cost 1 - cosine,
  uniform marginals, eps 0.1, at most 100 iterations, no gradient through the plan), and the
  optional global term exp(logit_scale) * global image feature . pooled text feature.

PLOT's own: ``PLOTCLIP`` (local features = tokens 1.. of the image tower's ``return_tokens``: on a
ResNet the attention pool queried by each of its 49 positions, as plot-coop; on a ViT the patch
tokens through ln_post and proj, an extension) and the ``PLOT`` trainer (node ``TRAINER.PLOT``,
checkpoint folder ``prompt_learner``, key ``ctx``).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clip.model import ModifiedResNet
from dassl.engine import TRAINER_REGISTRY

from .base import PromptTrainer, check_method_keys, method_node
from .deep_prompts import sentence_embeddings, text_context
from .ot import OTSettings, hierarchical_ot_logits
from .prompting import PromptedCLIP, class_sentences, placeholder_prefix, register_sentence_buffers
from .sinkhorn import autocast_off

# GLOBAL_LOGITS values: when the global term is added to the OT logits.
GLOBAL_LOGITS_CHOICES = ("imagenet", "on", "off")
# plot-coop adds the global term for the dataset literally named so (not its variants).
GLOBAL_TERM_DATASET = "ImageNet"


def add_config(cfg):
    """TRAINER.PLOT with plot-coop's keys and defaults, and two of ours (GLOBAL_LOGITS, STOP_PER_PROBLEM)."""
    node = method_node(cfg, "PLOT")
    node.N_CTX = 16  # n, context tokens of each prompt
    node.CSC = False  # class-specific contexts: not supported (upstream's crashes unless N = C)
    node.CTX_INIT = ""  # initial words: not supported (upstream's crashes); the contexts start random
    node.PREC = "fp16"  # fp16 (upstream, GPU) | fp32 | amp | bf16; CPU: fp16/amp -> fp32. The OT runs in fp32
    node.CLASS_TOKEN_POSITION = "end"  # only "end" (upstream's middle/front crash)
    node.N = 4  # text prompts per class
    # The global term exp(logit_scale) * image feature . pooled text feature added to the OT logits:
    # "imagenet" when DATASET.NAME is "ImageNet" (upstream's rule; not its variants), "on", "off"
    node.GLOBAL_LOGITS = "imagenet"
    # Sinkhorn's stopping rule: False = one rule for all images and classes of a batch (upstream:
    # a prediction depends on its test batch); True = each (image, class) problem stops on its own
    node.STOP_PER_PROBLEM = False


def global_term_on(setting, dataset_name):
    """Whether GLOBAL_LOGITS ``setting`` adds the global term on the dataset ``dataset_name``."""
    if setting == "imagenet":
        return dataset_name == GLOBAL_TERM_DATASET
    return setting == "on"


class PromptSetLearner(nn.Module):
    """N learned text contexts and the frozen pieces of the C x N sentences.

    Learned tensor (the upstream name, so upstream checkpoints load):
        ctx: (N, n, d_t) in the CLIP's dtype (float16 under PREC fp16, as upstream).
    Non-persistent buffers, rebuilt for the current class names (rows class-major, c * N + p;
    upstream's are prompt-major, which changes nothing): ``tokenized`` (C*N, L), ``token_prefix``
    (C*N, 1, d_t), ``token_suffix`` (C*N, L-1-n, d_t) of "{prefixes[p]} {class}.".
    """

    def __init__(self, clip_model, classnames, prefixes, init_words, n_ctx):
        """prefixes: the text before the class name, per prompt; init_words[p]: whether ctx[p]
        starts from the embeddings of prefixes[p]'s first n_ctx tokens (else normal(0, 0.02))."""
        super().__init__()
        self.prefixes = list(prefixes)
        self.n_prompts, self.n_ctx = len(prefixes), n_ctx
        self.ctx = nn.Parameter(text_context(clip_model, prefixes, init_words, n_ctx))
        self.set_classnames(classnames, clip_model)

    def set_classnames(self, classnames, clip_model):
        self.n_classes = len(classnames)
        register_sentence_buffers(self, clip_model, class_sentences(classnames, self.prefixes), self.n_ctx)

    def text_inputs(self):
        """(C*N, L, d_t): the input embeddings of the sentences, ctx[p] at positions 1..n."""
        return sentence_embeddings(self.token_prefix, self.ctx, self.token_suffix)


@dataclass
class PromptTextFeatures:
    """The text side of all classes.

    prompts: (C, N, D) L2-normalised features of each class's N prompted sentences.
    pool: (C, D) the L2-normalised mean over prompts of the raw (unnormalised) features.
    """

    prompts: torch.Tensor
    pool: torch.Tensor


class PromptOTCLIP(PromptedCLIP):
    """The frozen CLIP with a ``PromptSetLearner`` (or a subclass); logits by optimal transport.

    Subclasses compute the image side in ``forward`` and call ``ot_logits``.
    """

    def __init__(self, clip_model, prompt_learner, ot_settings, global_term):
        """ot_settings: OTSettings with hierarchical=False; global_term: add the global term."""
        super().__init__(clip_model, prompt_learner)
        self.ot_settings = ot_settings
        self.global_term = global_term

    def encode_text(self):
        """The C*N prompted sentences through the text tower -> PromptTextFeatures."""
        learner = self.prompt_learner
        features = self.clip.encode_text(learner.tokenized, prompt_embeddings=learner.text_inputs())
        features = features.view(learner.n_classes, learner.n_prompts, -1)
        return PromptTextFeatures(F.normalize(features, dim=-1), F.normalize(features.mean(dim=1), dim=-1))

    def ot_logits(self, local, global_):
        """Logits (B, C) float32 from L2-normalised image features.

        local: (B, M, D) the features the N prompts of each class are transported to.
        global_: (B, D) the global image feature, used by the global term only.
        logit[b, c] = s * sum_{m,p} plan[b, c, m, p] * local[b, m] . prompts[c, p] (+ s * global_[b] .
        pool[c] with the global term), s = exp(logit_scale); the plan (cost 1 - similarity) is
        solved in float32 without gradient (trainers/ot.py).
        """
        text = self.text_features()
        scale = self.clip.logit_scale.exp()
        logits = hierarchical_ot_logits(local, None, text.prompts, None, None, scale, self.ot_settings)
        if self.global_term:
            with autocast_off(local.device):  # float32, as the OT logits
                logits = logits + scale.float() * torch.einsum("bd,cd->bc", global_.float(), text.pool.float())
        return logits


class PLOTCLIP(PromptOTCLIP):
    """PLOT: the N prompts of each class transported to the image's local features."""

    def forward(self, image):
        """image: (B, 3, R, R) -> logits (B, C) float32.

        The image tower's tokens (``return_tokens``): token 0 is CLIP's image feature (the global
        one), tokens 1..M the local features (ResNet: the attention pool queried by each of the
        (R/32)^2 positions; ViT: the patch tokens through ln_post and proj).
        """
        tokens = F.normalize(self.clip.encode_image(image.type(self.dtype), return_tokens=True), dim=-1)
        return self.ot_logits(tokens[:, 1:], tokens[:, 0])


def local_feature_count(clip_model):
    """M: the image tower's tokens besides token 0 (ResNet: attention-pool positions; ViT: patches)."""
    visual = clip_model.visual
    positions = visual.attnpool if isinstance(visual, ModifiedResNet) else visual
    return positions.positional_embedding.shape[0] - 1


def check_config(cfg):
    """Validate TRAINER.PLOT; raises ConfigError naming the key."""
    node = cfg.TRAINER.PLOT
    check_method_keys(
        "TRAINER.PLOT",
        node,
        [
            ("N", node.N >= 1, ">= 1"),
            ("N_CTX", node.N_CTX >= 1, ">= 1"),
            ("CSC", not node.CSC, "False: PLOT's N contexts are shared by all classes (upstream's CSC True crashes)"),
            (
                "CTX_INIT",
                not str(node.CTX_INIT).strip(),
                '"": the N contexts start random (from the same words they would stay equal; upstream crashes)',
            ),
            ("CLASS_TOKEN_POSITION", node.CLASS_TOKEN_POSITION == "end", '"end" (upstream\'s middle and front crash)'),
            ("GLOBAL_LOGITS", node.GLOBAL_LOGITS in GLOBAL_LOGITS_CHOICES, f"one of {GLOBAL_LOGITS_CHOICES}"),
        ],
    )


@TRAINER_REGISTRY.register()
class PLOT(PromptTrainer):
    """PLOT prompt tuning (TRAINER.PLOT), on a ResNet or a ViT CLIP."""

    CONFIG_NODE = "PLOT"
    LEARNER_NAME = "prompt_learner"
    CHECKPOINT_KEYS = ("N", "N_CTX")

    def check_cfg(self, cfg):
        check_config(cfg)

    def build_prompted_model(self, clip_model, classnames):
        node = self.method_cfg
        global_term = global_term_on(node.GLOBAL_LOGITS, self.cfg.DATASET.NAME)
        print(
            f"Building PLOT (N = {node.N} prompts of n = {node.N_CTX} tokens, M = {local_feature_count(clip_model)} "
            f"local features, global term {'on' if global_term else 'off'}, Sinkhorn stopping "
            f"{'per problem' if node.STOP_PER_PROBLEM else 'per batch'}, precision = {self.precision.name})"
        )
        prefix = placeholder_prefix(node.N_CTX)
        learner = PromptSetLearner(clip_model, classnames, [prefix] * node.N, [False] * node.N, node.N_CTX)
        settings = OTSettings(hierarchical=False, stop_per_problem=node.STOP_PER_PROBLEM)
        return PLOTCLIP(clip_model, learner, settings, global_term)
