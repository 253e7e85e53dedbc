"""``PromptTrainer``: the TrainerX plumbing every prompt-learning method shares.

A method subclass states only what is its own:

- ``CONFIG_NODE``: its node under TRAINER (``PREC`` and the method's keys live there);
- ``LEARNER_NAME``: the registered name of its learner module (the checkpoint sub-folder, the
  upstream one, so output layouts match);
- ``CHECKPOINT_KEYS``: the keys of its node that decide the learned tensors' shapes (named when a
  checkpoint does not fit the config);
- ``build_prompted_model(clip_model, classnames)``: a ``trainers.prompting.PromptedCLIP`` whose
  ``prompt_learner`` holds every learned tensor and whose ``forward(image)`` returns logits (in a
  training step, ``PromptedCLIP.training_step``, it may return a ``TrainingOutput``: logits plus
  named extra loss terms);
- optionally ``upstream_keys(key)``: maps keys of upstream full-model checkpoints that live
  outside ``prompt_learner.`` onto learner keys, and ``IGNORED_UPSTREAM_KEYS``: prefixes of
  entries upstream files hold that the method does not learn (left out, named in the log);
- optionally the loss and update hooks: ``loss_terms(output, label)`` (default: cross-entropy plus
  the model's extra terms), and ``REFERENCE_TERMS`` + ``alter_gradients(references)`` for a
  method that changes the gradient before the optimizer step (ProGrad).

The rest is here, once: precision (CLIP storage, autocast, GradScaler through the engine's update
helpers), freezing, the trainable-parameter count, MODEL.INIT_WEIGHTS, optimizer/scheduler,
DDP, the training step (loss terms summed with their weights, each logged), the per-epoch LR
step, evaluation with the text side computed once, and checkpoint loading.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.config import ConfigError
from dassl.engine import TrainerX
from dassl.engine.precision import SUPPORTED_PRECISIONS, resolve_precision
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import get_world_size, is_distributed

from .backbone import build_frozen_clip
from .checkpoints import load_learned_weights
from .prompting import LossTerm, TrainingOutput

LEARNER_ATTRIBUTE = "prompt_learner"
CE_TERM = "loss_ce"  # the name of the cross-entropy term in the log


def method_node(cfg, name):
    """``cfg.TRAINER.<name>``, created empty if it does not exist yet.

    A method's ``add_config`` adds its keys through it, so that methods sharing a node (KgCoOp and
    ProGrad add keys to CoOp's TRAINER.COOP, as upstream) do not depend on the order in which
    the method modules are read.
    """
    if name not in cfg.TRAINER:
        cfg.TRAINER[name] = CN()
    return cfg.TRAINER[name]


def check_method_keys(where, node, checks=()):
    """Validate a method's node ``where`` (e.g. "TRAINER.COOP"): its PREC, then ``checks``.

    checks: (key, ok, expected) triples, ``expected`` saying what a valid value is.
    Raises ConfigError naming ``where``.KEY and its value for the first failed check.
    """
    checks = [("PREC", node.PREC in SUPPORTED_PRECISIONS, f"one of {SUPPORTED_PRECISIONS}"), *checks]
    for key, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{where}.{key} = {node[key]!r} is invalid: expected {expected}")


def weighted_loss(terms):
    """The optimised loss: the sum of weight x value over the terms whose weight is not 0."""
    optimised = [term.weight * term.value for term in terms.values() if term.weight != 0]
    if not optimised:
        raise ValueError(f"No loss term is optimised (all weights are 0): {list(terms)}")
    return sum(optimised[1:], optimised[0])


class PromptTrainer(TrainerX):
    """A frozen CLIP with a learned prompt module, trained on cross-entropy plus its method's terms."""

    CONFIG_NODE = None
    LEARNER_NAME = "prompt_learner"
    CHECKPOINT_KEYS = ()
    # Loss terms that are not optimised but whose gradients ``alter_gradients`` receives.
    REFERENCE_TERMS = ()

    upstream_keys = None  # or a function: upstream full-model key -> learner key / None
    # Prefixes of learner keys in upstream files that the method does not learn (left out on load).
    IGNORED_UPSTREAM_KEYS = ()

    def build_prompted_model(self, clip_model, classnames):
        raise NotImplementedError(f"{type(self).__name__} must implement build_prompted_model()")

    @classmethod
    def node_of(cls, cfg):
        """The method's config node in ``cfg`` (``check_cfg`` runs before ``self.cfg`` exists)."""
        return cfg.TRAINER[cls.CONFIG_NODE]

    @classmethod
    def node_path(cls):
        """ "TRAINER.<CONFIG_NODE>", for messages."""
        return f"TRAINER.{cls.CONFIG_NODE}"

    @property
    def method_cfg(self):
        """The method's config node, TRAINER.<CONFIG_NODE>."""
        return self.node_of(self.cfg)

    def build_model(self):
        cfg = self.cfg
        self.precision = resolve_precision(self.method_cfg.PREC, self.device)
        clip_model = build_frozen_clip(cfg, self.precision)
        self.model = self.build_prompted_model(clip_model, self.dm.dataset.classnames)
        learner = getattr(self.model, LEARNER_ATTRIBUTE)
        for name, param in self.model.named_parameters():
            param.requires_grad_(name.startswith(LEARNER_ATTRIBUTE + ".") and self.is_trainable(name))
        trainable = sum(p.numel() for p in learner.parameters() if p.requires_grad)
        print(f"Trainable parameters (prompt learner): {trainable:,}")
        if cfg.MODEL.INIT_WEIGHTS:
            print(f"Initialising the learned prompts from {cfg.MODEL.INIT_WEIGHTS}")
            self.load_learned(learner, cfg.MODEL.INIT_WEIGHTS)

        self.model.to(self.device)
        self.optim = build_optimizer(learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(self.LEARNER_NAME, learner, self.optim, self.sched)
        # What a training step calls. Under torchrun: DDP around the whole prompted model, because
        # the learner's tensors are consumed inside its forward (the learner has no forward of its
        # own); DDP skips the frozen CLIP. The class buffers are built identically on every
        # process, so they are not broadcast per step. A single process: the model itself.
        self.train_model = self.wrap_ddp(self.model, sync_buffers=False)
        self.grad_scaler = self.precision.grad_scaler(self.device)

    def is_trainable(self, name):
        """Whether the learner tensor ``name`` (``prompt_learner.<key>``) is trained: all are, unless
        a method freezes some (e.g. by training stage)."""
        return True

    @property
    def checkpoint_config_keys(self):
        return [f"{self.node_path()}.{key}" for key in self.CHECKPOINT_KEYS]

    def parse_batch_train(self, batch):
        """(images, labels) on the device; the image paths are kept to name a failing batch."""
        self.batch_paths = batch["impath"]
        return batch["img"].to(self.device), batch["label"].to(self.device)

    parse_batch_test = parse_batch_train

    def run_model(self, model, image, stage):
        """``model(image)`` under the precision's autocast: logits (B, C), or a ``TrainingOutput``
        in a training step of a method that adds loss terms.

        model: ``self.train_model`` (training) or ``self.model`` (evaluation, text cache).
        stage: "training" or "evaluation" (methods name it in their errors).
        """
        with self.precision.autocast(self.device):
            return model(image)

    # -- the training step ----------------------------------------------------------------------

    def loss_terms(self, output, label):
        """The named loss terms of a training step: {name: LossTerm}.

        Default: the cross-entropy of the logits (``loss_ce``, weight 1), then the model's own
        terms. A method whose terms need the labels or the trainer's state overrides this.
        """
        return {CE_TERM: LossTerm(F.cross_entropy(output.logits, label)), **output.terms}

    def forward_backward(self, batch):
        """One training step: forward, loss terms, backward and update, the per-epoch LR step.

        Returns the summary the iteration line logs: ``loss`` (the optimised total), each term by
        name when there is more than the cross-entropy, and ``acc``.
        """
        image, label = self.parse_batch_train(batch)
        output = self.run_model(self.train_model, image, "training")
        if not isinstance(output, TrainingOutput):
            output = TrainingOutput(output)
        terms = self.loss_terms(output, label)
        loss = self.backward_and_update(terms)
        summary = {"loss": loss.item()}
        if list(terms) != [CE_TERM]:
            summary.update((name, term.value.item()) for name, term in terms.items())
        summary["acc"] = compute_accuracy(output.logits, label)[0].item()
        if (self.batch_idx + 1) == self.num_batches:  # the schedulers step once per epoch
            self.update_lr()
        return summary

    def backward_and_update(self, terms):
        """Zero the gradients, backpropagate the weighted loss (checked, scaled under a
        GradScaler, averaged by DDP), let ``alter_gradients`` change them, step. Returns the loss."""
        loss = weighted_loss(terms)
        self.model_zero_grad()
        references = self.reference_gradients(terms)
        self.model_backward(loss)
        if references:
            self.alter_gradients(references)
        self.model_update()
        return loss

    def trainable_parameters(self):
        """The learner's trained tensors, in a fixed order (what ``alter_gradients`` sees)."""
        return [p for p in self._models[self.LEARNER_NAME].parameters() if p.requires_grad]

    def reference_gradients(self, terms):
        """{name: [gradient of that term per trainable parameter]} for the REFERENCE_TERMS.

        Each is checked like the loss, computed with autograd (the graph is kept for the main
        backward; nothing is accumulated into ``.grad``), scaled as the loss is under a
        GradScaler (so it is comparable with the gradients ``alter_gradients`` sees), and
        averaged over the processes of a distributed run as DDP averages the loss's gradients.
        """
        if not self.REFERENCE_TERMS:
            return {}
        params = self.trainable_parameters()
        references = {}
        for name in self.REFERENCE_TERMS:
            value = terms[name].value
            self.detect_anomaly(value)
            if self.grad_scaler is not None:
                value = self.grad_scaler.scale(value)
            grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
            if is_distributed():
                for grad in grads:
                    dist.all_reduce(grad)
                    grad.div_(get_world_size())
            references[name] = grads
        return references

    def alter_gradients(self, references):
        """Hook: change ``param.grad`` of ``trainable_parameters()`` (the optimised loss's gradients,
        scaled under a GradScaler and already averaged over processes) before the optimizer step,
        given ``references`` ({term name: gradients in the same order}). Default: nothing."""

    # -- evaluation and loading -------------------------------------------------------------------

    def model_inference(self, input):
        return self.run_model(self.model, input, "evaluation")

    def test(self, split=None):
        """Evaluate with the image-independent text features computed once, not per batch."""
        with self.model.cached_text_features():
            return super().test(split)

    def load_learned(self, learner, path):
        """Load the learned tensors of the file ``path`` into ``learner``; returns its epoch."""
        return load_learned_weights(
            learner, path, self.checkpoint_config_keys, self.upstream_keys, self.IGNORED_UPSTREAM_KEYS
        )

    def load_model_file(self, name, model_path):
        """Load the learned prompts of ``model_path`` (this project's file or an upstream full
        model) into the learner ``name``; the engine's ``load_model`` finds the file."""
        saved_epoch = self.load_learned(self._models[name], model_path)
        print(f'Loaded weights to {name} from "{model_path}" (epoch = {saved_epoch})')
