"""Tests for trainers/sinkhorn.py (the batched solver) against the loop oracle and POT.

Runs on CPU; set ALIGN_TEST_DEVICE=cuda to run the same checks on a GPU.
"""

import os

import numpy as np
import ot as pot
import pytest
import torch

from tests.ot_oracle import reference_padded_sinkhorn
from trainers import sinkhorn as solver
from trainers.sinkhorn import OTNumericalError, sinkhorn

DEVICE = torch.device(os.environ.get("ALIGN_TEST_DEVICE", "cpu"))
PLAN_ATOL = 1e-6


def _random_masks(generator, groups, problems, rows, cols):
    row_mask = torch.rand(groups, problems, rows, generator=generator) > 0.3
    col_mask = torch.rand(groups, problems, cols, generator=generator) > 0.3
    row_mask[..., 0] = True
    col_mask[..., -1] = True
    return row_mask.to(DEVICE), col_mask.to(DEVICE)


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
        monkeypatch.setattr(solver, "_active_check_interval", lambda device: check_interval)
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
    all_rows, all_cols = solver.all_real(1, 1, 5, DEVICE), solver.all_real(1, 1, 7, DEVICE)
    kernel = cost[None, None].float().to(DEVICE).div(-0.01).exp()
    plain = solver._plain_sinkhorn(kernel, all_rows, all_cols, 100, 0.01)
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
    alone = solver._log_sinkhorn(log_kernel, row_mask[1:], col_mask[1:], 100, 0.01)
    assert torch.allclose(plan[1:], alone, rtol=0, atol=1e-7)
    assert torch.isfinite(plan).all()


@pytest.mark.parametrize("check_interval", [None, 7])
def test_log_domain_solver_follows_the_reference_rule(check_interval, monkeypatch):
    """Where the plain kernel is fine, the log-domain solver stops at the same iteration."""
    if check_interval:
        monkeypatch.setattr(solver, "_active_check_interval", lambda device: check_interval)
    generator = torch.Generator().manual_seed(4)
    cost = torch.rand(5, 3, 6, 5, generator=generator).to(DEVICE)
    row_mask, col_mask = _random_masks(generator, 5, 3, 6, 5)
    expected, iterations = reference_padded_sinkhorn(cost, row_mask, col_mask, 0.1, 100, 0.01)
    assert len(set(iterations)) > 1
    plan = solver._log_sinkhorn(cost / -0.1, row_mask, col_mask, 100, 0.01)
    assert (plan.double() - expected).abs().max().item() <= PLAN_ATOL


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_cost_gives_float32_plan(dtype):
    generator = torch.Generator().manual_seed(5)
    cost = torch.rand(2, 3, 4, 5, generator=generator).to(DEVICE, dtype)
    plan = sinkhorn(cost)
    assert plan.dtype == torch.float32
    all_rows, all_cols = solver.all_real(2, 3, 4, DEVICE), solver.all_real(2, 3, 5, DEVICE)
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
