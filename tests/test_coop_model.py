"""CoOp's prompted model (trainers/coop.py) against a plain per-class, per-image reference.

The reference writes each class sentence's token ids from the pieces the layout puts in order
([SOS], the context slots, the name's BPE tokens, ".", [EOT]), embeds them, writes the context
vectors into their slots, runs the text tower on that one sentence, and scores every image on its
own. It shares nothing with the implementation's buffers, layouts or batching.
"""

import pytest
import torch

import clip
from clip.model import CLIP, convert_weights
from dassl.config import ConfigError, get_cfg_default
from tests.tiny_clip import tiny_vit_state_dict
from trainers.coop import CoOp, CoOpCLIP, CoOpPromptLearner, add_config

CLASSNAMES = ["cat", "dog_house", "big red fire truck", "axolotl"]
SOS, EOT = 49406, 49407
DOT = int(clip.tokenize(".")[0, 1])
X = int(clip.tokenize("X")[0, 1])


@pytest.fixture(scope="module")
def tiny_clip():
    return clip.build_model(tiny_vit_state_dict(seed=3)).requires_grad_(False)


def bpe(text):
    """The BPE ids of ``text`` alone (no SOS / EOT)."""
    ids = clip.tokenize(text)[0]
    return ids[1 : int(ids.argmax())].tolist()


def reference_sentence(name, n_ctx, position, init_words=""):
    """(77,) token ids of one class sentence and the positions of the n context vectors.

    Random context: n "X" slots placed by ``position`` around the name (middle: n // 2 before,
    the rest after). With init words, the layout is "end" and the first n BPE tokens of the words
    are the context; the remaining ones stay as fixed words before the name.
    """
    name_ids = bpe(name.replace("_", " "))
    if init_words:
        words = bpe(init_words)
        ids = [SOS] + words + name_ids + [DOT, EOT]
        slots = list(range(1, 1 + n_ctx))
    elif position == "end":
        ids = [SOS] + [X] * n_ctx + name_ids + [DOT, EOT]
        slots = list(range(1, 1 + n_ctx))
    elif position == "middle":
        half, m = n_ctx // 2, len(name_ids)
        ids = [SOS] + [X] * half + name_ids + [X] * (n_ctx - half) + [DOT, EOT]
        slots = list(range(1, 1 + half)) + list(range(1 + half + m, 1 + n_ctx + m))
    else:  # front
        m = len(name_ids)
        ids = [SOS] + name_ids + [X] * n_ctx + [DOT, EOT]
        slots = list(range(1 + m, 1 + m + n_ctx))
    return torch.tensor(ids + [0] * (77 - len(ids))), slots


def reference_logits(clip_model, ctx, images, classnames, position, init_words=""):
    """(B, C) logits, one text-tower call per class and one image-tower call per image.

    ctx: (n, d_t) shared or (C, n, d_t) per class (a leaf of the caller's, for gradients).
    """
    n_ctx = ctx.shape[-2]
    text_features = []
    for c, name in enumerate(classnames):
        ids, slots = reference_sentence(name, n_ctx, position, init_words)
        if position == "end" and not init_words:  # the sentence CoOp tokenises, as a check of the pieces
            assert torch.equal(ids, clip.tokenize(" ".join(["X"] * n_ctx) + " " + name.replace("_", " ") + ".")[0])
        embedding = clip_model.token_embedding(ids).clone()
        class_ctx = ctx[c] if ctx.dim() == 3 else ctx
        for k, slot in enumerate(slots):
            embedding[slot] = class_ctx[k]
        feature = clip_model.encode_text(ids[None], prompt_embeddings=embedding[None])[0]
        text_features.append(feature / feature.norm())
    rows = []
    for image in images:
        feature = clip_model.encode_image(image[None])[0]
        feature = feature / feature.norm()
        rows.append(torch.stack([clip_model.logit_scale.exp() * (feature * g).sum() for g in text_features]))
    return torch.stack(rows)


def build(clip_model, seed=0, **kwargs):
    torch.manual_seed(seed)
    learner = CoOpPromptLearner(CLASSNAMES, clip_model, **kwargs)
    with torch.no_grad():  # a context of realistic size, so that it changes the features
        learner.ctx.add_(0.5 * torch.randn_like(learner.ctx))
    return CoOpCLIP(clip_model, learner)


CASES = [
    dict(n_ctx=3, class_token_position="end"),
    dict(n_ctx=3, class_token_position="middle"),  # odd n: the extra token goes after the name
    dict(n_ctx=4, class_token_position="middle"),
    dict(n_ctx=3, class_token_position="front"),
    dict(n_ctx=2, class_token_position="end", csc=True),
    dict(n_ctx=3, class_token_position="middle", csc=True),
    dict(n_ctx=2, class_token_position="front", csc=True),
    dict(ctx_init="a photo of a"),
    dict(ctx_init="a zzyzx"),  # 2 words, 3 BPE tokens: "a zz" learnable, "yzx" a fixed word
]


@pytest.mark.parametrize("case", CASES, ids=[str(sorted(case.items())) for case in CASES])
def test_logits_and_gradients_match_the_per_class_reference(tiny_clip, case):
    model = build(tiny_clip, **case)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    weights = torch.randn(3, len(CLASSNAMES), generator=torch.Generator().manual_seed(2))
    logits = model(images)
    (logits * weights).sum().backward()

    ctx = model.prompt_learner.ctx.detach().clone().requires_grad_(True)
    position = case.get("class_token_position", "end")
    expected = reference_logits(tiny_clip, ctx, images, CLASSNAMES, position, case.get("ctx_init", ""))
    (expected * weights).sum().backward()

    assert logits.shape == (3, len(CLASSNAMES))
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    grad = model.prompt_learner.ctx.grad
    assert grad.abs().max() > 0
    torch.testing.assert_close(grad, ctx.grad, rtol=0, atol=1e-4 * ctx.grad.abs().max().item())


def test_ctx_init_sets_n_from_the_words_and_ignores_n_ctx_and_csc(tiny_clip):
    learner = CoOpPromptLearner(CLASSNAMES, tiny_clip, n_ctx=16, ctx_init="a_photo_of a", csc=True)
    assert learner.n_ctx == 4 and learner.prefix == "a photo of a"
    assert learner.ctx.shape == (4, 64)  # unified despite CSC
    words = tiny_clip.token_embedding(clip.tokenize("a photo of a"))[0, 1:5]
    torch.testing.assert_close(learner.ctx.detach(), words)
    split = CoOpPromptLearner(CLASSNAMES, tiny_clip, ctx_init="a zzyzx")
    assert split.n_ctx == 2
    torch.testing.assert_close(split.ctx.detach(), tiny_clip.token_embedding(torch.tensor([320, 21275])))


def test_random_contexts(tiny_clip):
    torch.manual_seed(0)
    unified = CoOpPromptLearner(CLASSNAMES, tiny_clip, n_ctx=5)
    assert unified.prefix == "X X X X X" and unified.ctx.shape == (5, 64)
    assert 0.015 < unified.ctx.std().item() < 0.025  # normal(0, 0.02)
    per_class = CoOpPromptLearner(CLASSNAMES, tiny_clip, n_ctx=5, csc=True)
    assert per_class.ctx.shape == (len(CLASSNAMES), 5, 64)


def test_only_the_context_is_saved(tiny_clip):
    learner = CoOpPromptLearner(CLASSNAMES, tiny_clip, n_ctx=4, class_token_position="middle")
    assert list(learner.state_dict()) == ["ctx"]


def test_fp16_clip_gives_a_half_precision_context(tiny_clip):
    """As upstream under PREC fp16: ctx (and the frozen pieces around it) in the CLIP's float16."""
    half = clip.build_model(tiny_vit_state_dict(seed=3)).requires_grad_(False)
    convert_weights(half, torch.float16)
    for kwargs in (dict(n_ctx=4), dict(ctx_init="a photo of a"), dict(n_ctx=2, csc=True)):
        model = build(half, **kwargs)
        assert model.prompt_learner.ctx.dtype == torch.float16
        assert model.prompt_learner.token_suffix.dtype == torch.float16
        logits = model(torch.randn(2, 3, 32, 32))
        assert logits.dtype == torch.float16 and torch.isfinite(logits).all()
        logits.float().sum().backward()
        assert model.prompt_learner.ctx.grad.dtype == torch.float16


@pytest.fixture(scope="module")
def vit_b16_widths():
    """A CLIP with ViT-B/16's widths (text 512, joint 512, vision 768) and one block per tower: the
    learned shapes depend on the widths only."""
    torch.manual_seed(0)
    return CLIP(512, 224, 1, 768, 16, 77, 49408, 512, 8, 1).requires_grad_(False)


@pytest.mark.parametrize(
    "kwargs, count",
    [
        (dict(n_ctx=16), 8_192),  # vit_b16 (few-shot recipe)
        (dict(n_ctx=16, ctx_init="a photo of a"), 2_048),  # vit_b16_ctxv1 (base-to-new recipe)
        (dict(n_ctx=16, csc=True), 5 * 8_192),  # class-specific: C x 8,192
    ],
)
def test_vit_b16_trainable_counts(vit_b16_widths, kwargs, count):
    names = ["a", "b", "c", "d", "e"]
    learner = CoOpPromptLearner(names, vit_b16_widths, **kwargs)
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == count


def coop_cfg(**keys):
    cfg = get_cfg_default()
    add_config(cfg)
    for key, value in keys.items():
        cfg.TRAINER.COOP[key] = value
    return cfg


@pytest.mark.parametrize(
    "keys, message",
    [
        (dict(CLASS_TOKEN_POSITION="start"), r"TRAINER.COOP.CLASS_TOKEN_POSITION = 'start' is invalid"),
        (dict(PREC="fp8"), r"TRAINER.COOP.PREC = 'fp8' is invalid"),
        (dict(N_CTX=0), r"TRAINER.COOP.N_CTX = 0 is invalid"),
    ],
)
def test_bad_settings_are_named(keys, message):
    with pytest.raises(ConfigError, match=message):
        CoOp.check_cfg(coop_cfg(**keys))
    CoOp.check_cfg(coop_cfg(N_CTX=0, CTX_INIT="a photo"))  # CTX_INIT decides n
