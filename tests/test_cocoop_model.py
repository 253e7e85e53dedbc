"""CoCoOp's prompted model (trainers/cocoop.py) against a plain per-image, per-class reference.

The reference runs, for each image on its own, the meta-net written out with F.linear on the
L2-normalised image feature, shifts the context, and encodes each class sentence with its own
text-tower call (the official loop), sharing no buffers or batching with the implementation.
"""

import pytest
import torch
import torch.nn.functional as F

import clip
from clip.model import CLIP, convert_weights
from dassl.config import ConfigError, get_cfg_default
from tests.tiny_clip import tiny_vit_state_dict
from trainers.cocoop import CoCoOp, CoCoOpCLIP, CoCoOpPromptLearner, add_config, text_rows_per_chunk

CLASSNAMES = ["cat", "dog_house", "big red fire truck"]
EMBED_DIM = 128
LEARNED = [
    "ctx",
    "meta_net.linear1.weight",
    "meta_net.linear1.bias",
    "meta_net.linear2.weight",
    "meta_net.linear2.bias",
]


@pytest.fixture(scope="module")
def tiny_clip():
    # Joint dimension 128: a meta-net hidden layer of 8 units (D // 16)
    return clip.build_model(tiny_vit_state_dict(seed=3, embed_dim=EMBED_DIM)).requires_grad_(False)


def build(clip_model, memory_mb=1024.0, seed=0, **kwargs):
    torch.manual_seed(seed)
    learner = CoCoOpPromptLearner(CLASSNAMES, clip_model, **kwargs)
    with torch.no_grad():  # a trained-size context and shift, so that both change the logits
        learner.ctx.add_(0.5 * torch.randn_like(learner.ctx))
        learner.meta_net.linear2.weight.mul_(10.0)
    return CoCoOpCLIP(clip_model, learner, memory_mb)


def reference_logits(clip_model, params, images, classnames, prefix):
    """(B, C) logits; params: {learned name: leaf tensor}; prefix: the sentence's context words."""
    n_ctx = params["ctx"].shape[0]
    rows = []
    for image in images:
        feature = clip_model.encode_image(image[None])[0]
        feature = feature / feature.norm()
        hidden = F.relu(F.linear(feature, params["meta_net.linear1.weight"], params["meta_net.linear1.bias"]))
        shift = F.linear(hidden, params["meta_net.linear2.weight"], params["meta_net.linear2.bias"])
        ctx = params["ctx"] + shift
        row = []
        for name in classnames:
            ids = clip.tokenize(f"{prefix} {name.replace('_', ' ')}.")
            embedding = clip_model.token_embedding(ids).clone()
            embedding[0, 1 : 1 + n_ctx] = ctx
            text = clip_model.encode_text(ids, prompt_embeddings=embedding)[0]
            row.append(clip_model.logit_scale.exp() * (feature * text / text.norm()).sum())
        rows.append(torch.stack(row))
    return torch.stack(rows)


@pytest.mark.parametrize(
    "kwargs, prefix, memory_mb",
    [
        (dict(ctx_init="a photo of a"), "a photo of a", 1024.0),
        (dict(n_ctx=3), "X X X", 1024.0),
        (dict(n_ctx=3), "X X X", 1e-9),  # one sentence per text-tower call
    ],
)
def test_logits_and_gradients_match_the_per_image_reference(tiny_clip, kwargs, prefix, memory_mb):
    model = build(tiny_clip, memory_mb, **kwargs)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    weights = torch.randn(3, len(CLASSNAMES), generator=torch.Generator().manual_seed(2))
    logits = model(images)
    (logits * weights).sum().backward()

    learned = dict(model.prompt_learner.named_parameters())
    leaves = {name: param.detach().clone().requires_grad_(True) for name, param in learned.items()}
    expected = reference_logits(tiny_clip, leaves, images, CLASSNAMES, prefix)
    (expected * weights).sum().backward()

    assert sorted(learned) == sorted(LEARNED)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    for name, param in learned.items():
        reference = leaves[name].grad
        assert reference.abs().max() > 0, name
        torch.testing.assert_close(param.grad, reference, rtol=0, atol=1e-4 * reference.abs().max().item(), msg=name)


def test_chunked_equals_unchunked(tiny_clip):
    """Logits and gradients do not depend on how the B x C sentences are split into calls."""
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    results = []
    for memory_mb in (1024.0, 0.15, 1e-9):
        model = build(tiny_clip, memory_mb, n_ctx=2)
        results.append((model.rows_per_chunk(), model(images), model.prompt_learner))
        results[-1][1].sum().backward()
    assert [rows for rows, _, _ in results][0] >= 15 and results[-1][0] == 1
    assert 1 < results[1][0] < 15 and 15 % results[1][0]  # uneven chunks: the last one is shorter
    _, logits, learner = results[0]
    for _, other_logits, other_learner in results[1:]:
        torch.testing.assert_close(other_logits, logits, rtol=0, atol=1e-6 * logits.abs().max().item())
        for (name, param), other in zip(learner.named_parameters(), other_learner.parameters()):
            assert other.grad is not None, name
            torch.testing.assert_close(other.grad, param.grad, rtol=0, atol=1e-5 * param.grad.abs().max().item())


def test_rows_per_chunk_follow_the_budget():
    # ImageNet-sized text sentences on ViT-B/16 under fp16: 20 tokens, width 512, 8 heads.
    per_row = 2 * 20 * (16 * 512 + 8 * 20)
    assert text_rows_per_chunk(1024.0, 20, 512, 2) == 1024 * 2**20 // per_row == 3214
    assert text_rows_per_chunk(1e-9, 20, 512, 2) == 1


def test_no_image_independent_text_features(tiny_clip):
    model = build(tiny_clip, n_ctx=2)
    with pytest.raises(NotImplementedError):
        model.text_features()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(images)
        with model.cached_text_features():  # what evaluation wraps every model around: no effect here
            cached = model(images)
    torch.testing.assert_close(cached, plain, rtol=0, atol=0)


def test_meta_net_shapes_and_ctx_init(tiny_clip):
    learner = CoCoOpPromptLearner(CLASSNAMES, tiny_clip, n_ctx=16, ctx_init="a photo of a")
    state = learner.state_dict()
    assert list(state) == LEARNED  # the official names; the class buffers are not saved
    assert state["meta_net.linear1.weight"].shape == (EMBED_DIM // 16, EMBED_DIM)  # D -> D // 16
    assert state["meta_net.linear2.weight"].shape == (64, EMBED_DIM // 16)  # -> d_t = 64
    words = tiny_clip.token_embedding(clip.tokenize("a photo of a"))[0, 1:5]
    torch.testing.assert_close(learner.ctx.detach(), words)


def test_fp16_clip_gives_a_half_precision_learner():
    """As upstream under PREC fp16: ctx and the meta-net in float16."""
    half = clip.build_model(tiny_vit_state_dict(seed=3, embed_dim=EMBED_DIM)).requires_grad_(False)
    convert_weights(half, torch.float16)
    model = build(half, ctx_init="a photo of a")
    assert {param.dtype for param in model.prompt_learner.parameters()} == {torch.float16}
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.dtype == torch.float16 and torch.isfinite(logits).all()
    logits.float().sum().backward()
    assert all(param.grad is not None for param in model.prompt_learner.parameters())


def test_vit_b16_trainable_count():
    """vit_b16_c4_ep10_batch1_ctxv1: 2,048 + 16,416 + 16,896 = 35,360 (ViT-B/16 widths; the
    learned shapes depend on the widths only, so one block per tower)."""
    torch.manual_seed(0)
    vit_b16_widths = CLIP(512, 224, 1, 768, 16, 77, 49408, 512, 8, 1).requires_grad_(False)
    learner = CoCoOpPromptLearner(["a", "b"], vit_b16_widths, n_ctx=4, ctx_init="a photo of a")
    counts = {name: param.numel() for name, param in learner.named_parameters()}
    assert counts["ctx"] == 2_048
    assert counts["meta_net.linear1.weight"] + counts["meta_net.linear1.bias"] == 16_416
    assert counts["meta_net.linear2.weight"] + counts["meta_net.linear2.bias"] == 16_896
    assert sum(counts.values()) == 35_360


@pytest.mark.parametrize(
    "keys, message",
    [
        (dict(TEXT_MEMORY_MB=0.0), r"TRAINER.COCOOP.TEXT_MEMORY_MB = 0.0 is invalid"),
        (dict(PREC="half"), r"TRAINER.COCOOP.PREC = 'half' is invalid"),
        (dict(N_CTX=0), r"TRAINER.COCOOP.N_CTX = 0 is invalid"),
    ],
)
def test_bad_settings_are_named(keys, message):
    cfg = get_cfg_default()
    add_config(cfg)
    for key, value in keys.items():
        cfg.TRAINER.COCOOP[key] = value
    with pytest.raises(ConfigError, match=message):
        CoCoOp.check_cfg(cfg)
