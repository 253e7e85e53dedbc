"""Batched entropic optimal transport for ALIGN (spec: shared/spec/align-method.md, section 4).

The reference solves every (image, class) token-level problem with its own Sinkhorn call and
waits on the GPU at every iteration. Here all problems of a step are solved together:

- ``sinkhorn`` solves G independent *stopping groups* of S padded problems each. Every group
  follows the reference rule (stop at the first iteration whose mean |r - r_prev| over the
  group's real rows is < thresh, at most max_iter iterations); a group that has stopped is
  frozen by a masked update while the others go on, so its result equals solving it alone.
  The host asks "is any group still running?" only every few iterations on accelerators
  (frozen groups make the extra iterations harmless).
- Everything runs in float32 with autocast disabled, under ``torch.no_grad()``.
- Numerics: the plain kernel exp(-cost/eps) is used first, because it is what the reference
  computes (same plan, same stopping iteration). A group whose plain result is not a transport
  plan (a kernel row or column underflowed to 0, or a scaling overflowed: NaN, inf or an empty
  row/column) is solved again in the log domain; only the failed groups are. That solver
  runs the same iteration on log r and log c and evaluates the same stopping error without ever
  forming r (log of mean |r - r_prev|), so it only departs from the plain one where the plain
  one cannot be represented in float32.
- ``hierarchical_ot_logits`` chains the token level (chunked over classes to bound memory) and
  the prompt level into the (B, C) logits.
"""

import math

import torch

TOKEN_COSTS = ("similarity", "distance")

# On accelerators, the host checks whether any group is still running every this many
# iterations (a check is a device-to-host sync). On CPU there is no sync to save: every iteration.
ACTIVE_CHECK_INTERVAL = 4

# Peak number of live float32 tensors with one element per token-level (b, c, v, t, p, l) entry
# of a class chunk: similarities and kernel/plan (2), plus, only for groups whose plain plan
# fails, the log-kernel and one log-sum-exp temporary of the log-domain solver (2). The einsum
# that produces the similarities briefly holds 2 (its raw output and the contiguous copy) before
# the kernel exists, so 4 bounds every moment.
TOKEN_LEVEL_LIVE_TENSORS = 4

_FLOAT32_BYTES = 4


class OTNumericalError(FloatingPointError):
    """NaN/inf in an OT input, or an OT result that is not a transport plan."""


def sinkhorn(cost, row_mask=None, col_mask=None, eps=0.1, max_iter=100, thresh=0.01):
    """Entropic OT plans for G stopping groups of S padded problems, by the reference rule.

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
    _check_solver_args("sinkhorn", eps, max_iter, thresh)
    if cost.dim() != 4:
        raise ValueError(f"sinkhorn: cost must have shape (G, S, M, N), got {tuple(cost.shape)}")
    groups, problems, rows, cols = cost.shape
    row_mask = _mask_or_all_real("sinkhorn", "row_mask", row_mask, (groups, problems, rows), cost.device)
    col_mask = _mask_or_all_real("sinkhorn", "col_mask", col_mask, (groups, problems, cols), cost.device)
    with torch.no_grad(), _autocast_off(cost.device):
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
        return _solve(cost.float(), row_mask, col_mask, eps, max_iter, thresh, "sinkhorn")


def token_chunk_classes(batch, v_prompts, t_prompts, img_len, txt_len, dim, memory_budget_mb):
    """Classes per token-level chunk so that the chunk's temporaries stay under the budget.

    Per class, a chunk holds TOKEN_LEVEL_LIVE_TENSORS float32 tensors of B*V*T*P*L entries
    (see that constant) plus the class's float32 text tokens (T*L*D), with L the padded text
    length (a chunk trims L to its own longest class, so it only uses less). The image tokens
    and the (B, C, V, T) outputs are not per class and not counted. At least one class per chunk.
    """
    per_class = batch * v_prompts * t_prompts * img_len * txt_len * TOKEN_LEVEL_LIVE_TENSORS
    per_class_bytes = _FLOAT32_BYTES * (per_class + t_prompts * txt_len * dim)
    return max(1, int(memory_budget_mb * 2**20 // per_class_bytes))


def token_transport_similarity(
    img_tokens, txt_tokens, txt_token_mask, *, eps=0.1, max_iter=100, thresh=0.01, memory_budget_mb=1024.0
):
    """Token-level transport-weighted similarities s_tok (spec section 4, token level).

    Args:
        img_tokens: (B, V, P, D) L2-normalised image tokens.
        txt_tokens: (C, T, L, D) L2-normalised text tokens, padded along L.
        txt_token_mask: (C, T, L) bool, True = real token; every (c, t) has at least one.
        eps, max_iter, thresh: Sinkhorn settings; one stopping group per (b, c) pair.
        memory_budget_mb: bound on the chunk temporaries (see ``token_chunk_classes``).
    Returns:
        s_tok: (B, C, V, T) float32 without gradient, sum(plan * sim_tok) per problem.
    """
    _check_solver_args("token_transport_similarity", eps, max_iter, thresh)
    _check_budget("token_transport_similarity", memory_budget_mb)
    sizes = _check_token_shapes("token_transport_similarity", img_tokens, txt_tokens, txt_token_mask)
    token_ends = _check_finite_and_token_ends(
        "token_transport_similarity", {"img_tokens": img_tokens, "txt_tokens": txt_tokens}, txt_token_mask
    )
    with _autocast_off(img_tokens.device):
        return _token_transport_similarity(
            img_tokens, txt_tokens, txt_token_mask, token_ends, sizes, eps, max_iter, thresh, memory_budget_mb
        )


def hierarchical_ot_logits(
    img_global,
    img_tokens,
    txt_global,
    txt_tokens,
    txt_token_mask,
    logit_scale,
    *,
    eps=0.1,
    max_iter=100,
    thresh=0.01,
    hierarchical=True,
    token_cost="similarity",
    token_weight=1.0,
    memory_budget_mb=1024.0,
    return_plan=False,
):
    """ALIGN logits: prompt-level OT whose cost includes the token-level OT (spec section 4).

    Args:
        img_global: (B, V, D) L2-normalised global image features, one per visual prompt.
        img_tokens: (B, V, P, D) L2-normalised image tokens (may be None if not hierarchical).
        txt_global: (C, T, D) L2-normalised global text features.
        txt_tokens: (C, T, L, D) L2-normalised text tokens padded along L (None if not hierarchical).
        txt_token_mask: (C, T, L) bool, True = real token (None if not hierarchical).
        logit_scale: scalar tensor (one element), the already exponentiated scale.
        eps, max_iter, thresh: Sinkhorn settings for both levels.
        hierarchical: add the token term to the prompt-level cost.
        token_cost: "similarity" (reference: + w * s_tok) or "distance" (paper: + w * (1 - s_tok)).
        token_weight: w above.
        memory_budget_mb: bound on the token-level chunk temporaries.
        return_plan: also return the prompt-level plan.
    Returns:
        logits: (B, C) float32, logit_scale * sum_{v,t}(plan * sim), differentiable w.r.t.
        img_global, txt_global and logit_scale (never through the plan);
        and, if return_plan, plan: (B, C, V, T) float32 without gradient.
    Raises:
        OTNumericalError: NaN/inf in an input (the message names it).
        ValueError: bad shapes or settings.
    """
    name = "hierarchical_ot_logits"
    _check_solver_args(name, eps, max_iter, thresh)
    if token_cost not in TOKEN_COSTS:
        raise ValueError(f"{name}: token_cost must be one of {TOKEN_COSTS}, got {token_cost!r}")
    if not math.isfinite(token_weight):
        raise ValueError(f"{name}: token_weight must be finite, got {token_weight!r}")
    _check_budget(name, memory_budget_mb)
    batch, v_prompts, dim = _check_dims(name, "img_global", img_global, "(B, V, D)")
    classes, t_prompts, txt_dim = _check_dims(name, "txt_global", txt_global, "(C, T, D)")
    if txt_dim != dim:
        raise ValueError(f"{name}: txt_global has feature width {txt_dim}, img_global has {dim}")
    if not torch.is_tensor(logit_scale) or logit_scale.numel() != 1:
        raise ValueError(f"{name}: logit_scale must be a one-element tensor, got {logit_scale!r}")
    checked = {"img_global": img_global, "txt_global": txt_global, "logit_scale": logit_scale}
    if hierarchical:
        sizes = _check_token_shapes(name, img_tokens, txt_tokens, txt_token_mask)
        if sizes["B"] != batch or sizes["V"] != v_prompts or sizes["D"] != dim:
            raise ValueError(
                f"{name}: img_tokens must have shape (B, V, P, D) = ({batch}, {v_prompts}, P, {dim}) "
                f"like img_global, got {tuple(img_tokens.shape)}"
            )
        if sizes["C"] != classes or sizes["T"] != t_prompts:
            raise ValueError(
                f"{name}: txt_tokens must have shape (C, T, L, D) = ({classes}, {t_prompts}, L, {dim}) "
                f"like txt_global, got {tuple(txt_tokens.shape)}"
            )
        checked.update(img_tokens=img_tokens, txt_tokens=txt_tokens)
    token_ends = _check_finite_and_token_ends(name, checked, txt_token_mask if hierarchical else None)

    with _autocast_off(img_global.device):
        sim = torch.einsum("bvd,ctd->bcvt", img_global.float(), txt_global.float())
        cost = 1.0 - sim.detach()
        if hierarchical:
            s_tok = _token_transport_similarity(
                img_tokens, txt_tokens, txt_token_mask, token_ends, sizes, eps, max_iter, thresh, memory_budget_mb
            )
            cost = cost + token_weight * (s_tok if token_cost == "similarity" else 1.0 - s_tok)
        with torch.no_grad():
            # One stopping group: all B*C problems (rows = V visual, columns = T textual prompts).
            plan = _solve(
                cost.reshape(1, batch * classes, v_prompts, t_prompts),
                _all_real(1, batch * classes, v_prompts, sim.device),
                _all_real(1, batch * classes, t_prompts, sim.device),
                eps,
                max_iter,
                thresh,
                "prompt-level OT",
            ).view_as(sim)
        logits = logit_scale.float().reshape(()) * torch.einsum("bcvt,bcvt->bc", plan, sim)
    return (logits, plan) if return_plan else logits


# ---------------------------------------------------------------------------------------------
# Solvers (float32 inputs, no gradient, no input checks)
# ---------------------------------------------------------------------------------------------


def _solve(cost, row_mask, col_mask, eps, max_iter, thresh, stage):
    """Plain Sinkhorn for all groups; log-domain Sinkhorn for the groups where it is no plan."""
    # Advanced indexing copies: the failed groups' log-kernels are fresh tensors.
    return _solve_kernel(
        torch.div(cost, -eps).exp_(),
        row_mask,
        col_mask,
        max_iter,
        thresh,
        stage,
        log_kernel_of=lambda groups: cost[groups].div_(-eps),
    )


def _solve_kernel(kernel, row_mask, col_mask, max_iter, thresh, stage, log_kernel_of):
    """``_solve`` from the kernel exp(-cost / eps): (G, S, M, N), overwritten by the plan.

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
    """The reference iteration on K = exp(-cost / eps) (G, S, M, N), batched over groups; the plan
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
        active &= ~(error < thresh)  # a NaN error never stops a group, as in the reference
        if iteration % check_interval == 0 and not active.any():
            break
    return kernel.mul_(r[..., :, None]).mul_(c[..., None, :])


def _log_sinkhorn(log_kernel, row_mask, col_mask, max_iter, thresh):
    """The same iteration on f = log r, g = log c: (G, S, M, N) plan, finite for finite costs.

    log_kernel: (G, S, M, N) = -cost / eps (used as scratch: padded entries are set to -inf).
    The stopping error is evaluated as log(mean |r - r_prev|) from f and f_prev, so the rule
    is the reference's even where r itself would overflow float32.
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


def _token_transport_similarity(
    img_tokens, txt_tokens, txt_token_mask, token_ends, sizes, eps, max_iter, thresh, memory_budget_mb
):
    """s_tok: (B, C, V, T) float32, chunked over classes; inputs already checked."""
    chunk = token_chunk_classes(
        sizes["B"], sizes["V"], sizes["T"], sizes["P"], sizes["L"], sizes["D"], memory_budget_mb
    )
    s_tok = torch.empty(sizes["B"], sizes["C"], sizes["V"], sizes["T"], device=img_tokens.device)
    # Chunks of classes of similar text length: each chunk is padded to its own longest class only.
    by_length = sorted(range(sizes["C"]), key=lambda c: token_ends[c])
    with torch.no_grad():
        img_tokens = img_tokens.float()
        for start in range(0, sizes["C"], chunk):
            classes = by_length[start : start + chunk]
            txt_len = token_ends[classes[-1]]
            index = torch.tensor(classes, device=img_tokens.device)
            s_tok[:, index] = _token_chunk_similarity(
                img_tokens,
                txt_tokens[index, :, :txt_len].float(),
                txt_token_mask[index, :, :txt_len],
                eps,
                max_iter,
                thresh,
                f"token-level OT ({len(classes)} classes from class {classes[0]})",
            )
    return s_tok


def _token_chunk_similarity(img_tokens, txt_tokens, txt_token_mask, eps, max_iter, thresh, stage):
    """s_tok of one class chunk: (B, Cc, V, T) from img_tokens (B, V, P, D) float32,
    txt_tokens (Cc, T, L, D) float32 and txt_token_mask (Cc, T, L). A function of its own so
    that the chunk's large tensors are freed before the next chunk allocates its own."""
    batch, v_prompts, img_len, _ = img_tokens.shape
    classes, t_prompts, txt_len, _ = txt_tokens.shape
    groups, problems = batch * classes, v_prompts * t_prompts
    sim_tok = torch.einsum("bvpd,ctld->bcvtpl", img_tokens, txt_tokens).contiguous()
    sim_tok = sim_tok.view(groups, problems, img_len, txt_len)
    col_mask = txt_token_mask[None, :, None].expand(batch, -1, v_prompts, -1, -1).reshape(groups, problems, txt_len)
    # -cost / eps = (sim - 1) / eps: the kernel in one new tensor, bit-identical to exp(-(1 - sim) / eps).
    plan = _solve_kernel(
        torch.sub(sim_tok, 1.0).div_(eps).exp_(),
        _all_real(groups, problems, img_len, img_tokens.device),
        col_mask,
        max_iter,
        thresh,
        stage,
        log_kernel_of=lambda failed: sim_tok[failed].sub_(1.0).div_(eps),
    )
    return torch.einsum("gsmn,gsmn->gs", plan, sim_tok).view(batch, classes, v_prompts, t_prompts)


# ---------------------------------------------------------------------------------------------
# Checks and small helpers
# ---------------------------------------------------------------------------------------------


def _check_finite_and_token_ends(stage, tensors, txt_token_mask):
    """One host sync: raise on NaN/inf inputs or empty text prompts; return per-class token ends.

    tensors: {name: tensor}; txt_token_mask: (C, T, L) bool or None.
    Returns a list of C ints (1 + last real text position of the class), or None without a mask.
    NaN/inf are screened by float32 sums, which allocate nothing of the inputs' size (an
    element-wise isfinite would, about twice the text tokens' bytes): a NaN/inf entry makes its
    sum non-finite, and only then are the entries counted, for the message.
    """
    device = next(iter(tensors.values())).device
    values = torch.stack([t.sum(dtype=torch.float32).to(device) for t in tensors.values()]).double()
    if txt_token_mask is not None:
        mask = txt_token_mask.to(device)
        positions = torch.arange(1, mask.shape[-1] + 1, device=device)
        values = torch.cat([values, (~mask.any(-1)).sum()[None].double(), (mask * positions).amax((1, 2)).double()])
    values = values.tolist()
    for (name, tensor), total in zip(tensors.items(), values):
        count = 0 if math.isfinite(total) else int((~torch.isfinite(tensor)).sum())
        if count:  # a finite input whose sum overflows float32 is no error
            raise OTNumericalError(
                f"{stage}: input {name} has {count} NaN/inf entries (of {tensor.numel()}, shape {tuple(tensor.shape)})"
            )
    if txt_token_mask is None:
        return None
    empty = int(values[len(tensors)])
    if empty:
        raise ValueError(f"{stage}: txt_token_mask has {empty} (class, prompt) rows without any real token")
    return [int(end) for end in values[len(tensors) + 1 :]]


def _check_token_shapes(stage, img_tokens, txt_tokens, txt_token_mask):
    """Shapes of the token inputs; returns {"B", "V", "P", "D", "C", "T", "L"}."""
    for name, tensor in (("img_tokens", img_tokens), ("txt_tokens", txt_tokens), ("txt_token_mask", txt_token_mask)):
        if tensor is None:
            raise ValueError(f"{stage}: {name} is required for the token-level OT, got None")
    batch, v_prompts, img_len, dim = _check_dims(stage, "img_tokens", img_tokens, "(B, V, P, D)")
    classes, t_prompts, txt_len, txt_dim = _check_dims(stage, "txt_tokens", txt_tokens, "(C, T, L, D)")
    if txt_dim != dim:
        raise ValueError(f"{stage}: txt_tokens has feature width {txt_dim}, img_tokens has {dim}")
    if txt_token_mask.dtype != torch.bool or tuple(txt_token_mask.shape) != (classes, t_prompts, txt_len):
        raise ValueError(
            f"{stage}: txt_token_mask must be a bool tensor of shape (C, T, L) = "
            f"{(classes, t_prompts, txt_len)}, got {txt_token_mask.dtype} {tuple(txt_token_mask.shape)}"
        )
    return {"B": batch, "V": v_prompts, "P": img_len, "D": dim, "C": classes, "T": t_prompts, "L": txt_len}


def _check_dims(stage, name, tensor, layout):
    """tensor.shape after checking its rank against layout, e.g. "(B, V, D)"."""
    rank = layout.count(",") + 1
    if tensor.dim() != rank or not tensor.is_floating_point():
        raise ValueError(
            f"{stage}: {name} must be a floating tensor of shape {layout}, got {tensor.dtype} {tuple(tensor.shape)}"
        )
    return tuple(tensor.shape)


def _check_solver_args(stage, eps, max_iter, thresh):
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"{stage}: eps must be a positive finite number, got {eps!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"{stage}: max_iter must be an int >= 1, got {max_iter!r}")
    if not thresh >= 0:
        raise ValueError(f"{stage}: thresh must be >= 0, got {thresh!r}")


def _check_budget(stage, memory_budget_mb):
    if not (memory_budget_mb > 0 and math.isfinite(memory_budget_mb)):
        raise ValueError(f"{stage}: memory_budget_mb must be a positive number, got {memory_budget_mb!r}")


def _mask_or_all_real(stage, name, mask, shape, device):
    if mask is None:
        return _all_real(*shape, device)
    if mask.dtype != torch.bool or tuple(mask.shape) != shape:
        raise ValueError(
            f"{stage}: {name} must be a bool tensor of shape {shape}, got {mask.dtype} {tuple(mask.shape)}"
        )
    return mask.to(device)


def _all_real(groups, problems, size, device):
    return torch.ones(groups, problems, size, dtype=torch.bool, device=device)


def _autocast_off(device):
    """OT is float32 by design: matmuls inside must not be autocast to half precision."""
    return torch.autocast(device_type=device.type, enabled=False)
