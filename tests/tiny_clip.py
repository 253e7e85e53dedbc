"""Tiny random CLIPs in OpenAI's state-dict layout, for tests that must not download weights.

The state dicts load through the same `clip.build_model` / `clip.load` path as real weights.
"""

import json
import os
import warnings

import torch

from clip.model import CLIP, build_model, infer_dimensions

TINY_TEXT_DIMS = dict(context_length=77, vocab_size=49408, transformer_width=64, transformer_layers=2)


def _random_state_dict(seed, **dims):
    """State dict of a freshly initialised CLIP(**dims), drawn from torch's RNG seeded with
    `seed` inside a forked RNG state (the caller's global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**dims, transformer_heads=dims["transformer_width"] // 64)
    return model.state_dict()


def tiny_vit_state_dict(
    seed=0,
    embed_dim=32,
    image_resolution=32,
    vision_layers=2,
    vision_width=64,
    vision_patch_size=8,
    context_length=77,
    vocab_size=49408,
    transformer_width=64,
    transformer_layers=2,
):
    """fp32 random ViT CLIP state dict (OpenAI layout); defaults: 32 px images, 4x4 patches of
    8 px, 2 blocks of width 64 in each tower, 32-d joint space."""
    return _random_state_dict(
        seed,
        embed_dim=embed_dim,
        image_resolution=image_resolution,
        vision_layers=vision_layers,
        vision_width=vision_width,
        vision_patch_size=vision_patch_size,
        context_length=context_length,
        vocab_size=vocab_size,
        transformer_width=transformer_width,
        transformer_layers=transformer_layers,
    )


def tiny_resnet_state_dict(
    seed=0,
    embed_dim=32,
    image_resolution=64,
    vision_layers=(1, 1, 1, 1),
    vision_width=8,
    context_length=77,
    vocab_size=49408,
    transformer_width=64,
    transformer_layers=2,
):
    """fp32 random ModifiedResNet CLIP state dict (OpenAI layout); defaults: 64 px images, one
    bottleneck per stage, stem width 8 (attention pool width 256, 4 heads)."""
    return _random_state_dict(
        seed,
        embed_dim=embed_dim,
        image_resolution=image_resolution,
        vision_layers=tuple(vision_layers),
        vision_width=vision_width,
        vision_patch_size=None,
        context_length=context_length,
        vocab_size=vocab_size,
        transformer_width=transformer_width,
        transformer_layers=transformer_layers,
    )


def open_clip_config(state_dict, quick_gelu=True, vision_head_width=64, text_heads=None):
    """The open_clip_config.json content ({"model_cfg": ...}, as open_clip's Hugging Face repositories
    ship it) of a state dict in OpenAI's layout; defaults: OpenAI's architecture."""
    dims = infer_dimensions(state_dict)
    resnet = isinstance(dims["vision_layers"], tuple)
    vision_cfg = dict(
        image_size=dims["image_resolution"],
        layers=list(dims["vision_layers"]) if resnet else dims["vision_layers"],
        width=dims["vision_width"],
        head_width=vision_head_width,
    )
    if not resnet:
        vision_cfg["patch_size"] = dims["vision_patch_size"]
    text_cfg = dict(
        context_length=dims["context_length"],
        vocab_size=dims["vocab_size"],
        width=dims["transformer_width"],
        heads=text_heads or dims["transformer_width"] // 64,
        layers=dims["transformer_layers"],
    )
    model_cfg = dict(embed_dim=dims["embed_dim"], quick_gelu=quick_gelu, vision_cfg=vision_cfg, text_cfg=text_cfg)
    return {"model_cfg": model_cfg, "preprocess_cfg": {}}


def write_open_clip_config(folder, content):
    with open(os.path.join(folder, "open_clip_config.json"), "w") as file:
        json.dump(content, file, indent=2)


def save_tiny_clip(path, jit=False, resnet=False, seed=0, record=True, **dims):
    """Write a tiny CLIP checkpoint to `path` and return its state dict.

    jit=False: a torch.save'd state dict, with (record=True) an open_clip_config.json next to it
    that records its architecture (OpenAI's: QuickGELU, 64-wide heads), which plain state dicts
    need. jit=True: a TorchScript archive like OpenAI's, i.e. a traced CLIP (image, text) ->
    logits whose state dict also holds the archive attributes input_resolution, context_length
    and vocab_size. resnet selects the image tower; dims go to tiny_vit_state_dict /
    tiny_resnet_state_dict.
    """
    state_dict = (tiny_resnet_state_dict if resnet else tiny_vit_state_dict)(seed=seed, **dims)
    if not jit:
        torch.save(state_dict, path)
        if record:
            write_open_clip_config(os.path.dirname(os.path.abspath(path)), open_clip_config(state_dict))
        return state_dict
    model = build_model(state_dict)
    archive_attributes = dict(
        input_resolution=model.visual.input_resolution, context_length=model.context_length, vocab_size=model.vocab_size
    )
    for name, value in archive_attributes.items():  # plain ints on our model, tensors in OpenAI's archives
        vars(model).pop(name, None)
        model.register_buffer(name, torch.tensor(value))
    image = torch.zeros(1, 3, model.visual.input_resolution, model.visual.input_resolution)
    text = torch.zeros(1, model.context_length, dtype=torch.long)
    text[0, :2] = torch.tensor([49406, 49407])
    with warnings.catch_warnings():  # TorchScript's deprecation, and shape checks traced as constants
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.jit.save(torch.jit.trace(model, (image, text), check_trace=False), path)
    return state_dict
