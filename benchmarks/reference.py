"""ALIGN as the official code computes it: the baseline of the benchmarks (docs/method.md, sections 2, 4, 6).

Written from that description. It shares with the project what does not differ, the
frozen CLIP towers and the prompt learner's parameters, and computes everything else the way the
spec says the official code does:

- text: all C*T sentences through the text tower at the full 77-token context, at EVERY forward
  (no cache across test batches); global feature at each EOT, token features of class c = all T
  prompts at positions 0 .. e-2, e = prompt 0's EOT (docs/method.md, section 2, TEXT_TOKENS "reference");
- token-level OT: a Python loop over every (image, class) pair; each pair's V*T problems are one
  stopping group of the plain Sinkhorn, which syncs with the host (``.item()``) at every iteration;
- prompt-level OT: all B*C problems with the same Sinkhorn, one stopping group; cost
  1 - sim + s_tok; logits = logit_scale * sum(plan * sim).

Deliberate choices, all in the reference's favour or neutral, so that measured ratios are lower
bounds of the real ones:
- the OT runs in float32 (the official code runs it in the model's dtype, fp16 on GPU, where it
  underflows): same numerics as the project, hence the same plans and iteration counts, so the
  benchmark measures the structure (loop, syncs, text recomputation), not the arithmetic;
- the token level runs without autograd (its result only enters the cost of a plan that has none).

Sizes where the loop would take hours: ``max_token_pairs`` solves a uniform random subset of the
(image, class) pairs (fixed seed) and records the loop's time, so that callers extrapolate
linearly (the loop's cost is a sum over pairs); the other pairs' s_tok are filled with the
subset's mean, so logits are then only good for timing.
"""

import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

import clip

# Seed of the subset of (image, class) pairs solved when ``max_token_pairs`` is set.
PAIR_SUBSET_SEED = 0


@dataclass
class ReferenceOTStats:
    """What one reference OT pass did.

    pairs_total: B*C (image, class) pairs of the token level (0 if not hierarchical).
    pairs_solved: pairs the token loop actually solved (< pairs_total with ``max_token_pairs``).
    token_loop_seconds: wall time of the token loop (device synchronised at both ends).
    token_iterations: Sinkhorn iterations of each solved pair's stopping group.
    prompt_iterations: Sinkhorn iterations of the prompt level (one group).
    """

    pairs_total: int = 0
    pairs_solved: int = 0
    token_loop_seconds: float = 0.0
    token_iterations: list = field(default_factory=list)
    prompt_iterations: int = 0

    @property
    def extrapolated(self):
        return self.pairs_solved < self.pairs_total

    def unsolved_pairs_seconds(self):
        """Linear extrapolation: the time the loop would have spent on the pairs it skipped."""
        if not self.extrapolated:
            return 0.0
        return (self.pairs_total - self.pairs_solved) * self.token_loop_seconds / self.pairs_solved


def reference_sinkhorn(cost, eps, max_iter, thresh):
    """Plain Sinkhorn on S problems forming one stopping group, with a host sync per iteration.

    cost: (S, M, N). Uniform marginals a = 1/M, b = 1/N; K = exp(-cost / eps); r = c = 1; at most
    max_iter times r = a / (K c), c = b / (K^T r); stop once mean |r - r_prev| over all S*M rows
    is < thresh (read on the host with ``.item()``, as the reference does).
    Returns (plan (S, M, N) = diag(r) K diag(c), iterations run).
    """
    problems, rows, cols = cost.shape
    kernel = torch.exp(-cost / eps)
    row_marginal = torch.full((problems, rows), 1.0 / rows, dtype=cost.dtype, device=cost.device)
    col_marginal = torch.full((problems, cols), 1.0 / cols, dtype=cost.dtype, device=cost.device)
    r, c = torch.ones_like(row_marginal), torch.ones_like(col_marginal)
    for iteration in range(1, max_iter + 1):  # noqa: B007 (returned: the stopping iteration)
        r_prev = r
        r = row_marginal / torch.einsum("smn,sn->sm", kernel, c)
        c = col_marginal / torch.einsum("smn,sm->sn", kernel, r)
        if (r - r_prev).abs().mean().item() < thresh:
            break
    return r[:, :, None] * kernel * c[:, None, :], iteration


def reference_token_similarity(img_tokens, txt_tokens, *, eps, max_iter, thresh, max_pairs=None):
    """Token level: s_tok[b, c, v, t] = sum(plan * sim_tok), one Sinkhorn call per (b, c) pair.

    img_tokens: (B, V, P, D) L2-normalised image tokens.
    txt_tokens: list of C tensors (T, L_c, D), each class's L2-normalised kept text tokens.
    max_pairs: solve at most this many pairs (uniform random subset, seed PAIR_SUBSET_SEED) and
        fill the others with the subset's mean; None = all pairs.
    Returns (s_tok (B, C, V, T) float32 without gradient, ReferenceOTStats).
    """
    batch, v_prompts, img_len, _ = img_tokens.shape
    classes, t_prompts = len(txt_tokens), txt_tokens[0].shape[0]
    pairs_total = batch * classes
    pairs = pair_subset(pairs_total, max_pairs)
    s_tok = torch.zeros(batch, classes, v_prompts, t_prompts, device=img_tokens.device)
    stats = ReferenceOTStats(pairs_total=pairs_total, pairs_solved=len(pairs))
    with torch.no_grad():
        img_tokens = img_tokens.float()
        txt_tokens = [tokens.float() for tokens in txt_tokens]
        synchronize(img_tokens.device)
        start = time.perf_counter()
        for pair in pairs:
            b, c = divmod(pair, classes)
            sim_tok = torch.einsum("vpd,tld->vtpl", img_tokens[b], txt_tokens[c])
            sim_tok = sim_tok.reshape(v_prompts * t_prompts, img_len, -1)
            plan, iterations = reference_sinkhorn(1.0 - sim_tok, eps, max_iter, thresh)
            s_tok[b, c] = (plan * sim_tok).sum((1, 2)).view(v_prompts, t_prompts)
            stats.token_iterations.append(iterations)
        synchronize(img_tokens.device)
        stats.token_loop_seconds = time.perf_counter() - start
        if stats.extrapolated:
            solved = torch.zeros(pairs_total, dtype=torch.bool, device=s_tok.device)
            solved[torch.tensor(pairs, device=s_tok.device)] = True
            flat = s_tok.view(pairs_total, v_prompts, t_prompts)
            flat[~solved] = flat[solved].mean(0)
    return s_tok, stats


def reference_ot_logits(
    img_global,
    img_tokens,
    txt_global,
    txt_tokens,
    logit_scale,
    *,
    eps,
    max_iter,
    thresh,
    hierarchical=True,
    max_token_pairs=None,
):
    """The reference's hierarchical OT: (logits (B, C) float32, ReferenceOTStats).

    img_global: (B, V, D) and txt_global: (C, T, D) L2-normalised global features; img_tokens
    (B, V, P, D) and txt_tokens (list of C (T, L_c, D)) as in ``reference_token_similarity``
    (ignored if not hierarchical). logit_scale: the exponentiated scale (one-element tensor).
    Gradients reach the logits through sim only (both plans are computed without gradient).
    """
    batch, v_prompts, _ = img_global.shape
    classes, t_prompts, _ = txt_global.shape
    with torch.autocast(device_type=img_global.device.type, enabled=False):
        sim = torch.einsum("bvd,ctd->bcvt", img_global.float(), txt_global.float())
        cost = 1.0 - sim.detach()
        stats = ReferenceOTStats()
        if hierarchical:
            s_tok, stats = reference_token_similarity(
                img_tokens, txt_tokens, eps=eps, max_iter=max_iter, thresh=thresh, max_pairs=max_token_pairs
            )
            cost = cost + s_tok
        with torch.no_grad():
            plan, stats.prompt_iterations = reference_sinkhorn(
                cost.reshape(batch * classes, v_prompts, t_prompts), eps, max_iter, thresh
            )
        logits = logit_scale.float().reshape(()) * (plan.view_as(sim) * sim).sum((2, 3))
    return logits, stats


def pair_subset(pairs_total, max_pairs):
    """Flat (b * C + c) indices of the pairs to solve, ascending: all, or a seeded random subset."""
    if max_pairs is None or max_pairs >= pairs_total:
        return list(range(pairs_total))
    if max_pairs < 1:
        raise ValueError(f"max_token_pairs must be >= 1 (or None for all pairs), got {max_pairs}")
    generator = torch.Generator().manual_seed(PAIR_SUBSET_SEED)
    return sorted(torch.randperm(pairs_total, generator=generator)[:max_pairs].tolist())


def synchronize(device):
    """Wait for the device's queued work (a no-op on CPU), so host timers measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


REFERENCE_SWITCHES = {"text_tokens": "reference", "ot.token_cost": "similarity", "ot.token_weight": 1.0}


def _setting(settings, name):
    """An ALIGNSettings value by dotted name ("ot.token_cost")."""
    for part in name.split("."):
        settings = getattr(settings, part)
    return settings


class ReferenceALIGN(nn.Module):
    """ALIGN's forward as the official code computes it; ``forward(image) -> logits (B, C)``.

    Shares ``clip_model`` (frozen) and ``prompt_learner`` (a project ``MultiModalPromptLearner``;
    pass a copy to train it independently of the project's model). The official code has none
    of the project's switches: settings must keep their reference values (REFERENCE_SWITCHES).
    ``last_stats`` holds the ReferenceOTStats of the latest forward.
    """

    def __init__(self, settings, classnames, clip_model, prompt_learner, max_token_pairs=None):
        super().__init__()
        departures = {
            name: _setting(settings, name)
            for name, value in REFERENCE_SWITCHES.items()
            if _setting(settings, name) != value
        }
        if departures:
            raise ValueError(
                f"the reference computation has no switches: it needs {REFERENCE_SWITCHES}, got {departures}"
            )
        self.settings = settings
        self.clip = clip_model
        self.prompt_learner = prompt_learner
        self.max_token_pairs = max_token_pairs
        self.last_stats = None
        names = [name.replace("_", " ") for name in classnames]
        sentences = [f"{prefix} {name}." for name in names for prefix in prompt_learner.prefixes]
        device = clip_model.token_embedding.weight.device
        # Every sentence at the model's full context (77 for CLIP), as the reference encodes it.
        tokenized = clip.tokenize(sentences, context_length=clip_model.context_length).to(device)
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized).to(prompt_learner.ctx.dtype)
        n_ctx, n_prompts = prompt_learner.n_ctx, prompt_learner.n_prompts
        self.n_classes = len(classnames)
        self.register_buffer("tokenized", tokenized, persistent=False)  # (C*T, 77), row c*T + t
        self.register_buffer("token_prefix", embedding[:, :1], persistent=False)
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :], persistent=False)
        eot = tokenized.argmax(dim=-1)
        # Kept text tokens of class c: positions 0 .. e-2, e = EOT of the class's prompt 0.
        self.kept_lengths = (eot[::n_prompts] - 1).tolist()

    def encode_text(self):
        """All C*T sentences at the full context -> (global_ (C, T, D), tokens: list of C (T, L_c, D))."""
        learner = self.prompt_learner
        classes, n_prompts = self.n_classes, learner.n_prompts
        ctx = learner.ctx.repeat(classes, 1, 1)  # row c*T + t holds prompt t
        embeddings = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        deep = [prompt.repeat(classes, 1, 1) for prompt in learner.compound_prompts_text]
        features = self.clip.encode_text(
            self.tokenized, prompt_embeddings=embeddings, deep_prompts=deep or None, return_tokens=True
        )  # (C*T, 77, D) for CLIP
        rows = torch.arange(features.shape[0], device=features.device)
        global_ = F.normalize(features[rows, self.tokenized.argmax(dim=-1)], dim=-1).view(classes, n_prompts, -1)
        tokens = [
            F.normalize(features[c * n_prompts : (c + 1) * n_prompts, :length], dim=-1)
            for c, length in enumerate(self.kept_lengths)
        ]
        return global_, tokens

    def encode_image(self, image):
        """image: (B, 3, R, R) -> global (B, V, D) and tokens (B, V, P, D), L2-normalised; row b*V + v."""
        n_images, n_prompts = image.shape[0], self.prompt_learner.n_prompts
        shallow, deep = self.prompt_learner.vision_prompts(n_images)
        images = image.type(self.clip.dtype).repeat_interleave(n_prompts, dim=0)
        tokens = self.clip.encode_image(
            images, shallow_prompts=shallow, deep_prompts=deep or None, return_tokens=True
        )  # (B*V, 1 + P, D)
        tokens = F.normalize(tokens, dim=-1).view(n_images, n_prompts, tokens.shape[1], -1)
        return tokens[:, :, 0], tokens[:, :, 1:]

    def forward(self, image):
        """image: (B, 3, R, R) -> logits (B, C) float32; the text side is recomputed every call."""
        s = self.settings.ot
        img_global, img_tokens = self.encode_image(image)
        txt_global, txt_tokens = self.encode_text()
        logits, self.last_stats = reference_ot_logits(
            img_global,
            img_tokens,
            txt_global,
            txt_tokens,
            self.clip.logit_scale.exp(),
            eps=s.eps,
            max_iter=s.max_iter,
            thresh=s.thresh,
            hierarchical=s.hierarchical,
            max_token_pairs=self.max_token_pairs,
        )
        return logits
