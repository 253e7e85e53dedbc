"""The architecture of a CLIP checkpoint.

The weights give every width, depth, patch size and resolution (`infer_dimensions`). They do
not give the activation (QuickGELU or exact GELU) nor the number of attention heads (ViT-H/14's
vision width 1280 is 16 heads of 80, not 20 of 64). `resolve_architecture` takes those from a
record (OpenAI's TorchScript archives: always OpenAI's architecture; an `open_clip_config.json`
next to the weights, as open_clip's Hugging Face repositories ship it) or from the caller. What
neither gives is OpenAI's architecture (QuickGELU, heads of 64), as OpenAI's `clip.load` assumes
for every file: `assumption_note` says so in one line, with the settings that override it. Only
a fact that OpenAI's rule cannot give (a width that 64 does not divide) is an error naming the
setting to provide.
"""

import json
import math
import os

ARCHIVE_ATTRIBUTE_KEYS = ("input_resolution", "context_length", "vocab_size")  # in OpenAI's archives, not weights
HEAD_WIDTH = 64  # OpenAI's rule: heads = width // 64 (ModifiedResNet: attention-pool width 32 * width)
OPEN_CLIP_CONFIG = "open_clip_config.json"

# How the caller gives each fact that weights do not record: the trainers' config key, clip.load's argument.
SETTINGS = {
    "quick_gelu": ("MODEL.BACKBONE.ACTIVATION", "quick_gelu"),
    "vision_heads": ("MODEL.BACKBONE.VISION_HEADS", "vision_heads"),
    "text_heads": ("MODEL.BACKBONE.TEXT_HEADS", "text_heads"),
}
_FACTS = {"quick_gelu": "the activation", "vision_heads": "the vision heads", "text_heads": "the text heads"}

# open_clip model-config options that change the computation, with the values that mean
# OpenAI's architecture (what clip.model implements). Options missing from the file take
# open_clip's defaults, which are these values.
_OPENAI_EQUIVALENT_BLOCK = {
    "mlp_ratio": (4,),
    "ls_init_value": (None,),
    "act_kwargs": (None, {}),
    "norm_kwargs": (None, {}),
    "block_type": (None, "default"),
    "qk_norm": (False,),
    "scaled_cosine_attn": (False,),
    "scale_heads": (False,),
    "scale_attn_inner": (False,),
    "scale_attn": (False,),
    "scale_fc": (False,),
    "final_ln_after_pool": (False,),
}
_OPENAI_EQUIVALENT = {
    "model_cfg": {"custom_text": (False,), "multimodal_cfg": (None,), "init_logit_bias": (None,)},
    "vision_cfg": {
        **_OPENAI_EQUIVALENT_BLOCK,
        "timm_model_name": (None,),
        "attentional_pool": (False,),
        "no_ln_pre": (False,),
        "pos_embed_type": ("learnable",),
        "pool_type": ("tok",),
        "global_average_pool": (False,),
    },
    "text_cfg": {
        **_OPENAI_EQUIVALENT_BLOCK,
        "hf_model_name": (None,),
        "embed_cls": (False,),
        "no_causal_mask": (False,),
        "pool_type": ("argmax",),
        "proj_type": ("linear",),
        "proj_bias": (False,),
    },
}


class CLIPWeightsError(RuntimeError):
    """CLIP weights that cannot be used: unknown name, failed download (offline), wrong SHA256,
    a file or state dict that is not a CLIP checkpoint, or an architecture that is not known.
    The message says which file and what to do."""


# --- What the weights give -------------------------------------------------------------------
def _require(state_dict, key):
    if key not in state_dict:
        raise CLIPWeightsError(
            f"not a CLIP state dict in OpenAI's layout: no {key!r} "
            f"(keys found: {', '.join(list(state_dict)[:5])}{', ...' if len(state_dict) > 5 else ''})"
        )
    return state_dict[key]


def _count_blocks(state_dict, prefix):
    """Number of blocks <prefix><i>.* in the state dict; the indices must be 0..count-1."""
    indices = {int(key[len(prefix) :].split(".")[0]) for key in state_dict if key.startswith(prefix)}
    if indices != set(range(len(indices))):
        raise CLIPWeightsError(
            f"state dict blocks {prefix}<i> have indices {sorted(indices)}, expected 0..{len(indices) - 1}"
        )
    return len(indices)


def _grid_size(positional_embedding, key):
    """Side G of the token grid from a (G*G + 1, width) positional embedding."""
    grid = math.isqrt(positional_embedding.shape[0] - 1)
    if grid * grid + 1 != positional_embedding.shape[0]:
        raise CLIPWeightsError(f"{key} has {positional_embedding.shape[0]} rows, expected G*G + 1 for a square grid")
    return grid


def openai_heads(width):
    """OpenAI's head count for an attention width (heads of 64), or None if 64 does not divide it."""
    return width // HEAD_WIDTH if width % HEAD_WIDTH == 0 else None


def infer_dimensions(state_dict):
    """The CLIP constructor arguments of a state dict in OpenAI's layout.

    transformer_heads follows OpenAI's rule (width // 64; None when 64 does not divide the
    width): the weights do not record it. Raises CLIPWeightsError naming the missing key for a
    state dict that is not CLIP's.
    """
    dims = dict(
        embed_dim=_require(state_dict, "text_projection").shape[1],
        context_length=_require(state_dict, "positional_embedding").shape[0],
        vocab_size=_require(state_dict, "token_embedding.weight").shape[0],
        transformer_width=_require(state_dict, "ln_final.weight").shape[0],
        transformer_layers=_count_blocks(state_dict, "transformer.resblocks."),
    )
    dims["transformer_heads"] = openai_heads(dims["transformer_width"])
    if "visual.proj" in state_dict:
        conv = _require(state_dict, "visual.conv1.weight")  # (width, 3, patch, patch)
        grid = _grid_size(_require(state_dict, "visual.positional_embedding"), "visual.positional_embedding")
        dims.update(
            vision_width=conv.shape[0],
            vision_patch_size=conv.shape[-1],
            image_resolution=grid * conv.shape[-1],
            vision_layers=_count_blocks(state_dict, "visual.transformer.resblocks."),
        )
    elif "visual.attnpool.positional_embedding" in state_dict:
        grid = _grid_size(state_dict["visual.attnpool.positional_embedding"], "visual.attnpool.positional_embedding")
        dims.update(
            vision_width=_require(state_dict, "visual.layer1.0.conv1.weight").shape[0],
            vision_patch_size=None,
            image_resolution=grid * 32,
            vision_layers=tuple(_count_blocks(state_dict, f"visual.layer{stage}.") for stage in range(1, 5)),
        )
    else:
        raise CLIPWeightsError(
            "not a CLIP state dict in OpenAI's layout: neither 'visual.proj' (ViT) nor "
            "'visual.attnpool.positional_embedding' (ModifiedResNet)"
        )
    return dims


def vision_attention_width(dims):
    """The width the image tower's attention runs at: the ViT width, or ModifiedResNet's pool width."""
    return dims["vision_width"] * (32 if isinstance(dims["vision_layers"], tuple) else 1)


def openai_architecture(dims):
    """OpenAI's rules: QuickGELU, 64-wide heads in both towers."""
    return dict(
        quick_gelu=True,
        vision_heads=openai_heads(vision_attention_width(dims)),
        text_heads=dims["transformer_heads"],
    )


# --- What open_clip_config.json gives --------------------------------------------------------
def find_open_clip_config(weights_path):
    """Path of the open_clip_config.json next to a weights file, or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights_path)), OPEN_CLIP_CONFIG)
    return path if os.path.isfile(path) else None


def _as_square(size):
    """open_clip's image_size (an int or [h, w]) as one int when square."""
    if size is None or isinstance(size, int):
        return size
    return size[0] if len(size) == 2 and size[0] == size[1] else tuple(size)


def read_open_clip_config(path, dims):
    """quick_gelu, vision_heads and text_heads from an open_clip model config (the file of open_clip's
    Hugging Face repositories, {"model_cfg": ..., "preprocess_cfg": ...}, or a bare model config).

    Its dimensions must match the weights' (`dims`) and it must not use an option that changes the
    computation away from OpenAI's architecture; either is a CLIPWeightsError naming the option.
    """
    try:
        with open(path) as file:
            content = json.load(file)
        model_cfg = content.get("model_cfg", content)
        vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    except (OSError, ValueError, AttributeError) as error:
        raise CLIPWeightsError(f"{path}: not a readable open_clip model config ({error})") from None
    for section, options in _OPENAI_EQUIVALENT.items():
        values = {"model_cfg": model_cfg, "vision_cfg": vision, "text_cfg": text}[section]
        for option, accepted in options.items():
            if option in values and values[option] not in accepted:
                raise CLIPWeightsError(
                    f"{path}: {section}.{option} = {values[option]!r} is not supported: clip/ implements "
                    f"OpenAI's architecture ({section}.{option} one of {list(accepted)})"
                )
    resnet = isinstance(dims["vision_layers"], tuple)
    described = {
        "embed_dim": (model_cfg.get("embed_dim"), dims["embed_dim"]),
        "vision_cfg.width": (vision.get("width"), dims["vision_width"]),
        "vision_cfg.layers": (
            tuple(vision["layers"]) if isinstance(vision.get("layers"), list) else vision.get("layers"),
            dims["vision_layers"],
        ),
        "vision_cfg.image_size": (_as_square(vision.get("image_size")), dims["image_resolution"]),
        "vision_cfg.patch_size": (None if resnet else vision.get("patch_size"), dims["vision_patch_size"]),
        "text_cfg.width": (text.get("width"), dims["transformer_width"]),
        "text_cfg.layers": (text.get("layers"), dims["transformer_layers"]),
        "text_cfg.context_length": (text.get("context_length"), dims["context_length"]),
        "text_cfg.vocab_size": (text.get("vocab_size"), dims["vocab_size"]),
    }
    for option, (stated, actual) in described.items():
        if stated is not None and stated != actual:
            raise CLIPWeightsError(f"{path}: {option} = {stated!r}, but the weights next to it have {actual!r}")
    head_width = vision.get("head_width", HEAD_WIDTH)  # open_clip's defaults: 64-wide vision heads,
    text_heads = text.get("heads", 8)  # 8 text heads, exact GELU
    if vision_attention_width(dims) % head_width or dims["transformer_width"] % text_heads:
        raise CLIPWeightsError(
            f"{path}: vision head_width {head_width} / text heads {text_heads} do not divide the widths "
            f"{vision_attention_width(dims)} / {dims['transformer_width']} of the weights"
        )
    return dict(
        quick_gelu=bool(model_cfg.get("quick_gelu", False)),
        vision_heads=vision_attention_width(dims) // head_width,
        text_heads=text_heads,
    )


# --- Putting the sources together --------------------------------------------------------------
def _hint(fact, dims):
    """What to set a fact to, for the error message."""
    if fact == "quick_gelu":
        return "quick_gelu for OpenAI's models and open_clip's '-quickgelu' ones, gelu for open_clip's others"
    width = vision_attention_width(dims) if fact == "vision_heads" else dims["transformer_width"]
    heads = openai_heads(width)
    rule = f"{heads} if they are 64 wide as in OpenAI's models" if heads else "64 does not divide it"
    return f"width {width}: {rule}" + ("; ViT-H/14's are 80 wide" if fact == "vision_heads" else "")


def _describe(fact, value):
    if fact == "quick_gelu":
        return "quick_gelu" if value else "gelu"
    return str(value)


def unrecorded_facts(record, **given):
    """The facts (keys of SETTINGS) that neither the record nor the caller give, in SETTINGS order."""
    return [fact for fact in SETTINGS if given.get(fact) is None and (record or {}).get(fact) is None]


def resolve_architecture(dims, record, record_name, **given):
    """{quick_gelu, vision_heads, text_heads} for build_model.

    record: what the file says (a dict with those keys) or None; record_name: where it comes from,
    for messages. given: the caller's quick_gelu / vision_heads / text_heads, None = not given.
    A fact that neither gives is OpenAI's (``openai_architecture``: QuickGELU, heads of 64), as
    OpenAI's clip.load assumes; ``unrecorded_facts`` names those facts, ``assumption_note`` is
    the line to print. A given value that contradicts the record, or a fact that OpenAI's rule
    cannot give either (64 does not divide the width), is a CLIPWeightsError naming the setting.
    """
    resolved, missing = {}, []
    assumed = openai_architecture(dims)
    for fact, (key, argument) in SETTINGS.items():
        value, recorded = given.get(fact), (record or {}).get(fact)
        if value is not None and recorded is not None and value != recorded:
            raise CLIPWeightsError(
                f"{key} (clip.load's {argument}) gives {_describe(fact, value)}, "
                f"but {record_name} says {_describe(fact, recorded)}"
            )
        resolved[fact] = recorded if value is None else value
        if resolved[fact] is None:
            resolved[fact] = assumed[fact]
        if resolved[fact] is None:
            missing.append(fact)
    if missing:
        raise CLIPWeightsError(
            f"the weights do not record {', '.join(_FACTS[fact] for fact in missing)}, "
            f"no {OPEN_CLIP_CONFIG} lies next to them, and OpenAI's rule (heads of 64) does not fit: set "
            + ", ".join(f"{SETTINGS[fact][0]} ({_hint(fact, dims)})" for fact in missing)
            + f" (clip.load: {', '.join(SETTINGS[fact][1] + '=' for fact in missing)})"
        )
    return resolved


def assumption_note(path, architecture, assumed):
    """The one line that says which facts of ``path`` were taken from OpenAI's architecture
    (``assumed``: facts from ``unrecorded_facts``) and how to override them."""
    said = {
        "quick_gelu": "activation QuickGELU",
        "vision_heads": f"vision heads {architecture['vision_heads']}",
        "text_heads": f"text heads {architecture['text_heads']}",
    }
    facts = ", ".join(said[fact] for fact in assumed)
    if any(fact != "quick_gelu" for fact in assumed):
        facts += ", 64 wide"
    keys = ", ".join(
        "MODEL.BACKBONE.ACTIVATION gelu (LAION's and most other open_clip models)"
        if fact == "quick_gelu"
        else SETTINGS[fact][0]
        for fact in assumed
    )
    arguments = ", ".join(SETTINGS[fact][1] + "=" for fact in assumed)
    return (
        f"Note: {path} does not record its architecture: assuming OpenAI's ({facts}), as OpenAI's "
        f"clip.load does. For other weights set {keys} (clip.load: {arguments}), or put the model's "
        f"{OPEN_CLIP_CONFIG} beside the file"
    )
