"""ALIGN's hierarchical optimal transport: image-label similarity from two levels of Sinkhorn.

An image is V prompt-level features and, below each, P token features; a class is T prompt-level
features and, below each, its text tokens. For every (image b, class c):

- token level: for every (visual prompt v, textual prompt t), the transport plan between the P
  image tokens and the class's text tokens (cost 1 - cosine similarity) weighs the token
  similarities into s_tok[b, c, v, t], a similarity in [-1, 1];
- prompt level: the V x T problem between the global features, with cost 1 - sim (+ the token
  term), gives a plan whose weighted similarity, scaled by CLIP's logit scale, is logit[b, c].

Plans carry no gradient (as in the official code): gradients reach the prompts only through the
similarities that the plans weigh. All token-level problems of a forward are solved together by
the batched solver of ``trainers.sinkhorn`` (one stopping group per (b, c) pair), chunked over
classes to bound memory; the prompt level is one stopping group over the whole batch, as in the
official code (so a prediction can depend on the other images of the batch), or with
``stop_per_problem`` one group per (b, c) pair (a prediction then depends on its image alone).
docs/method.md describes the computation and its switches.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .sinkhorn import OTNumericalError, all_real, autocast_off, solve, solve_kernel

__all__ = [
    "TOKEN_COSTS",
    "OTNumericalError",
    "OTSettings",
    "OTSettingsError",
    "Transport",
    "hierarchical_ot",
    "hierarchical_ot_logits",
    "token_chunk_classes",
    "token_transport_similarity",
]

TOKEN_COSTS = ("similarity", "distance")

# Peak number of live float32 tensors with one element per token-level (b, c, v, t, p, l) entry
# of a class chunk: similarities and kernel/plan (2), plus, only for groups whose plain plan
# fails, the log-kernel and one log-sum-exp temporary of the log-domain solver (2). The einsum
# that produces the similarities briefly holds 2 (its raw output and the contiguous copy) before
# the kernel exists, so 4 bounds every moment.
TOKEN_LEVEL_LIVE_TENSORS = 4

_FLOAT32_BYTES = 4


@dataclass(frozen=True)
class OTSettings:
    """Settings of both OT levels; invalid values raise ValueError naming the field."""

    eps: float = 0.1  # entropic regularisation of both levels: kernel exp(-cost / eps)
    max_iter: int = 100  # Sinkhorn iterations at most
    thresh: float = 0.01  # a stopping group stops when its mean |r - r_prev| < thresh
    hierarchical: bool = True  # the token-level OT enters the prompt-level cost
    # "similarity": cost + w * s_tok (the official code); "distance": cost + w * (1 - s_tok) (the paper)
    token_cost: str = "similarity"
    token_weight: float = 1.0  # w above; the official code has none (1)
    memory_budget_mb: float = 1024.0  # bound on the token-level chunk temporaries (chunks over classes)
    # The prompt level's stopping rule: False = one group over the batch's B*C problems (the
    # official code: a prediction depends on its batch); True = every (image, class) problem stops
    # on its own (predictions independent of the batch's composition, as under DDP sharding)
    stop_per_problem: bool = False

    def __post_init__(self):
        finite = math.isfinite
        for field, ok, expected in (
            ("eps", self.eps > 0 and finite(self.eps), "a positive finite number"),
            ("max_iter", isinstance(self.max_iter, int) and self.max_iter >= 1, "an int >= 1"),
            ("thresh", self.thresh >= 0, ">= 0"),  # False for NaN
            ("token_cost", self.token_cost in TOKEN_COSTS, f"one of {TOKEN_COSTS}"),
            ("token_weight", finite(self.token_weight), "finite"),
            ("memory_budget_mb", self.memory_budget_mb > 0 and finite(self.memory_budget_mb), "a positive number"),
        ):
            if not ok:
                raise OTSettingsError(field, f"{field} must be {expected}, got {getattr(self, field)!r}")


class OTSettingsError(ValueError):
    """An invalid OTSettings value; ``field`` names it."""

    def __init__(self, field, message):
        super().__init__(f"OTSettings: {message}")
        self.field = field


class Transport(NamedTuple):
    """The result of ``hierarchical_ot``: logits (B, C) and the prompt-level plan (B, C, V, T)."""

    logits: torch.Tensor
    plan: torch.Tensor


def hierarchical_ot_logits(
    img_global, img_tokens, txt_global, txt_tokens, txt_token_mask, logit_scale, settings=OTSettings()
):
    """The logits (B, C) of ``hierarchical_ot`` (same arguments), without the plan."""
    return hierarchical_ot(img_global, img_tokens, txt_global, txt_tokens, txt_token_mask, logit_scale, settings).logits


def hierarchical_ot(
    img_global,
    img_tokens,
    txt_global,
    txt_tokens,
    txt_token_mask,
    logit_scale,
    settings=OTSettings(),
):
    """ALIGN's logits: the prompt-level OT whose cost includes the token-level OT.

    Args:
        img_global: (B, V, D) L2-normalised global image features, one per visual prompt.
        img_tokens: (B, V, P, D) L2-normalised image tokens (None if not hierarchical).
        txt_global: (C, T, D) L2-normalised global text features.
        txt_tokens: (C, T, L, D) L2-normalised text tokens padded along L (None if not hierarchical).
        txt_token_mask: (C, T, L) bool, True = a real token (None if not hierarchical).
        logit_scale: one-element tensor, the already exponentiated scale.
        settings: OTSettings.
    Returns:
        ``Transport(logits, plan)``: logits (B, C) float32, logit_scale * sum_{v,t}(plan * sim),
        differentiable w.r.t. img_global, txt_global and logit_scale (never through the plan);
        plan (B, C, V, T) float32 without gradient.
    Raises:
        OTNumericalError: NaN/inf in an input (the message names it).
        ValueError: bad shapes.
    """
    sizes, token_ends = _check_inputs(
        "hierarchical_ot", img_global, img_tokens, txt_global, txt_tokens, txt_token_mask, logit_scale, settings
    )
    with autocast_off(img_global.device):
        sim = torch.einsum("bvd,ctd->bcvt", img_global.float(), txt_global.float())
        cost = 1.0 - sim.detach()
        if settings.hierarchical:
            s_tok = _token_transport_similarity(img_tokens, txt_tokens, txt_token_mask, token_ends, sizes, settings)
            cost = cost + settings.token_weight * (s_tok if settings.token_cost == "similarity" else 1.0 - s_tok)
        plan = _prompt_level_plan(cost, settings)
        logits = logit_scale.float().reshape(()) * torch.einsum("bcvt,bcvt->bc", plan, sim)
    return Transport(logits, plan)


def token_transport_similarity(img_tokens, txt_tokens, txt_token_mask, settings=OTSettings()):
    """Token-level transport-weighted similarities s_tok, one stopping group per (image, class).

    Args:
        img_tokens: (B, V, P, D) L2-normalised image tokens.
        txt_tokens: (C, T, L, D) L2-normalised text tokens, padded along L.
        txt_token_mask: (C, T, L) bool, True = real token; every (c, t) has at least one.
        settings: OTSettings (eps, max_iter, thresh, memory_budget_mb are used).
    Returns:
        s_tok: (B, C, V, T) float32 without gradient, sum(plan * sim_tok) per problem.
    """
    stage = "token_transport_similarity"
    sizes = _check_token_shapes(stage, img_tokens, txt_tokens, txt_token_mask)
    token_ends = _check_finite_and_token_ends(
        stage, {"img_tokens": img_tokens, "txt_tokens": txt_tokens}, txt_token_mask
    )
    with autocast_off(img_tokens.device):
        return _token_transport_similarity(img_tokens, txt_tokens, txt_token_mask, token_ends, sizes, settings)


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


def _prompt_level_plan(cost, settings):
    """cost: (B, C, V, T) -> plan (B, C, V, T): all B*C problems form ONE stopping group, or with
    ``settings.stop_per_problem`` each problem is a group of its own."""
    batch, classes, v_prompts, t_prompts = cost.shape
    problems = batch * classes
    groups, per_group = (problems, 1) if settings.stop_per_problem else (1, problems)
    with torch.no_grad():
        return solve(
            cost.reshape(groups, per_group, v_prompts, t_prompts),
            all_real(groups, per_group, v_prompts, cost.device),
            all_real(groups, per_group, t_prompts, cost.device),
            settings.eps,
            settings.max_iter,
            settings.thresh,
            "prompt-level OT",
        ).view_as(cost)


def _token_transport_similarity(img_tokens, txt_tokens, txt_token_mask, token_ends, sizes, settings):
    """s_tok: (B, C, V, T) float32, chunked over classes; inputs already checked."""
    chunk = token_chunk_classes(
        sizes["B"], sizes["V"], sizes["T"], sizes["P"], sizes["L"], sizes["D"], settings.memory_budget_mb
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
                settings,
                f"token-level OT ({len(classes)} classes from class {classes[0]})",
            )
    return s_tok


def _token_chunk_similarity(img_tokens, txt_tokens, txt_token_mask, settings, stage):
    """s_tok of one class chunk: (B, Cc, V, T) from img_tokens (B, V, P, D) float32,
    txt_tokens (Cc, T, L, D) float32 and txt_token_mask (Cc, T, L). A function of its own so
    that the chunk's large tensors are freed before the next chunk allocates its own."""
    batch, v_prompts, img_len, _ = img_tokens.shape
    classes, t_prompts, txt_len, _ = txt_tokens.shape
    groups, problems = batch * classes, v_prompts * t_prompts  # group = (b, c), problem = (v, t)
    sim_tok = torch.einsum("bvpd,ctld->bcvtpl", img_tokens, txt_tokens).contiguous()
    sim_tok = sim_tok.view(groups, problems, img_len, txt_len)
    col_mask = txt_token_mask[None, :, None].expand(batch, -1, v_prompts, -1, -1).reshape(groups, problems, txt_len)
    eps = settings.eps
    # -cost / eps = (sim - 1) / eps: the kernel in one new tensor, bit-identical to exp(-(1 - sim) / eps).
    plan = solve_kernel(
        torch.sub(sim_tok, 1.0).div_(eps).exp_(),
        all_real(groups, problems, img_len, img_tokens.device),
        col_mask,
        settings.max_iter,
        settings.thresh,
        stage,
        log_kernel_of=lambda failed: sim_tok[failed].sub_(1.0).div_(eps),
    )
    return torch.einsum("gsmn,gsmn->gs", plan, sim_tok).view(batch, classes, v_prompts, t_prompts)


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _check_inputs(stage, img_global, img_tokens, txt_global, txt_tokens, txt_token_mask, logit_scale, settings):
    """All checks of hierarchical_ot_logits' inputs, with one host sync.

    Returns (sizes, token_ends): sizes {"B", "V", "D", "C", "T"} (+ "P", "L" when hierarchical)
    and the per-class token ends (a list of C ints, None when not hierarchical).
    """
    if not isinstance(settings, OTSettings):
        raise ValueError(f"{stage}: settings must be an OTSettings, got {type(settings).__name__}")
    batch, v_prompts, dim = _check_dims(stage, "img_global", img_global, "(B, V, D)")
    classes, t_prompts, txt_dim = _check_dims(stage, "txt_global", txt_global, "(C, T, D)")
    if txt_dim != dim:
        raise ValueError(f"{stage}: txt_global has feature width {txt_dim}, img_global has {dim}")
    if not torch.is_tensor(logit_scale) or logit_scale.numel() != 1:
        raise ValueError(f"{stage}: logit_scale must be a one-element tensor, got {logit_scale!r}")
    sizes = {"B": batch, "V": v_prompts, "D": dim, "C": classes, "T": t_prompts}
    checked = {"img_global": img_global, "txt_global": txt_global, "logit_scale": logit_scale}
    if settings.hierarchical:
        token_sizes = _check_token_shapes(stage, img_tokens, txt_tokens, txt_token_mask)
        if (token_sizes["B"], token_sizes["V"], token_sizes["D"]) != (batch, v_prompts, dim):
            raise ValueError(
                f"{stage}: img_tokens must have shape (B, V, P, D) = ({batch}, {v_prompts}, P, {dim}) "
                f"like img_global, got {tuple(img_tokens.shape)}"
            )
        if (token_sizes["C"], token_sizes["T"]) != (classes, t_prompts):
            raise ValueError(
                f"{stage}: txt_tokens must have shape (C, T, L, D) = ({classes}, {t_prompts}, L, {dim}) "
                f"like txt_global, got {tuple(txt_tokens.shape)}"
            )
        sizes.update(token_sizes)
        checked.update(img_tokens=img_tokens, txt_tokens=txt_tokens)
    token_ends = _check_finite_and_token_ends(stage, checked, txt_token_mask if settings.hierarchical else None)
    return sizes, token_ends


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
