"""clip/model.py follows OpenAI's module conventions, so that trainer files that assemble the
towers from the modules (CoOp, CoCoOp, KgCoOp, ProGrad, ...) get what encode_text / encode_image
give: (L, N, D) transformers, OpenAI's names and signatures, nn.MultiheadAttention's call.

The assembled encoders below are written the way such trainer files use the modules. They run
the same modules on the same inputs in the same order as encode_text / encode_image, so their
results are compared bitwise; results of other kernels (open_clip, nn.MultiheadAttention's own
path) are compared with a tolerance.
"""

import inspect

import pytest
import torch
from torch import nn

import clip
from clip.model import (
    CLIP,
    AttentionPool2d,
    Bottleneck,
    ModifiedResNet,
    ResidualAttentionBlock,
    Transformer,
    VisionTransformer,
    build_model,
)
from tests.test_clip_coop_style import TextEncoder  # the CoOp-style trainer file's text encoder
from tests.test_clip_model import images_for, open_clip_reference, randomized
from tests.tiny_clip import tiny_resnet_state_dict, tiny_vit_state_dict

open_clip = pytest.importorskip("open_clip")

TEXTS = ["a photo of a red circle.", "a photo of a green star, a type of shape.", "X X X X polka-dotted."]

# OpenAI's clip/model.py signatures (parameter names in order; defaults where it has them): the
# keyword-only extras of this package come after them.
OPENAI_SIGNATURES = {
    CLIP.__init__: "self embed_dim image_resolution vision_layers vision_width vision_patch_size context_length "
    "vocab_size transformer_width transformer_heads transformer_layers",
    VisionTransformer.__init__: "self input_resolution patch_size width layers heads output_dim",
    Transformer.__init__: "self width layers heads attn_mask=None",
    ResidualAttentionBlock.__init__: "self d_model n_head attn_mask=None",
    ModifiedResNet.__init__: "self layers output_dim heads input_resolution=224 width=64",
    AttentionPool2d.__init__: "self spacial_dim embed_dim num_heads output_dim=None",
    Bottleneck.__init__: "self inplanes planes stride=1",
    Transformer.forward: "self x",
    ResidualAttentionBlock.forward: "self x",
    ResidualAttentionBlock.attention: "self x",
    VisionTransformer.forward: "self x",
    ModifiedResNet.forward: "self x",
    CLIP.encode_image: "self image",
    CLIP.encode_text: "self text",
    CLIP.forward: "self image text",
}


@pytest.mark.parametrize("function", OPENAI_SIGNATURES, ids=lambda f: f.__qualname__)
def test_constructors_and_calls_have_openai_signatures(function):
    parameters = list(inspect.signature(function).parameters.values())
    leading = [p for p in parameters if p.kind == p.POSITIONAL_OR_KEYWORD][: len(OPENAI_SIGNATURES[function].split())]
    described = " ".join(p.name + ("" if p.default is p.empty else f"={p.default}") for p in leading)
    assert described == OPENAI_SIGNATURES[function]
    assert all(p.default is not p.empty for p in parameters[len(leading) :] if p.kind != p.VAR_KEYWORD)


@pytest.fixture(scope="module")
def model():
    """A 3-block ViT CLIP (widths 128, 2 heads) with random norms and biases, and its open_clip twin."""
    state_dict = randomized(
        tiny_vit_state_dict(seed=4, vision_layers=3, vision_width=128, transformer_width=128, transformer_layers=3)
    )
    return build_model(state_dict), open_clip_reference(state_dict)


def test_modules_have_openai_names(model):
    ours, _ = model
    block = ours.transformer.resblocks[0]
    assert isinstance(block.attn, nn.MultiheadAttention) and block.attn.num_heads == 2
    assert [name for name, _ in block.mlp.named_children()] == ["c_fc", "gelu", "c_proj"]
    assert isinstance(block.ln_1, nn.LayerNorm) and isinstance(block.ln_2, nn.LayerNorm)
    expected_mask = torch.full((77, 77), float("-inf")).triu(1)  # OpenAI's build_attention_mask
    assert torch.equal(block.attn_mask, expected_mask) and torch.equal(ours.build_attention_mask(), expected_mask)
    assert ours.visual.transformer.resblocks[0].attn_mask is None
    assert (ours.transformer.width, ours.transformer.layers, ours.context_length, ours.vocab_size) == (
        128,
        3,
        77,
        49408,
    )
    assert (ours.visual.input_resolution, ours.visual.output_dim) == (32, 32)
    for name in ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer", "ln_post", "proj"):
        assert hasattr(ours.visual, name), name
    resnet = build_model(tiny_resnet_state_dict())
    assert [stage[0].stride for stage in (resnet.visual.layer1, resnet.visual.layer2)] == [1, 2]
    assert resnet.visual._inplanes == 8 * 8 * 4 and resnet.visual.attnpool.num_heads == 4


@torch.no_grad()
def test_transformer_and_blocks_take_tokens_first(model):
    """(L, N, D) in, (L, N, D) out, equal to open_clip's batch-first transformer; the other layout
    gives something else (the silent error of a batch-first Transformer.forward)."""
    ours, reference = model
    x = torch.randn(77, 3, 128, generator=torch.Generator().manual_seed(0))  # (L, N, D)
    expected = reference.transformer(x.transpose(0, 1), attn_mask=reference.attn_mask).transpose(0, 1)
    torch.testing.assert_close(ours.transformer(x), expected, rtol=0, atol=1e-5)
    block, reference_block = ours.transformer.resblocks[1], reference.transformer.resblocks[1]
    torch.testing.assert_close(
        block(x), reference_block(x.transpose(0, 1), attn_mask=reference.attn_mask).transpose(0, 1), rtol=0, atol=1e-5
    )
    batch_first = ours.transformer(x.transpose(0, 1).contiguous()).transpose(0, 1)
    assert (batch_first - expected).abs().max() > 0.1
    # Block by block, as trainer files that insert something between blocks do: the same modules.
    stepped = x
    for block in ours.transformer.resblocks:
        stepped = block(stepped)
    assert torch.equal(stepped, ours.transformer(x))


def plain_attention(attention):
    """An nn.MultiheadAttention (not our subclass) with the same weights."""
    plain = nn.MultiheadAttention(attention.embed_dim, attention.num_heads)
    plain.load_state_dict(attention.state_dict())
    return plain.eval()


@torch.no_grad()
def test_attention_is_called_and_answers_as_nn_multiheadattention(model):
    ours, _ = model
    attention = ours.transformer.resblocks[0].attn
    plain = plain_attention(attention)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(10, 3, 128, generator=generator)  # (L, N, D)
    causal = torch.full((10, 10), float("-inf")).triu(1)
    random_mask = torch.randn(10, 10, generator=generator)
    blocked = torch.rand(10, 10, generator=generator) > 0.7
    blocked.fill_diagonal_(False)  # every query keeps a key
    per_head = torch.randn(3 * 2, 10, 10, generator=generator)
    padding = torch.zeros(3, 10, dtype=torch.bool)
    padding[0, 7:] = True
    calls = [
        dict(need_weights=False),
        dict(need_weights=False, attn_mask=causal),
        dict(need_weights=False, attn_mask=causal, is_causal=True),
        dict(need_weights=False, attn_mask=random_mask),
        dict(need_weights=False, attn_mask=blocked),
        dict(need_weights=False, attn_mask=per_head),
        dict(need_weights=True, attn_mask=causal),
        dict(need_weights=False, key_padding_mask=padding),
    ]
    for kwargs in calls:
        (output, weights), (expected, expected_weights) = attention(x, x, x, **kwargs), plain(x, x, x, **kwargs)
        torch.testing.assert_close(output, expected, rtol=0, atol=1e-5, msg=str(kwargs))
        assert (weights is None) == (expected_weights is None), kwargs
        if weights is not None:
            torch.testing.assert_close(weights, expected_weights, rtol=0, atol=1e-6)
    memory = torch.randn(6, 3, 128, generator=generator)  # cross-attention: nn.MultiheadAttention's own path
    torch.testing.assert_close(attention(x, memory, memory)[0], plain(x, memory, memory)[0], rtol=0, atol=1e-5)


@torch.no_grad()
def test_a_replaced_attention_mask_is_honoured(model):
    ours, _ = model
    block = ours.transformer.resblocks[0]
    x = torch.randn(77, 2, 128, generator=torch.Generator().manual_seed(2))
    causal_output = block(x)
    original = block.attn_mask
    try:
        block.attn_mask = torch.zeros(77, 77)  # e.g. a method that lets text tokens see the whole sentence
        open_output = block(x)
    finally:
        block.attn_mask = original
    plain = plain_attention(block.attn)
    expected = x + plain(block.ln_1(x), block.ln_1(x), block.ln_1(x), need_weights=False)[0]
    expected = expected + block.mlp(block.ln_2(expected))
    torch.testing.assert_close(open_output, expected, rtol=0, atol=1e-5)
    assert (open_output - causal_output).abs().max() > 1e-3
    torch.testing.assert_close(block(x), causal_output, rtol=0, atol=0)  # back to the causal mask


# --- Encoders assembled from the modules, as CoOp-family trainer files do -----------------------
def assembled_image_encoder(visual, image):
    """The ViT tower step by step, as trainer files that add tokens to it do."""
    x = visual.conv1(image)  # (N, width, grid, grid)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (N, grid * grid, width)
    class_token = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
    x = torch.cat([class_token, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)
    x = x.permute(1, 0, 2)  # NLD -> LND
    x = visual.transformer(x)
    x = x.permute(1, 0, 2)  # LND -> NLD
    return visual.ln_post(x[:, 0, :]) @ visual.proj


@pytest.mark.parametrize("storage", ["fp32", "openai mixed fp16"])
@torch.no_grad()
def test_assembled_encoders_equal_encode_text_and_encode_image(model, storage):
    ours, reference = model
    if storage != "fp32":
        ours = build_model({key: value.half() for key, value in ours.state_dict().items()})
    text, images = clip.tokenize(TEXTS), images_for(ours, batch=2)
    # CoOp's prompt: prefix (start of text), learned context, suffix (class name, ".", end of text)
    embedding = ours.token_embedding(text).type(ours.dtype)
    context = torch.randn(4, 128, generator=torch.Generator().manual_seed(3)).type(ours.dtype)
    prompts = torch.cat([embedding[:, :1], context.expand(len(TEXTS), -1, -1), embedding[:, 5:]], dim=1)
    text_encoder = TextEncoder(ours)

    assert torch.equal(text_encoder(embedding, text), ours.encode_text(text))
    assert torch.equal(text_encoder(prompts, text), ours.encode_text(text, prompt_embeddings=prompts))
    assert torch.equal(assembled_image_encoder(ours.visual, images.type(ours.dtype)), ours.encode_image(images))
    if storage == "fp32":  # and both equal open_clip's (other kernels)
        torch.testing.assert_close(text_encoder(embedding, text), reference.encode_text(text), rtol=0, atol=1e-5)
        torch.testing.assert_close(
            assembled_image_encoder(ours.visual, images), reference.encode_image(images), rtol=0, atol=1e-5
        )


@torch.no_grad()
def test_forward_returns_logits_per_image_and_per_text(model):
    ours, reference = model
    images, text = images_for(ours, batch=2), clip.tokenize(TEXTS)
    logits_per_image, logits_per_text = ours(images, text)
    image = reference.encode_image(images, normalize=True)
    words = reference.encode_text(text, normalize=True)
    expected = reference.logit_scale.exp() * image @ words.t()
    assert logits_per_image.shape == (2, 3) and logits_per_text.shape == (3, 2)
    torch.testing.assert_close(logits_per_image, expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(logits_per_text, expected.t(), rtol=0, atol=1e-4)
