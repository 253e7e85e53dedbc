"""Batched entropic optimal transport (Sinkhorn), solving many small problems at once.

Problems come in G independent *stopping groups* of S padded problems each. Every group
follows one rule: stop at the first iteration whose mean |r - r_prev| over the group's real rows
is < thresh, after at most max_iter iterations (the rule of ALIGN's official code, which solves
each group on its own and waits on the GPU at every iteration). A group that has stopped is
frozen by a masked update while the others go on, so its result equals solving it alone. The
host asks "is any group still running?" only every few iterations on accelerators (frozen
groups make the extra iterations harmless).

Numerics: everything runs in float32 with autocast disabled, without gradient. The plain kernel
exp(-cost/eps) is used first, because the official code computes it (same plan, same stopping
iteration). A group whose plain result is not a transport plan (a kernel row or column
underflowed to 0, or a scaling overflowed: NaN, inf or an empty row/column) is solved again in
the log domain, and only the failed groups are. That solver runs the same iteration on log r
and log c and evaluates the same stopping error without ever forming r, so it departs from the
plain one only where the plain one cannot be represented in float32.
"""

import math

import torch

# On accelerators, the host checks whether any group is still running every this many
# iterations (a check is a device-to-host sync). On CPU there is no sync to save: every iteration.
ACTIVE_CHECK_INTERVAL = 4


class OTNumericalError(FloatingPointError):
    """NaN/inf in an OT input, or an OT result that is not a transport plan."""


def sinkhorn(cost, row_mask=None, col_mask=None, eps=0.1, max_iter=100, thresh=0.01):
    """Entropic OT plans for G stopping groups of S padded problems, by the stopping rule above.

    Args:
        cost: (G, S, M, N) float, any float dtype (computed in float32).
        row_mask: (G, S, M) bool, True = real row; None = all real.
        col_mask: (G, S, N) bool, True = real column; None = all real.
            Every problem needs at least one real row and one real column.
        eps: entropic regularisation, kernel K = exp(-cost / eps).
        max_iter: at most this many iterations (r = a / (K c), c = b / (K^T r)).
        thresh: a group stops at the first iteration where the mean |r - r_prev| over the
            real rows of its S problems is < thresh.
    Returns:
        plan: (G, S, M, N) float32 without gradient, diag(r) K diag(c) with uniform marginals
        a = 1 / M_real, b = 1 / N_real; exactly 0 on padded rows and columns.
    Raises:
        OTNumericalError: cost has NaN/inf among its real entries.
        ValueError: bad shapes, masks or solver arguments.
    """
    check_solver_args("sinkhorn", eps, max_iter, thresh)
    if cost.dim() != 4:
        raise ValueError(f"sinkhorn: cost must have shape (G, S, M, N), got {tuple(cost.shape)}")
    groups, problems, rows, cols = cost.shape
    row_mask = _mask_or_all_real("sinkhorn", "row_mask", row_mask, (groups, problems, rows), cost.device)
    col_mask = _mask_or_all_real("sinkhorn", "col_mask", col_mask, (groups, problems, cols), cost.device)
    with torch.no_grad(), autocast_off(cost.device):
        real = row_mask[..., :, None] & col_mask[..., None, :]
        nonfinite, rowless, colless = torch.stack(
            [
                (~torch.isfinite(cost) & real).sum(),
                (~row_mask.any(-1)).sum(),
                (~col_mask.any(-1)).sum(),
            ]
        ).tolist()
        if nonfinite:
            raise OTNumericalError(
                f"sinkhorn: cost has {nonfinite} NaN/inf entries among its {int(real.sum())} real entries"
            )
        if rowless or colless:
            raise ValueError(
                f"sinkhorn: every problem needs a real row and a real column; "
                f"{rowless} problems have no real row, {colless} no real column"
            )
        return solve(cost.float(), row_mask, col_mask, eps, max_iter, thresh, "sinkhorn")


# ---------------------------------------------------------------------------------------------
# Solvers (float32 inputs, no gradient, no input checks)
# ---------------------------------------------------------------------------------------------


def solve(cost, row_mask, col_mask, eps, max_iter, thresh, stage):
    """Plain Sinkhorn for all groups; log-domain Sinkhorn for the groups where it is no plan."""
    # Advanced indexing copies: the failed groups' log-kernels are fresh tensors.
    return solve_kernel(
        torch.div(cost, -eps).exp_(),
        row_mask,
        col_mask,
        max_iter,
        thresh,
        stage,
        log_kernel_of=lambda groups: cost[groups].div_(-eps),
    )


def solve_kernel(kernel, row_mask, col_mask, max_iter, thresh, stage, log_kernel_of):
    """``solve`` from the kernel exp(-cost / eps): (G, S, M, N), overwritten by the plan.

    log_kernel_of: index tensor of groups -> their fresh log-kernel -cost / eps, for the groups
    that fall back to the log domain (the kernel alone has lost what underflowed).
    """
    plan = _plain_sinkhorn(kernel, row_mask, col_mask, max_iter, thresh)
    failed = _groups_without_plan(plan, row_mask, col_mask).nonzero().squeeze(1)
    if failed.numel():
        plan[failed] = _log_sinkhorn(log_kernel_of(failed), row_mask[failed], col_mask[failed], max_iter, thresh)
        if _groups_without_plan(plan[failed], row_mask[failed], col_mask[failed]).any():
            raise OTNumericalError(
                f"{stage}: the log-domain Sinkhorn gave no transport plan for some of {failed.numel()} groups"
            )
    return plan


def _plain_sinkhorn(kernel, row_mask, col_mask, max_iter, thresh):
    """The official iteration on K = exp(-cost / eps) (G, S, M, N), batched over groups; the plan
    is written into ``kernel`` and returned."""
    # Zero the padded entries (a full pass each; skipped where nothing is padded, the usual case).
    if not bool(row_mask.all()):
        kernel.masked_fill_(~row_mask[..., :, None], 0.0)
    if not bool(col_mask.all()):
        kernel.masked_fill_(~col_mask[..., None, :], 0.0)
    row_marginal, col_marginal = _uniform(row_mask), _uniform(col_mask)
    r, c = row_mask.float(), col_mask.float()
    real_rows = row_mask.sum((1, 2))
    active = torch.ones(kernel.shape[0], dtype=torch.bool, device=kernel.device)
    check_interval = _active_check_interval(kernel.device)
    for iteration in range(1, max_iter + 1):
        # Padded rows/columns get denominator 1 and marginal 0, so their scalings stay 0.
        r_new = row_marginal / torch.einsum("gsmn,gsn->gsm", kernel, c).masked_fill_(~row_mask, 1.0)
        c_new = col_marginal / torch.einsum("gsmn,gsm->gsn", kernel, r_new).masked_fill_(~col_mask, 1.0)
        error = (r_new - r).abs_().sum((1, 2)) / real_rows
        r = torch.where(active[:, None, None], r_new, r)
        c = torch.where(active[:, None, None], c_new, c)
        active &= ~(error < thresh)  # a NaN error never stops a group, as in the official code
        if iteration % check_interval == 0 and not active.any():
            break
    return kernel.mul_(r[..., :, None]).mul_(c[..., None, :])


def _log_sinkhorn(log_kernel, row_mask, col_mask, max_iter, thresh):
    """The same iteration on f = log r, g = log c: (G, S, M, N) plan, finite for finite costs.

    log_kernel: (G, S, M, N) = -cost / eps (used as scratch: padded entries are set to -inf).
    The stopping error is evaluated as log(mean |r - r_prev|) from f and f_prev, so the rule
    is the plain solver's even where r itself would overflow float32.
    """
    log_kernel.masked_fill_(~row_mask[..., :, None], -math.inf).masked_fill_(~col_mask[..., None, :], -math.inf)
    log_row_marginal, log_col_marginal = _uniform(row_mask).log(), _uniform(col_mask).log()
    f = torch.zeros_like(log_row_marginal).masked_fill_(~row_mask, -math.inf)
    g = torch.zeros_like(log_col_marginal).masked_fill_(~col_mask, -math.inf)
    log_real_rows = row_mask.sum((1, 2)).float().log()
    log_thresh = math.log(thresh) if thresh > 0 else -math.inf
    active = torch.ones(log_kernel.shape[0], dtype=torch.bool, device=log_kernel.device)
    check_interval = _active_check_interval(log_kernel.device)
    for iteration in range(1, max_iter + 1):
        f_new = torch.where(row_mask, log_row_marginal - _logsumexp_last(log_kernel + g[..., None, :]), -math.inf)
        g_new = torch.where(
            col_mask,
            log_col_marginal - _logsumexp_last((log_kernel + f_new[..., :, None]).transpose(-1, -2)),
            -math.inf,
        )
        # |r - r_prev| = r_prev * |expm1(f - f_prev)|, summed over the group in the log domain.
        log_change = torch.where(row_mask, f + (f_new - f).expm1().abs().log(), -math.inf)
        log_error = torch.logsumexp(log_change.flatten(1), dim=1) - log_real_rows
        f = torch.where(active[:, None, None], f_new, f)
        g = torch.where(active[:, None, None], g_new, g)
        active &= ~(log_error < log_thresh)
        if iteration % check_interval == 0 and not active.any():
            break
    return log_kernel.add_(f[..., :, None]).add_(g[..., None, :]).exp_()


def _logsumexp_last(values):
    """log(sum(exp(values), -1)) for values (..., K), overwriting values (saves a temporary).

    All -inf lines (padded rows or columns) give NaN; the callers replace them by -inf.
    """
    peak = values.amax(-1, keepdim=True)
    return values.sub_(peak).exp_().sum(-1).log_() + peak.squeeze(-1)


def _groups_without_plan(plan, row_mask, col_mask):
    """(G,) bool: a real row or column of the plan has non-finite or zero mass."""
    row_mass, col_mass = plan.sum(-1), plan.sum(-2)
    rows_ok = (torch.isfinite(row_mass) & (row_mass > 0)) | ~row_mask
    cols_ok = (torch.isfinite(col_mass) & (col_mass > 0)) | ~col_mask
    return ~(rows_ok.all(-1).all(-1) & cols_ok.all(-1).all(-1))


def _active_check_interval(device):
    """Iterations between "any group still running?" checks: on CPU there is no sync to save."""
    return 1 if device.type == "cpu" else ACTIVE_CHECK_INTERVAL


def _uniform(mask):
    """(G, S, K) float32 uniform weights over the True entries of each problem, 0 elsewhere."""
    mask = mask.float()
    return mask / mask.sum(-1, keepdim=True)


# ---------------------------------------------------------------------------------------------
# Checks and small helpers
# ---------------------------------------------------------------------------------------------


def check_solver_args(stage, eps, max_iter, thresh):
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"{stage}: eps must be a positive finite number, got {eps!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"{stage}: max_iter must be an int >= 1, got {max_iter!r}")
    if not thresh >= 0:
        raise ValueError(f"{stage}: thresh must be >= 0, got {thresh!r}")


def _mask_or_all_real(stage, name, mask, shape, device):
    if mask is None:
        return all_real(*shape, device)
    if mask.dtype != torch.bool or tuple(mask.shape) != shape:
        raise ValueError(
            f"{stage}: {name} must be a bool tensor of shape {shape}, got {mask.dtype} {tuple(mask.shape)}"
        )
    return mask.to(device)


def all_real(groups, problems, size, device):
    return torch.ones(groups, problems, size, dtype=torch.bool, device=device)


def autocast_off(device):
    """OT is float32 by design: matmuls inside must not be autocast to half precision."""
    return torch.autocast(device_type=device.type, enabled=False)
