"""Tests for trainers/ot.py (token level, hierarchical logits) against the loop oracle (tests/ot_oracle.py).

Runs on CPU; set ALIGN_TEST_DEVICE=cuda to run the same checks on a GPU.
"""

import os

import pytest
import torch

from tests.ot_oracle import reference_logits, reference_token_similarity
from trainers import ot
from trainers import sinkhorn as solver
from trainers.ot import (
    OTNumericalError,
    OTSettings,
    hierarchical_ot,
    hierarchical_ot_logits,
    token_chunk_classes,
    token_transport_similarity,
)

DEVICE = torch.device(os.environ.get("ALIGN_TEST_DEVICE", "cpu"))
PLAN_ATOL = 1e-6
LOGIT_RTOL = 1e-5  # of the largest logit magnitude


def _features(generator, *shape, spread=0.6):
    """L2-normalised features scattered around one direction, so that similarities (and with
    them the Sinkhorn stopping iterations) vary as with real CLIP features."""
    base = torch.randn(shape[-1], generator=generator)
    return torch.nn.functional.normalize(base + spread * torch.randn(*shape, generator=generator), dim=-1)


def _ragged_mask(generator, classes, t_prompts, length, per_prompt):
    """(C, T, L) bool, real tokens first; one length per class, or one per (class, prompt)."""
    if per_prompt:
        lengths = torch.randint(1, length + 1, (classes, t_prompts), generator=generator)
    else:
        lengths = torch.randint(1, length + 1, (classes, 1), generator=generator).expand(classes, t_prompts)
    return torch.arange(length) < lengths[..., None]


def _inputs(seed, batch, classes, prompts, img_len=6, txt_len=5, dim=16, per_prompt=False):
    generator = torch.Generator().manual_seed(seed)
    tensors = dict(
        img_global=_features(generator, batch, prompts, dim),
        img_tokens=_features(generator, batch, prompts, img_len, dim),
        txt_global=_features(generator, classes, prompts, dim),
        txt_tokens=_features(generator, classes, prompts, txt_len, dim),
        txt_token_mask=_ragged_mask(generator, classes, prompts, txt_len, per_prompt),
        logit_scale=torch.tensor(100.0),
    )
    return {name: tensor.to(DEVICE) for name, tensor in tensors.items()}


def _assert_logits_close(logits, expected):
    scale = expected.abs().max().item()
    assert (logits.double() - expected).abs().max().item() <= LOGIT_RTOL * scale


@pytest.mark.parametrize("batch, classes, prompts, per_prompt", [(1, 3, 1, False), (2, 4, 2, True), (3, 2, 4, False)])
def test_token_similarity_matches_oracle(batch, classes, prompts, per_prompt):
    x = _inputs(10 + batch, batch, classes, prompts, per_prompt=per_prompt)
    expected, _, iterations = reference_token_similarity(
        x["img_tokens"], x["txt_tokens"], x["txt_token_mask"], 0.1, 100, 0.01
    )
    assert len({i for row in iterations for i in row}) > 1 or batch * classes == 1
    s_tok = token_transport_similarity(x["img_tokens"], x["txt_tokens"], x["txt_token_mask"])
    assert s_tok.dtype == torch.float32 and s_tok.shape == (batch, classes, prompts, prompts)
    assert (s_tok.double() - expected).abs().max().item() <= PLAN_ATOL


def _classes_by_text_length(txt_token_mask):
    """Class indices ordered by their last real text position (stable): the chunking order."""
    ends = [int(txt_token_mask[c].any(0).nonzero().max()) for c in range(txt_token_mask.shape[0])]
    return sorted(range(len(ends)), key=lambda c: ends[c])


def test_token_level_plans_match_oracle_across_chunks(monkeypatch):
    batch, classes, prompts = 2, 3, 2
    x = _inputs(15, batch, classes, prompts, per_prompt=True)
    _, expected, _ = reference_token_similarity(x["img_tokens"], x["txt_tokens"], x["txt_token_mask"], 0.1, 100, 0.01)
    chunk_plans = []
    solve = solver.solve_kernel
    monkeypatch.setattr(
        ot, "solve_kernel", lambda *args, **kwargs: chunk_plans.append(solve(*args, **kwargs)) or chunk_plans[-1]
    )
    token_transport_similarity(x["img_tokens"], x["txt_tokens"], x["txt_token_mask"], OTSettings(memory_budget_mb=1e-3))
    assert len(chunk_plans) == classes  # one class per chunk: groups are (b, c) with c fixed
    for c, plan in zip(_classes_by_text_length(x["txt_token_mask"]), chunk_plans):
        for b in range(batch):
            for v in range(prompts):
                for t in range(prompts):
                    real = x["txt_token_mask"][c, t, : plan.shape[-1]]
                    problem = plan[b, v * prompts + t]
                    assert torch.all(problem[:, ~real] == 0)
                    assert (problem[:, real].double() - expected[b][c][v][t]).abs().max().item() <= PLAN_ATOL


CASES = [  # batch, classes, prompts, per_prompt text lengths, hierarchical, token_cost, token_weight, budget MB
    (1, 1, 1, False, True, "similarity", 1.0, 1024.0),
    (2, 3, 2, True, True, "distance", 0.5, 1024.0),
    (3, 4, 4, False, True, "similarity", 1.0, 1e-3),
    (2, 5, 4, True, True, "distance", 2.0, 1e-3),
    (4, 3, 2, False, False, "similarity", 1.0, 1024.0),
]


@pytest.mark.parametrize("batch, classes, prompts, per_prompt, hierarchical, token_cost, weight, budget", CASES)
def test_hierarchical_logits_match_oracle(
    batch, classes, prompts, per_prompt, hierarchical, token_cost, weight, budget
):
    x = _inputs(20 + batch * classes, batch, classes, prompts, per_prompt=per_prompt)
    expected_logits, expected_plan, _ = reference_logits(
        **x, eps=0.1, max_iter=100, thresh=0.01, hierarchical=hierarchical, token_cost=token_cost, token_weight=weight
    )
    settings = OTSettings(
        hierarchical=hierarchical, token_cost=token_cost, token_weight=weight, memory_budget_mb=budget
    )
    logits, plan = hierarchical_ot(**x, settings=settings)
    assert logits.dtype == plan.dtype == torch.float32
    assert logits.shape == (batch, classes) and plan.shape == (batch, classes, prompts, prompts)
    assert (plan.double() - expected_plan).abs().max().item() <= PLAN_ATOL
    _assert_logits_close(logits, expected_logits)


def test_token_cost_setting_changes_the_logits():
    x = _inputs(30, 2, 3, 2)
    similarity = hierarchical_ot_logits(**x, settings=OTSettings(token_cost="similarity"))
    distance = hierarchical_ot_logits(**x, settings=OTSettings(token_cost="distance"))
    assert not torch.allclose(similarity, distance)


def test_tiny_memory_budget_chunks_classes_with_identical_results(monkeypatch):
    x = _inputs(40, 2, 7, 2)
    sizes = dict(batch=2, v_prompts=2, t_prompts=2, img_len=6, txt_len=5, dim=16)
    assert token_chunk_classes(**sizes, memory_budget_mb=1024.0) >= 7
    assert token_chunk_classes(**sizes, memory_budget_mb=1e-3) == 1
    per_class_mb = 4 * (2 * 2 * 2 * 6 * 5 * ot.TOKEN_LEVEL_LIVE_TENSORS + 2 * 5 * 16) / 2**20
    assert token_chunk_classes(**sizes, memory_budget_mb=3.5 * per_class_mb) == 3

    stages = []
    solve = solver.solve_kernel

    def recording_solve(*args, **kwargs):
        stages.append(args[5])
        return solve(*args, **kwargs)

    monkeypatch.setattr(ot, "solve_kernel", recording_solve)
    whole = hierarchical_ot_logits(**x, settings=OTSettings(memory_budget_mb=1024.0))
    assert sum("token-level" in stage for stage in stages) == 1
    stages.clear()
    chunked = hierarchical_ot_logits(**x, settings=OTSettings(memory_budget_mb=3.5 * per_class_mb))
    order = _classes_by_text_length(x["txt_token_mask"])  # chunks of 3 classes of similar length
    assert [stage for stage in stages if "token-level" in stage] == [
        f"token-level OT (3 classes from class {order[0]})",
        f"token-level OT (3 classes from class {order[3]})",
        f"token-level OT (1 classes from class {order[6]})",
    ]
    assert torch.allclose(whole, chunked, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_float32_results(dtype):
    x = _inputs(50, 2, 3, 2)
    half = {name: t.to(dtype) if t.is_floating_point() else t for name, t in x.items()}
    logits, plan = hierarchical_ot(**half)
    assert logits.dtype == plan.dtype == torch.float32
    expected, expected_plan, _ = reference_logits(
        **half, eps=0.1, max_iter=100, thresh=0.01, hierarchical=True, token_cost="similarity", token_weight=1.0
    )
    assert (plan.double() - expected_plan).abs().max().item() <= PLAN_ATOL
    _assert_logits_close(logits, expected)


def test_autocast_does_not_lower_the_precision():
    x = _inputs(51, 2, 3, 2)
    half_dtype = torch.bfloat16 if DEVICE.type == "cpu" else torch.float16
    with torch.autocast(device_type=DEVICE.type, dtype=half_dtype):
        logits = hierarchical_ot_logits(**x)
    assert logits.dtype == torch.float32
    expected, _, _ = reference_logits(
        **x, eps=0.1, max_iter=100, thresh=0.01, hierarchical=True, token_cost="similarity", token_weight=1.0
    )
    _assert_logits_close(logits, expected)


def test_gradients_reach_global_features_but_not_through_the_plan():
    x = _inputs(60, 3, 4, 2)
    for name in ("img_global", "txt_global", "img_tokens", "txt_tokens", "logit_scale"):
        x[name].requires_grad_(True)
    logits, plan = hierarchical_ot(**x)
    assert logits.requires_grad and not plan.requires_grad
    upstream = torch.randn(logits.shape, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    (logits * upstream).sum().backward()
    # d logits[b, c] / d sim[b, c, v, t] = logit_scale * plan[b, c, v, t], with sim = f . g.
    weight = x["logit_scale"].detach() * upstream[..., None, None] * plan
    img, txt = x["img_global"].detach(), x["txt_global"].detach()
    assert torch.allclose(x["img_global"].grad, torch.einsum("bcvt,ctd->bvd", weight, txt), atol=1e-5)
    assert torch.allclose(x["txt_global"].grad, torch.einsum("bcvt,bvd->ctd", weight, img), atol=1e-5)
    sim = torch.einsum("bvd,ctd->bcvt", img, txt)
    assert torch.allclose(x["logit_scale"].grad, (upstream[..., None, None] * plan * sim).sum(), rtol=1e-5)
    assert x["img_tokens"].grad is None and x["txt_tokens"].grad is None


@pytest.mark.parametrize("name", ["img_tokens", "txt_global", "logit_scale"])
def test_nan_input_raises_an_error_naming_it(name):
    x = _inputs(70, 2, 3, 2)
    x[name].view(-1)[0] = float("nan")
    with pytest.raises(OTNumericalError, match=f"input {name} has 1 NaN/inf entries"):
        hierarchical_ot_logits(**x)


def test_shape_and_setting_errors():
    x = _inputs(80, 2, 3, 2)
    with pytest.raises(ValueError, match=r"img_tokens must have shape \(B, V, P, D\) = \(2, 2, P, 16\)"):
        hierarchical_ot_logits(**{**x, "img_tokens": x["img_tokens"][:, :1]})
    with pytest.raises(ValueError, match=r"txt_token_mask must be a bool tensor of shape \(C, T, L\) = \(3, 2, 5\)"):
        hierarchical_ot_logits(**{**x, "txt_token_mask": x["txt_token_mask"][:, :, :4]})
    with pytest.raises(ValueError, match=r"txt_global has feature width 8, img_global has 16"):
        hierarchical_ot_logits(**{**x, "txt_global": x["txt_global"][..., :8]})
    with pytest.raises(ValueError, match=r"img_global must be a floating tensor of shape \(B, V, D\)"):
        hierarchical_ot_logits(**{**x, "img_global": x["img_global"][0]})
    with pytest.raises(ValueError, match=r"token_cost must be one of \('similarity', 'distance'\), got 'cosine'"):
        OTSettings(token_cost="cosine")
    empty = x["txt_token_mask"].clone()
    empty[1, 0] = False
    with pytest.raises(ValueError, match="1 \\(class, prompt\\) rows without any real token"):
        hierarchical_ot_logits(**{**x, "txt_token_mask": empty})
    with pytest.raises(ValueError, match="txt_tokens is required"):
        hierarchical_ot_logits(**{**x, "txt_tokens": None})
    flat = hierarchical_ot_logits(
        **{**x, "img_tokens": None, "txt_tokens": None, "txt_token_mask": None}, settings=OTSettings(hierarchical=False)
    )
    assert flat.shape == (2, 3)


def test_token_level_underflow_is_solved_in_the_log_domain_at_the_right_eps(monkeypatch):
    """At eps = 0.01 a cost above ~1.04 underflows the float32 kernel: those (image, class) groups
    go to the log-domain solver, whose result must still be the float64 oracle's (which does not
    underflow). A log-kernel built with another eps (e.g. 2 * eps) is off by ~0.02 here."""
    x = _inputs(90, 2, 3, 2)
    img_tokens = x["img_tokens"].clone()
    img_tokens[0, :, :3] = -x["txt_tokens"][0, 0, 0]  # anti-aligned tokens: cost near 2 for class 0
    fallbacks = []
    log_sinkhorn = solver._log_sinkhorn
    monkeypatch.setattr(solver, "_log_sinkhorn", lambda *a: fallbacks.append(a[0].shape[0]) or log_sinkhorn(*a))
    s_tok = token_transport_similarity(img_tokens, x["txt_tokens"], x["txt_token_mask"], OTSettings(eps=0.01))
    assert fallbacks and fallbacks[0] >= 1  # the underflowing groups took the log-domain path
    expected, _, _ = reference_token_similarity(img_tokens, x["txt_tokens"], x["txt_token_mask"], 0.01, 100, 0.01)
    assert (s_tok.double() - expected).abs().max().item() <= 1e-5
