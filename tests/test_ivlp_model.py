"""IVLP's prompted model (trainers/ivlp.py), and its language-only config, against a per-sentence,
per-image reference (tests/deep_prompt_oracle.py).

Reference: text "[SOS][ctx][name][.][EOT]" with free deep text prompts over positions 1..n_t at
blocks 1..J_t-1; image tokens + a free shallow prompt (if J_v >= 1) with free deep prompts over
the last n_v tokens at blocks 1..J_v-1; no coupling between the two.
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
from trainers.ivlp import IVLPCLIP, add_config, check_config


def ivlp_node(**keys):
    cfg = CN()
    cfg.TRAINER = CN()
    add_config(cfg)
    node = cfg.TRAINER.IVLP
    for key, value in keys.items():
        node[key] = value
    return node


def build(clip_model=None, classnames=CLASSNAMES, seed=0, **keys):
    torch.manual_seed(seed)
    return IVLPCLIP(clip_model or tiny_clip(), classnames, ivlp_node(**keys))


def ivlp_reference(model, images, classnames, prefix):
    """Logits (B, C) of IVLP computed one sentence and one image at a time."""
    learner, clip_model = model.prompt_learner, model.clip
    deep_text = list(learner.deep_text_prompts)
    text = [
        reference_text_feature(clip_model, f"{prefix} {name.replace('_', ' ')}.", learner.ctx, deep_text)
        for name in classnames
    ]
    if learner.visual is None:
        image = [reference_image_feature(clip_model, im) for im in images]
    else:
        shallow, deep = learner.visual.shallow, list(learner.visual.deep)
        image = [reference_image_feature(clip_model, im, shallow, deep) for im in images]
    return reference_logits(clip_model, image, text)


@pytest.mark.parametrize(
    "keys, prefix",
    [
        # the 2+2ctx layout at the tiny depths: "[v1][v2] of a {name}.", prompts in every block
        (dict(N_CTX_TEXT=2, N_CTX_VISION=2, PROMPT_DEPTH_TEXT=3, PROMPT_DEPTH_VISION=3), "a photo of a"),
        # language only: all four words learned, no visual prompts
        (dict(N_CTX_TEXT=4, N_CTX_VISION=0, PROMPT_DEPTH_TEXT=3, PROMPT_DEPTH_VISION=0), "a photo of a"),
        # shallow text, shallow vision with more tokens than the text, random context
        (dict(N_CTX_TEXT=3, N_CTX_VISION=5, PROMPT_DEPTH_TEXT=1, PROMPT_DEPTH_VISION=1, CTX_INIT=""), "X X X"),
        # different depths per tower
        (dict(N_CTX_TEXT=1, N_CTX_VISION=2, PROMPT_DEPTH_TEXT=2, PROMPT_DEPTH_VISION=3), "a photo of a"),
    ],
)
def test_logits_and_gradients_equal_the_reference(keys, prefix):
    model = build(**keys)
    assert model.prompt_learner.prefix == prefix
    perturb(model.prompt_learner)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 2])
    check_logits_and_gradients(model, lambda: ivlp_reference(model, images, CLASSNAMES, prefix), images, labels)


def test_tensors_start_as_upstream():
    clip_model = tiny_clip()
    learner = build(clip_model, N_CTX_TEXT=4, PROMPT_DEPTH_TEXT=3, PROMPT_DEPTH_VISION=2).prompt_learner
    words = clip_model.token_embedding(clip.tokenize("a photo of a"))[0, 1:5]
    torch.testing.assert_close(learner.ctx.detach(), words)
    prompts = [*learner.deep_text_prompts, learner.visual.shallow, *learner.visual.deep]
    assert [tuple(p.shape) for p in prompts] == [(4, 64), (4, 64), (2, 128), (2, 128)]
    for prompt in prompts:
        assert prompt.dtype == torch.float32 and 0.01 < prompt.std().item() < 0.03  # normal(0, 0.02)


@pytest.mark.parametrize(
    "keys, expected",
    [
        # vit_b16_c2_ep5_batch4_2+2ctx: 12 x 2 x 512 (text) + 12 x 2 x 768 (vision)
        (dict(N_CTX_TEXT=2, N_CTX_VISION=2, PROMPT_DEPTH_TEXT=12, PROMPT_DEPTH_VISION=12), 30_720),
        # vit_b16_c2_ep5_batch4_4ctx_language_only: 12 x 4 x 512
        (dict(N_CTX_TEXT=4, N_CTX_VISION=0, PROMPT_DEPTH_TEXT=12, PROMPT_DEPTH_VISION=0), 24_576),
    ],
)
def test_vit_b16_counts(keys, expected):
    learner = IVLPCLIP(vit_b16_clip(), ["cat", "dog"], ivlp_node(**keys)).prompt_learner
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == expected
    assert set(learner.state_dict()) == {name for name, _ in learner.named_parameters()}  # no buffers saved


def test_fp16_storage_keeps_the_free_prompts_in_float32():
    """Under PREC fp16 the context follows the CLIP (float16); every per-block prompt is float32."""
    model = build(convert_weights(tiny_clip(), torch.float16), PROMPT_DEPTH_TEXT=3, PROMPT_DEPTH_VISION=3)
    dtypes = {name: param.dtype for name, param in model.prompt_learner.named_parameters()}
    assert dtypes.pop("ctx") == torch.float16 and set(dtypes.values()) == {torch.float32}
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.dtype == torch.float16 and torch.isfinite(logits).all()
    logits.float().sum().backward()
    assert all(param.grad is not None for param in model.prompt_learner.parameters())


def test_float32_does_not_round_the_prompts_through_float16():
    """Upstream rounds every free prompt to float16 even under fp32; here only under PREC fp16."""
    model = build(PROMPT_DEPTH_TEXT=3, PROMPT_DEPTH_VISION=3)
    perturb(model.prompt_learner)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        exact = model(images)
        for param in model.prompt_learner.parameters():
            param.copy_(param.half().float())
        rounded = model(images)
    assert (exact - rounded).abs().max() > 1e-6


@pytest.mark.parametrize(
    "keys, message",
    [
        (dict(PROMPT_DEPTH_TEXT=0), r"TRAINER.IVLP.PROMPT_DEPTH_TEXT = 0 is invalid: expected >= 1"),
        (dict(PROMPT_DEPTH_VISION=-1), r"TRAINER.IVLP.PROMPT_DEPTH_VISION = -1 is invalid"),
        (dict(N_CTX_VISION=0), r"TRAINER.IVLP.N_CTX_VISION = 0 is invalid: expected >= 1 when PROMPT_DEPTH_VISION"),
        (dict(N_CTX_TEXT=0), r"TRAINER.IVLP.N_CTX_TEXT = 0 is invalid"),
        (dict(PREC="fp64"), r"TRAINER.IVLP.PREC = 'fp64' is invalid"),
    ],
)
def test_invalid_keys_are_named(keys, message):
    cfg = CN()
    cfg.TRAINER = CN()
    cfg.TRAINER.IVLP = ivlp_node(**keys)
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_language_only_config_passes_with_no_visual_tokens():
    cfg = CN()
    cfg.TRAINER = CN()
    cfg.TRAINER.IVLP = ivlp_node(N_CTX_VISION=0, PROMPT_DEPTH_VISION=0)
    check_config(cfg)


@pytest.mark.parametrize(
    "keys, message",
    [
        (dict(PROMPT_DEPTH_TEXT=4), r"TRAINER.IVLP.PROMPT_DEPTH_TEXT = 4 exceeds the 3 transformer blocks"),
        (dict(PROMPT_DEPTH_TEXT=3, PROMPT_DEPTH_VISION=4), r"PROMPT_DEPTH_VISION = 4 exceeds the 3 transformer"),
    ],
)
def test_depths_above_the_backbone_are_refused_naming_the_key(keys, message):
    with pytest.raises(ConfigError, match=message):
        build(**keys)


def test_language_prompting_runs_on_a_resnet_and_visual_prompts_do_not():
    resnet = clip.build_model(tiny_resnet_state_dict())
    model = build(resnet, N_CTX_VISION=0, PROMPT_DEPTH_VISION=0, PROMPT_DEPTH_TEXT=2)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, len(CLASSNAMES))
    with pytest.raises(ConfigError, match=r"TRAINER.IVLP.PROMPT_DEPTH_VISION asks for visual prompts"):
        build(resnet, PROMPT_DEPTH_TEXT=2, PROMPT_DEPTH_VISION=1)
