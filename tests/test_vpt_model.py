"""VPT's prompted model (trainers/vpt.py) against a per-sentence, per-image reference
(tests/deep_prompt_oracle.py): unprompted text "a photo of a {class}.", image tokens + a free
shallow prompt with free deep prompts over the last n tokens at blocks 1..J-1.
"""

import pytest
import torch
from yacs.config import CfgNode as CN

import clip
from clip.model import convert_weights
from dassl.config import ConfigError
from tests.deep_prompt_oracle import (
    CLASSNAMES,
    check_logits_and_gradients,
    perturb,
    reference_image_feature,
    reference_logits,
    reference_text_feature,
    tiny_clip,
    vit_b16_clip,
)
from tests.tiny_clip import tiny_resnet_state_dict
from trainers.vpt import VPTCLIP, add_config, check_config


def build(clip_model=None, n_ctx=4, depth=3, classnames=CLASSNAMES, seed=0):
    torch.manual_seed(seed)
    return VPTCLIP(clip_model or tiny_clip(), classnames, n_ctx, depth)


def vpt_reference(model, images, classnames):
    """Logits (B, C) of VPT computed one sentence and one image at a time."""
    learner, clip_model = model.prompt_learner, model.clip
    text = [reference_text_feature(clip_model, f"a photo of a {name.replace('_', ' ')}.") for name in classnames]
    image = [reference_image_feature(clip_model, im, learner.shallow, list(learner.deep)) for im in images]
    return reference_logits(clip_model, image, text)


@pytest.mark.parametrize("n_ctx, depth", [(4, 3), (8, 2), (2, 1)])
def test_logits_and_gradients_equal_the_reference(n_ctx, depth):
    model = build(n_ctx=n_ctx, depth=depth)
    perturb(model.prompt_learner)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 2, 1])
    check_logits_and_gradients(model, lambda: vpt_reference(model, images, CLASSNAMES), images, labels)


def test_prompts_start_as_upstream():
    learner = build(n_ctx=8, depth=3).prompt_learner
    prompts = [learner.shallow, *learner.deep]
    assert [tuple(p.shape) for p in prompts] == [(8, 128)] * 3  # the backbone's vision width
    for prompt in prompts:
        assert prompt.dtype == torch.float32 and 0.01 < prompt.std().item() < 0.03  # normal(0, 0.02)


def test_the_fixed_text_is_encoded_once(monkeypatch):
    model = build()
    calls = []
    encode_text = model.clip.encode_text
    monkeypatch.setattr(model.clip, "encode_text", lambda *args, **kwargs: calls.append(1) or encode_text(*args))
    images = torch.randn(2, 3, 32, 32)
    first = model(images)
    with model.cached_text_features():
        model(images)
    second = model(images)
    assert len(calls) == 1
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert not model.fixed_text.get(model.clip).requires_grad


def test_vit_b16_count():
    """vit_b16_c2_ep5_batch4_4: 8 tokens of width 768 in 12 blocks."""
    learner = VPTCLIP(vit_b16_clip(), ["cat", "dog"], 8, 12).prompt_learner
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == 73_728
    shapes = {key: tuple(value.shape) for key, value in learner.state_dict().items()}
    assert shapes == {"shallow": (8, 768), **{f"deep.{k}": (8, 768) for k in range(11)}}


def test_prec_fp16_is_honoured():
    """Upstream always runs float32; here the float16 storage of PREC fp16 is used (the prompts
    stay float32, cast to the tower's float16 on entry)."""
    model = build(convert_weights(tiny_clip(), torch.float16))
    assert {param.dtype for param in model.prompt_learner.parameters()} == {torch.float32}
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.dtype == torch.float16 and torch.isfinite(logits).all()
    logits.float().sum().backward()
    assert all(param.grad is not None for param in model.prompt_learner.parameters())


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("PROMPT_DEPTH_VISION", 0, r"TRAINER.VPT.PROMPT_DEPTH_VISION = 0 is invalid: expected >= 1"),
        ("N_CTX_VISION", 0, r"TRAINER.VPT.N_CTX_VISION = 0 is invalid: expected >= 1"),
        ("PREC", "half", r"TRAINER.VPT.PREC = 'half' is invalid"),
    ],
)
def test_invalid_keys_are_named(key, value, message):
    cfg = CN()
    cfg.TRAINER = CN()
    add_config(cfg)
    cfg.TRAINER.VPT[key] = value
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_depth_above_the_backbone_and_a_resnet_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"TRAINER.VPT.PROMPT_DEPTH_VISION = 4 exceeds the 3 transformer blocks"):
        build(depth=4)
    with pytest.raises(ConfigError, match=r"TRAINER.VPT.PROMPT_DEPTH_VISION asks for visual prompts"):
        build(clip.build_model(tiny_resnet_state_dict()))
