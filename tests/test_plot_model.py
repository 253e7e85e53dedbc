"""PLOT's and PLOT++'s prompted models (trainers/plot.py, trainers/plotpp.py) against an
independent reference, and the prompt level's stopping rules (trainers/ot.py).

The reference follows the methods' description (docs/methods.md), one piece at a time: each
(class, prompt) sentence tokenised and encoded on its own with ctx[p] written at positions 1..n;
ResNet local features by torch's multi-head attention with every attention-pool token as a query
(how plot-coop computes them); PLOT++ image features one visual prompt set at a time; and the
transport of every (image, class) pair in a Python loop with its own plain Sinkhorn in float64,
stopped for the whole batch at once (the mean |r - r_prev| over every row of every problem), or
per problem. Logits and the gradients of the learned tensors are compared in float32.
"""

import copy

import numpy as np
import ot as pot
import pytest
import torch
import torch.nn.functional as F

import clip
from clip.model import build_model, convert_weights
from tests.tiny_clip import tiny_resnet_state_dict, tiny_vit_state_dict
from trainers.ot import OTSettings, hierarchical_ot
from trainers.plot import PLOTCLIP, PromptSetLearner, global_term_on, placeholder_prefix
from trainers.plotpp import PLOTPPCLIP, TEMPLATES, PLOTPPPromptLearner, text_prompt_starts

CLASSNAMES = ["cat", "dog_house", "big red fire truck"]
EPS, MAX_ITER, THRESH = 0.1, 100, 0.01


# --- the reference ------------------------------------------------------------------------------
def reference_sinkhorn(costs, stop_per_problem=False):
    """Plans of (M, N) float64 costs, uniform marginals, kernel exp(-cost / 0.1), at most 100
    iterations: all problems stop together at the first iteration whose mean |r - r_prev| over
    all their rows is < 0.01 (upstream's rule), or each problem alone."""
    if stop_per_problem:
        return [reference_sinkhorn([cost])[0] for cost in costs]
    kernels = [torch.exp(-cost / EPS) for cost in costs]
    r = [torch.ones(cost.shape[0], dtype=torch.float64) for cost in costs]
    c = [torch.ones(cost.shape[1], dtype=torch.float64) for cost in costs]
    for _ in range(MAX_ITER):
        previous = r
        r = [(1 / K.shape[0]) / (K @ c_i) for K, c_i in zip(kernels, c)]
        c = [(1 / K.shape[1]) / (K.T @ r_i) for K, r_i in zip(kernels, r)]
        if torch.cat([(now - before).abs() for now, before in zip(r, previous)]).mean() < THRESH:
            break
    return [r_i[:, None] * K * c_i[None, :] for K, r_i, c_i in zip(kernels, r, c)]


def reference_logits(local, global_, text, pool, scale, global_term, stop_per_problem=False):
    """local (B, M, D), global_ (B, D), text (C, N, D), pool (C, D), all normalised -> logits (B, C)."""
    pairs = [(b, c) for b in range(local.shape[0]) for c in range(text.shape[0])]
    sims = [local[b] @ text[c].T for b, c in pairs]  # (M, N) each, differentiable
    plans = reference_sinkhorn([1 - sim.detach().double() for sim in sims], stop_per_problem)
    logits = torch.zeros(local.shape[0], text.shape[0])
    for (b, c), sim, plan in zip(pairs, sims, plans):
        logits = logits.index_put((torch.tensor(b), torch.tensor(c)), scale * (plan.float() * sim).sum())
    if global_term:
        logits = logits + scale * global_ @ pool.T
    return logits


def reference_text(clip_model, learner, classnames):
    """(C, N, D) normalised prompt features and their (C, D) pool, one sentence at a time."""
    features = []
    for name in classnames:
        row = []
        for p, prefix in enumerate(learner.prefixes):
            tokens = clip.tokenize(f"{prefix} {name.replace('_', ' ')}.")
            embeddings = clip_model.token_embedding(tokens)
            embeddings = torch.cat([embeddings[:, :1], learner.ctx[p][None], embeddings[:, 1 + learner.n_ctx :]], 1)
            row.append(clip_model.encode_text(tokens, prompt_embeddings=embeddings)[0])
        features.append(torch.stack(row))
    features = torch.stack(features)
    return F.normalize(features, dim=-1), F.normalize(features.mean(1), dim=-1)


def resnet_local_features(visual, images):
    """(B, 1 + H*W, D): the attention pool with every token as a query, by torch's multi-head
    attention on (L, B, C) tokens (plot-coop's computation); token 0 is the mean token's."""
    x = visual.relu1(visual.bn1(visual.conv1(images)))
    x = visual.relu2(visual.bn2(visual.conv2(x)))
    x = visual.avgpool(visual.relu3(visual.bn3(visual.conv3(x))))
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
    pool = visual.attnpool
    x = x.flatten(2).permute(2, 0, 1)  # (H*W, B, C)
    x = torch.cat([x.mean(0, keepdim=True), x]) + pool.positional_embedding[:, None]
    out, _ = F.multi_head_attention_forward(
        x, x, x, x.shape[-1], pool.num_heads, None, torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        None, None, False, 0.0, pool.c_proj.weight, pool.c_proj.bias, training=False, need_weights=False,
        use_separate_proj_weight=True, q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight,
    )  # fmt: skip
    return out.transpose(0, 1)


# --- the models -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clips():
    return {
        "vit": build_model(tiny_vit_state_dict(seed=3)).requires_grad_(False),
        "resnet": build_model(tiny_resnet_state_dict(seed=3)).requires_grad_(False),
    }


def images_for(clip_model, batch, seed=0):
    size = clip_model.visual.input_resolution
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def perturbed(learner, seed=0):
    """Learned tensors moved away from their start, so that every prompt matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in learner.parameters():
            param.add_(0.5 * torch.randn(param.shape, generator=generator))
    return learner


def plot_model(clip_model, global_term=False, stop_per_problem=False, n_prompts=3, n_ctx=2):
    torch.manual_seed(0)
    prefix = placeholder_prefix(n_ctx)
    learner = perturbed(PromptSetLearner(clip_model, CLASSNAMES, [prefix] * n_prompts, [False] * n_prompts, n_ctx))
    settings = OTSettings(hierarchical=False, stop_per_problem=stop_per_problem)
    return PLOTCLIP(clip_model, learner, settings, global_term)


def plotpp_model(clip_model, trade_off=False, templates=TEMPLATES["Caltech101"], n_prompts=4, n_sets=3):
    torch.manual_seed(0)
    n_ctx = len(templates[0].split())
    learner = PLOTPPPromptLearner(clip_model, CLASSNAMES, templates, n_prompts, n_ctx, n_sets, 2)
    return PLOTPPCLIP(clip_model, perturbed(learner), OTSettings(hierarchical=False), trade_off)


def gradients(logits, learner):
    """Gradients of a fixed random weighting of the logits w.r.t. the learned tensors."""
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(5))
    return torch.autograd.grad((weights * logits).sum(), list(learner.parameters()))


def assert_close(actual, expected, rtol=1e-4, atol=1e-4):
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual - expected).abs().max()


# --- PLOT ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["resnet", "vit"])
@pytest.mark.parametrize("global_term", [False, True])
def test_plot_logits_and_gradients_match_the_reference(clips, backbone, global_term):
    clip_model = clips[backbone]
    model = plot_model(clip_model, global_term)
    images = images_for(clip_model, 3)
    logits = model(images)
    assert logits.dtype == torch.float32 and logits.shape == (3, len(CLASSNAMES))

    if backbone == "resnet":
        tokens = resnet_local_features(clip_model.visual, images)
        assert tokens.shape[1] == 1 + 4  # 64 px: a 2x2 map
    else:
        tokens = clip_model.encode_image(images, return_tokens=True)
        assert torch.allclose(tokens[:, 0], clip_model.encode_image(images), atol=1e-5)
    tokens = F.normalize(tokens, dim=-1)
    text, pool = reference_text(clip_model, model.prompt_learner, CLASSNAMES)
    scale = clip_model.logit_scale.exp()
    expected = reference_logits(tokens[:, 1:], tokens[:, 0], text, pool, scale, global_term)
    assert_close(logits, expected)
    for ours, theirs in zip(gradients(logits, model.prompt_learner), gradients(expected, model.prompt_learner)):
        assert ours.abs().sum() > 0
        assert_close(ours, theirs, rtol=1e-3, atol=1e-4)


def test_plot_learns_one_shared_random_context_per_prompt(clips):
    model = plot_model(clips["vit"], n_prompts=4, n_ctx=3)
    learner = model.prompt_learner
    assert [name for name, _ in learner.named_parameters()] == ["ctx"]
    assert learner.ctx.shape == (4, 3, 64)
    assert learner.prefixes == ["X X X"] * 4
    assert learner.tokenized.shape[0] == len(CLASSNAMES) * 4 and not learner.state_dict().keys() - {"ctx"}


def test_the_global_term_follows_upstreams_rule_by_default():
    assert global_term_on("imagenet", "ImageNet") and not global_term_on("imagenet", "ImageNetV2")
    assert not global_term_on("imagenet", "Caltech101")
    assert global_term_on("on", "Caltech101") and not global_term_on("off", "ImageNet")


# --- PLOT++ -------------------------------------------------------------------------------------
@pytest.mark.parametrize("trade_off", [False, True])
def test_plotpp_logits_and_gradients_match_the_reference(clips, trade_off):
    clip_model = clips["vit"]
    model = plotpp_model(clip_model, trade_off)
    images = images_for(clip_model, 2)
    logits = model(images)
    assert logits.dtype == torch.float32 and logits.shape == (2, len(CLASSNAMES))

    ctx_vision = model.prompt_learner.ctx_vision
    features = torch.stack([clip_model.encode_image(images, shallow_prompts=prompts) for prompts in ctx_vision], 1)
    text, pool = reference_text(clip_model, model.prompt_learner, CLASSNAMES)
    scale = clip_model.logit_scale.exp()
    global_ = F.normalize(features.mean(1), dim=-1)
    expected = reference_logits(F.normalize(features, dim=-1), global_, text, pool, scale, trade_off)
    assert_close(logits, expected)
    for ours, theirs in zip(gradients(logits, model.prompt_learner), gradients(expected, model.prompt_learner)):
        assert ours.abs().sum() > 0
        assert_close(ours, theirs, rtol=1e-3, atol=1e-4)


def test_plotpp_text_contexts_start_from_the_dataset_templates(clips):
    clip_model = clips["vit"]
    learner = PLOTPPPromptLearner(clip_model, CLASSNAMES, TEMPLATES["ImageNet"], 4, 4, 3, 2)
    assert learner.ctx.shape == (4, 4, 64) and learner.ctx_vision.shape == (3, 2, 64)
    assert sorted(dict(learner.named_parameters())) == ["ctx", "ctx_vision"]
    for p, template in enumerate(TEMPLATES["ImageNet"]):
        # Upstream's start: the embeddings at positions 1..n of the tokenised template; "this is a"
        # has 3 tokens, so its 4th slot starts as the end-of-text embedding.
        start = clip_model.token_embedding(clip.tokenize(template))[0, 1:5]
        assert torch.equal(learner.ctx[p].detach(), start)
    # n is the word count of the dataset's first template.
    assert {name: len(templates[0].split()) for name, templates in TEMPLATES.items() if name != "ToyShapes"} == {
        **dict.fromkeys(["Caltech101", "StanfordCars", "SUN397"], 4),
        **dict.fromkeys(["ImageNet", "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"], 4),
        **dict.fromkeys(["DescribableTextures", "EuroSAT", "FGVCAircraft", "Food101", "OxfordFlowers"], 5),
        "OxfordPets": 5,
        "UCF101": 6,
    }


def test_plotpp_prompts_beyond_the_templates_and_without_them_start_random():
    prefixes, init_words = text_prompt_starts(TEMPLATES["UCF101"], 6, 6)
    assert prefixes[:4] == list(TEMPLATES["UCF101"]) and prefixes[4:] == ["X X X X X X"] * 2
    assert init_words == [True] * 4 + [False] * 2
    assert text_prompt_starts((), 2, 3) == (["X X X", "X X X"], [False, False])


def test_plotpp_needs_a_vit(clips):
    with pytest.raises(Exception, match="need a ViT image tower"):
        PLOTPPPromptLearner(clips["resnet"], CLASSNAMES, TEMPLATES["Caltech101"], 4, 4, 3, 2)


# --- the stopping rules ---------------------------------------------------------------------------
def hard_and_easy_batch(seed):
    """Local features (3, 6, 8): image 0 random, images 1-2 with six equal features (solved at
    once), and text (4, 3, 8): with one rule for the batch, the easy images dilute image 0's
    error and stop its problems early."""
    generator = torch.Generator().manual_seed(seed)
    local = F.normalize(torch.randn(3, 6, 8, generator=generator), dim=-1)
    local[1:] = F.normalize(torch.ones(8), dim=0)
    return local, F.normalize(torch.randn(4, 3, 8, generator=generator), dim=-1)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_batch_rule_makes_a_prediction_depend_on_its_batch_and_the_problem_rule_does_not(seed):
    local, text = hard_and_easy_batch(seed)
    scale = torch.tensor(100.0)
    for stop_per_problem in (False, True):
        settings = OTSettings(hierarchical=False, stop_per_problem=stop_per_problem)
        batched = hierarchical_ot(local, None, text, None, None, scale, settings).logits
        alone = hierarchical_ot(local[:1], None, text, None, None, scale, settings).logits
        expected = reference_logits(local, None, text, None, scale, False, stop_per_problem)
        assert_close(batched, expected, rtol=0, atol=1e-4)
        if stop_per_problem:
            assert torch.allclose(batched[:1], alone, rtol=0, atol=1e-6)
        else:
            assert (batched[:1] - alone).abs().max() > 1e-4


def test_the_per_problem_rule_at_convergence_matches_pot():
    local, text = hard_and_easy_batch(2)
    settings = OTSettings(hierarchical=False, stop_per_problem=True, thresh=0.0, max_iter=3000)
    plan = hierarchical_ot(local, None, text, None, None, torch.tensor(1.0), settings).plan
    for b in range(local.shape[0]):
        for c in range(text.shape[0]):
            cost = (1 - local[b] @ text[c].T).double().numpy()
            rows, cols = cost.shape
            expected = pot.sinkhorn(
                np.full(rows, 1 / rows), np.full(cols, 1 / cols), cost, EPS, numItermax=100000, stopThr=1e-14
            )
            assert np.abs(plan[b, c].double().numpy() - expected).max() < 1e-6


def test_plot_with_the_per_problem_rule_predicts_each_image_as_alone(clips):
    model = plot_model(clips["resnet"], stop_per_problem=True)
    images = images_for(clips["resnet"], 4, seed=1)
    with torch.no_grad():
        batched = model(images)
        for b in range(4):
            assert torch.allclose(batched[b : b + 1], model(images[b : b + 1]), rtol=0, atol=1e-5)


# --- precision ------------------------------------------------------------------------------------
def test_under_fp16_the_learned_tensors_are_half_and_the_ot_float32(clips):
    """Upstream's dtypes: ctx and ctx_vision in the CLIP's dtype (float16 under PREC fp16); the
    logits come from a float32 OT, close to the float32 model's."""
    half = copy.deepcopy(clips["vit"])
    convert_weights(half)
    images = images_for(half, 2)
    for make in (plot_model, plotpp_model):
        reference, model = make(clips["vit"]), make(half)
        assert {p.dtype for p in model.prompt_learner.parameters()} == {torch.float16}
        with torch.no_grad():
            logits = model(images)
            assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
            assert_close(logits, reference(images), rtol=0, atol=0.01)  # float16 towers: rounding only
