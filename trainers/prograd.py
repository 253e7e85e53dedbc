"""ProGrad: prompt-aligned gradient (Zhu et al., "Prompt-aligned Gradient for Prompt Tuning",
ICCV 2023), as KgCoOp's repository ships it (its trainer ``ProGrad``).

CoOp's learned context, trained so that it does not move against the zero-shot CLIP's knowledge.
Each step has two losses on the same logits z:

- xe = CE(z, label) (``loss_ce``), the loss that is optimised;
- kl = mean_b sum_c -softmax(z0 / T) log_softmax(z / T) T^2 (``loss_kl``), a soft cross-entropy
  towards the zero-shot logits z0 of the frozen CLIP with ProGrad's hand-written prompts (it
  differs from a KL divergence by the teacher's entropy, a constant).

The update uses the gradient g_xe of xe where it agrees in direction with the gradient g_kl of
kl; where it conflicts (g_xe . g_kl < 0) the component along g_kl is removed, LAMBDA times:
g_xe - LAMBDA (g_xe . u) u with u = g_kl / |g_kl|, per parameter tensor. On the hooks of
``trainers/base.py``: kl is a term of weight 0 (logged, not optimised) listed in
``REFERENCE_TERMS``, and ``alter_gradients`` projects the gradients before the optimizer step (under
a GradScaler both gradients are scaled alike, under DDP both are averaged over the processes).

The context starts by ProGrad's own rule when CTX_INIT is set (every shipped config: True, the
words of its dataset template): N_CTX vectors, zeros except the last w rows, which hold the
embeddings of the w words ("X ... X a photo of a {class}.").
"""

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from dassl.config import ConfigError
from dassl.engine import TRAINER_REGISTRY

from .base import check_method_keys
from .coop import CoOp, CoOpCLIP, CoOpPromptLearner
from .prompting import LossTerm, TrainingOutput, placeholder_prefix, word_context
from .text import (
    CUSTOM_TEMPLATES,
    Context,
    FrozenTextFeatures,
    context_from_words,
    dataset_template,
    ensemble_text_features,
    initial_words,
)

# ProGrad's hand-written prompts (its own table: the teacher's prompts and the initial words):
# zero-shot CLIP's, but for five datasets.
PROGRAD_TEMPLATES = {
    **CUSTOM_TEMPLATES,
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "Food101": "a type of food, a photo of {}.",
}
KL_TERM = "loss_kl"  # the teacher term's name in the log
LOSS_NAME = "prograd"  # the only LOSS.NAME the trainer accepts (upstream's switch)


def add_config(cfg):
    """ProGrad's top-level LOSS node, as upstream (ProGrad also reads CoOp's TRAINER.COOP)."""
    if "LOSS" not in cfg:
        cfg.LOSS = CN()
    loss = cfg.LOSS
    loss.NAME = ""  # must be "prograd" for the ProGrad trainer (its configs set it)
    loss.T = 1.0  # temperature of the teacher term
    loss.LAMBDA = 1.0  # share of a conflicting gradient's component along the teacher's removed
    loss.GM = False  # read by no trainer: upstream's node has it, so its files and commands load
    loss.ALPHA = 0.0  # read by no trainer (as GM)


def dataset_prompt(dataset_name):
    """ProGrad's template of ``dataset_name`` (a ConfigError names DATASET.NAME)."""
    return dataset_template(dataset_name, PROGRAD_TEMPLATES, "PROGRAD_TEMPLATES in trainers/prograd.py")


def template_words(template):
    """The words of a template in front of its class name: "a photo of a {}." -> "a photo of a"."""
    return template.replace(" {}.", "")


def prograd_context(clip_model, n_ctx, words):
    """ProGrad's context rule: with words (underscores read as spaces), w = their number and the
    n_ctx context vectors are zeros except the last w, the embeddings of the words' first w tokens;
    the sentences read "X ... X {words} {class}." (n_ctx - w placeholders). A word of several BPE
    tokens leaves its last tokens as fixed words after the context, as in CoOp. Without words:
    CoOp's random start. Raises ValueError when n_ctx < w.
    """
    words = words.replace("_", " ").strip()
    if not words:
        return context_from_words(clip_model, n_ctx, "")
    n_words = len(words.split())
    if n_ctx < n_words:
        raise ValueError(f"{n_ctx} context tokens cannot hold the {n_words} initial words {words!r}")
    embeddings = word_context(clip_model, words, n_words)  # (w, d_t) float32
    vectors = torch.cat([embeddings.new_zeros(n_ctx - n_words, embeddings.shape[1]), embeddings])
    return Context(prefix=" ".join([placeholder_prefix(n_ctx - n_words), words]).strip(), n_ctx=n_ctx, words=vectors)


class ProGradPromptLearner(CoOpPromptLearner):
    """CoOp's learner (``ctx`` (n, d_t), or (C, n, d_t) class-specific) with ProGrad's initial words."""

    initial_context = staticmethod(prograd_context)


class _CallWith(nn.Module):
    """``forward()`` = ``compute(clip_model)``: a module, so that ``torch.func.functional_call`` can
    run the computation with substitute weights of the CLIP."""

    def __init__(self, clip_model, compute):
        super().__init__()
        self.clip = clip_model
        self.compute = compute

    def forward(self):
        return self.compute(self.clip)


def float32_text_features(clip_model, templates, classnames):
    """``ensemble_text_features`` computed in float32 whatever the CLIP's storage: under PREC fp16,
    float32 copies of the text side's weights (and of conv1's, whose dtype the text tower casts to)
    stand in for the call. OpenAI's weights are float16 numbers, so this is upstream's float32
    teacher; only the text side is copied, for the one call."""
    weights = {
        f"clip.{name}": param.float()
        for name, param in clip_model.named_parameters()
        if (not name.startswith("visual.") or name == "visual.conv1.weight") and param.dtype != torch.float32
    }
    compute = _CallWith(clip_model, lambda clip: ensemble_text_features(clip, templates, classnames))
    return torch.func.functional_call(compute, weights, ())


def soft_cross_entropy(logits, teacher_logits, temperature):
    """ProGrad's teacher term: mean_b sum_c -softmax(z0 / T) log_softmax(z / T) T^2.

    logits: (B, C) the learned prompts' (differentiable); teacher_logits: (B, C) the zero-shot ones.
    Returns a float32 scalar.
    """
    teacher = F.softmax(teacher_logits.float() / temperature, dim=-1)
    student = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(teacher * student).sum(dim=-1).mean() * temperature**2


def project_conflicting(grad, reference, strength):
    """ProGrad's gradient of one parameter tensor: ``grad`` where it agrees in direction with
    ``reference`` (grad . reference >= 0), else grad - strength (grad . u) u with u the unit
    reference. Any shape (flattened for the products); computed in float32, returned in grad's
    dtype. A zero reference (no direction) leaves grad unchanged.
    """
    g, r = grad.float().flatten(), reference.float().flatten()
    unit = r / r.norm().clamp_min(torch.finfo(torch.float32).tiny)
    along = torch.dot(g, unit).clamp(max=0)  # 0 where the directions agree: no host sync
    return (g - strength * along * unit).view_as(grad).to(grad.dtype)


class ProGradCLIP(CoOpCLIP):
    """CoOp's prompted CLIP plus the zero-shot teacher of the current classes.

    ``forward(image)``: logits (B, C) in evaluation; in a training step a ``TrainingOutput`` with the
    teacher term ``loss_kl`` of weight 0 (logged; the trainer uses its gradient only).
    The teacher's logits reuse the image features of the step (the image tower is unprompted, so
    they are the zero-shot CLIP's), with float32 text features of ProGrad's prompts.
    """

    def __init__(self, clip_model, prompt_learner, teacher_text, temperature):
        super().__init__(clip_model, prompt_learner)
        self.teacher_text = teacher_text  # a FrozenTextFeatures: computed once, never saved
        self.temperature = temperature

    def forward(self, image):
        image_features = self.encode_image(image)
        logits = self.classify(image_features, self.text_features())
        if not self.training_step:
            return logits
        with torch.no_grad(), torch.autocast(image.device.type, enabled=False):  # a float32 teacher
            teacher_logits = self.classify(image_features.float(), self.teacher_text.get(self.clip))
        kl = soft_cross_entropy(logits, teacher_logits, self.temperature)
        return TrainingOutput(logits, {KL_TERM: LossTerm(kl, weight=0.0)})


@TRAINER_REGISTRY.register()
class ProGrad(CoOp):
    """ProGrad; reads TRAINER.COOP (CoOp's keys) and LOSS (NAME "prograd", T, LAMBDA)."""

    PROMPT_LEARNER = ProGradPromptLearner
    REFERENCE_TERMS = (KL_TERM,)

    @classmethod
    def switch_words(cls, cfg):
        """CTX_INIT True: the words of ProGrad's template for the dataset ("a photo of a")."""
        return template_words(dataset_prompt(cfg.DATASET.NAME))

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        loss = cfg.LOSS
        if loss.NAME != LOSS_NAME:
            raise ConfigError(f"LOSS.NAME = {loss.NAME!r} is invalid: the ProGrad trainer needs {LOSS_NAME!r}")
        if not loss.T > 0:
            raise ConfigError(f"LOSS.T = {loss.T!r} is invalid: expected a temperature > 0")
        node = cls.node_of(cfg)
        words = initial_words(node.CTX_INIT, cls.switch_words(cfg)).replace("_", " ").split()
        check_method_keys(
            cls.node_path(),
            node,
            [("N_CTX", node.N_CTX >= len(words), f">= {len(words)}, the number of initial words {' '.join(words)!r}")],
        )

    def build_prompted_model(self, clip_model, classnames):
        template = dataset_prompt(self.cfg.DATASET.NAME)
        names = [name.replace("_", " ") for name in classnames]
        print(f"Zero-shot teacher's prompts (T = {self.cfg.LOSS.T}): {[template.format(n) for n in names[:3]]}")
        teacher_text = FrozenTextFeatures(lambda clip: float32_text_features(clip, [template], classnames))
        return ProGradCLIP(clip_model, self.build_learner(clip_model, classnames), teacher_text, self.cfg.LOSS.T)

    def alter_gradients(self, references):
        """Project each trained tensor's cross-entropy gradient against its teacher-term gradient."""
        for param, reference in zip(self.trainable_parameters(), references[KL_TERM]):
            param.grad = project_conflicting(param.grad, reference, self.cfg.LOSS.LAMBDA)
