"""The frozen CLIP every prompting trainer starts from."""

import clip
from clip.model import convert_weights
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


def build_frozen_clip(cfg, precision):
    """The CLIP of ``MODEL.BACKBONE`` for ``precision``: on the CPU, frozen, in eval mode.

    Storage follows the official codebases: under ``fp16``, OpenAI's mixed storage (matmul
    weights and projections float16; embeddings, LayerNorms and the logit scale float32), which
    is what their CLIP loader builds; under ``fp32``, ``amp`` and ``bf16``, float32 (autocast then
    lowers the compute). The model's ``dtype`` (conv1's) is the dtype inputs and prompts are cast to.

    Raises:
        ConfigError: INPUT.SIZE differs from the backbone's input resolution.
    """
    print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.PATH or cfg.MODEL.BACKBONE.NAME})")
    model = load_clip_to_cpu(cfg)
    resolution = model.visual.input_resolution
    if tuple(cfg.INPUT.SIZE) != (resolution, resolution):
        raise ConfigError(
            f"INPUT.SIZE {tuple(cfg.INPUT.SIZE)} does not match the backbone's input resolution "
            f"{resolution}: set INPUT.SIZE ({resolution}, {resolution})"
        )
    if precision.weight_dtype != model.dtype:
        convert_weights(model, precision.weight_dtype)
    return model.requires_grad_(False)
