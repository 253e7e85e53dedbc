"""Zero-shot CLIP, no training (run with --eval-only): CoOp's baselines.

- ``ZeroshotCLIP``: one hand-written template per dataset.
- ``ZeroshotCLIP2``: prompt ensembling over the 7 templates OpenAI selected for ImageNet, plus the
  dataset's own template on every dataset except ImageNet; the per-template normalised text
  features are averaged and normalised again.

Both read their precision from TRAINER.COOP.PREC (CoOp's key, as upstream).
"""

import torch
import torch.nn.functional as F

import clip
from dassl.config import ConfigError
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.engine.precision import resolve_precision

from .backbone import build_frozen_clip

# Keyed by the registered dataset name.
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
# each trainer builds its own list from it (the official ZeroshotCLIP2 appends to a class-level
# list, so a second instance in one process got the dataset template twice).
IMAGENET_TEMPLATES_SELECT = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def dataset_template(dataset_name):
    """The ZeroshotCLIP template of ``dataset_name`` (a registered dataset name)."""
    template = CUSTOM_TEMPLATES.get(dataset_name)
    if template is None:
        raise ConfigError(
            f"No zero-shot template for DATASET.NAME = {dataset_name!r}; known: {sorted(CUSTOM_TEMPLATES)} "
            f"(add one to CUSTOM_TEMPLATES in trainers/zsclip.py)"
        )
    return template


@torch.no_grad()
def ensemble_text_features(clip_model, templates, classnames, device):
    """(C, D): per template, the normalised features of template.format(name) for every class
    ("_" read as a space); averaged over the templates and normalised again."""
    names = [name.replace("_", " ") for name in classnames]
    per_template = []
    for template in templates:
        tokens = clip.tokenize([template.format(name) for name in names]).to(device)
        per_template.append(F.normalize(clip_model.encode_text(tokens), dim=-1))
    return F.normalize(torch.stack(per_template).mean(dim=0), dim=-1)


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
        with self.precision.autocast(self.device):
            self.text_features = ensemble_text_features(self.clip_model, templates, classnames, self.device)  # (C, D)

    def model_inference(self, image):
        """image: (B, 3, R, R) -> logits (B, C) float32."""
        with self.precision.autocast(self.device):
            image_features = F.normalize(self.clip_model.encode_image(image.type(self.clip_model.dtype)), dim=-1)
            logit_scale = self.clip_model.logit_scale.exp()
            return (logit_scale * image_features @ self.text_features.t()).float()


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
