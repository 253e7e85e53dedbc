"""Plain loop oracle for trainers/ot.py, written straight from the method's description (docs/method.md, section 4).

Deliberately simple and slow: one (image, class) pair at a time, plain kernel K = exp(-cost/eps),
float64, Python lists for ragged problems. Shared by the OT tests and the model-level tests.
"""

import torch


def reference_sinkhorn(K, a, b, max_iter, thresh):
    """Sinkhorn on one stopping group, exactly as the reference iterates.

    K: list of S kernels, each (M_s, N_s); a: list of (M_s,) row marginals; b: list of (N_s,).
    Returns (plans, iterations): the S plans diag(r) K diag(c) and the iteration it stopped at.
    """
    r = [torch.ones_like(a_s) for a_s in a]
    c = [torch.ones_like(b_s) for b_s in b]
    for iteration in range(1, max_iter + 1):  # noqa: B007 (returned: the stopping iteration)
        r_prev = r
        r = [a_s / (K_s @ c_s) for K_s, a_s, c_s in zip(K, a, c)]
        c = [b_s / (K_s.T @ r_s) for K_s, b_s, r_s in zip(K, b, r)]
        error = torch.cat([(r_s - p_s).abs() for r_s, p_s in zip(r, r_prev)]).mean()
        if error < thresh:
            break
    plans = [r_s[:, None] * K_s * c_s[None, :] for K_s, r_s, c_s in zip(K, r, c)]
    return plans, iteration


def reference_group(costs, eps, max_iter, thresh):
    """One stopping group from a list of (M_s, N_s) costs, uniform marginals: (plans, iterations)."""
    costs = [cost.double() for cost in costs]
    kernels = [torch.exp(-cost / eps) for cost in costs]
    a = [torch.full((cost.shape[0],), 1.0 / cost.shape[0], dtype=torch.float64, device=cost.device) for cost in costs]
    b = [torch.full((cost.shape[1],), 1.0 / cost.shape[1], dtype=torch.float64, device=cost.device) for cost in costs]
    return reference_sinkhorn(kernels, a, b, max_iter, thresh)


def reference_padded_sinkhorn(cost, row_mask, col_mask, eps, max_iter, thresh):
    """Oracle for trainers.ot.sinkhorn: each group solved alone on its real sub-matrices.

    cost: (G, S, M, N); row_mask: (G, S, M) bool; col_mask: (G, S, N) bool.
    Returns (plan (G, S, M, N) float64 with zeros on padding, list of G stopping iterations).
    """
    plan = torch.zeros(cost.shape, dtype=torch.float64, device=cost.device)
    iterations = []
    for g in range(cost.shape[0]):
        costs = [cost[g, s][row_mask[g, s]][:, col_mask[g, s]] for s in range(cost.shape[1])]
        plans, stopped = reference_group(costs, eps, max_iter, thresh)
        for s, plan_s in enumerate(plans):
            rows = row_mask[g, s].nonzero().squeeze(1)
            cols = col_mask[g, s].nonzero().squeeze(1)
            plan[g, s, rows[:, None], cols[None, :]] = plan_s
        iterations.append(stopped)
    return plan, iterations


def reference_token_similarity(img_tokens, txt_tokens, txt_token_mask, eps, max_iter, thresh):
    """s_tok[b, c, v, t] = sum(plan * sim_tok), one Sinkhorn group per (b, c) pair.

    img_tokens: (B, V, P, D); txt_tokens: (C, T, L, D); txt_token_mask: (C, T, L) bool.
    Returns (s_tok (B, C, V, T) float64, plans, iterations): plans[b][c][v][t] is the
    (P, L_ct) plan over the real text tokens; iterations[b][c] the group's stopping iteration.
    """
    batch, v_prompts = img_tokens.shape[:2]
    classes, t_prompts = txt_tokens.shape[:2]
    s_tok = torch.zeros(batch, classes, v_prompts, t_prompts, dtype=torch.float64, device=img_tokens.device)
    plans = [[[[None] * t_prompts for _ in range(v_prompts)] for _ in range(classes)] for _ in range(batch)]
    iterations = [[0] * classes for _ in range(batch)]
    for b in range(batch):
        for c in range(classes):
            pairs = [(v, t) for v in range(v_prompts) for t in range(t_prompts)]
            sims = [img_tokens[b, v].double() @ txt_tokens[c, t][txt_token_mask[c, t]].double().T for v, t in pairs]
            group_plans, iterations[b][c] = reference_group([1.0 - sim for sim in sims], eps, max_iter, thresh)
            for (v, t), plan, sim in zip(pairs, group_plans, sims):
                s_tok[b, c, v, t] = (plan * sim).sum()
                plans[b][c][v][t] = plan
    return s_tok, plans, iterations


def reference_logits(
    img_global,
    img_tokens,
    txt_global,
    txt_tokens,
    txt_token_mask,
    logit_scale,
    eps,
    max_iter,
    thresh,
    hierarchical,
    token_cost,
    token_weight,
):
    """Oracle for trainers.ot.hierarchical_ot_logits.

    Returns (logits (B, C) float64, plan (B, C, V, T) float64, prompt-level stopping iteration).
    """
    batch, classes = img_global.shape[0], txt_global.shape[0]
    if hierarchical:
        s_tok, _, _ = reference_token_similarity(img_tokens, txt_tokens, txt_token_mask, eps, max_iter, thresh)
    pairs = [(b, c) for b in range(batch) for c in range(classes)]
    sims, costs = [], []
    for b, c in pairs:
        sim = img_global[b].double() @ txt_global[c].double().T
        cost = 1.0 - sim
        if hierarchical:
            token_term = s_tok[b, c] if token_cost == "similarity" else 1.0 - s_tok[b, c]
            cost = cost + token_weight * token_term
        sims.append(sim)
        costs.append(cost)
    plans, stopped = reference_group(costs, eps, max_iter, thresh)
    logits = torch.zeros(batch, classes, dtype=torch.float64, device=img_global.device)
    plan = torch.zeros(batch, classes, *sims[0].shape, dtype=torch.float64, device=img_global.device)
    scale = float(torch.as_tensor(logit_scale).detach())  # a plain number: the oracle has no autograd
    for (b, c), plan_bc, sim in zip(pairs, plans, sims):
        logits[b, c] = scale * (plan_bc * sim).sum()
        plan[b, c] = plan_bc
    return logits, plan, stopped
