"""ALIGN's prompted model (trainers/align.py) against a plain per-(class, prompt) reference.

The reference encodes every sentence and every (image, visual prompt) on its own, builds the
token slices straight from the method's description (docs/method.md, sections 2-3) and solves the OT with the loop
oracle of tests/ot_oracle.py, so row orders, prompt tiling, EOT gathering and token slicing of the
batched model are all checked against an independent computation.
"""

import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

import clip
from clip.model import CLIP
from tests.ot_oracle import reference_logits
from tests.tiny_clip import tiny_vit_state_dict
from trainers.align import ALIGNCLIP, ALIGNSettings, MultiModalPromptLearner, add_config

CLASSNAMES = ["cat", "dog_house", "big red fire truck"]
N_CTX = 2
DEPTH = 3  # deep prompts enter blocks 1 and 2 of the 3-block towers


def make_settings(n_prompts=4, depth=DEPTH, ctx_init="a photo of a", **align_keys):
    cfg = CN()
    cfg.TRAINER = CN()
    add_config(cfg)
    node = cfg.TRAINER.ALIGN
    node.N_CTX, node.CTX_INIT, node.TEXT_PROMPT_DEPTH = N_CTX, ctx_init, depth
    node.TEXT_PROMPT_NUMBER = node.VISION_PROMPT_NUMBER = n_prompts
    for key, value in align_keys.items():
        node[key] = value
    return ALIGNSettings.from_cfg(cfg)


@pytest.fixture(scope="module")
def tiny_clip():
    return clip.build_model(tiny_vit_state_dict(seed=3, vision_layers=DEPTH, transformer_layers=DEPTH))


def build_model(tiny_clip, classnames=CLASSNAMES, seed=0, **settings):
    torch.manual_seed(seed)
    model = ALIGNCLIP(make_settings(**settings), classnames, tiny_clip)
    # Random learned prompts of a realistic size, so that every prompt changes the features.
    with torch.no_grad():
        for param in model.prompt_learner.parameters():
            param.add_(0.5 * torch.randn_like(param))
    return model


def reference_sentences(classname, n_prompts):
    """Spec section 1: prompt 0 reads the CTX_INIT piece "a photo of a", the others "X X"."""
    name = classname.replace("_", " ")
    return [f"a photo of a {name}." if t == 0 else f"X X {name}." for t in range(n_prompts)]


@torch.no_grad()
def reference_text(model, classnames, text_tokens_mode):
    """Per (class, prompt): global (C, T, D), padded tokens (C, T, L, D) and mask (C, T, L)."""
    learner, clip_model = model.prompt_learner, model.clip
    n_prompts = learner.n_prompts
    global_rows, token_rows = [], []
    for classname in classnames:
        sentences = reference_sentences(classname, n_prompts)
        eots = [int(clip.tokenize(s).argmax()) for s in sentences]
        class_global, class_tokens = [], []
        for t, sentence in enumerate(sentences):
            ids = clip.tokenize(sentence)  # (1, 77), full context as the reference
            embedding = clip_model.token_embedding(ids).clone()
            embedding[0, 1 : 1 + N_CTX] = learner.ctx[t]
            deep = [prompt[t] for prompt in learner.compound_prompts_text]  # each (n_ctx, d_t)
            out = clip_model.encode_text(ids, prompt_embeddings=embedding, deep_prompts=deep, return_tokens=True)[0]
            out = F.normalize(out, dim=-1)  # (77, D)
            class_global.append(out[eots[t]])
            last = (eots[0] if text_tokens_mode == "reference" else eots[t]) - 2
            class_tokens.append(out[: last + 1])  # positions 0 .. e-2
        global_rows.append(torch.stack(class_global))
        token_rows.append(class_tokens)
    length = max(tokens.shape[0] for row in token_rows for tokens in row)
    dim = global_rows[0].shape[-1]
    tokens = torch.zeros(len(classnames), n_prompts, length, dim)
    mask = torch.zeros(len(classnames), n_prompts, length, dtype=torch.bool)
    for c, row in enumerate(token_rows):
        for t, kept in enumerate(row):
            tokens[c, t, : kept.shape[0]] = kept
            mask[c, t, : kept.shape[0]] = True
    return torch.stack(global_rows), tokens, mask


@torch.no_grad()
def reference_image(model, images):
    """Per (image, visual prompt): global (B, V, D) and tokens (B, V, P, D)."""
    learner, clip_model = model.prompt_learner, model.clip
    global_rows, token_rows = [], []
    for image in images:
        image_global, image_tokens = [], []
        for v in range(learner.n_prompts):
            shallow = learner.proj(learner.ctx[v])  # (n_ctx, d_v)
            deep = [
                layer(prompt[v])
                for layer, prompt in zip(learner.compound_prompt_projections, learner.compound_prompts_text)
            ]
            out = clip_model.encode_image(image[None], shallow_prompts=shallow, deep_prompts=deep, return_tokens=True)[
                0
            ]
            out = F.normalize(out, dim=-1)
            image_global.append(out[0])
            image_tokens.append(out[1:])
        global_rows.append(torch.stack(image_global))
        token_rows.append(torch.stack(image_tokens))
    return torch.stack(global_rows), torch.stack(token_rows)


@pytest.mark.parametrize(
    "batch, n_prompts, token_cost, text_tokens, hierarchical, memory_mb",
    [
        (2, 4, "similarity", "reference", True, 1024.0),
        (3, 2, "distance", "reference", True, 1024.0),
        (2, 4, "similarity", "per_prompt", True, 1024.0),
        (1, 1, "distance", "per_prompt", True, 1024.0),
        (2, 2, "similarity", "reference", False, 1024.0),
        (2, 4, "similarity", "reference", True, 1e-3),  # forces one class per token-level chunk
    ],
)
def test_logits_equal_per_prompt_reference(
    tiny_clip, batch, n_prompts, token_cost, text_tokens, hierarchical, memory_mb
):
    model = build_model(
        tiny_clip,
        n_prompts=n_prompts,
        TOKEN_COST=token_cost,
        TEXT_TOKENS=text_tokens,
        HIERARCHICAL=hierarchical,
        OT_MEMORY_MB=memory_mb,
        TOKEN_WEIGHT=0.7,
    )
    images = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        logits, plan = model.transport(images)

    txt_global, txt_tokens, txt_mask = reference_text(model, CLASSNAMES, text_tokens)
    img_global, img_tokens = reference_image(model, images)
    s = model.settings
    expected, expected_plan, _ = reference_logits(
        img_global,
        img_tokens,
        txt_global,
        txt_tokens,
        txt_mask,
        model.clip.logit_scale.exp(),
        s.ot.eps,
        s.ot.max_iter,
        s.ot.thresh,
        hierarchical,
        token_cost,
        0.7,
    )

    assert logits.shape == (batch, len(CLASSNAMES))
    assert plan.shape == (batch, len(CLASSNAMES), n_prompts, n_prompts)
    torch.testing.assert_close(logits.double(), expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    torch.testing.assert_close(plan.double(), expected_plan, rtol=0, atol=1e-6)


def test_text_token_slices_follow_prompt_zero(tiny_clip):
    """Reference mode keeps prompt 0's "of a" length for every prompt: the shorter prompts
    contribute their "." and EOT; per_prompt keeps each prompt's own words only."""
    for mode in ("reference", "per_prompt"):
        model = build_model(tiny_clip, TEXT_TOKENS=mode)
        with torch.no_grad():
            text = model.encode_text()
        for c, classname in enumerate(CLASSNAMES):
            eots = [int(clip.tokenize(s).argmax()) for s in reference_sentences(classname, 4)]
            kept = text.token_mask[c].sum(-1).tolist()
            if mode == "reference":
                assert kept == [eots[0] - 1] * 4
            else:
                assert kept == [e - 1 for e in eots]
            assert eots[1] == eots[0] - 2  # "X X" is two tokens shorter than "a photo of a"


def test_ctx_init_and_prompt_texts(tiny_clip):
    model = build_model(tiny_clip, n_prompts=3)
    learner = MultiModalPromptLearner(make_settings(n_prompts=3), CLASSNAMES, tiny_clip)
    assert learner.prefixes == ["a photo of a", "X X", "X X"]
    words = tiny_clip.token_embedding(clip.tokenize("a photo"))[0, 1:3]
    torch.testing.assert_close(learner.ctx[0].detach(), words.detach())
    # Random prompts: std 0.02 normal, not the word embeddings.
    assert 0.005 < learner.ctx[1:].std().item() < 0.05
    # Two TAB pieces initialise two prompts; N_CTX > 4 ignores CTX_INIT.
    two = MultiModalPromptLearner(make_settings(n_prompts=3, ctx_init="a photo\tan image"), CLASSNAMES, tiny_clip)
    assert two.prefixes == ["a photo", "an image", "X X"]
    assert model.prompt_learner.tokenized.shape[0] == len(CLASSNAMES) * 3


def test_gradients_reach_only_the_prompt_learner(tiny_clip):
    model = build_model(tiny_clip)
    for param in model.clip.parameters():
        param.requires_grad_(False)
    images = torch.randn(2, 3, 32, 32)
    logits, plan = model.transport(images)
    assert not plan.requires_grad
    F.cross_entropy(logits, torch.tensor([0, 2])).backward()
    for name, param in model.prompt_learner.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(param.grad is None for param in model.clip.parameters())


def test_plan_carries_no_gradient_into_the_logits(tiny_clip):
    """d logits / d sim = logit_scale * plan: the plan is a constant for autograd."""
    model = build_model(tiny_clip)
    img_global, img_tokens = model.encode_image(torch.randn(2, 3, 32, 32))
    img_global = img_global.detach().requires_grad_(True)
    text = model.encode_text()
    from trainers.ot import hierarchical_ot

    scale = model.clip.logit_scale.exp().detach()
    logits, plan = hierarchical_ot(
        img_global,
        img_tokens.detach(),
        text.global_.detach(),
        text.tokens.detach(),
        text.token_mask,
        scale,
    )
    logits.sum().backward()
    expected = scale * torch.einsum("bcvt,ctd->bvd", plan, text.global_.detach())
    torch.testing.assert_close(img_global.grad, expected, rtol=1e-5, atol=1e-6)


def test_vit_b16_prompt_learner_size():
    """T = V = 4, n_ctx 2, depth 9 on ViT-B/16 dimensions: 3,582,720 trainable numbers."""
    torch.manual_seed(0)
    with torch.device("cpu"):
        vit_b16 = CLIP(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)
    learner = MultiModalPromptLearner(make_settings(n_prompts=4, depth=9), ["cat", "dog"], vit_b16)
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == 3_582_720
    # Only learned tensors are saved: the class-dependent token buffers are not persistent.
    assert set(learner.state_dict()) == {name for name, _ in learner.named_parameters()}


def test_depth_larger_than_the_backbone_is_rejected(tiny_clip):
    with pytest.raises(ValueError, match="TEXT_PROMPT_DEPTH = 5 exceeds the 3 transformer blocks"):
        MultiModalPromptLearner(make_settings(depth=5), CLASSNAMES, tiny_clip)


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"USECT": True}, "USECT True is not supported"),
        (
            {"VISION_PROMPT_NUMBER": 2},
            "VISION_PROMPT_NUMBER \\(2\\) must equal TRAINER.ALIGN.TEXT_PROMPT_NUMBER \\(4\\)",
        ),
        ({"TOKEN_COST": "cosine"}, "TRAINER.ALIGN.TOKEN_COST = 'cosine' is invalid"),
        ({"TEXT_TOKENS": "all"}, "TRAINER.ALIGN.TEXT_TOKENS = 'all' is invalid"),
        ({"PREC": "fp8"}, "TRAINER.ALIGN.PREC = 'fp8' is invalid"),
    ],
)
def test_invalid_settings_give_clear_errors(keys, message):
    with pytest.raises(ValueError, match=message):
        make_settings(**keys)
