"""Zero-shot CLIP: one hand-written template per dataset, no training (CoOp's baseline)."""

import torch
import torch.nn.functional as F

import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.engine.precision import resolve_precision

from .backbone import build_frozen_clip

# Keyed by the registered dataset name (spec datasets.md §0.9).
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


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(TrainerX):
    """Classify with CLIP's text features of "template.format(class)"; run with --eval-only.

    Precision comes from TRAINER.COOP.PREC (CoOp's key; fp16 on GPU, fp32 on CPU by fallback).
    """

    def build_model(self):
        cfg = self.cfg
        precision = resolve_precision(cfg.TRAINER.COOP.PREC, self.device)
        template = CUSTOM_TEMPLATES.get(cfg.DATASET.NAME)
        if template is None:
            raise KeyError(f"No zero-shot template for dataset {cfg.DATASET.NAME!r}; known: {sorted(CUSTOM_TEMPLATES)}")
        self.clip_model = build_frozen_clip(cfg, precision).to(self.device)

        prompts = [template.format(name.replace("_", " ")) for name in self.dm.dataset.classnames]
        print(f"Prompts: {prompts[:3]}{' ...' if len(prompts) > 3 else ''}")
        with torch.no_grad():
            text_features = self.clip_model.encode_text(clip.tokenize(prompts).to(self.device))
        self.text_features = F.normalize(text_features, dim=-1)  # (C, D)

    def model_inference(self, image):
        """image: (B, 3, R, R) -> logits (B, C)."""
        image_features = F.normalize(self.clip_model.encode_image(image.type(self.clip_model.dtype)), dim=-1)
        logit_scale = self.clip_model.logit_scale.exp()
        return (logit_scale * image_features @ self.text_features.t()).float()
