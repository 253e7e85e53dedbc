"""CoOp: context optimisation (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022).

The class prompts read "[ctx] {class}." where the n context vectors ``ctx`` are learned and the
CLIP is frozen. Behaviour of the official trainer (docs/methods.md):

- ``ctx`` is shared by all classes (n, d_t) or, with ``CSC True``, one per class (C, n, d_t); it
  is stored in the CLIP's dtype (float16 under PREC fp16, trained in half precision as upstream).
- ``CTX_INIT`` (words) redefines n as its word count, starts ``ctx`` from the embeddings of its
  first n tokens and makes the context unified (``CSC`` is then ignored).
- ``CLASS_TOKEN_POSITION`` puts the class name at the end, in the middle, or at the front.

Parts: ``CoOpPromptLearner`` (the learned tensor and the class buffers), ``CoOpCLIP`` (the frozen
CLIP with the prompts: logits) and the ``CoOp`` trainer (registered name "CoOp", checkpoint folder
``prompt_learner``). The context rule, shared with CoCoOp, is in ``trainers/text.py``.
"""

import torch
import torch.nn.functional as F
from torch import nn

import clip
from dassl.config import accept_switch_for_text
from dassl.engine import TRAINER_REGISTRY

from .base import PromptTrainer, method_node
from .prompting import PromptedCLIP, class_sentences, random_context, register_sentence_buffers
from .text import check_context_keys, context_from_words, initial_words

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
# The words CTX_INIT True stands for (KgCoOp's and ProGrad's configs write the bool).
SWITCH_WORDS = "a photo of a"


def add_config(cfg):
    """TRAINER.COOP with the official defaults (ZeroshotCLIP reads its PREC; KgCoOp and ProGrad
    add their keys to this node, as upstream)."""
    node = method_node(cfg, "COOP")
    node.N_CTX = 16  # context tokens (ignored when CTX_INIT is set: its word count wins)
    node.CSC = False  # True: one context per class (ignored when CTX_INIT is set)
    # Words that initialise the context, e.g. "a photo of a" ("" or False = random); True (a bool,
    # as KgCoOp's and ProGrad's configs write it) = the method's own words ("a photo of a" for CoOp)
    node.CTX_INIT = ""
    accept_switch_for_text("TRAINER.COOP.CTX_INIT")
    node.PREC = "fp16"  # fp16 (the official recipe, GPU) | fp32 | amp | bf16; CPU: fp16/amp -> fp32
    node.CLASS_TOKEN_POSITION = "end"  # where the class name goes: end, middle or front


def name_lengths(classnames):
    """BPE length of each class name alone ("_" read as a space): its EOT index minus the SOS."""
    names = [name.replace("_", " ") for name in classnames]
    return (clip.tokenize(names).argmax(dim=-1) - 1).tolist()


def layout_index(position, n_ctx, lengths, length):
    """(C, L) int64: the row of each position's token in the "end" layout [SOS][ctx][name][rest].

    ``position``: "middle" -> [SOS][ctx 1..h][name][ctx h+1..n][rest], h = n // 2;
    "front" -> [SOS][name][ctx][rest]. The name is the first ``lengths[c]`` tokens after the
    context (the BPE length of the name alone, as upstream); positions after ctx and name keep
    their place, so the EOT index does not move.
    """
    half = n_ctx // 2 if position == "middle" else 0
    rows = []
    for m in lengths:
        context = list(range(1, 1 + n_ctx))
        name = list(range(1 + n_ctx, 1 + n_ctx + m))
        order = [0] + context[:half] + name + context[half:]
        rows.append(order + list(range(len(order), length)))
    return torch.tensor(rows, dtype=torch.long)


class CoOpPromptLearner(nn.Module):
    """The learned context and the frozen pieces of the class sentences.

    Learned tensor (the official name, so official checkpoints load):
        ctx: (n, d_t) unified or (C, n, d_t) class-specific, in the CLIP's dtype.
    Non-persistent buffers (rebuilt for the current class names, never saved): ``tokenized``
    (C, L), ``token_prefix`` (C, 1, d_t), ``token_suffix`` (C, L - 1 - n, d_t) and, for the
    middle and front positions, ``layout`` (C, L) (see ``layout_index``).
    """

    def __init__(self, classnames, clip_model, n_ctx=16, ctx_init="", csc=False, class_token_position="end"):
        super().__init__()
        dtype = clip_model.dtype
        d_text = clip_model.ln_final.weight.shape[0]
        context = self.initial_context(clip_model, n_ctx, ctx_init)
        self.prefix, self.n_ctx = context.prefix, context.n_ctx
        self.class_token_position = class_token_position
        if context.words is not None:
            if csc:
                print("Note: CSC is ignored with CTX_INIT (as in the official code): one context for all classes")
            ctx = context.words.to(dtype)
        elif csc:
            print("Initializing class-specific contexts")
            ctx = random_context(len(classnames), self.n_ctx, d_text, dtype=dtype)
        else:
            print("Initializing a generic context")
            ctx = random_context(self.n_ctx, d_text, dtype=dtype)
        print(f'Initial context: "{self.prefix}"')
        print(f"Number of context words (tokens): {self.n_ctx}")
        self.ctx = nn.Parameter(ctx)
        self.set_classnames(classnames, clip_model)

    @staticmethod
    def initial_context(clip_model, n_ctx, words):
        """How the context starts (a ``Context``): CoOp's rule, ``context_from_words``. A method with
        another rule for its initial words (ProGrad) overrides this."""
        return context_from_words(clip_model, n_ctx, words)

    def set_classnames(self, classnames, clip_model):
        """Rebuild the class buffers for ``classnames`` (a class-specific ctx must still fit)."""
        if self.ctx.dim() == 3 and self.ctx.shape[0] != len(classnames):
            raise ValueError(f"the class-specific context has {self.ctx.shape[0]} classes, not {len(classnames)}")
        self.n_classes = len(classnames)
        register_sentence_buffers(self, clip_model, class_sentences(classnames, [self.prefix]), self.n_ctx)
        if self.class_token_position != "end":
            index = layout_index(
                self.class_token_position, self.n_ctx, name_lengths(classnames), self.tokenized.shape[1]
            )
            self.register_buffer("layout", index.to(self.tokenized.device), persistent=False)

    def text_inputs(self):
        """(C, L, d_t): the prompted sentences' input embeddings, class name where configured."""
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.expand(self.n_classes, -1, -1)
        embeddings = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        if self.class_token_position == "end":
            return embeddings
        rows = torch.arange(self.n_classes, device=embeddings.device)[:, None]
        return embeddings[rows, self.layout]


class CoOpCLIP(PromptedCLIP):
    """The frozen CLIP with CoOp's prompts; ``forward(image) -> logits (B, C)``.

    The steps are separate methods so that a method adding a loss term reuses them with the text
    features of one text-tower pass (KgCoOp, ProGrad).
    """

    def encode_text(self):
        """(C, D) L2-normalised text features of the prompted class sentences."""
        learner = self.prompt_learner
        features = self.clip.encode_text(learner.tokenized, prompt_embeddings=learner.text_inputs())
        return F.normalize(features, dim=-1)

    def encode_image(self, image):
        """image: (B, 3, R, R) -> (B, D) L2-normalised features of the unprompted image tower."""
        return F.normalize(self.clip.encode_image(image.type(self.dtype)), dim=-1)

    def classify(self, image_features, text_features):
        """exp(logit_scale) f . g: (B, D) and (C, D) normalised features -> logits (B, C)."""
        return self.clip.logit_scale.exp() * image_features @ text_features.t()

    def forward(self, image):
        """image: (B, 3, R, R) -> logits (B, C), in the towers' dtype (float16 under fp16, as upstream)."""
        return self.classify(self.encode_image(image), self.text_features())


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    """CoOp prompt tuning; reads TRAINER.COOP.

    Methods built on CoOp (KgCoOp, ProGrad) subclass it: ``PROMPT_LEARNER`` (the learner class),
    ``switch_words`` (what CTX_INIT True means) and ``build_learner`` are the pieces they reuse.
    """

    CONFIG_NODE = "COOP"
    LEARNER_NAME = "prompt_learner"
    CHECKPOINT_KEYS = ("N_CTX", "CTX_INIT", "CSC")
    PROMPT_LEARNER = CoOpPromptLearner

    @classmethod
    def check_cfg(cls, cfg):
        node = cls.node_of(cfg)
        position_ok = node.CLASS_TOKEN_POSITION in CLASS_TOKEN_POSITIONS
        check_context_keys(
            node, cls.node_path(), [("CLASS_TOKEN_POSITION", position_ok, f"one of {CLASS_TOKEN_POSITIONS}")]
        )

    @classmethod
    def switch_words(cls, cfg):
        """The initial words that CTX_INIT True stands for under ``cfg``: "a photo of a"."""
        return SWITCH_WORDS

    def build_learner(self, clip_model, classnames):
        """The ``PROMPT_LEARNER`` of TRAINER.COOP's settings for ``classnames``."""
        node = self.method_cfg
        print(
            f"Building {type(self).__name__}'s prompts (class token position: {node.CLASS_TOKEN_POSITION}, "
            f"precision = {self.precision.name})"
        )
        return self.PROMPT_LEARNER(
            classnames,
            clip_model,
            n_ctx=node.N_CTX,
            ctx_init=initial_words(node.CTX_INIT, self.switch_words(self.cfg)),
            csc=node.CSC,
            class_token_position=node.CLASS_TOKEN_POSITION,
        )

    def build_prompted_model(self, clip_model, classnames):
        return CoOpCLIP(clip_model, self.build_learner(clip_model, classnames))
