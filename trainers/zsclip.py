"""Zero-shot CLIP, no training (run with --eval-only): CoOp's baselines.

- ``ZeroshotCLIP``: one hand-written template per dataset.
- ``ZeroshotCLIP2``: prompt ensembling over the 7 templates OpenAI selected for ImageNet, plus the
  dataset's own template on every dataset except ImageNet; the per-template normalised text
  features are averaged and normalised again.

Both read their precision from TRAINER.COOP.PREC (CoOp's key, as upstream). The templates and the
ensembling are in ``trainers/text.py``; the class text features are computed once, at the first
evaluation batch, outside autocast.
"""

import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.engine.precision import resolve_precision

from .backbone import build_frozen_clip
from .text import IMAGENET_TEMPLATES_SELECT, FrozenTextFeatures, dataset_template, ensemble_text_features


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(TrainerX):
    """Classify with CLIP's text features of the dataset's template; run with --eval-only."""

    CONFIG_NODE = "COOP"  # the TRAINER node it reads (its PREC only), as upstream

    def templates(self, dataset_name):
        """The templates whose text features are averaged (here: the dataset's one)."""
        return [dataset_template(dataset_name)]

    def build_model(self):
        cfg = self.cfg
        self.precision = resolve_precision(cfg.TRAINER.COOP.PREC, self.device)
        templates = self.templates(cfg.DATASET.NAME)
        self.clip_model = build_frozen_clip(cfg, self.precision).to(self.device)
        classnames = self.dm.dataset.classnames
        prompts = [templates[0].format(name.replace("_", " ")) for name in classnames]
        print(f"Prompts: {prompts[:3]}{' ...' if len(prompts) > 3 else ''}")
        self.class_text = FrozenTextFeatures(lambda clip: ensemble_text_features(clip, templates, classnames))

    def model_inference(self, image):
        """image: (B, 3, R, R) -> logits (B, C) float32."""
        text_features = self.class_text.get(self.clip_model)  # (C, D)
        with self.precision.autocast(self.device):
            image_features = F.normalize(self.clip_model.encode_image(image.type(self.clip_model.dtype)), dim=-1)
            logit_scale = self.clip_model.logit_scale.exp()
            return (logit_scale * image_features @ text_features.t()).float()


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Prompt ensembling: the 7 selected ImageNet templates, plus the dataset's template on every
    dataset except ImageNet (so ImageNet's variants get "a photo of a {}." as an 8th)."""

    def templates(self, dataset_name):
        templates = list(IMAGENET_TEMPLATES_SELECT)
        if dataset_name != "ImageNet":
            templates.append(dataset_template(dataset_name))
        print(f"Prompt ensembling (n={len(templates)}): {templates}")
        return templates
