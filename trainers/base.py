"""``PromptTrainer``: the TrainerX plumbing every prompt-learning method shares.

A method subclass states only what is its own:

- ``CONFIG_NODE``: its node under TRAINER (``PREC`` and the method's keys live there);
- ``LEARNER_NAME``: the registered name of its learner module (the checkpoint sub-folder, the
  upstream one, so output layouts match);
- ``CHECKPOINT_KEYS``: the keys of its node that decide the learned tensors' shapes (named when a
  checkpoint does not fit the config);
- ``build_prompted_model(clip_model, classnames)``: a ``trainers.prompting.PromptedCLIP`` whose
  ``prompt_learner`` holds every learned tensor and whose ``forward(image)`` returns logits;
- optionally ``upstream_keys(key)``: maps keys of upstream full-model checkpoints that live
  outside ``prompt_learner.`` onto learner keys.

The rest is here: precision (CLIP storage, autocast, GradScaler through the engine's update
helper), freezing, the trainable-parameter count, MODEL.INIT_WEIGHTS, optimizer/scheduler,
DDP, the training step, evaluation with the text side computed once, and checkpoint loading.
"""

import torch.nn.functional as F

from dassl.config import ConfigError
from dassl.engine import TrainerX
from dassl.engine.precision import SUPPORTED_PRECISIONS, resolve_precision
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer

from .backbone import build_frozen_clip
from .checkpoints import load_learned_weights

LEARNER_ATTRIBUTE = "prompt_learner"


def check_method_keys(where, node, checks=()):
    """Validate a method's node ``where`` (e.g. "TRAINER.COOP"): its PREC, then ``checks``.

    checks: (key, ok, expected) triples, ``expected`` saying what a valid value is.
    Raises ConfigError naming ``where``.KEY and its value for the first failed check.
    """
    checks = [("PREC", node.PREC in SUPPORTED_PRECISIONS, f"one of {SUPPORTED_PRECISIONS}"), *checks]
    for key, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{where}.{key} = {node[key]!r} is invalid: expected {expected}")


class PromptTrainer(TrainerX):
    """A frozen CLIP with a learned prompt module, trained with cross-entropy on its logits."""

    CONFIG_NODE = None
    LEARNER_NAME = "prompt_learner"
    CHECKPOINT_KEYS = ()

    upstream_keys = None  # or a function: upstream full-model key -> learner key / None

    def build_prompted_model(self, clip_model, classnames):
        raise NotImplementedError(f"{type(self).__name__} must implement build_prompted_model()")

    @property
    def method_cfg(self):
        """The method's config node, TRAINER.<CONFIG_NODE>."""
        return self.cfg.TRAINER[self.CONFIG_NODE]

    def build_model(self):
        cfg = self.cfg
        self.precision = resolve_precision(self.method_cfg.PREC, self.device)
        clip_model = build_frozen_clip(cfg, self.precision)
        self.model = self.build_prompted_model(clip_model, self.dm.dataset.classnames)
        learner = getattr(self.model, LEARNER_ATTRIBUTE)
        for name, param in self.model.named_parameters():
            param.requires_grad_(name.startswith(LEARNER_ATTRIBUTE + "."))
        trainable = sum(p.numel() for p in learner.parameters() if p.requires_grad)
        print(f"Trainable parameters (prompt learner): {trainable:,}")
        if cfg.MODEL.INIT_WEIGHTS:
            print(f"Initialising the learned prompts from {cfg.MODEL.INIT_WEIGHTS}")
            load_learned_weights(learner, cfg.MODEL.INIT_WEIGHTS, self.checkpoint_config_keys, self.upstream_keys)

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

    @property
    def checkpoint_config_keys(self):
        return [f"TRAINER.{self.CONFIG_NODE}.{key}" for key in self.CHECKPOINT_KEYS]

    def parse_batch_train(self, batch):
        """(images, labels) on the device; the image paths are kept to name a failing batch."""
        self.batch_paths = batch["impath"]
        return batch["img"].to(self.device), batch["label"].to(self.device)

    parse_batch_test = parse_batch_train

    def logits(self, model, image, stage):
        """(B, C) logits of ``model`` under the precision's autocast.

        model: ``self.train_model`` (training) or ``self.model`` (evaluation, text cache).
        stage: "training" or "evaluation" (methods name it in their errors).
        """
        with self.precision.autocast(self.device):
            return model(image)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        logits = self.logits(self.train_model, image, "training")
        loss = F.cross_entropy(logits, label)
        self.model_backward_and_update(loss)
        summary = {"loss": loss.item(), "acc": compute_accuracy(logits, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:  # the schedulers step once per epoch
            self.update_lr()
        return summary

    def model_inference(self, input):
        return self.logits(self.model, input, "evaluation")

    def test(self, split=None):
        """Evaluate with the image-independent text features computed once, not per batch."""
        with self.model.cached_text_features():
            return super().test(split)

    def load_model_file(self, name, model_path):
        """Load the learned prompts of ``model_path`` (this project's file or an upstream full
        model) into the learner ``name``; the engine's ``load_model`` finds the file."""
        saved_epoch = load_learned_weights(
            self._models[name], model_path, self.checkpoint_config_keys, self.upstream_keys
        )
        print(f'Loaded weights to {name} from "{model_path}" (epoch = {saved_epoch})')
