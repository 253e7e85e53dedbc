"""MaPLe's prompted model (trainers/maple.py) against a per-sentence, per-image reference.

The reference (tests/deep_prompt_oracle.py) writes MaPLe's prompts into CLIP's blocks by hand:
text "[SOS][ctx][name][.][EOT]" with the deep text prompts over positions 1..n at blocks 1..J-1;
image tokens + proj(ctx), the projected deep prompts over the last n tokens at blocks 1..J-1.
"""

import pytest
import torch
import torch.nn.functional as F

import clip
from clip.model import convert_weights
from dassl.config import ConfigError, get_cfg_default
from dassl.optim import build_optimizer
from tests.deep_prompt_oracle import (
    CLASSNAMES,
    DEPTH,
    check_logits_and_gradients,
    perturb,
    reference_image_feature,
    reference_logits,
    reference_text_feature,
    tiny_clip,
    vit_b16_clip,
)
from tests.tiny_clip import tiny_resnet_state_dict
from trainers.maple import MaPLeCLIP

N_CTX = 2
HALF_PRECISION_TENSORS = {"ctx", "proj.weight", "proj.bias"}


def build(clip_model=None, n_ctx=N_CTX, ctx_init="a photo of a", depth=DEPTH, classnames=CLASSNAMES, seed=0):
    torch.manual_seed(seed)
    return MaPLeCLIP(clip_model or tiny_clip(), classnames, n_ctx, ctx_init, depth)


def maple_reference(model, images, classnames, prefix):
    """Logits (B, C) of MaPLe computed one sentence and one image at a time."""
    learner, clip_model = model.prompt_learner, model.clip
    deep_text = list(learner.compound_prompts_text)
    text = [
        reference_text_feature(clip_model, f"{prefix} {name.replace('_', ' ')}.", learner.ctx, deep_text)
        for name in classnames
    ]
    shallow = F.linear(learner.ctx, learner.proj.weight, learner.proj.bias)
    deep_vision = [
        F.linear(prompt, layer.weight, layer.bias)
        for layer, prompt in zip(learner.compound_prompt_projections, deep_text)
    ]
    image = [reference_image_feature(clip_model, im, shallow, deep_vision) for im in images]
    return reference_logits(clip_model, image, text)


@pytest.mark.parametrize(
    "n_ctx, ctx_init, depth, prefix",
    [
        (2, "a photo of a", 3, "a photo of a"),  # the shipped layout: "[v1][v2] of a {name}."
        (4, "a photo of a", 2, "a photo of a"),  # all four words learned, one deep block
        (5, "a photo of a", 3, "X X X X X"),  # more than 4 tokens: random context, placeholders
        (2, "", 1, "X X"),  # shallow prompts only
    ],
)
def test_logits_and_gradients_equal_the_reference(n_ctx, ctx_init, depth, prefix):
    model = build(n_ctx=n_ctx, ctx_init=ctx_init, depth=depth)
    assert model.prompt_learner.prefixes == [prefix]
    perturb(model.prompt_learner)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([2, 0])
    check_logits_and_gradients(model, lambda: maple_reference(model, images, CLASSNAMES, prefix), images, labels)


def test_context_starts_from_the_init_words_and_the_deep_prompts_at_random():
    clip_model = tiny_clip()
    learner = build(clip_model).prompt_learner
    words = clip_model.token_embedding(clip.tokenize("a photo"))[0, 1:3]
    torch.testing.assert_close(learner.ctx.detach(), words)
    for prompt in learner.compound_prompts_text:
        assert prompt.shape == (N_CTX, 64) and 0.01 < prompt.std().item() < 0.03  # normal(0, 0.02)
    random = build(ctx_init="").prompt_learner
    assert 0.01 < random.ctx.std().item() < 0.03


def test_deep_projections_start_identical_and_proj_has_its_own_init():
    learner = build().prompt_learner
    first = learner.compound_prompt_projections[0]
    assert first.weight.shape == (128, 64)  # d_t -> d_v, the backbone's widths
    for layer in learner.compound_prompt_projections[1:]:
        assert torch.equal(layer.weight, first.weight) and torch.equal(layer.bias, first.bias)
        assert layer.weight.data_ptr() != first.weight.data_ptr()  # copies, trained independently
    assert not torch.equal(learner.proj.weight, first.weight)


@pytest.mark.parametrize("depth, expected", [(9, 3_555_072), (3, 1_185_024)])
def test_vit_b16_counts(depth, expected):
    """vit_b16_c2_ep5_batch4_2ctx (J 9) and its cross-dataset config (J 3): ctx 1,024 + proj
    393,984 + (J-1) x (1,024 + 393,984)."""
    model = MaPLeCLIP(vit_b16_clip(), ["cat", "dog"], 2, "a photo of a", depth)
    learner = model.prompt_learner
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == expected
    # Only learned tensors are saved, under the upstream names and shapes.
    shapes = {key: tuple(value.shape) for key, value in learner.state_dict().items()}
    expected_shapes = {"ctx": (2, 512), "proj.weight": (768, 512), "proj.bias": (768,)}
    for k in range(depth - 1):
        expected_shapes[f"compound_prompts_text.{k}"] = (2, 512)
        expected_shapes[f"compound_prompt_projections.{k}.weight"] = (768, 512)
        expected_shapes[f"compound_prompt_projections.{k}.bias"] = (768,)
    assert shapes == expected_shapes


def test_text_features_of_new_classes_use_the_same_prompts():
    """Base-to-new: the learned state loads strictly into a model built for other classes."""
    model = build()
    other = build(classnames=["violet", "orange_tree"], seed=5)
    other.prompt_learner.load_state_dict(model.prompt_learner.state_dict())
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = maple_reference(model, images, ["violet", "orange_tree"], "a photo of a")
        torch.testing.assert_close(other(images), expected, rtol=0, atol=1e-5 * expected.abs().max().item())


def test_depth_above_the_backbone_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"TRAINER.MAPLE.PROMPT_DEPTH = 4 exceeds the 3 transformer blocks"):
        build(depth=4)


def test_a_resnet_backbone_is_refused_naming_the_key():
    resnet = clip.build_model(tiny_resnet_state_dict())
    with pytest.raises(ConfigError, match=r"TRAINER.MAPLE.PROMPT_DEPTH asks for visual prompts, which need a ViT"):
        build(clip_model=resnet)


def half_clip():
    """The tiny CLIP in OpenAI's mixed fp16 storage, as PREC fp16 builds it."""
    return convert_weights(tiny_clip(), torch.float16)


def test_fp16_learner_stores_the_upstream_dtypes_and_a_warmup_step_moves_the_deep_tensors():
    """Under fp16, ctx and proj are float16 (they train in half precision, as upstream) and the
    deep prompts and projections float32: at the warmup LR 1e-5 those must move."""
    model = build(clip_model=half_clip())
    learner = model.prompt_learner
    for name, param in learner.named_parameters():
        assert param.dtype == (torch.float16 if name in HALF_PRECISION_TENSORS else torch.float32), name
    cfg = get_cfg_default()
    cfg.OPTIM.NAME, cfg.OPTIM.LR = "sgd", 1e-5
    optimizer = build_optimizer(learner, cfg.OPTIM)
    before = {name: param.detach().clone() for name, param in learner.named_parameters()}
    logits = model(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    assert logits.dtype == torch.float16 and torch.isfinite(logits).all()
    F.cross_entropy(logits.float(), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    for name, param in learner.named_parameters():
        if name.startswith("compound_prompts_text"):
            assert (param.detach() != before[name]).float().mean() > 0.5, name
        elif name.startswith("compound_prompt_projections"):
            assert (param.detach() != before[name]).any(), name


def test_fp32_learner_stores_everything_in_float32():
    assert {param.dtype for param in build().prompt_learner.parameters()} == {torch.float32}
