"""PromptSRC (Khattak et al., ICCV 2023): IVLP's prompts regulated towards the frozen CLIP, and
Gaussian prompt aggregation over epochs.

The prompted model is IVLP's (trainers/ivlp.py: free text and visual prompts, shallow and deep).
A training step adds three self-regulating terms to the cross-entropy, each logged:

- ``loss_text`` (weight TEXT_LOSS_WEIGHT, 25): mean |g - g0| over C x D, g the prompted text
  features, g0 the normalised mean over ``PROMPTSRC_TEMPLATES`` of the frozen CLIP's RAW text
  features of each class (the teacher, computed once in float32: ``teacher_text_features``);
- ``loss_image`` (weight IMAGE_LOSS_WEIGHT, 10): mean |f - f0| over B x D, f the prompted image
  features, f0 the frozen CLIP's unprompted ones (the same frozen tower, no second copy);
- ``loss_logits`` (weight 1): sum_{b,c} p0 (log p0 - log p) / (B*C), p = softmax of the prompted
  logits, p0 = softmax of the zero-shot logits exp(logit_scale) f0 . g0.

After every epoch the learned tensors join a Gaussian-weighted running average (trainers/gpa.py);
after the last one the average replaces them before the final save and test. The running average
travels in the resumable checkpoint (the engine's ``training_state`` hooks), so a resumed run ends
with the same GPA model as an uninterrupted one.

- ``PromptSRCCLIP``: IVLP's prompted model plus the three terms in a training step.
- ``PromptSRC``: the trainer (``TRAINER.PROMPTSRC``, checkpoint folder ``VLPromptLearner``).

Differences from the upstream code (docs/methods.md#promptsrc): every precision on every device
(upstream trains only under fp16 on CUDA), DDP (upstream crashes under DataParallel), GPA of the
learned tensors only and in float32 (upstream averages the whole model, frozen float16 weights
included, in each tensor's dtype), GPA kept across a resume (upstream loses it), the terms
computed in float32, and no second image tower (upstream's ``ZS_image_encoder`` entries of its
checkpoints are ignored on load).
"""

import copy

import torch
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY
from dassl.utils import CheckpointError

from .base import PromptTrainer, method_node
from .gpa import PromptAggregate, format_weights, gaussian_epoch_weights
from .ivlp import IVLPCLIP, check_prompt_keys
from .ivlp import upstream_keys as ivlp_upstream_keys
from .prompting import LossTerm, TrainingOutput
from .text import FrozenTextFeatures, encode_sentences

NODE = "PROMPTSRC"
WHERE = f"TRAINER.{NODE}"
LEARNER_NAME = "VLPromptLearner"
# The last epoch's own prompts (before GPA replaced them), saved beside model.pth.tar-E.
BEFORE_GPA_NAME = "model-before-gpa.pth.tar"
LOGITS_LOSS_WEIGHT = 1.0  # hard-coded upstream

# The teacher's templates: OpenAI's 80 ImageNet prompt-engineering templates without 20 of them,
# in PromptSRC's order (its imagenet_templates.py).
PROMPTSRC_TEMPLATES = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
)


def add_config(cfg):
    """TRAINER.PROMPTSRC with the upstream keys and defaults."""
    node = method_node(cfg, NODE)
    node.N_CTX_VISION = 4  # visual prompt tokens (read only when PROMPT_DEPTH_VISION >= 1)
    node.N_CTX_TEXT = 4  # text context tokens
    # Initial words, used when N_CTX_TEXT <= 4: the context starts from their first N_CTX_TEXT
    # embeddings and the sentence reads the whole text; otherwise random and "X X ... {class}."
    node.CTX_INIT = "a photo of a"
    node.PREC = "fp16"  # fp16 (upstream, GPU only) | fp32 | amp | bf16; CPU: fp16/amp -> fp32
    node.PROMPT_DEPTH_VISION = 9  # J_v: 0 = no visual prompts, 1 = appended tokens only, J = blocks 0..J-1
    node.PROMPT_DEPTH_TEXT = 9  # J_t >= 1: text prompts enter blocks 0..J_t-1
    node.TEXT_LOSS_WEIGHT = 25.0  # weight of loss_text (L1 of the text features to the teacher's)
    node.IMAGE_LOSS_WEIGHT = 10.0  # weight of loss_image (L1 of the image features to the unprompted ones)
    node.GPA_MEAN = 15.0  # GPA: mean of the Gaussian over epochs 1..OPTIM.MAX_EPOCH
    node.GPA_STD = 1.0  # GPA: its standard deviation (> 0)


def check_config(cfg):
    """Validate TRAINER.PROMPTSRC; raises ConfigError naming the key."""
    node = cfg.TRAINER[NODE]
    check_prompt_keys(
        node,
        WHERE,
        [
            ("TEXT_LOSS_WEIGHT", node.TEXT_LOSS_WEIGHT >= 0, ">= 0 (0 = loss_text logged, not optimised)"),
            ("IMAGE_LOSS_WEIGHT", node.IMAGE_LOSS_WEIGHT >= 0, ">= 0 (0 = loss_image logged, not optimised)"),
            ("GPA_STD", node.GPA_STD > 0, "> 0 (the Gaussian's standard deviation, in epochs)"),
        ],
    )


# ------------------------------------------------------------------------------------------------
# The teacher and the three terms
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def teacher_text_features(clip_model, classnames, templates=PROMPTSRC_TEMPLATES):
    """(C, D) float32: per class, the mean over ``templates`` of the UNNORMALISED features of
    template.format(name) ("_" read as a space) by the unprompted text tower; not normalised.

    Computed in float32 as upstream (which builds a separate float32 CLIP for it): a CLIP stored
    in float16 (PREC fp16) is copied to float32 on its device for this one computation, and the
    copy freed. (OpenAI's checkpoints hold float16 weights: their float32 values are exact.)
    """
    tower = clip_model if clip_model.dtype == torch.float32 else copy.deepcopy(clip_model).float()
    names = [name.replace("_", " ") for name in classnames]
    total = None
    for template in templates:
        features = encode_sentences(tower, [template.format(name) for name in names]).float()
        total = features if total is None else total + features
    return total / len(templates)


def text_consistency(text_features, teacher_text):
    """L_SCL-text: mean over C x D of |g - g0|; text_features g and teacher_text g0 both (C, D),
    L2-normalised. Computed in float32."""
    return F.l1_loss(text_features.float(), teacher_text.float())


def image_consistency(image_features, zero_shot_features):
    """L_SCL-image: mean over B x D of |f - f0|; image_features f (prompted) and
    zero_shot_features f0 (unprompted) both (B, D), L2-normalised. Computed in float32."""
    return F.l1_loss(image_features.float(), zero_shot_features.float())


def logit_consistency(logits, zero_shot_logits):
    """L_SCL-logits: sum over b, c of p0 (log p0 - log p), divided by B*C (not B: the batch mean
    of KL(p0 || p) divided by C, as upstream); p = softmax(logits), p0 = softmax(zero_shot_logits),
    both (B, C), temperature 1. Computed in float32."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    log_p0 = F.log_softmax(zero_shot_logits.float(), dim=-1)
    return F.kl_div(log_p, log_p0, reduction="sum", log_target=True) / logits.numel()


class PromptSRCCLIP(IVLPCLIP):
    """IVLP's prompted model; in a training step ``forward(image)`` returns a ``TrainingOutput``:
    the logits (B, C) and the terms ``loss_text``, ``loss_image``, ``loss_logits``; otherwise the
    logits alone."""

    def __init__(self, clip_model, classnames, node):
        """node: the validated TRAINER.PROMPTSRC node."""
        super().__init__(clip_model, classnames, node, where=WHERE)
        self.text_weight = node.TEXT_LOSS_WEIGHT
        self.image_weight = node.IMAGE_LOSS_WEIGHT
        names = list(classnames)
        # Raw (C, D) float32 teacher features: computed on first use, on the CLIP's device, never saved.
        self.teacher_text = FrozenTextFeatures(lambda clip_model: teacher_text_features(clip_model, names))

    def forward(self, image):
        """image: (B, 3, R, R) -> logits (B, C), or in a training step a ``TrainingOutput``."""
        if not self.training_step:
            return super().forward(image)
        teacher_text = F.normalize(self.teacher_text.get(self.clip), dim=-1)  # g0 (C, D), float32
        image_features = self.encode_image(image)  # f (B, D)
        text_features = self.text_features()  # g (C, D)
        logits = self.similarity_logits(image_features, text_features)
        with torch.no_grad():
            zero_shot_features = F.normalize(self.clip.encode_image(image.type(self.dtype)), dim=-1)  # f0
            zero_shot_logits = self.similarity_logits(zero_shot_features.float(), teacher_text)
        terms = {
            "loss_text": LossTerm(text_consistency(text_features, teacher_text), self.text_weight),
            "loss_image": LossTerm(image_consistency(image_features, zero_shot_features), self.image_weight),
            "loss_logits": LossTerm(logit_consistency(logits, zero_shot_logits), LOGITS_LOSS_WEIGHT),
        }
        return TrainingOutput(logits, terms)


# ------------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------------


@TRAINER_REGISTRY.register()
class PromptSRC(PromptTrainer):
    """PromptSRC (TRAINER.PROMPTSRC): IVLP prompts, self-regulating terms, Gaussian prompt aggregation."""

    CONFIG_NODE = NODE
    LEARNER_NAME = LEARNER_NAME
    CHECKPOINT_KEYS = ("N_CTX_TEXT", "PROMPT_DEPTH_TEXT", "N_CTX_VISION", "PROMPT_DEPTH_VISION")
    # Upstream files hold a second, unprompted image tower under prompt_learner.ZS_image_encoder.
    IGNORED_UPSTREAM_KEYS = ("ZS_image_encoder.",)

    upstream_keys = staticmethod(ivlp_upstream_keys)

    def check_cfg(self, cfg):
        check_config(cfg)

    def build_prompted_model(self, clip_model, classnames):
        node = self.method_cfg
        vision = (
            f"n_ctx = {node.N_CTX_VISION}, depth = {node.PROMPT_DEPTH_VISION}" if node.PROMPT_DEPTH_VISION else "none"
        )
        print(
            f"Building PromptSRC (text: n_ctx = {node.N_CTX_TEXT}, depth = {node.PROMPT_DEPTH_TEXT}; vision: {vision}; "
            f"loss weights: text {node.TEXT_LOSS_WEIGHT:g}, image {node.IMAGE_LOSS_WEIGHT:g}, "
            f"logits {LOGITS_LOSS_WEIGHT:g}; precision = {self.precision.name})"
        )
        return PromptSRCCLIP(clip_model, classnames, node)

    def build_model(self):
        super().build_model()
        node = self.method_cfg
        self.aggregate = PromptAggregate(gaussian_epoch_weights(node.GPA_MEAN, node.GPA_STD, self.max_epoch))

    @property
    def learner(self):
        return self._models[self.LEARNER_NAME]

    def before_train(self):
        node = self.method_cfg
        print(
            f"GPA: the final model is the average of the prompts after each epoch with Gaussian weights "
            f"(GPA_MEAN {node.GPA_MEAN:g}, GPA_STD {node.GPA_STD:g}; epoch: weight): "
            + format_weights(self.aggregate.weights)
        )
        super().before_train()

    def after_epoch(self):
        """Add this epoch's prompts to the aggregate; after the last epoch, keep them in
        ``model-before-gpa.pth.tar`` and put the aggregate in their place. Then the engine's
        save (and best_val test): the final ``model.pth.tar-E`` holds the GPA model."""
        weight = self.aggregate.add(self.learner.state_dict())
        print(f"GPA: added epoch {self.epoch + 1} with weight {weight:.4f}")
        if self.aggregate.complete:
            self.save_model(self.epoch, self.output_dir, model_name=BEFORE_GPA_NAME, resumable=False)
            self.learner.load_state_dict(self.aggregate.sums)
            print("GPA: the learned prompts are now the Gaussian-weighted average over the epochs (the GPA model)")
        super().after_epoch()

    def training_state(self):
        """The GPA running sum, for the resumable checkpoint."""
        return {"gpa": self.aggregate.state_dict()}

    def load_training_state(self, state, epoch):
        """Continue the GPA running sum of the checkpoint (a final model needs none: it is the GPA model)."""
        if state is None or "gpa" not in state:
            if epoch >= self.max_epoch:
                return
            raise CheckpointError(
                f"The checkpoint of epoch {epoch} in {self.cfg.RESUME or self.output_dir} holds no GPA running "
                "average (written by another version or trainer): a resumed run would not end with the GPA "
                "model. Delete the folder to train from scratch"
            )
        stored_weights = self.aggregate.load_state_dict(state["gpa"], self.device)
        if self.aggregate.epochs != epoch:
            raise CheckpointError(
                f"The GPA running average of the checkpoint of epoch {epoch} in {self.cfg.RESUME or self.output_dir} "
                f"holds {self.aggregate.epochs} epochs (a damaged checkpoint?). Delete the folder to train from scratch"
            )
        current = self.aggregate.weights[:epoch]
        if any(abs(a - b) > 1e-12 for a, b in zip(stored_weights, current)):
            print(
                "Warning: the GPA weights of the resumed epochs differ from this config's (GPA_MEAN, GPA_STD or "
                "OPTIM.MAX_EPOCH changed): the epochs so far keep their old weights"
            )
        print(f"GPA: resumed the running average of epochs 1-{epoch}")
