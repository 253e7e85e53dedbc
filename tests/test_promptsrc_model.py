"""PromptSRC's model (trainers/promptsrc.py) and its Gaussian prompt aggregation (trainers/gpa.py)
against references written from the definitions, with the tiny CLIP of tests/deep_prompt_oracle.py.

References: the features one sentence and one image at a time (deep_prompt_oracle's towers), the
teacher as the mean over the 60 templates of each class's RAW features, the three terms as loops
over classes and images (L1 per class / per image; the KL per image from hand-written softmaxes,
divided by B*C), the GPA weights from the Gaussian density, the aggregate as a weighted sum of
per-epoch states.
"""

import hashlib
import math

import pytest
import torch
from yacs.config import CfgNode as CN

from clip.model import convert_weights
from dassl.config import ConfigError
from tests.deep_prompt_oracle import (
    CLASSNAMES,
    perturb,
    reference_image_feature,
    reference_logits,
    reference_text_feature,
    tiny_clip,
    vit_b16_clip,
)
from trainers.gpa import PromptAggregate, gaussian_epoch_weights
from trainers.promptsrc import PROMPTSRC_TEMPLATES, PromptSRCCLIP, add_config, check_config, teacher_text_features

DEPTHS = dict(PROMPT_DEPTH_TEXT=3, PROMPT_DEPTH_VISION=3)  # every block of the tiny towers

# OpenAI's ImageNet templates that PromptSRC's teacher leaves out (20 of the 80).
LEFT_OUT = (
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)
# sha256 of the 60 templates joined by newlines, in upstream's order.
TEMPLATES_SHA256 = "dc3398ed3ffc7c259342582bc0f36d7ac66c4dee17981a37b77b0fc9c23d4f72"


def promptsrc_node(**keys):
    cfg = CN()
    cfg.TRAINER = CN()
    add_config(cfg)
    node = cfg.TRAINER.PROMPTSRC
    for key, value in keys.items():
        node[key] = value
    return node


def build(clip_model=None, seed=0, **keys):
    torch.manual_seed(seed)
    model = PromptSRCCLIP(clip_model or tiny_clip(), CLASSNAMES, promptsrc_node(**{**DEPTHS, **keys}))
    model.prompt_learner.train()  # a training step: the forward returns the terms
    return model


# ---------------------------------------------------------------------------- the teacher


def test_the_60_templates_are_openai_s_80_without_20():
    assert len(PROMPTSRC_TEMPLATES) == 60 == len(set(PROMPTSRC_TEMPLATES))
    assert not set(PROMPTSRC_TEMPLATES) & set(LEFT_OUT)
    assert all(template.count("{}") == 1 for template in PROMPTSRC_TEMPLATES)
    assert PROMPTSRC_TEMPLATES[:2] == ("a photo of a {}.", "a bad photo of a {}.")
    assert PROMPTSRC_TEMPLATES[-1] == "itap of the {}."
    assert hashlib.sha256("\n".join(PROMPTSRC_TEMPLATES).encode()).hexdigest() == TEMPLATES_SHA256


def reference_teacher(clip_model, classnames):
    """(C, D): per class, the mean over the 60 templates of the raw (unnormalised) features."""
    rows = []
    for name in classnames:
        features = [
            reference_text_feature(clip_model, template.format(name.replace("_", " ")))
            for template in PROMPTSRC_TEMPLATES
        ]
        rows.append(torch.stack(features).mean(dim=0))
    return torch.stack(rows)


def test_the_teacher_is_the_mean_of_unnormalised_features():
    clip_model = tiny_clip()
    teacher = teacher_text_features(clip_model, CLASSNAMES)
    expected = reference_teacher(clip_model, CLASSNAMES)
    assert teacher.dtype == torch.float32
    torch.testing.assert_close(teacher, expected, rtol=1e-5, atol=1e-6)
    # Not the mean of normalised features (prompt ensembling), not normalised itself.
    assert (teacher.norm(dim=-1) - 1).abs().max() > 1e-2


def test_a_float16_clip_gets_a_float32_teacher_and_stays_float16():
    """Under PREC fp16 the teacher is computed by a float32 copy of the float16 weights (what
    upstream's float32 CLIP computes from OpenAI's float16 checkpoints), and the CLIP is untouched."""
    half = convert_weights(tiny_clip(), torch.float16)
    teacher = teacher_text_features(half, CLASSNAMES)
    assert teacher.dtype == torch.float32 and half.dtype == torch.float16
    assert half.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.float16
    widened = tiny_clip()
    widened.load_state_dict({key: value.float() for key, value in half.state_dict().items()})
    torch.testing.assert_close(teacher, teacher_text_features(widened, CLASSNAMES), rtol=0, atol=0)


# ---------------------------------------------------------------------------- the three terms


def reference_terms(model, images):
    """{term: value} from the definitions, one class / one image / one pair at a time."""
    learner, clip_model = model.prompt_learner, model.clip
    deep_text = list(learner.deep_text_prompts)
    shallow, deep_vision = learner.visual.shallow, list(learner.visual.deep)
    unit = lambda v: v / v.norm()  # noqa: E731
    text = [
        unit(reference_text_feature(clip_model, f"{learner.prefix} {name.replace('_', ' ')}.", learner.ctx, deep_text))
        for name in CLASSNAMES
    ]
    image = [unit(reference_image_feature(clip_model, im, shallow, deep_vision)) for im in images]
    with torch.no_grad():
        teacher = [unit(row) for row in reference_teacher(clip_model, CLASSNAMES)]
        zero_shot = [unit(reference_image_feature(clip_model, im)) for im in images]
    n_classes, n_images, width = len(text), len(image), text[0].shape[0]
    loss_text = sum((g - g0).abs().sum() for g, g0 in zip(text, teacher)) / (n_classes * width)
    loss_image = sum((f - f0).abs().sum() for f, f0 in zip(image, zero_shot)) / (n_images * width)
    logits = reference_logits(clip_model, image, text)
    zero_shot_logits = reference_logits(clip_model, zero_shot, teacher)
    loss_logits = 0
    for b in range(n_images):
        log_p = logits[b] - torch.logsumexp(logits[b], dim=0)
        log_p0 = zero_shot_logits[b] - torch.logsumexp(zero_shot_logits[b], dim=0)
        for c in range(n_classes):
            loss_logits = loss_logits + log_p0[c].exp() * (log_p0[c] - log_p[c])
    loss_logits = loss_logits / (n_images * n_classes)
    return logits, {"loss_text": loss_text, "loss_image": loss_image, "loss_logits": loss_logits}


def test_each_term_and_its_gradient_equal_the_reference():
    model = build()
    perturb(model.prompt_learner, std=0.1)  # prompts away from their start: every term is nonzero
    params = dict(model.prompt_learner.named_parameters())
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    output = model(images)
    expected_logits, expected = reference_terms(model, images)
    torch.testing.assert_close(output.logits, expected_logits, rtol=0, atol=1e-5 * expected_logits.abs().max().item())
    assert {name: term.weight for name, term in output.terms.items()} == {
        "loss_text": 25.0,
        "loss_image": 10.0,
        "loss_logits": 1.0,
    }
    for name, want in expected.items():
        got = output.terms[name].value
        assert want.item() > 0, name
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7, msg=name)
        grads = torch.autograd.grad(got, list(params.values()), retain_graph=True, allow_unused=True)
        wanted = torch.autograd.grad(want, list(params.values()), retain_graph=True, allow_unused=True)
        for key, grad, want_grad in zip(params, grads, wanted):
            if want_grad is None:  # the text term does not depend on the visual prompts, and so on
                assert grad is None or not grad.any(), (name, key)
                continue
            scale = want_grad.abs().max().item()
            torch.testing.assert_close(grad, want_grad, rtol=0, atol=1e-4 * scale + 1e-12, msg=f"{name} {key}")


def test_evaluation_returns_the_logits_and_computes_no_teacher(monkeypatch):
    model = build()
    model.prompt_learner.eval()
    monkeypatch.setattr("trainers.promptsrc.teacher_text_features", lambda *a: pytest.fail("teacher computed"))
    logits = model(torch.randn(2, 3, 32, 32))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, len(CLASSNAMES))


def test_the_teacher_is_computed_once_and_never_saved(monkeypatch):
    calls = []
    real = teacher_text_features
    monkeypatch.setattr("trainers.promptsrc.teacher_text_features", lambda *a: calls.append(1) or real(*a))
    model = build()
    for _ in range(2):
        model(torch.randn(2, 3, 32, 32)).logits.sum().backward()
    assert len(calls) == 1
    assert set(model.prompt_learner.state_dict()) == {name for name, _ in model.prompt_learner.named_parameters()}
    assert not any("teacher" in key for key in model.state_dict())


def test_float16_storage_trains_with_float32_terms():
    """PREC fp16 (OpenAI's float16 storage): finite terms, computed in float32, gradients for
    every prompt."""
    model = build(convert_weights(tiny_clip(), torch.float16))
    output = model(torch.randn(2, 3, 32, 32))
    assert output.logits.dtype == torch.float16
    for name, term in output.terms.items():
        assert term.value.dtype == torch.float32 and torch.isfinite(term.value), name
    loss = sum(term.weight * term.value for term in output.terms.values())
    loss.backward()
    assert all(param.grad is not None for param in model.prompt_learner.parameters())


# ---------------------------------------------------------------------------- counts and keys


@pytest.mark.parametrize(
    "depth, expected",
    [
        (9, 46_080),  # base-to-new and few-shot: 9 x 4 x 512 + 9 x 4 x 768
        (3, 15_360),  # cross-dataset: 3 x 4 x 512 + 3 x 4 x 768
    ],
)
def test_vit_b16_counts(depth, expected):
    node = promptsrc_node(PROMPT_DEPTH_TEXT=depth, PROMPT_DEPTH_VISION=depth)
    learner = PromptSRCCLIP(vit_b16_clip(), ["cat", "dog"], node).prompt_learner
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == expected


def test_upstream_defaults():
    node = promptsrc_node()
    assert dict(node) == {
        "N_CTX_VISION": 4,
        "N_CTX_TEXT": 4,
        "CTX_INIT": "a photo of a",
        "PREC": "fp16",
        "PROMPT_DEPTH_VISION": 9,
        "PROMPT_DEPTH_TEXT": 9,
        "TEXT_LOSS_WEIGHT": 25.0,
        "IMAGE_LOSS_WEIGHT": 10.0,
        "GPA_MEAN": 15.0,
        "GPA_STD": 1.0,
    }


@pytest.mark.parametrize(
    "keys, message",
    [
        (dict(GPA_STD=0.0), r"TRAINER.PROMPTSRC.GPA_STD = 0.0 is invalid: expected > 0"),
        (dict(TEXT_LOSS_WEIGHT=-1.0), r"TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = -1.0 is invalid: expected >= 0"),
        (dict(IMAGE_LOSS_WEIGHT=-1.0), r"TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT = -1.0 is invalid"),
        (dict(PROMPT_DEPTH_TEXT=0), r"TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 0 is invalid: expected >= 1"),
        (dict(N_CTX_VISION=0), r"TRAINER.PROMPTSRC.N_CTX_VISION = 0 is invalid"),
        (dict(PREC="fp64"), r"TRAINER.PROMPTSRC.PREC = 'fp64' is invalid"),
    ],
)
def test_invalid_keys_are_named(keys, message):
    cfg = CN()
    cfg.TRAINER = CN()
    cfg.TRAINER.PROMPTSRC = promptsrc_node(**keys)
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_a_depth_above_the_backbone_names_the_promptsrc_key():
    with pytest.raises(ConfigError, match=r"TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 4 exceeds the 3 transformer"):
        build(PROMPT_DEPTH_VISION=4)


# ---------------------------------------------------------------------------- GPA


def gaussian_density(x, mean, std):
    return math.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


@pytest.mark.parametrize("mean, std, epochs", [(15, 1, 20), (6, 10, 20), (30, 30, 50), (45, 5, 50), (2.5, 0.7, 4)])
def test_gpa_weights_are_the_normalised_gaussian_density(mean, std, epochs):
    densities = [gaussian_density(e, mean, std) for e in range(1, epochs + 1)]
    expected = [d / sum(densities) for d in densities]
    assert gaussian_epoch_weights(mean, std, epochs) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_gpa_weights_of_the_shipped_recipes():
    """The values upstream's code gives (docs/methods.md#promptsrc)."""
    b2n = gaussian_epoch_weights(15, 1, 20)
    assert [round(b2n[e - 1], 3) for e in (13, 14, 15, 16, 17)] == [0.054, 0.242, 0.399, 0.242, 0.054]
    xd = gaussian_epoch_weights(6, 10, 20)
    assert [round(xd[e - 1], 3) for e in (1, 6, 20)] == [0.055, 0.063, 0.024]
    few_shot = gaussian_epoch_weights(30, 30, 50)
    assert [round(few_shot[e - 1], 4) for e in (1, 30, 50)] == [0.0141, 0.0225, 0.0180]
    late = gaussian_epoch_weights(45, 5, 50)
    assert [round(late[e - 1], 3) for e in (45, 50)] == [0.092, 0.056]


def test_gpa_weights_stay_defined_far_from_the_mean():
    """Every density underflows to 0 here (upstream divides 0 by 0): the weight goes to the last epoch."""
    assert all(gaussian_density(e, 1000, 1) == 0 for e in range(1, 6))
    assert gaussian_epoch_weights(1000, 1, 5) == [0, 0, 0, 0, 1]


def test_the_aggregate_is_the_weighted_average_of_the_epoch_states_in_float32():
    generator = torch.Generator().manual_seed(0)
    states = [
        {"ctx": torch.randn(4, 8, generator=generator).half(), "deep.0": torch.randn(4, 16, generator=generator)}
        for _ in range(5)
    ]
    weights = gaussian_epoch_weights(3, 1, 5)
    aggregate = PromptAggregate(weights)
    for epoch, state in enumerate(states):
        assert not aggregate.complete
        assert aggregate.add(state) == weights[epoch]
    assert aggregate.complete and aggregate.epochs == 5
    for key in ("ctx", "deep.0"):
        expected = sum(w * s[key].double() for w, s in zip(weights, states))
        assert aggregate.sums[key].dtype == torch.float32
        torch.testing.assert_close(aggregate.sums[key].double(), expected, rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError, match="all 5 epochs"):
        aggregate.add(states[0])


def test_the_aggregate_continues_from_its_state_dict():
    generator = torch.Generator().manual_seed(1)
    states = [{"ctx": torch.randn(3, 5, generator=generator)} for _ in range(4)]
    weights = gaussian_epoch_weights(2, 1, 4)
    whole, first, second = PromptAggregate(weights), PromptAggregate(weights), PromptAggregate(weights)
    for state in states:
        whole.add(state)
    for state in states[:2]:
        first.add(state)
    saved = first.state_dict()
    assert saved["epochs"] == 2 and saved["weights"] == weights
    assert set(saved["sums"]) == {"ctx"} and saved["sums"]["ctx"].device.type == "cpu"
    assert second.load_state_dict(saved, torch.device("cpu")) == weights
    for state in states[2:]:
        second.add(state)
    torch.testing.assert_close(second.sums["ctx"], whole.sums["ctx"], rtol=0, atol=0)
