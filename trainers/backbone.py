"""The frozen CLIP every prompting trainer starts from."""

import clip
from clip.model import convert_weights
from dassl.config import ConfigError

# MODEL.BACKBONE.ACTIVATION -> clip.load's quick_gelu ("" = as the checkpoint file records it).
ACTIVATIONS = {"": None, "quick_gelu": True, "gelu": False}


def load_clip_to_cpu(cfg):
    """Build the CLIP of ``MODEL.BACKBONE`` on the CPU, in float32, in eval mode.

    ``MODEL.BACKBONE.PATH`` (a local file: OpenAI TorchScript archive, open_clip checkpoint or
    other state dict, see docs/clip.md) wins over ``MODEL.BACKBONE.NAME`` (an OpenAI model name,
    downloaded once into the CLIP cache). For files that do not record their architecture,
    ``MODEL.BACKBONE.ACTIVATION``, ``VISION_HEADS`` and ``TEXT_HEADS`` give it (what they leave
    unset is OpenAI's architecture, as OpenAI's clip.load assumes, said in one line). Trainers move
    the model to their device and precision.
    """
    backbone = cfg.MODEL.BACKBONE
    source = backbone.PATH or backbone.NAME
    if not source:
        raise ConfigError(
            "No CLIP backbone given: set MODEL.BACKBONE.NAME (e.g. ViT-B/16, via --backbone or the "
            "method config) or MODEL.BACKBONE.PATH (a local checkpoint file)"
        )
    if backbone.ACTIVATION not in ACTIVATIONS:
        raise ConfigError(
            f"MODEL.BACKBONE.ACTIVATION = {backbone.ACTIVATION!r} is invalid: use quick_gelu, gelu, "
            f"or '' (as the checkpoint file records it)"
        )
    for key in ("VISION_HEADS", "TEXT_HEADS"):
        if backbone[key] < 0:
            raise ConfigError(f"MODEL.BACKBONE.{key} = {backbone[key]} is invalid: a head count, or 0 (from the file)")
    model, _ = clip.load(
        source,
        device="cpu",
        quick_gelu=ACTIVATIONS[backbone.ACTIVATION],
        vision_heads=backbone.VISION_HEADS or None,
        text_heads=backbone.TEXT_HEADS or None,
    )
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
