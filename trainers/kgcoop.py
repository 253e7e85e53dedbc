"""KgCoOp: knowledge-guided context optimisation (Yao et al., "Visual-Language Prompt Tuning with
Knowledge-guided Context Optimization", CVPR 2023).

CoOp with one more loss term: the learned prompts' class text features g_c are pulled towards the
frozen CLIP's features w0_c of the dataset's hand-written prompt ("a photo of a {}."), so that the
learned context does not forget what the hand-written one knows about unseen classes:

    loss = CE(logits, label) + W * (1 - mean_c cos(g_c, w0_c))

This module is the example of a method that adds a loss term (docs/adding_a_method.md): it
reuses CoOp's learner, trainer and text side, and adds

- ``add_config``: the keys KgCoOp's upstream node adds to TRAINER.COOP (``W``, ``ALPHA``);
- ``knowledge_gap``: the term itself, a pure function of two feature tables;
- ``KgCoOpCLIP``: CoOp's prompted model whose training forward also returns the term, as a
  ``LossTerm`` of weight W (the shared training step adds the cross-entropy, sums the weighted
  terms and logs each: ``loss_ce``, ``loss_kg``);
- ``KgCoOp``: the trainer (registered name "KgCoOp", checkpoint folder ``prompt_learner``).
"""

import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .base import check_method_keys, method_node
from .coop import CoOp, CoOpCLIP
from .prompting import LossTerm, TrainingOutput
from .text import CUSTOM_TEMPLATES, FrozenTextFeatures, dataset_template, ensemble_text_features

# The hand-written prompt of each dataset: zero-shot CLIP's, except on DTD (upstream's own table).
KGCOOP_TEMPLATES = {**CUSTOM_TEMPLATES, "DescribableTextures": "a photo of a {}, a type of texture."}
COSINE_EPS = 1e-7  # upstream's CosineSimilarity eps
KG_TERM = "loss_kg"  # the term's name in the log


def add_config(cfg):
    """KgCoOp's keys in CoOp's node TRAINER.COOP (upstream keeps them there; CoOp's module adds the
    others, and CTX_INIT True means "a photo of a" here as in CoOp)."""
    node = method_node(cfg, "COOP")
    node.W = 1.0  # weight of the knowledge-guided term (upstream's default; its scripts run 8.0)
    node.ALPHA = 1.0  # read by no trainer: upstream's node has it, so its files and commands load


def knowledge_gap(text_features, hand_crafted):
    """KgCoOp's term: 1 - the mean over classes of cos(g_c, w0_c), as upstream's code computes it.

    text_features: (C, D) the learned prompts' class features g (normalised; differentiable).
    hand_crafted: (C, D) the hand-written prompts' features w0 (normalised, frozen).
    Returns a float32 scalar. For unit vectors 1 - cos = |g - w0|^2 / 2: the paper writes the term
    as the mean squared distance, i.e. twice this value (so upstream's W is twice the paper's weight).
    """
    cosines = F.cosine_similarity(text_features.float(), hand_crafted.float(), dim=-1, eps=COSINE_EPS)
    return 1.0 - cosines.mean()


def hand_written_template(dataset_name):
    """The template of ``dataset_name`` in KGCOOP_TEMPLATES (a ConfigError names DATASET.NAME)."""
    return dataset_template(dataset_name, KGCOOP_TEMPLATES, "KGCOOP_TEMPLATES in trainers/kgcoop.py")


class KgCoOpCLIP(CoOpCLIP):
    """CoOp's prompted CLIP plus the hand-written prompts' features of the current classes.

    ``forward(image)``: logits (B, C) in evaluation; in a training step a ``TrainingOutput`` with
    the term ``loss_kg`` of weight ``weight`` (W). The prompted text features are computed once
    per step and serve both the logits and the term.
    """

    def __init__(self, clip_model, prompt_learner, hand_crafted, weight):
        super().__init__(clip_model, prompt_learner)
        # A plain attribute, not a buffer: computed once on the device, never saved (checkpoints
        # hold the learned context only, and a base-class model evaluates on new classes).
        self.hand_crafted = hand_crafted
        self.weight = weight

    def forward(self, image):
        text_features = self.text_features()  # (C, D): one text-tower pass per training step
        logits = self.classify(self.encode_image(image), text_features)
        if not self.training_step:
            return logits
        gap = knowledge_gap(text_features, self.hand_crafted.get(self.clip))
        return TrainingOutput(logits, {KG_TERM: LossTerm(gap, self.weight)})


@TRAINER_REGISTRY.register()
class KgCoOp(CoOp):
    """KgCoOp; reads TRAINER.COOP (CoOp's keys, plus W)."""

    # Upstream's learner also saves two tensors that nothing reads (``bias_vectors`` (1, 512) and
    # ``meta_net.linear1``): its checkpoints load with them left out, named in one log line.
    IGNORED_UPSTREAM_KEYS = ("bias_vectors", "meta_net.")

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        node = cls.node_of(cfg)
        check_method_keys(cls.node_path(), node, [("W", node.W >= 0, "a weight >= 0 (0: CoOp's loss)")])
        hand_written_template(cfg.DATASET.NAME)  # an unknown dataset fails before anything is built

    def build_prompted_model(self, clip_model, classnames):
        template = hand_written_template(self.cfg.DATASET.NAME)
        names = [name.replace("_", " ") for name in classnames]
        print(f"Hand-written prompts (W = {self.method_cfg.W}): {[template.format(n) for n in names[:3]]}")
        hand_crafted = FrozenTextFeatures(lambda clip: ensemble_text_features(clip, [template], classnames))
        return KgCoOpCLIP(clip_model, self.build_learner(clip_model, classnames), hand_crafted, self.method_cfg.W)
