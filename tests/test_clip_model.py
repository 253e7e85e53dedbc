"""clip/model.py: numerics against open_clip (test-only reference), prompt injection against a
hand-built layer-by-layer computation, precision handling, and dimension inference."""

import math

import pytest
import torch

import clip
from clip.model import CLIP, build_model, infer_dimensions
from tests.tiny_clip import tiny_resnet_state_dict, tiny_vit_state_dict

open_clip = pytest.importorskip("open_clip")

TEXTS = ["a photo of a great white shark.", "X X 2012 Audi TTS Coupe.", "polka-dotted texture."]


def randomized(state_dict, seed=1):
    """A copy whose biases, norm scales and BatchNorm statistics are random too: initialisation
    leaves them at 0 / 1 (and every ResNet bn3 scale at 0, which would hide the residual
    branches), so a comparison with them untouched could miss errors in those terms."""
    generator = torch.Generator().manual_seed(seed)
    out = dict(state_dict)
    for key, value in state_dict.items():
        if key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(value.shape, generator=generator)
        elif key.endswith(("bias", "running_mean")):
            out[key] = 0.1 * torch.randn(value.shape, generator=generator)
        elif value.dim() == 1 and key.endswith("weight"):  # LayerNorm / BatchNorm scales
            out[key] = 1 + 0.1 * torch.randn(value.shape, generator=generator)
    return out


def open_clip_reference(state_dict):
    """open_clip's model for an OpenAI-layout state dict, in float32 (open_clip builds it with
    fp16 matmul weights; .float() and a second load restore the exact fp32 values)."""
    reference = open_clip.model.build_model_from_openai_state_dict(dict(state_dict))
    reference.float().load_state_dict(state_dict)
    return reference.eval()


def images_for(model, batch, seed=0):
    resolution = model.visual.input_resolution
    return torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))


def max_abs_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


# --- Equivalence with open_clip -------------------------------------------------------------
@pytest.mark.parametrize(
    "make_state_dict",
    [
        lambda: tiny_vit_state_dict(vision_width=128, transformer_width=128, vision_layers=3),  # 2 heads each
        lambda: tiny_resnet_state_dict(vision_layers=(2, 1, 1, 1)),
    ],
    ids=["vit", "resnet"],
)
@torch.no_grad()
def test_tiny_model_features_match_open_clip(make_state_dict):
    state_dict = randomized(make_state_dict())
    ours, reference = build_model(state_dict), open_clip_reference(state_dict)
    images, text = images_for(ours, batch=2), clip.tokenize(TEXTS)
    assert max_abs_diff(ours.encode_image(images), reference.encode_image(images)) <= 1e-5
    assert max_abs_diff(ours.encode_text(text), reference.encode_text(text)) <= 1e-5


FULL_SIZE_VISION = {
    "ViT-B/16": dict(layers=12, width=768, patch_size=16, image_size=224),
    "RN50": dict(layers=(3, 4, 6, 3), width=64, image_size=224),
}


@pytest.mark.parametrize("name", FULL_SIZE_VISION)
@torch.no_grad()
def test_full_size_features_match_open_clip(name):
    # open_clip's CLIP with OpenAI's configuration is built directly in fp32 (faster than going
    # through build_model_from_openai_state_dict at this size); its state dict is OpenAI's layout.
    torch.manual_seed(0)
    reference = open_clip.model.CLIP(
        embed_dim=512 if name == "ViT-B/16" else 1024,
        quick_gelu=True,
        vision_cfg=open_clip.model.CLIPVisionCfg(**FULL_SIZE_VISION[name]),
        text_cfg=open_clip.model.CLIPTextCfg(context_length=77, vocab_size=49408, width=512, heads=8, layers=12),
    )
    state_dict = randomized(reference.state_dict())
    reference.load_state_dict(state_dict)
    ours = build_model(state_dict)
    images, text = images_for(ours, batch=1), clip.tokenize(TEXTS[:1])
    for mine, theirs in [
        (ours.encode_image(images), reference.eval().encode_image(images)),
        (ours.encode_text(text), reference.encode_text(text)),
    ]:
        assert max_abs_diff(mine, theirs) <= 1e-3 * theirs.abs().max().item()


@torch.no_grad()
def test_open_clip_state_dict_with_other_heads_and_gelu_needs_the_overrides():
    """LAION ViT-H/14-like: vision head width 80 (not 64) and exact GELU; the state dict cannot
    tell, so build_model takes vision_heads / quick_gelu (loading by file: test_clip_open_clip.py)."""
    torch.manual_seed(0)
    reference = open_clip.model.CLIP(
        embed_dim=32,
        quick_gelu=False,
        vision_cfg=open_clip.model.CLIPVisionCfg(layers=2, width=160, head_width=80, patch_size=8, image_size=32),
        text_cfg=open_clip.model.CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2),
    )
    state_dict = randomized(reference.state_dict())
    reference.load_state_dict(state_dict)
    images, text = torch.randn(2, 3, 32, 32), clip.tokenize(TEXTS[:2])
    with pytest.raises(clip.CLIPWeightsError, match="vision attention width 160 is not a multiple of 64.*vision_heads"):
        build_model(state_dict)
    ours = build_model(state_dict, vision_heads=2, quick_gelu=False)
    assert max_abs_diff(ours.encode_image(images), reference.eval().encode_image(images)) <= 1e-5
    assert max_abs_diff(ours.encode_text(text), reference.encode_text(text)) <= 1e-5


def test_fresh_model_has_openai_temperature():
    torch.manual_seed(0)
    model = CLIP(**infer_dimensions(tiny_vit_state_dict()))
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07), rel=1e-6)


def test_state_dict_round_trips_with_openai_names():
    for state_dict in (tiny_vit_state_dict(), tiny_resnet_state_dict()):
        model = build_model(state_dict)
        assert not model.training
        assert list(model.state_dict()) == list(state_dict)
        assert all(torch.equal(model.state_dict()[key], value) for key, value in state_dict.items())  # copies
    assert {
        "visual.transformer.resblocks.1.attn.in_proj_weight",
        "visual.ln_post.bias",
        "transformer.resblocks.0.mlp.c_proj.weight",
        "logit_scale",
    } <= set(tiny_vit_state_dict())
    assert {
        "visual.layer1.0.downsample.0.weight",
        "visual.layer1.0.downsample.1.running_var",
        "visual.attnpool.c_proj.bias",
        "visual.bn3.num_batches_tracked",
    } <= set(tiny_resnet_state_dict())


# --- Dimension inference ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "dims",
    [
        dict(
            embed_dim=48,
            image_resolution=48,
            vision_layers=3,
            vision_width=128,
            vision_patch_size=16,
            context_length=77,
            vocab_size=49408,
            transformer_width=128,
            transformer_heads=2,
            transformer_layers=3,
        ),
        dict(
            embed_dim=16,
            image_resolution=96,
            vision_layers=(1, 2, 1, 1),
            vision_width=16,
            vision_patch_size=None,
            context_length=77,
            vocab_size=49408,
            transformer_width=64,
            transformer_heads=1,
            transformer_layers=1,
        ),
    ],
    ids=["vit", "resnet"],
)
def test_dimensions_are_inferred_from_the_state_dict(dims):
    state_dict = CLIP(**dims).state_dict()
    assert infer_dimensions(state_dict) == dims


def test_archive_attribute_keys_are_ignored_and_bad_state_dicts_are_named():
    state_dict = tiny_vit_state_dict()
    extra = {
        **state_dict,
        "input_resolution": torch.tensor(32),
        "context_length": torch.tensor(77),
        "vocab_size": torch.tensor(49408),
    }
    assert set(build_model(extra).state_dict()) == set(state_dict)
    with pytest.raises(clip.CLIPWeightsError, match="not a CLIP state dict in OpenAI's layout: no 'text_projection'"):
        build_model({key: value for key, value in state_dict.items() if key != "text_projection"})
    with pytest.raises(clip.CLIPWeightsError, match="neither 'visual.proj'"):
        build_model({key: value for key, value in state_dict.items() if key != "visual.proj"})
    with pytest.raises(clip.CLIPWeightsError, match="float64"):
        build_model({key: value.double() for key, value in state_dict.items()})
    # A torchvision-style image model: what is missing is named, not a KeyError.
    with pytest.raises(clip.CLIPWeightsError, match=r"no 'text_projection' \(keys found: conv1.weight, fc.weight\)"):
        build_model({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)})
    # The right keys plus one more, or one missing block parameter: every key must fit.
    with pytest.raises(clip.CLIPWeightsError, match=r"no keys missing, 1 key \(logit_bias\) unexpected"):
        build_model({**state_dict, "logit_bias": torch.zeros([])})
    incomplete = {key: value for key, value in state_dict.items() if key != "transformer.resblocks.1.ln_2.bias"}
    with pytest.raises(clip.CLIPWeightsError, match=r"1 key \(transformer.resblocks.1.ln_2.bias\) missing"):
        build_model(incomplete)


# --- Prompt injection ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prompted():
    """A 4-block ViT CLIP (widths 128, 2 heads) with random norms and biases, its open_clip
    twin (for hand-built references made of independent blocks) and inputs."""
    state_dict = randomized(
        tiny_vit_state_dict(seed=3, vision_layers=4, vision_width=128, transformer_width=128, transformer_layers=4)
    )
    ours, reference = build_model(state_dict), open_clip_reference(state_dict)
    generator = torch.Generator().manual_seed(5)
    return dict(
        ours=ours,
        reference=reference,
        images=images_for(ours, batch=2),
        text=clip.tokenize(TEXTS[:2]),
        randn=lambda *shape: torch.randn(*shape, generator=generator),
    )


@torch.no_grad()
def test_no_prompts_and_depth_zero_are_plain_clip(prompted):
    model, images, text = prompted["ours"], prompted["images"], prompted["text"]
    plain_image, plain_text = model.encode_image(images), model.encode_text(text)
    # Empty prompt arguments take the plain path: the same kernels on the same inputs, so bitwise.
    assert torch.equal(model.encode_image(images, deep_prompts=[]), plain_image)
    assert torch.equal(model.encode_image(images, shallow_prompts=None, deep_prompts=None), plain_image)
    assert torch.equal(model.encode_text(text, deep_prompts=[]), plain_text)
    assert torch.equal(model.encode_text(text, prompt_embeddings=model.token_embedding(text)), plain_text)
    # all tokens projected vs the class token alone: another matmul shape, equal up to rounding
    assert torch.allclose(model.encode_image(images, return_tokens=True)[:, 0], plain_image, rtol=0, atol=1e-6)


def hand_built_text(reference, text, embeddings, deep_prompts, n):
    """Layer by layer with open_clip's blocks: overwrite positions 1..n before blocks 1..J-1."""
    x = embeddings + reference.positional_embedding
    for index, block in enumerate(reference.transformer.resblocks):
        if 1 <= index <= len(deep_prompts):
            x = x.clone()
            x[:, 1 : 1 + n] = deep_prompts[index - 1]
        x = block(x, attn_mask=reference.attn_mask)
    tokens = reference.ln_final(x) @ reference.text_projection  # (N, L, D)
    return tokens, tokens[torch.arange(len(text)), text.argmax(-1)]


@torch.no_grad()
def test_text_prompts_match_hand_built_computation(prompted):
    model, reference, text, randn = prompted["ours"], prompted["reference"], prompted["text"], prompted["randn"]
    n, width = 2, 128
    embeddings = model.token_embedding(text).clone()
    embeddings[:, 1 : 1 + n] = randn(n, width)  # context vectors, as a prompt learner inserts them
    deep_prompts = [randn(n, width), randn(2, n, width)]  # shared by all rows / one per row
    tokens, features = hand_built_text(reference, text, embeddings, deep_prompts, n)
    assert max_abs_diff(model.encode_text(text, embeddings, deep_prompts), features) <= 1e-5
    all_tokens = model.encode_text(text, embeddings, deep_prompts, return_tokens=True)
    assert all_tokens.shape == (2, 77, 32)
    assert max_abs_diff(all_tokens, tokens) <= 1e-5
    # the prompts matter, and a deeper prompt list changes the result
    assert max_abs_diff(model.encode_text(text, embeddings, deep_prompts[:1]), features) > 1e-3


def hand_built_image(reference, images, shallow, deep_prompts):
    """Layer by layer with open_clip's blocks: patches + class token + positions, prompts appended,
    ln_pre, the last n tokens overwritten before blocks 1..J-1, ln_post and proj on every token."""
    visual = reference.visual
    patches = visual.conv1(images).flatten(2).transpose(1, 2)  # (N, G*G, width)
    class_token = visual.class_embedding.expand(len(images), 1, -1)
    x = torch.cat([class_token, patches], dim=1) + visual.positional_embedding
    x = visual.ln_pre(torch.cat([x, shallow], dim=1))
    n = shallow.shape[1]
    for index, block in enumerate(visual.transformer.resblocks):
        if 1 <= index <= len(deep_prompts):
            x = x.clone()
            x[:, -n:] = deep_prompts[index - 1]
        x = block(x)
    return visual.ln_post(x) @ visual.proj  # (N, 1 + G*G + n, D)


@torch.no_grad()
def test_image_prompts_match_hand_built_computation(prompted):
    model, reference, images, randn = prompted["ours"], prompted["reference"], prompted["images"], prompted["randn"]
    n, width = 3, 128
    shallow = randn(2, n, width)  # one per image
    deep_prompts = [randn(n, width), randn(2, n, width)]
    expected = hand_built_image(reference, images, shallow, deep_prompts)
    tokens = model.encode_image(images, shallow, deep_prompts, return_tokens=True)
    assert tokens.shape == (2, 1 + 4 * 4 + n, 32)
    assert max_abs_diff(tokens, expected) <= 1e-5
    assert max_abs_diff(model.encode_image(images, shallow, deep_prompts), expected[:, 0]) <= 1e-5
    # a shared (n, width) shallow prompt is broadcast to every image
    shared = model.encode_image(images, shallow[0], deep_prompts, return_tokens=True)
    assert (
        max_abs_diff(shared, hand_built_image(reference, images, shallow[:1].expand(2, -1, -1), deep_prompts)) <= 1e-5
    )


def test_gradients_reach_every_prompt(prompted):
    model, images, text, randn = prompted["ours"], prompted["images"], prompted["text"], prompted["randn"]
    text_prompts = [randn(2, 128).requires_grad_() for _ in range(3)]
    image_prompts = [randn(2, 128).requires_grad_() for _ in range(4)]
    embeddings = model.token_embedding(text).detach().requires_grad_()
    loss = model.encode_text(text, embeddings, text_prompts).square().sum()
    loss = loss + model.encode_image(images, image_prompts[0], image_prompts[1:]).square().sum()
    loss.backward()
    for prompt in [embeddings, *text_prompts, *image_prompts]:
        assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    model.zero_grad()


def test_prompt_errors_are_clear(prompted):
    model, images, text, randn = prompted["ours"], prompted["images"], prompted["text"], prompted["randn"]
    with pytest.raises(ValueError, match="pass shallow_prompts too"):
        model.encode_image(images, deep_prompts=[randn(2, 128)])
    with pytest.raises(
        ValueError, match=r"deep prompt 0 \(before block 1\) has 3 tokens but is written to positions 17..18"
    ):
        model.encode_image(images, randn(2, 128), [randn(3, 128)])
    with pytest.raises(ValueError, match="at most 3 deep prompts"):
        model.encode_text(text, deep_prompts=[randn(2, 128)] * 4)
    with pytest.raises(
        ValueError, match=r"shallow_prompts must have shape \(n, 128\) or \(2, n, 128\), got \(3, 2, 128\)"
    ):
        model.encode_image(images, randn(3, 2, 128))
    with pytest.raises(ValueError, match=r"prompt_embeddings must have shape \(2, 77, 128\)"):
        model.encode_text(text, prompt_embeddings=randn(2, 77, 64))
    with pytest.raises(ValueError, match=r"images must have shape \(N, 3, 32, 32\)"):
        model.encode_image(torch.zeros(1, 3, 64, 64))
    resnet = build_model(tiny_resnet_state_dict())
    for kwargs in (dict(shallow_prompts=randn(2, 256)), dict(deep_prompts=[randn(2, 256)])):
        with pytest.raises(ValueError, match="ModifiedResNet image tower has no token sequence"):
            resnet.encode_image(images_for(resnet, 1), **kwargs)


# --- Precision --------------------------------------------------------------------------------
def test_fp16_state_dict_gives_openai_mixed_storage_and_fp32_stays_fp32():
    state_dict = tiny_vit_state_dict()
    assert {value.dtype for value in build_model(state_dict).state_dict().values()} == {torch.float32}
    mixed = build_model({key: value.half() for key, value in state_dict.items()})
    dtypes = {key: value.dtype for key, value in mixed.state_dict().items()}
    assert mixed.dtype == torch.float16
    for key in (
        "visual.conv1.weight",
        "visual.proj",
        "text_projection",
        "transformer.resblocks.0.attn.in_proj_weight",
        "transformer.resblocks.0.attn.in_proj_bias",
        "visual.transformer.resblocks.1.mlp.c_fc.bias",
    ):
        assert dtypes[key] == torch.float16, key
    for key in (
        "ln_final.weight",
        "visual.ln_pre.bias",
        "token_embedding.weight",
        "positional_embedding",
        "visual.class_embedding",
        "visual.positional_embedding",
        "logit_scale",
    ):
        assert dtypes[key] == torch.float32, key


@pytest.mark.parametrize("kind", ["vit", "resnet"])
@torch.no_grad()
def test_forward_in_reduced_precision_and_autocast_is_close_to_fp32(kind):
    state_dict = randomized(tiny_vit_state_dict() if kind == "vit" else tiny_resnet_state_dict())
    reference = build_model(state_dict)
    images, text = images_for(reference, batch=2), clip.tokenize(TEXTS[:2])
    expected_image, expected_text = reference.encode_image(images), reference.encode_text(text)
    variants = {
        "openai mixed fp16": build_model({key: value.half() for key, value in state_dict.items()}),
        "whole model fp16": build_model(state_dict).half(),
        "whole model bf16": build_model(state_dict).to(torch.bfloat16),
    }
    for name, model in variants.items():
        image_features, text_features = model.encode_image(images), model.encode_text(text)
        assert image_features.dtype == text_features.dtype == model.dtype, name
        assert max_abs_diff(image_features, expected_image) <= 0.05 * expected_image.abs().max(), name
        assert max_abs_diff(text_features, expected_text) <= 0.05 * expected_text.abs().max(), name
    with torch.autocast("cpu", dtype=torch.bfloat16):
        image_features, text_features = reference.encode_image(images), reference.encode_text(text)
    assert image_features.dtype == torch.bfloat16
    assert max_abs_diff(image_features, expected_image) <= 0.05 * expected_image.abs().max()
    assert max_abs_diff(text_features, expected_text) <= 0.05 * expected_text.abs().max()


@torch.no_grad()
def test_fp32_prompts_in_a_mixed_fp16_model(prompted):
    model = build_model({key: value.half() for key, value in prompted["ours"].state_dict().items()})
    images, text, randn = prompted["images"], prompted["text"], prompted["randn"]
    tokens = model.encode_image(images, randn(2, 128), [randn(2, 128)], return_tokens=True)
    text_tokens = model.encode_text(text, model.token_embedding(text).float(), [randn(2, 128)], return_tokens=True)
    assert tokens.dtype == text_tokens.dtype == torch.float16
    assert torch.isfinite(tokens).all() and torch.isfinite(text_tokens).all()
