"""Tests for trainers/ot.py against the loop oracle (tests/ot_oracle.py) and POT.

Runs on CPU; set ALIGN_TEST_DEVICE=cuda to run the same checks on a GPU.
"""

import os

import numpy as np
import ot as pot
import pytest
import torch

from tests.ot_oracle import reference_logits, reference_padded_sinkhorn, reference_token_similarity
from trainers import ot
from trainers.ot import (
    OTNumericalError,
    hierarchical_ot_logits,
    sinkhorn,
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


def _random_masks(generator, groups, problems, rows, cols):
    row_mask = torch.rand(groups, problems, rows, generator=generator) > 0.3
    col_mask = torch.rand(groups, problems, cols, generator=generator) > 0.3
    row_mask[..., 0] = True
    col_mask[..., -1] = True
    return row_mask.to(DEVICE), col_mask.to(DEVICE)


def _assert_logits_close(logits, expected):
    scale = expected.abs().max().item()
    assert (logits.double() - expected).abs().max().item() <= LOGIT_RTOL * scale


# ------------------------------------------------------------------------------------------
# sinkhorn
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups, problems, rows, cols", [(1, 1, 5, 7), (3, 4, 6, 5), (6, 2, 9, 3)])
def test_sinkhorn_matches_oracle_with_padding(groups, problems, rows, cols):
    generator = torch.Generator().manual_seed(groups * 100 + rows)
    cost = torch.rand(groups, problems, rows, cols, generator=generator).to(DEVICE)
    row_mask, col_mask = _random_masks(generator, groups, problems, rows, cols)
    expected, _ = reference_padded_sinkhorn(cost, row_mask, col_mask, 0.1, 100, 0.01)
    plan = sinkhorn(cost, row_mask, col_mask, eps=0.1, max_iter=100, thresh=0.01)
    assert plan.dtype == torch.float32 and plan.shape == cost.shape
    assert (plan.double() - expected).abs().max().item() <= PLAN_ATOL
    padding = ~(row_mask[..., :, None] & col_mask[..., None, :])
    assert torch.all(plan[padding] == 0)


@pytest.mark.parametrize("check_interval", [None, 7])
def test_groups_stopping_at_different_iterations_match_oracle(check_interval, monkeypatch):
    if check_interval:  # as on accelerators: frozen groups run on between the host's checks
        monkeypatch.setattr(ot, "_active_check_interval", lambda device: check_interval)
    generator = torch.Generator().manual_seed(1)
    cost = torch.rand(3, 4, 5, 6, generator=generator)
    cost[0] = 0.5  # constant cost: the scalings are exact after one iteration, so it stops at 2
    cost[2] += 2.0  # tiny kernel, huge scalings: |r - r_prev| stays above thresh until max_iter
    cost = cost.to(DEVICE)
    row_mask, col_mask = _random_masks(generator, 3, 4, 5, 6)
    expected, iterations = reference_padded_sinkhorn(cost, row_mask, col_mask, 0.1, 40, 0.01)
    assert iterations[0] == 2 and 2 < iterations[1] < 40 and iterations[2] == 40
    plan = sinkhorn(cost, row_mask, col_mask, eps=0.1, max_iter=40, thresh=0.01)
    assert (plan.double() - expected).abs().max().item() <= PLAN_ATOL
    for g in range(3):  # each group equals solving it alone
        alone = sinkhorn(cost[g : g + 1], row_mask[g : g + 1], col_mask[g : g + 1], eps=0.1, max_iter=40, thresh=0.01)
        assert torch.allclose(alone, plan[g : g + 1], rtol=0, atol=1e-7)


@pytest.mark.parametrize("rows, cols, eps", [(5, 7, 0.1), (8, 3, 0.05), (1, 4, 0.2)])
def test_sinkhorn_at_convergence_matches_pot(rows, cols, eps):
    generator = torch.Generator().manual_seed(rows * cols)
    cost = torch.rand(rows, cols, generator=generator, dtype=torch.float64)
    expected = pot.sinkhorn(
        np.full(rows, 1 / rows), np.full(cols, 1 / cols), cost.numpy(), eps, numItermax=100000, stopThr=1e-14
    )
    plan = sinkhorn(cost[None, None].to(DEVICE), eps=eps, max_iter=3000, thresh=0.0)
    assert np.abs(plan[0, 0].double().cpu().numpy() - expected).max() <= PLAN_ATOL


def _underflowing_cost(generator, rows, cols):
    """Costs where row 0 is >= 1.5 everywhere: with eps = 0.01 its float32 kernel row is all 0."""
    cost = torch.rand(rows, cols, generator=generator, dtype=torch.float64)
    cost[0] += 1.5
    return cost


def test_underflowing_kernel_gives_the_log_domain_plan():
    generator = torch.Generator().manual_seed(2)
    cost = _underflowing_cost(generator, 5, 7)
    all_rows, all_cols = ot._all_real(1, 1, 5, DEVICE), ot._all_real(1, 1, 7, DEVICE)
    kernel = cost[None, None].float().to(DEVICE).div(-0.01).exp()
    plain = ot._plain_sinkhorn(kernel, all_rows, all_cols, 100, 0.01)
    assert not torch.isfinite(plain).all()  # the reference returns a non-plan here

    converged = sinkhorn(cost[None, None].to(DEVICE), eps=0.01, max_iter=1500, thresh=0.0)[0, 0]
    expected = pot.sinkhorn(
        np.full(5, 1 / 5),
        np.full(7, 1 / 7),
        cost.numpy(),
        0.01,
        method="sinkhorn_log",
        numItermax=100000,
        stopThr=1e-14,
    )
    assert np.allclose(converged.double().cpu().numpy(), expected, rtol=1e-4, atol=1e-7)
    assert torch.allclose(converged.sum(1), torch.full((5,), 1 / 5, device=DEVICE), atol=1e-6)
    assert torch.allclose(converged.sum(0), torch.full((7,), 1 / 7, device=DEVICE), atol=1e-6)

    # With the reference stopping rule: still a plan (exact columns, every row carries mass).
    plan = sinkhorn(cost[None, None].to(DEVICE), eps=0.01, max_iter=100, thresh=0.01)[0, 0]
    assert torch.isfinite(plan).all() and (plan >= 0).all() and (plan.sum(1) > 0).all()
    assert torch.allclose(plan.sum(0), torch.full((7,), 1 / 7, device=DEVICE), atol=1e-6)


def test_only_failing_groups_switch_to_the_log_domain():
    generator = torch.Generator().manual_seed(3)
    cost = torch.rand(2, 3, 5, 7, generator=generator, dtype=torch.float64) * 0.2
    cost[1, 1] = _underflowing_cost(generator, 5, 7)
    cost = cost.to(DEVICE)
    row_mask, col_mask = _random_masks(generator, 2, 3, 5, 7)
    row_mask[1, 1, 0] = True  # keep the underflowing row real
    plan = sinkhorn(cost, row_mask, col_mask, eps=0.01, max_iter=100, thresh=0.01)
    expected, _ = reference_padded_sinkhorn(cost[:1], row_mask[:1], col_mask[:1], 0.01, 100, 0.01)
    assert (plan[:1].double() - expected).abs().max().item() <= PLAN_ATOL
    log_kernel = cost[1:].float() / -0.01
    alone = ot._log_sinkhorn(log_kernel, row_mask[1:], col_mask[1:], 100, 0.01)
    assert torch.allclose(plan[1:], alone, rtol=0, atol=1e-7)
    assert torch.isfinite(plan).all()


@pytest.mark.parametrize("check_interval", [None, 7])
def test_log_domain_solver_follows_the_reference_rule(check_interval, monkeypatch):
    """Where the plain kernel is fine, the log-domain solver stops at the same iteration."""
    if check_interval:
        monkeypatch.setattr(ot, "_active_check_interval", lambda device: check_interval)
    generator = torch.Generator().manual_seed(4)
    cost = torch.rand(5, 3, 6, 5, generator=generator).to(DEVICE)
    row_mask, col_mask = _random_masks(generator, 5, 3, 6, 5)
    expected, iterations = reference_padded_sinkhorn(cost, row_mask, col_mask, 0.1, 100, 0.01)
    assert len(set(iterations)) > 1
    plan = ot._log_sinkhorn(cost / -0.1, row_mask, col_mask, 100, 0.01)
    assert (plan.double() - expected).abs().max().item() <= PLAN_ATOL


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_cost_gives_float32_plan(dtype):
    generator = torch.Generator().manual_seed(5)
    cost = torch.rand(2, 3, 4, 5, generator=generator).to(DEVICE, dtype)
    plan = sinkhorn(cost)
    assert plan.dtype == torch.float32
    all_rows, all_cols = ot._all_real(2, 3, 4, DEVICE), ot._all_real(2, 3, 5, DEVICE)
    expected, _ = reference_padded_sinkhorn(cost.double(), all_rows, all_cols, 0.1, 100, 0.01)
    assert (plan.double() - expected).abs().max().item() <= PLAN_ATOL


def test_sinkhorn_plan_has_no_gradient():
    cost = torch.rand(1, 2, 3, 4, device=DEVICE, requires_grad=True)
    assert not sinkhorn(cost).requires_grad


def test_sinkhorn_rejects_nan_in_real_entries_only():
    cost = torch.rand(1, 2, 3, 4, device=DEVICE)
    col_mask = torch.ones(1, 2, 4, dtype=torch.bool, device=DEVICE)
    col_mask[0, 1, 3] = False
    cost[0, 1, 0, 3] = float("nan")  # padded: ignored
    assert sinkhorn(cost, col_mask=col_mask)[0, 1, :, 3].eq(0).all()
    cost[0, 0, 2, 1] = float("inf")
    with pytest.raises(OTNumericalError, match="1 NaN/inf entries"):
        sinkhorn(cost, col_mask=col_mask)


def test_sinkhorn_argument_errors():
    cost = torch.rand(1, 2, 3, 4, device=DEVICE)
    with pytest.raises(ValueError, match=r"cost must have shape \(G, S, M, N\)"):
        sinkhorn(cost[0])
    with pytest.raises(ValueError, match=r"row_mask must be a bool tensor of shape \(1, 2, 3\)"):
        sinkhorn(cost, row_mask=torch.ones(1, 2, 4, dtype=torch.bool, device=DEVICE))
    with pytest.raises(ValueError, match="no real column"):
        sinkhorn(cost, col_mask=torch.zeros(1, 2, 4, dtype=torch.bool, device=DEVICE))
    with pytest.raises(ValueError, match="eps must be a positive"):
        sinkhorn(cost, eps=0.0)
    with pytest.raises(ValueError, match="max_iter must be an int"):
        sinkhorn(cost, max_iter=0)


# ------------------------------------------------------------------------------------------
# token level and hierarchical logits
# ------------------------------------------------------------------------------------------


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
    solve = ot._solve_kernel
    monkeypatch.setattr(
        ot, "_solve_kernel", lambda *args, **kwargs: chunk_plans.append(solve(*args, **kwargs)) or chunk_plans[-1]
    )
    token_transport_similarity(x["img_tokens"], x["txt_tokens"], x["txt_token_mask"], memory_budget_mb=1e-3)
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
    logits, plan = hierarchical_ot_logits(
        **x,
        hierarchical=hierarchical,
        token_cost=token_cost,
        token_weight=weight,
        memory_budget_mb=budget,
        return_plan=True,
    )
    assert logits.dtype == plan.dtype == torch.float32
    assert logits.shape == (batch, classes) and plan.shape == (batch, classes, prompts, prompts)
    assert (plan.double() - expected_plan).abs().max().item() <= PLAN_ATOL
    _assert_logits_close(logits, expected_logits)


def test_token_cost_setting_changes_the_logits():
    x = _inputs(30, 2, 3, 2)
    similarity = hierarchical_ot_logits(**x, token_cost="similarity")
    distance = hierarchical_ot_logits(**x, token_cost="distance")
    assert not torch.allclose(similarity, distance)


def test_tiny_memory_budget_chunks_classes_with_identical_results(monkeypatch):
    x = _inputs(40, 2, 7, 2)
    sizes = dict(batch=2, v_prompts=2, t_prompts=2, img_len=6, txt_len=5, dim=16)
    assert token_chunk_classes(**sizes, memory_budget_mb=1024.0) >= 7
    assert token_chunk_classes(**sizes, memory_budget_mb=1e-3) == 1
    per_class_mb = 4 * (2 * 2 * 2 * 6 * 5 * ot.TOKEN_LEVEL_LIVE_TENSORS + 2 * 5 * 16) / 2**20
    assert token_chunk_classes(**sizes, memory_budget_mb=3.5 * per_class_mb) == 3

    stages = []
    solve = ot._solve_kernel

    def recording_solve(*args, **kwargs):
        stages.append(args[5])
        return solve(*args, **kwargs)

    monkeypatch.setattr(ot, "_solve_kernel", recording_solve)
    whole = hierarchical_ot_logits(**x, memory_budget_mb=1024.0)
    assert sum("token-level" in stage for stage in stages) == 1
    stages.clear()
    chunked = hierarchical_ot_logits(**x, memory_budget_mb=3.5 * per_class_mb)
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
    logits, plan = hierarchical_ot_logits(**half, return_plan=True)
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
    logits, plan = hierarchical_ot_logits(**x, return_plan=True)
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
        hierarchical_ot_logits(**x, token_cost="cosine")
    empty = x["txt_token_mask"].clone()
    empty[1, 0] = False
    with pytest.raises(ValueError, match="1 \\(class, prompt\\) rows without any real token"):
        hierarchical_ot_logits(**{**x, "txt_token_mask": empty})
    with pytest.raises(ValueError, match="txt_tokens is required"):
        hierarchical_ot_logits(**{**x, "txt_tokens": None})
    flat = hierarchical_ot_logits(
        **{**x, "img_tokens": None, "txt_tokens": None, "txt_token_mask": None}, hierarchical=False
    )
    assert flat.shape == (2, 3)
