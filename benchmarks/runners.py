"""The three measurements of the benchmark, each for (a) the project and (b) the reference.

- ``measure_train``: one training step (forward, cross-entropy, backward, SGD step on the prompt
  learner with the shipped recipe: lr 0.0025, momentum 0.9, weight decay 5e-4).
- ``measure_eval``: one evaluation over N test batches; the project computes the text side once
  (``cached_text_features``), the reference at every batch.
- ``measure_ot``: the OT stage alone on given (synthetic) features, ``benchmarks/synthetic.py``.

Each runs ``warmup`` unmeasured runs, then ``repeats`` timed runs (see ``measure_sides``) and
returns the samples, their median and the peak memory. Where the reference solves only a
subset of the token-level pairs (``max_token_pairs``), its time is the measured wall time plus
the linear extrapolation of its token loop to the skipped pairs, and the result says so.
"""

import copy
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

import clip
from clip.model import CLIP, convert_weights
from dassl.engine.precision import resolve_precision
from trainers.align import ALIGNCLIP, ALIGNSettings, add_config, prompt_prefixes
from trainers.ot import hierarchical_ot_logits, token_chunk_classes

from .measure import PeakMemory, median, release_freed_heap, timed
from .reference import ReferenceALIGN, reference_ot_logits
from .synthetic import class_names, synthetic_ot_inputs

# The shipped recipe's optimiser (docs/method.md, section 6).
SGD_RECIPE = dict(lr=0.0025, momentum=0.9, weight_decay=5e-4)
LOGIT_SCALE = 100.0  # exp of CLIP's trained logit scale, for the OT stage alone


@dataclass(frozen=True)
class BackboneDims:
    """A CLIP ViT by its dimensions (``clip.model.CLIP``'s constructor arguments)."""

    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int

    @property
    def image_tokens(self):
        """Patch tokens per image (the class token excluded)."""
        return (self.image_resolution // self.vision_patch_size) ** 2


VIT_B16 = BackboneDims(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)
TINY = BackboneDims(32, 32, 2, 64, 8, 77, 49408, 64, 1, 2)


@dataclass(frozen=True)
class Case:
    """One measurement: ``measure`` in MEASURES at C classes, batch B, a precision flag."""

    measure: str
    classes: int
    batch: int
    precision: str = "fp32"
    eval_batches: int = 10

    @property
    def label(self):
        batches = f" x{self.eval_batches}" if self.measure == "eval" else ""
        return f"{self.measure} C={self.classes} B={self.batch}{batches} {self.precision}"


MEASURES = ("train", "eval", "ot")


@dataclass(frozen=True)
class RunOptions:
    """Settings shared by all cases of a run."""

    device: str
    dims: BackboneDims
    depth: int
    repeats: int
    warmup: int
    ref_max_pairs: int | None  # None: the reference solves all pairs
    ot_memory_mb: float
    seed: int


def align_settings(precision, depth, ot_memory_mb):
    """ALIGNSettings of the shipped config (T = V = 4, n_ctx = 2, CTX_INIT "a photo of a")."""
    cfg = CN()
    cfg.TRAINER = CN()
    add_config(cfg)
    cfg.TRAINER.ALIGN.PREC = precision
    cfg.TRAINER.ALIGN.TEXT_PROMPT_DEPTH = depth
    cfg.TRAINER.ALIGN.VISION_PROMPT_DEPTH = depth
    cfg.TRAINER.ALIGN.OT_MEMORY_MB = ot_memory_mb
    return ALIGNSettings.from_cfg(cfg)


class Backbones:
    """Random-weight CLIPs, built once per weight dtype and shared by the cases (frozen)."""

    def __init__(self, dims, device, seed):
        self.dims, self.device, self.seed = dims, torch.device(device), seed
        self._models = {}

    def get(self, weight_dtype):
        if weight_dtype not in self._models:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = CLIP(**asdict(self.dims))
            if weight_dtype != torch.float32:  # the trainers' storage: OpenAI's mixed precision
                convert_weights(model, weight_dtype)
            model = model.to(self.device).eval().requires_grad_(False)
            self._models[weight_dtype] = model
        return self._models[weight_dtype]


def count_calls(obj, name):
    """Wrap ``obj.<name>`` on the instance; returns the list that gets one entry per call."""
    calls, method = [], getattr(obj, name)

    def counted(*args, **kwargs):
        calls.append(None)
        return method(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


def build_pair(case, options, backbones):
    """(precision, project ALIGNCLIP, ReferenceALIGN) sharing one frozen CLIP, with equal prompts."""
    device = torch.device(options.device)
    precision = resolve_precision(case.precision, device)
    settings = align_settings(case.precision, options.depth, options.ot_memory_mb)
    clip_model = backbones.get(precision.weight_dtype)
    names = class_names(case.classes)
    # Built on the device: the learner writes word embeddings computed by the CLIP into its
    # prompts at construction, so both must live on one device.
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(options.seed)
        project = ALIGNCLIP(settings, names, clip_model)
    reference = ReferenceALIGN(
        settings, names, clip_model, copy.deepcopy(project.prompt_learner), max_token_pairs=options.ref_max_pairs
    ).to(device)
    return precision, project, reference


class TrainStep:
    """zero_grad, forward under the precision's autocast, cross-entropy, backward, SGD step."""

    def __init__(self, model, learner, precision, device):
        self.model, self.precision, self.device = model, precision, device
        self.optim = torch.optim.SGD(learner.parameters(), **SGD_RECIPE)
        self.scaler = precision.grad_scaler(device)

    def __call__(self, images, labels):
        self.optim.zero_grad(set_to_none=True)
        with self.precision.autocast(self.device):
            logits = self.model(images)
        loss = F.cross_entropy(logits, labels)
        if self.scaler is None:
            loss.backward()
            self.optim.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()


class ReferenceTally:
    """Collects the reference's ReferenceOTStats of the measured forwards."""

    def __init__(self):
        self.stats = []

    def add(self, stats):
        """Record one forward's stats; returns the seconds its skipped pairs would have taken."""
        self.stats.append(stats)
        return stats.unsolved_pairs_seconds()

    def clear(self):
        self.stats.clear()

    def summary(self):
        if not self.stats:
            return {}
        token_iterations = [n for stats in self.stats for n in stats.token_iterations]
        last = self.stats[-1]
        summary = {
            "pairs_per_forward": last.pairs_total,
            "pairs_solved_per_forward": last.pairs_solved,
            "extrapolated": last.extrapolated,
            "prompt_iterations_mean": statistics.mean(stats.prompt_iterations for stats in self.stats),
        }
        if token_iterations:
            summary.update(
                token_iterations_mean=statistics.mean(token_iterations),
                token_iterations_min=min(token_iterations),
                token_iterations_max=max(token_iterations),
            )
        return summary


@dataclass
class Side:
    """One implementation in a measurement: ``run()`` and ``warmup()`` return the seconds to add
    to the measured wall time (the reference's extrapolation; 0 otherwise)."""

    run: Callable[[], float]
    warmup: Callable[[], float]
    tally: ReferenceTally | None = None


def measure_sides(sides, options, progress, label):
    """Warm-up runs of every side, then ``repeats`` rounds that time each side once, in turn.

    Alternating the sides round by round exposes both to the same machine conditions (on a
    shared machine the load changes over minutes).
    Peak memory is taken over each side's warm-up runs, which start after freed heap has been
    handed back to the OS: on CPU, glibc keeps freed heap of earlier runs (the other side's
    included) resident, which would pollute the timed runs' figures, and trimming it before a
    timed run would slow that run (see benchmarks/measure.py). Warm-up runs are full-size runs,
    except for evaluation (one test batch, whose peak equals that of N batches). With no warm-up,
    the timed runs are measured instead, and the result says so.
    A CUDA out-of-memory error ends that side and is recorded (a finding, not a crash).
    Returns {side name: {"seconds", "median_s", "min_s", "memory", "memory_measured_on"
    [, "reference_ot", "extrapolated"]} or {"error": message}}.
    """
    seconds = {name: [] for name in sides}
    windows = {name: [] for name in sides}
    errors = {}
    memory_on = "warm-up runs" if options.warmup else "timed runs"

    def guarded(name, action):
        try:
            action()
        except torch.cuda.OutOfMemoryError as error:
            errors[name] = f"CUDA out of memory: {str(error).splitlines()[0]}"
        if name in errors:  # after the except block, which held the failed run's tensors
            torch.cuda.empty_cache()

    def in_memory_window(name, action):
        with PeakMemory(options.device) as memory:
            action()
        windows[name].append(memory.as_dict())

    def timed_run(name, side):
        wall, extra = timed(side.run, options.device)
        seconds[name].append(wall + extra)

    for name, side in sides.items():
        progress(f"{label}: {name} warm-up x{options.warmup}")
        release_freed_heap()
        guarded(name, lambda: in_memory_window(name, lambda: [side.warmup() for _ in range(options.warmup)]))  # noqa: B023
        if side.tally is not None:
            side.tally.clear()
    for repeat in range(options.repeats):
        progress(f"{label}: repeat {repeat + 1}/{options.repeats}")
        for name, side in sides.items():
            if name in errors:
                continue
            if options.warmup:
                guarded(name, lambda: timed_run(name, side))  # noqa: B023
            else:
                guarded(name, lambda: in_memory_window(name, lambda: timed_run(name, side)))  # noqa: B023

    results = {}
    for name, side in sides.items():
        if name in errors:
            results[name] = {"error": errors[name]}
            continue
        peaks = [window for window in windows[name] if window["peak_bytes"] is not None]
        results[name] = {
            "seconds": seconds[name],
            "median_s": median(seconds[name]),
            "min_s": min(seconds[name]),
            "memory": max(peaks, key=lambda w: w["peak_bytes"]) if peaks else windows[name][0],
            "memory_measured_on": memory_on,
        }
        if side.tally is not None:
            summary = side.tally.summary()
            results[name].update(reference_ot=summary, extrapolated=summary.get("extrapolated", False))
    return results


def measure_train(case, options, backbones, progress):
    """Training-step time and peak memory, project and reference."""
    device = torch.device(options.device)
    precision, project, reference = build_pair(case, options, backbones)
    generator = torch.Generator().manual_seed(options.seed)
    resolution = options.dims.image_resolution
    images = torch.randn(case.batch, 3, resolution, resolution, generator=generator).to(device)
    labels = torch.randint(case.classes, (case.batch,), generator=generator).to(device)
    project_step = TrainStep(project, project.prompt_learner, precision, device)
    reference_step = TrainStep(reference, reference.prompt_learner, precision, device)
    tally = ReferenceTally()

    def project_run():
        project_step(images, labels)
        return 0.0

    def reference_run():
        reference_step(images, labels)
        return tally.add(reference.last_stats)

    results = measure_sides(
        {"project": Side(project_run, project_run), "reference": Side(reference_run, reference_run, tally)},
        options,
        progress,
        case.label,
    )
    results["precision_effective"] = precision.name
    return results


def measure_eval(case, options, backbones, progress):
    """Evaluation over case.eval_batches test batches: time, images/s, peak memory."""
    device = torch.device(options.device)
    precision, project, reference = build_pair(case, options, backbones)
    generator = torch.Generator().manual_seed(options.seed)
    resolution = options.dims.image_resolution
    batches = [
        torch.randn(case.batch, 3, resolution, resolution, generator=generator).to(device)
        for _ in range(case.eval_batches)
    ]
    tally = ReferenceTally()

    def evaluate(model, batches, after_batch):
        """Predictions for all batches, gathered on the host as an evaluator does."""
        predictions, extra = [], 0.0
        with torch.no_grad(), precision.autocast(device):
            for images in batches:
                predictions.append(model(images).argmax(dim=1))
                extra += after_batch()
        torch.cat(predictions).cpu()
        return extra

    def project_evaluation(batches):
        with project.cached_text_features():
            return evaluate(project, batches, lambda: 0.0)

    def reference_evaluation(batches):
        return evaluate(reference, batches, lambda: tally.add(reference.last_stats))

    text_encodings = count_calls(project, "encode_text")
    results = measure_sides(
        {
            "project": Side(lambda: project_evaluation(batches), lambda: project_evaluation(batches[:1])),
            "reference": Side(lambda: reference_evaluation(batches), lambda: reference_evaluation(batches[:1]), tally),
        },
        options,
        progress,
        case.label,
    )
    images = case.batch * case.eval_batches
    for side in ("project", "reference"):
        if "median_s" in results[side]:
            results[side]["images_per_second"] = images / results[side]["median_s"]
    if "median_s" in results["project"]:
        evaluations = options.warmup + options.repeats
        results["project"]["text_encoder_calls_per_evaluation"] = len(text_encodings) / evaluations
    results["precision_effective"] = precision.name
    return results


def kept_token_lengths(names, prefix):
    """L_c for each class: positions 0 .. e-2 of "{prefix} {name}." (e = its EOT position)."""
    tokenized = clip.tokenize([f"{prefix} {name.replace('_', ' ')}." for name in names])
    return (tokenized.argmax(dim=-1) - 1).tolist()


def measure_ot(case, options, progress):
    """The OT stage alone on synthetic features of the real shapes: time, peak memory, iterations.

    Features are float32 whatever the precision flag (both implementations compute OT in float32).
    """
    device = torch.device(options.device)
    settings = align_settings(case.precision, options.depth, options.ot_memory_mb)
    prefixes, _ = prompt_prefixes(settings.ctx_init, settings.n_ctx, settings.n_prompts)
    names = class_names(case.classes)
    lengths = kept_token_lengths(names, prefixes[0])
    img_len = options.dims.image_tokens + settings.n_ctx
    inputs = synthetic_ot_inputs(
        case.batch,
        case.classes,
        settings.n_prompts,
        img_len,
        options.dims.embed_dim,
        lengths,
        seed=options.seed,
        device=device,
    )
    logit_scale = torch.tensor(LOGIT_SCALE, device=device)
    ot = settings.ot
    solver = dict(eps=ot.eps, max_iter=ot.max_iter, thresh=ot.thresh, hierarchical=ot.hierarchical)
    outputs = {}
    tally = ReferenceTally()

    def project_ot():
        outputs["project"] = hierarchical_ot_logits(
            inputs["img_global"],
            inputs["img_tokens"],
            inputs["txt_global"],
            inputs["txt_tokens"],
            inputs["txt_token_mask"],
            logit_scale,
            ot,
        )
        return 0.0

    def reference_ot():
        outputs["reference"], stats = reference_ot_logits(
            inputs["img_global"],
            inputs["img_tokens"],
            inputs["txt_global"],
            inputs["txt_token_list"],
            logit_scale,
            max_token_pairs=options.ref_max_pairs,
            **solver,
        )
        return tally.add(stats)

    results = measure_sides(
        {"project": Side(project_ot, project_ot), "reference": Side(reference_ot, reference_ot, tally)},
        options,
        progress,
        case.label,
    )
    results["inputs_bytes"] = sum(
        inputs[name].element_size() * inputs[name].numel()
        for name in ("img_global", "img_tokens", "txt_global", "txt_tokens", "txt_token_mask")
    )
    results["shapes"] = {
        "B": case.batch,
        "C": case.classes,
        "V": settings.n_prompts,
        "T": settings.n_prompts,
        "P": img_len,
        "D": options.dims.embed_dim,
        "L_c_min": min(lengths),
        "L_c_max": max(lengths),
    }
    results["project_classes_per_chunk"] = token_chunk_classes(
        case.batch,
        settings.n_prompts,
        settings.n_prompts,
        img_len,
        max(lengths),
        options.dims.embed_dim,
        ot.memory_budget_mb,
    )
    if not results["reference"].get("extrapolated", True) and len(outputs) == 2:
        difference = (outputs["project"] - outputs["reference"]).abs().max()
        results["logits_max_difference_relative"] = float(difference / outputs["reference"].abs().max())
    return results
