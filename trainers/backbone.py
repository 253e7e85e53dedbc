"""The frozen CLIP every prompting trainer starts from."""

import clip
from dassl.config import ConfigError


def load_clip_to_cpu(cfg):
    """Build the CLIP of ``MODEL.BACKBONE`` on the CPU, in float32, in eval mode.

    ``MODEL.BACKBONE.PATH`` (a local file: OpenAI TorchScript archive or a plain OpenAI-layout
    state dict) wins over ``MODEL.BACKBONE.NAME`` (an OpenAI model name, downloaded once into the
    CLIP cache; see docs/clip.md). Trainers move the model to their device and precision.
    """
    source = cfg.MODEL.BACKBONE.PATH or cfg.MODEL.BACKBONE.NAME
    if not source:
        raise ConfigError(
            "No CLIP backbone given: set MODEL.BACKBONE.NAME (e.g. ViT-B/16, via --backbone or the "
            "method config) or MODEL.BACKBONE.PATH (a local checkpoint file)"
        )
    model, _ = clip.load(source, device="cpu")
    return model.float().eval()
