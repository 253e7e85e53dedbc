"""ALIGN: multi-mode token-level prompt alignment (NeurIPS 2023), behaviour of the official code.

Spec: shared/spec/align-method.md. One module, three parts:

- ``MultiModalPromptLearner``: the only learned parameters. T textual prompts (shallow ``ctx``
  and J-1 deep ones) and their visual images through linear maps (MaPLe's coupling, V == T).
- ``ALIGNCLIP``: the frozen CLIP run with those prompts; image and text features (global and
  token-level) go through the hierarchical optimal transport of ``trainers/ot.py`` to logits.
- ``ALIGN`` (and its alias ``MMP``, which reads the official ``TRAINER.MMP`` keys): the TrainerX
  subclass: build, train step, evaluation with the text side computed once, small checkpoints.
"""

import contextlib
import os.path as osp
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

import clip
from dassl.config import ConfigError
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.engine.precision import SUPPORTED_PRECISIONS, resolve_precision
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint, load_pretrained_weights

from .backbone import load_clip_to_cpu
from .ot import TOKEN_COSTS, OTNumericalError, hierarchical_ot_logits

TEXT_TOKEN_MODES = ("reference", "per_prompt")

# The registered name of the learned module: the official trainer's, so output folders match.
LEARNER_NAME = "MultiModalPromptLearner"


def add_align_config(cfg):
    """Add the TRAINER.ALIGN node (official MMP keys + this project's OT switches) to ``cfg``."""
    cfg.TRAINER.ALIGN = CN()
    cfg.TRAINER.ALIGN.N_CTX = 2  # context tokens per prompt
    # Initial words, one piece per textual prompt separated by TAB; prompts without a piece (and
    # all prompts when N_CTX > 4 or this is "") start random and read "X X ... {class}."
    cfg.TRAINER.ALIGN.CTX_INIT = "a photo of a"
    cfg.TRAINER.ALIGN.PREC = "fp16"  # fp16 (reference, GPU) | fp32 | amp | bf16; CPU: fp16/amp -> fp32
    cfg.TRAINER.ALIGN.TEXT_PROMPT_DEPTH = 9  # J: prompts enter blocks 0..J-1 of BOTH towers
    cfg.TRAINER.ALIGN.VISION_PROMPT_DEPTH = 9  # read nowhere, as in the reference (kept for configs)
    cfg.TRAINER.ALIGN.TEXT_PROMPT_NUMBER = 4  # T textual prompts
    cfg.TRAINER.ALIGN.VISION_PROMPT_NUMBER = 4  # V visual prompts; must equal T (coupled prompts)
    cfg.TRAINER.ALIGN.HIERARCHICAL = True  # token-level OT feeds the prompt-level cost
    cfg.TRAINER.ALIGN.USECT = False  # conditional transport: broken in the reference, rejected
    cfg.TRAINER.ALIGN.EPS = 0.1  # entropic regularisation of both Sinkhorn levels
    cfg.TRAINER.ALIGN.OT_MAX_ITER = 100  # Sinkhorn iterations at most
    cfg.TRAINER.ALIGN.OT_THRESH = 0.01  # stop when mean |r - r_prev| over a group < this
    # How the token-level result enters the prompt-level cost: "similarity" adds s_tok (the
    # reference code), "distance" adds 1 - s_tok (the paper's reading)
    cfg.TRAINER.ALIGN.TOKEN_COST = "similarity"
    # Text tokens of the token-level OT: "reference" slices every prompt of a class at prompt
    # 0's length (the code's behaviour), "per_prompt" takes each prompt's own tokens
    cfg.TRAINER.ALIGN.TEXT_TOKENS = "reference"
    cfg.TRAINER.ALIGN.TOKEN_WEIGHT = 1.0  # scale of the token-level term (the reference: 1)
    cfg.TRAINER.ALIGN.OT_MEMORY_MB = 1024.0  # budget of the token-level OT; chunks over classes


@dataclass(frozen=True)
class ALIGNSettings:
    """The method's settings, read from one config node and validated in one place."""

    n_ctx: int
    ctx_init: str
    prec: str
    depth: int
    n_text_prompts: int
    n_vision_prompts: int
    hierarchical: bool
    eps: float
    ot_max_iter: int
    ot_thresh: float
    token_cost: str
    text_tokens: str
    token_weight: float
    ot_memory_mb: float

    @classmethod
    def from_cfg(cls, cfg, node_name="ALIGN"):
        """Official keys from ``TRAINER.<node_name>``; the OT switches always from TRAINER.ALIGN."""
        node = cfg.TRAINER[node_name]
        extra = cfg.TRAINER.ALIGN
        where = "TRAINER." + node_name
        if node.USECT:
            raise ConfigError(
                f"{where}.USECT True is not supported: the conditional-transport branch of the "
                f"official code cannot run (it reads an attribute that is never defined). Set "
                f"{where}.USECT False (as every shipped config does)."
            )
        if node.TEXT_PROMPT_NUMBER != node.VISION_PROMPT_NUMBER:
            raise ConfigError(
                f"{where}.VISION_PROMPT_NUMBER ({node.VISION_PROMPT_NUMBER}) must equal "
                f"{where}.TEXT_PROMPT_NUMBER ({node.TEXT_PROMPT_NUMBER}): visual prompts are linear "
                f"images of the textual ones"
            )
        checks = [
            (node.PREC in SUPPORTED_PRECISIONS, f"{where}.PREC", node.PREC, f"one of {SUPPORTED_PRECISIONS}"),
            (node.N_CTX >= 1, f"{where}.N_CTX", node.N_CTX, ">= 1"),
            (node.TEXT_PROMPT_DEPTH >= 1, f"{where}.TEXT_PROMPT_DEPTH", node.TEXT_PROMPT_DEPTH, ">= 1"),
            (node.TEXT_PROMPT_NUMBER >= 1, f"{where}.TEXT_PROMPT_NUMBER", node.TEXT_PROMPT_NUMBER, ">= 1"),
            (extra.TOKEN_COST in TOKEN_COSTS, "TRAINER.ALIGN.TOKEN_COST", extra.TOKEN_COST, f"one of {TOKEN_COSTS}"),
            (
                extra.TEXT_TOKENS in TEXT_TOKEN_MODES,
                "TRAINER.ALIGN.TEXT_TOKENS",
                extra.TEXT_TOKENS,
                f"one of {TEXT_TOKEN_MODES}",
            ),
            (extra.EPS > 0, "TRAINER.ALIGN.EPS", extra.EPS, "> 0"),
            (extra.OT_MAX_ITER >= 1, "TRAINER.ALIGN.OT_MAX_ITER", extra.OT_MAX_ITER, ">= 1"),
            (extra.OT_MEMORY_MB > 0, "TRAINER.ALIGN.OT_MEMORY_MB", extra.OT_MEMORY_MB, "> 0"),
        ]
        for ok, key, value, expected in checks:
            if not ok:
                raise ConfigError(f"{key} = {value!r} is invalid: expected {expected}")
        return cls(
            n_ctx=node.N_CTX,
            ctx_init=node.CTX_INIT,
            prec=node.PREC,
            depth=node.TEXT_PROMPT_DEPTH,
            n_text_prompts=node.TEXT_PROMPT_NUMBER,
            n_vision_prompts=node.VISION_PROMPT_NUMBER,
            hierarchical=node.HIERARCHICAL,
            eps=extra.EPS,
            ot_max_iter=extra.OT_MAX_ITER,
            ot_thresh=extra.OT_THRESH,
            token_cost=extra.TOKEN_COST,
            text_tokens=extra.TEXT_TOKENS,
            token_weight=extra.TOKEN_WEIGHT,
            ot_memory_mb=extra.OT_MEMORY_MB,
        )


def prompt_prefixes(ctx_init, n_ctx, n_prompts):
    """The text in front of the class name for each prompt, and which prompts start from words.

    Returns (prefixes, init_words): prefixes[t] is the whole CTX_INIT piece of prompt t, or
    "X X ..." (n_ctx X's) for a random prompt; init_words[t] is True where ctx[t] is initialised
    from the piece's first n_ctx word embeddings.
    """
    pieces = ctx_init.split("\t") if (ctx_init and n_ctx <= 4) else []
    prefixes, init_words = [], []
    for t in range(n_prompts):
        piece = pieces[t].replace("_", " ").strip() if t < len(pieces) else ""
        prefixes.append(piece if piece else " ".join(["X"] * n_ctx))
        init_words.append(bool(piece))
    return prefixes, init_words


class MultiModalPromptLearner(nn.Module):
    """T textual prompts, shallow and deep, and their visual images (V == T).

    Learned parameters (the official names, so official checkpoints load):
        ctx: (T, n_ctx, d_t) shallow text prompts.
        proj: Linear(d_t -> d_v); shallow visual prompts are proj(ctx): (T, n_ctx, d_v).
        compound_prompts_text: J-1 tensors (T, n_ctx, d_t), deep text prompts of blocks 1..J-1.
        compound_prompt_projections: J-1 Linear(d_t -> d_v), deep visual prompts.
    Class-dependent inputs (the tokenised sentences and their frozen token embeddings) are
    non-persistent buffers set by ``set_classnames``: checkpoints hold only what is learned, and a
    learner trained on base classes evaluates on new ones.
    """

    def __init__(self, settings, classnames, clip_model):
        super().__init__()
        n_ctx, n_prompts, depth = settings.n_ctx, settings.n_text_prompts, settings.depth
        n_layers = len(clip_model.transformer.resblocks)
        if depth > n_layers:
            raise ConfigError(f"TEXT_PROMPT_DEPTH = {depth} exceeds the {n_layers} transformer blocks of the backbone")
        dtype = clip_model.dtype
        d_text = clip_model.ln_final.weight.shape[0]
        d_vision = clip_model.visual.conv1.weight.shape[0]
        self.n_ctx = n_ctx
        self.n_prompts = n_prompts
        self.prefixes, init_words = prompt_prefixes(settings.ctx_init, n_ctx, n_prompts)

        ctx = torch.empty(n_prompts, n_ctx, d_text, dtype=dtype)
        nn.init.normal_(ctx, std=0.02)
        for t, from_words in enumerate(init_words):
            if from_words:
                with torch.no_grad():
                    ids = clip.tokenize(self.prefixes[t]).to(clip_model.token_embedding.weight.device)
                    ctx[t] = clip_model.token_embedding(ids)[0, 1 : 1 + n_ctx].to(dtype)
        self.ctx = nn.Parameter(ctx)
        self.proj = nn.Linear(d_text, d_vision).to(dtype)
        self.compound_prompts_text = nn.ParameterList(
            [
                nn.Parameter(nn.init.normal_(torch.empty(n_prompts, n_ctx, d_text, dtype=dtype), std=0.02))
                for _ in range(depth - 1)
            ]
        )
        self.compound_prompt_projections = nn.ModuleList(
            [nn.Linear(d_text, d_vision).to(dtype) for _ in range(depth - 1)]
        )
        self.set_classnames(classnames, clip_model)

    @torch.no_grad()
    def set_classnames(self, classnames, clip_model):
        """Tokenise "{prefix_t} {class}." for every class and prompt (row = c*T + t).

        Sets the buffers ``tokenized`` (C*T, L) and ``token_prefix`` (C*T, 1, d_t) /
        ``token_suffix`` (C*T, L-1-n_ctx, d_t), the frozen embeddings around the context. L is
        cut to the longest sentence (last EOT + 1): with the causal text transformer, outputs up to
        the EOT do not depend on the padding after it.
        """
        names = [name.replace("_", " ") for name in classnames]
        sentences = [f"{prefix} {name}." for name in names for prefix in self.prefixes]
        tokenized = clip.tokenize(sentences).to(clip_model.token_embedding.weight.device)
        length = int(tokenized.argmax(dim=-1).max()) + 1
        tokenized = tokenized[:, :length]
        embedding = clip_model.token_embedding(tokenized).to(self.ctx.dtype)
        self.n_classes = len(classnames)
        self.register_buffer("tokenized", tokenized, persistent=False)
        self.register_buffer("token_prefix", embedding[:, :1], persistent=False)
        self.register_buffer("token_suffix", embedding[:, 1 + self.n_ctx :], persistent=False)

    def text_inputs(self):
        """Prompted text embeddings (C*T, L, d_t) and deep text prompts, J-1 x (C*T, n_ctx, d_t)."""
        rows = self.n_classes  # repeat(C, 1, 1) puts prompt t at row c*T + t
        ctx = self.ctx.repeat(rows, 1, 1)
        embeddings = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        deep = [prompt.repeat(rows, 1, 1) for prompt in self.compound_prompts_text]
        return embeddings, deep

    def vision_prompts(self, n_images):
        """Shallow (B*V, n_ctx, d_v) and deep (J-1 x (B*V, n_ctx, d_v)) visual prompts, row b*V + v."""
        shallow = self.proj(self.ctx).repeat(n_images, 1, 1)
        deep = [
            layer(prompt).repeat(n_images, 1, 1)
            for layer, prompt in zip(self.compound_prompt_projections, self.compound_prompts_text)
        ]
        return shallow, deep


@dataclass
class TextFeatures:
    """The text side of all classes.

    global_: (C, T, D) L2-normalised EOT features.
    tokens: (C, T, L, D) L2-normalised token features, padded.
    token_mask: (C, T, L) bool, True = a token kept for the token-level OT.
    """

    global_: torch.Tensor
    tokens: torch.Tensor
    token_mask: torch.Tensor


class ALIGNCLIP(nn.Module):
    """The frozen CLIP with ALIGN's prompts; ``forward(image) -> logits (B, C)``."""

    def __init__(self, settings, classnames, clip_model):
        super().__init__()
        self.settings = settings
        self.prompt_learner = MultiModalPromptLearner(settings, classnames, clip_model)
        self.clip = clip_model
        self._text_cache_enabled = False
        self._text_cache = None
        self.text_encoder_calls = 0  # counted so that tests can check the evaluation cache

    @property
    def dtype(self):
        return self.clip.dtype

    def encode_text(self):
        """Run the text tower on all C*T prompted sentences -> TextFeatures."""
        self.text_encoder_calls += 1
        learner = self.prompt_learner
        n_classes, n_prompts = learner.n_classes, learner.n_prompts
        embeddings, deep = learner.text_inputs()
        tokens = self.clip.encode_text(
            learner.tokenized, prompt_embeddings=embeddings, deep_prompts=deep or None, return_tokens=True
        )  # (C*T, L, D), rows class-major, prompt-minor
        tokens = F.normalize(tokens, dim=-1).view(n_classes, n_prompts, tokens.shape[1], -1)
        eot = learner.tokenized.argmax(dim=-1).view(n_classes, n_prompts)  # (C, T)
        global_ = torch.gather(tokens, 2, eot[:, :, None, None].expand(-1, -1, 1, tokens.shape[-1])).squeeze(2)
        # Kept tokens: positions 0 .. e-2 (drops "." and EOT), where e is prompt 0's EOT for every
        # prompt of the class ("reference") or each prompt's own EOT ("per_prompt").
        last_kept = eot[:, :1].expand_as(eot) if self.settings.text_tokens == "reference" else eot
        last_kept = last_kept - 2
        length = int(last_kept.max()) + 1
        positions = torch.arange(length, device=eot.device)
        token_mask = positions[None, None, :] <= last_kept[:, :, None]
        return TextFeatures(global_=global_, tokens=tokens[:, :, :length], token_mask=token_mask)

    def text_features(self):
        """TextFeatures, from the cache while ``cached_text_features`` is active."""
        if not self._text_cache_enabled:
            return self.encode_text()
        if self._text_cache is None:
            self._text_cache = self.encode_text()
        return self._text_cache

    @contextlib.contextmanager
    def cached_text_features(self):
        """Compute the text side once for everything run inside (an evaluation)."""
        self._text_cache_enabled, self._text_cache = True, None
        try:
            yield
        finally:
            self._text_cache_enabled, self._text_cache = False, None

    def encode_image(self, image):
        """image: (B, 3, R, R) -> global (B, V, D) and token (B, V, P, D) L2-normalised features.

        Each image is encoded once per visual prompt (rows b*V + v); the tokens are the patch
        tokens plus the prompt tokens (P = G*G + n_ctx).
        """
        n_images, n_prompts = image.shape[0], self.prompt_learner.n_prompts
        shallow, deep = self.prompt_learner.vision_prompts(n_images)
        images = image.type(self.dtype).repeat_interleave(n_prompts, dim=0)
        tokens = self.clip.encode_image(
            images, shallow_prompts=shallow, deep_prompts=deep or None, return_tokens=True
        )  # (B*V, 1 + P, D)
        tokens = F.normalize(tokens, dim=-1).view(n_images, n_prompts, tokens.shape[1], -1)
        return tokens[:, :, 0], tokens[:, :, 1:]

    def forward(self, image, return_plan=False):
        """image: (B, 3, R, R) -> logits (B, C) float32 [, prompt-level plan (B, C, V, T)]."""
        s = self.settings
        img_global, img_tokens = self.encode_image(image)
        text = self.text_features()
        return hierarchical_ot_logits(
            img_global,
            img_tokens,
            text.global_,
            text.tokens,
            text.token_mask,
            self.clip.logit_scale.exp(),
            eps=s.eps,
            max_iter=s.ot_max_iter,
            thresh=s.ot_thresh,
            hierarchical=s.hierarchical,
            token_cost=s.token_cost,
            token_weight=s.token_weight,
            memory_budget_mb=s.ot_memory_mb,
            return_plan=return_plan,
        )


@TRAINER_REGISTRY.register()
class ALIGN(TrainerX):
    """ALIGN prompt tuning. Reads TRAINER.ALIGN; the MMP alias reads the official TRAINER.MMP keys."""

    CONFIG_NODE = "ALIGN"

    def check_cfg(self, cfg):
        ALIGNSettings.from_cfg(cfg, self.CONFIG_NODE)
        if cfg.MODEL.BACKBONE.NAME.startswith("RN") and not cfg.MODEL.BACKBONE.PATH:
            raise ConfigError(
                f"ALIGN needs a ViT backbone (token sequences for the token-level OT); got "
                f"MODEL.BACKBONE.NAME = {cfg.MODEL.BACKBONE.NAME}"
            )

    def build_model(self):
        cfg = self.cfg
        self.settings = ALIGNSettings.from_cfg(cfg, self.CONFIG_NODE)
        self.precision = resolve_precision(self.settings.prec, self.device)
        classnames = self.dm.dataset.classnames

        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.PATH or cfg.MODEL.BACKBONE.NAME})")
        clip_model = load_clip_to_cpu(cfg)
        resolution = clip_model.visual.input_resolution
        if cfg.INPUT.SIZE[0] != resolution:
            raise ConfigError(
                f"INPUT.SIZE {tuple(cfg.INPUT.SIZE)} does not match the backbone's input resolution "
                f"{resolution}: set INPUT.SIZE ({resolution}, {resolution})"
            )
        clip_model = clip_model.to(self.precision.weight_dtype)

        print(
            f"Building ALIGN (T = V = {self.settings.n_text_prompts}, n_ctx = {self.settings.n_ctx}, "
            f"depth = {self.settings.depth}, precision = {self.precision.name})"
        )
        self.model = ALIGNCLIP(self.settings, classnames, clip_model)
        for name, param in self.model.named_parameters():
            param.requires_grad_(name.startswith("prompt_learner."))
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        print(f"Trainable parameters (prompt learner): {trainable:,}")

        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(self.model.prompt_learner, cfg.MODEL.INIT_WEIGHTS)

        self.model.to(self.device)
        learner = self.model.prompt_learner
        self.optim = build_optimizer(learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(LEARNER_NAME, learner, self.optim, self.sched)
        # What a training step calls. Under torchrun: DDP around the whole ALIGNCLIP, because the
        # learner's prompts are consumed inside ALIGNCLIP.forward (the learner has no forward of its
        # own); DDP skips the frozen CLIP. The buffers (class token embeddings) are built the same
        # on every process, so they are not broadcast per step. A single process: the model itself.
        self.train_model = self.wrap_ddp(self.model, sync_buffers=False)
        self.scaler = self.precision.grad_scaler(self.device)

    def parse_batch_train(self, batch):
        """(images, labels) on the device; the image paths are kept to name a failing batch."""
        self._batch_paths = batch["impath"]
        return batch["img"].to(self.device), batch["label"].to(self.device)

    parse_batch_test = parse_batch_train

    def _logits(self, model, image, stage):
        """model: ``self.train_model`` (training) or ``self.model`` (evaluation, text cache)."""
        try:
            with self.precision.autocast(self.device):
                return model(image)
        except OTNumericalError as err:
            paths = list(self._batch_paths)
            raise FloatingPointError(
                f"Non-finite optimal transport in {stage} (epoch {self.epoch + 1}, batch "
                f"{self.batch_idx + 1 if stage == 'training' else '?'}; {len(paths)} images, first: "
                f"{paths[0] if paths else '-'}): {err}"
            ) from err

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        logits = self._logits(self.train_model, image, "training")
        loss = F.cross_entropy(logits, label)
        if self.scaler is None:
            self.model_backward_and_update(loss)
        else:
            self.model_zero_grad()
            self.detect_anomaly(loss)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()

        summary = {"loss": loss.item(), "acc": compute_accuracy(logits, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def model_inference(self, input):
        return self._logits(self.model, input, "evaluation")

    def test(self, split=None):
        """Evaluate with the text features of all classes computed once, not per batch."""
        with self.model.cached_text_features():
            return super().test(split)

    def load_model(self, directory, epoch=None):
        """Load learned prompts: our small checkpoints, or the official full-model ones.

        The official code saves the whole model under the same folder name; its learned keys start
        with ``prompt_learner.``. The frozen CLIP and the class-dependent token buffers in such a
        file are ignored (reported).
        """
        if not directory:
            print(
                "Note that load_model() is skipped as no pretrained model is given "
                "(ignore this if it's done on purpose)"
            )
            return
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                raise FileNotFoundError(f'Model not found at "{model_path}"')
            checkpoint = load_checkpoint(model_path)
            state_dict = learned_state(checkpoint["state_dict"])
            print(f'Loading weights to {name} from "{model_path}" (epoch = {checkpoint["epoch"]})')
            result = self._models[name].load_state_dict(state_dict, strict=False)
            if result.missing_keys:
                print(f"Missing keys (left as initialised): {result.missing_keys}")
            if result.unexpected_keys:
                print(f"Unexpected keys (ignored): {result.unexpected_keys}")


def learned_state(state_dict):
    """The prompt learner's entries of a checkpoint state dict (ours, or the official full model).

    Drops the class-dependent token buffers (``token_prefix``/``token_suffix``), which is what lets
    a learner trained on base classes evaluate on new ones.
    """
    prefix = "prompt_learner."
    if any(key.startswith(prefix) for key in state_dict):
        frozen = [key for key in state_dict if not key.startswith(prefix)]
        print(f"Official full-model checkpoint: ignoring {len(frozen)} frozen CLIP entries")
        state_dict = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
    dropped = ("token_prefix", "token_suffix")
    return {key: value for key, value in state_dict.items() if key not in dropped}


@TRAINER_REGISTRY.register()
class MMP(ALIGN):
    """The official trainer's name: same method, configured by the official TRAINER.MMP keys."""

    CONFIG_NODE = "MMP"
