"""Trainer classes: TrainerBase, SimpleTrainer, TrainerX.

Side effects that a distributed run must perform once (checkpoints, tensorboard, the log, the
confusion matrix, progress bars) all ask ``dassl.utils.is_main_process()``; loaders are built in
one place (``SimpleTrainer.build_data_loader`` -> ``DataManager`` -> ``build_data_loader`` /
``build_sampler``). This engine never wraps models in ``nn.DataParallel`` (it breaks modules that
hold lists of prompts); a distributed (torchrun) run trains through ``DistributedDataParallel``
(``TrainerBase.wrap_ddp``).
"""

import datetime
import os.path as osp
import time
from collections import OrderedDict

import numpy as np
import torch

from dassl.config import ConfigError
from dassl.data import DataManager
from dassl.data.samplers import check_sampler_type
from dassl.data.transforms import check_transform_choices
from dassl.evaluation import build_evaluator
from dassl.optim import check_optim_cfg
from dassl.utils import (
    BEST_MODEL_NAME,
    AverageMeter,
    CheckpointError,
    MetricMeter,
    is_distributed,
    is_main_process,
    load_checkpoint,
    progress_bar,
    tolist_if_not,
)
from dassl.utils.safe_unpickle import is_placeholder

from .checkpointing import CheckpointMixin
from .distributed import DistributedMixin

__all__ = ["TrainerBase", "SimpleTrainer", "TrainerX"]

FINAL_MODEL_CHOICES = ("last_step", "best_val")


class TrainerBase(CheckpointMixin, DistributedMixin):
    """Model registry, checkpoints (``CheckpointMixin``), DDP (``DistributedMixin``), tensorboard and
    the generic epoch loop."""

    def __init__(self):
        self._models = OrderedDict()
        self._optims = OrderedDict()
        self._scheds = OrderedDict()
        self._writer = None
        self._ddp_param_ids = set()  # id() of every parameter a DDP wrapper synchronises
        # A torch.amp.GradScaler when the trainer's precision needs loss scaling (amp on CUDA):
        # model_backward_and_update then scales the loss and steps through it.
        self.grad_scaler = None

    def register_model(self, name="model", model=None, optim=None, sched=None):
        """Register a module (and its optimizer and scheduler, either may be None) under ``name``.

        The name is the checkpoint sub-folder: ``OUTPUT_DIR/{name}/model.pth.tar-N``.
        """
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot assign model before super().__init__() call")
        if self.__dict__.get("_optims") is None:
            raise AttributeError("Cannot assign optim before super().__init__() call")
        if self.__dict__.get("_scheds") is None:
            raise AttributeError("Cannot assign sched before super().__init__() call")
        if name in self._models:
            raise ValueError(f"Found duplicate model names: {name!r} is already registered")

        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None):
        """All registered names (insertion order), or ``names`` (a str or list) after checking them."""
        registered = list(self._models.keys())
        if names is None:
            return registered
        names = tolist_if_not(names)
        for name in names:
            if name not in registered:
                raise KeyError(f"Model {name!r} is not registered (registered: {registered})")
        return names

    def set_model_mode(self, mode="train", names=None):
        """``train`` -> ``.train()``; ``test``/``eval`` -> ``.eval()`` on the registered modules."""
        if mode not in ("train", "test", "eval"):
            raise KeyError(f"Unknown model mode {mode!r}: expected train, test or eval")
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    def update_lr(self, names=None):
        """Step every scheduler once. Trainers call this at the last batch of each epoch; the engine
        never does, so that a trainer decides when its schedule steps."""
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss):
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def init_writer(self, log_dir):
        """Create the tensorboard writer (main process only; a note if tensorboard is missing)."""
        if self.__dict__.get("_writer") is not None or not is_main_process():
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("Tensorboard is not installed: no event files are written (pip install tensorboard)")
            return
        print(f"Initialize tensorboard (log_dir={log_dir})")
        self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag, scalar_value, global_step=None):
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch, max_epoch):
        """Generic loop: before_train, then (before_epoch, run_epoch, after_epoch) per epoch, then
        after_train. The epoch range is read after before_train, which may resume."""
        self._check_distributed_training()
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch

        self.before_train()
        self.stage = "train"
        for epoch in range(self.start_epoch, self.max_epoch):
            self.epoch = epoch
            self.batch_idx = -1  # no batch of this epoch has started yet
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.stage = "after_train"
        self.after_train()

    def describe_progress(self):
        """Where training is, for the line printed when a run is interrupted: "at epoch E batch B"
        (1-based), "at the start of epoch E", "after training (in the final test)" or "before
        training"."""
        stage = self.__dict__.get("stage")
        if stage == "train":
            batch_idx = self.__dict__.get("batch_idx", -1)
            if batch_idx < 0:
                return f"at the start of epoch {self.epoch + 1}"
            return f"at epoch {self.epoch + 1} batch {batch_idx + 1}"
        if stage == "after_train":
            return "after training (in the final test)"
        return "before training"

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_epoch(self):
        pass

    def after_epoch(self):
        pass

    def run_epoch(self):
        raise NotImplementedError

    def test(self):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    def model_zero_grad(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss):
        """Check the loss, then backpropagate it (scaled, with a ``grad_scaler``)."""
        self.detect_anomaly(loss)
        if self.grad_scaler is not None:
            loss = self.grad_scaler.scale(loss)
        loss.backward()

    def model_update(self, names=None):
        """Step the optimizers (through the ``grad_scaler``, which skips steps with inf/NaN gradients)."""
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                if self.grad_scaler is not None:
                    self.grad_scaler.step(self._optims[name])
                else:
                    self._optims[name].step()
        if self.grad_scaler is not None:
            self.grad_scaler.update()

    def model_backward_and_update(self, loss, names=None):
        """The training step's plumbing: zero the gradients, check and backpropagate the loss
        (scaled under ``grad_scaler``), step the optimizers."""
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


class SimpleTrainer(TrainerBase):
    """Builds data, model and evaluator; default train/test hooks."""

    def __init__(self, cfg):
        super().__init__()
        self._check_engine_cfg(cfg)
        self.check_cfg(cfg)

        if torch.cuda.is_available() and cfg.USE_CUDA:
            # Under torchrun: the GPU train.py bound this process to (cuda:LOCAL_RANK).
            index = torch.cuda.current_device() if is_distributed() else None
            self.device = torch.device("cuda", index)
        else:
            self.device = torch.device("cpu")

        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg):
        """Hook to check the config before anything is built (``self.cfg`` does not exist yet)."""

    @staticmethod
    def _check_engine_cfg(cfg):
        """Reject engine settings that cannot work, before anything is built (ConfigError naming the key)."""
        if cfg.TEST.FINAL_MODEL not in FINAL_MODEL_CHOICES:
            raise ConfigError(
                f"TEST.FINAL_MODEL must be one of {', '.join(FINAL_MODEL_CHOICES)}, but got {cfg.TEST.FINAL_MODEL!r}"
            )
        if cfg.OPTIM.MAX_EPOCH < 1:
            raise ConfigError(f"OPTIM.MAX_EPOCH must be at least 1, but got {cfg.OPTIM.MAX_EPOCH}")
        batch_sizes = {
            "DATALOADER.TRAIN_X.BATCH_SIZE": cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
            "DATALOADER.TEST.BATCH_SIZE": cfg.DATALOADER.TEST.BATCH_SIZE,
        }
        for key, value in batch_sizes.items():
            if value < 1:
                raise ConfigError(f"{key} must be at least 1, but got {value}")
        check_optim_cfg(cfg.OPTIM)
        if cfg.RESUME and not osp.isdir(cfg.RESUME):
            raise ConfigError(f'--resume "{cfg.RESUME}": the folder does not exist')
        if not cfg.INPUT.NO_TRANSFORM:
            check_transform_choices(cfg.INPUT.TRANSFORMS)
        for key in ("TRAIN_X", "TEST"):
            check_sampler_type(cfg.DATALOADER[key].SAMPLER, f"DATALOADER.{key}.SAMPLER")
        init_weights = cfg.MODEL.INIT_WEIGHTS
        if init_weights and not osp.isfile(init_weights):
            what = "is a folder" if osp.isdir(init_weights) else "does not exist"
            raise ConfigError(
                f'MODEL.INIT_WEIGHTS = "{init_weights}" {what}: expected a checkpoint file to start the learned '
                "weights from (e.g. a run's <model name>/model.pth.tar-N, or an official full-model file)"
            )

    def build_data_loader(self):
        """Create the DataManager (``self.dm``) and copy its loaders and dataset facts.

        The one place a trainer's loaders are built; override it for custom loaders.
        """
        dm = DataManager(self.cfg)

        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader

        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname

        self.dm = dm
        self._warn_if_val_is_test()

    def _warn_if_val_is_test(self):
        """best_val on a dataset whose val split is its test split (ImageNet) selects on test data."""
        val, test = self.dm.dataset.val, self.dm.dataset.test
        if self.cfg.TEST.FINAL_MODEL != "best_val" or not val:
            return
        if val is test or [item.impath for item in val] == [item.impath for item in test]:
            print(
                f"Warning: TEST.FINAL_MODEL is best_val, but the val split of {self.cfg.DATASET.NAME} is "
                "its test split: the "
                "model is selected on test data, and the whole test set is evaluated every "
                "epoch"
            )

    def build_model(self):
        """Hook: build the model(s) and call ``register_model``. Trainers must override it
        (Dassl.pytorch's default SimpleNet model is not part of this engine)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override build_model() and register its model(s) with register_model()"
        )

    def train(self):
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self):
        """Resume from RESUME (or OUTPUT_DIR) if it holds checkpoints; start tensorboard and the clock.

        An explicit RESUME (``--resume DIR``) must hold a checkpoint of every registered model.
        """
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        if self.cfg.RESUME and not self.has_checkpoint(directory):
            raise ConfigError(
                f'--resume "{directory}" holds no checkpoint (expected the folder(s) '
                f"{', '.join(self.get_model_names())} in it, written by a training run)"
            )
        self.start_epoch = self.resume_model_if_exist(directory)
        if self.start_epoch > 0 and self.cfg.TEST.FINAL_MODEL == "best_val":
            self._restore_best_result(directory)
        self.init_writer(osp.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()

    def _restore_best_result(self, directory):
        """After a resume, compare new val results with the saved best one, not with -inf (which
        would let the first resumed epoch overwrite a better model-best.pth.tar)."""
        for name in self.get_model_names():
            best_path = osp.join(directory, name, BEST_MODEL_NAME)
            if not osp.isfile(best_path):
                continue
            try:
                val_result = load_checkpoint(best_path).get("val_result")
            except CheckpointError as e:
                print(f"Warning: {e}: the best val result restarts from this run's epochs")
                continue
            if is_placeholder(val_result):
                print(
                    f'Warning: "{best_path}" stores its val result as a pickled object ({val_result!r}): '
                    "the best val result restarts from this run's epochs"
                )
            elif val_result is not None:
                self.best_result = val_result

    def after_train(self):
        print("Finish training")
        # Upstream MaPLe/ALIGN parse_test_res.py look for the pre-0.6.1 wording.
        print("Finished training")

        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()

        elapsed = round(time.time() - self.time_start)
        print(f"Elapsed: {datetime.timedelta(seconds=elapsed)}")

        self.close_writer()

    def after_epoch(self):
        """Evaluate on val with best_val (saving a new best weights-only model-best.pth.tar), then
        save the epoch: resumable (with the optimizer state) before the last epoch, weights and
        schedule only after it. The previous epoch's file is then removed unless its number is a
        multiple of TRAIN.CHECKPOINT_FREQ (> 0), so a run keeps one resumable checkpoint, the
        final model and the epochs asked for."""
        last_epoch = (self.epoch + 1) == self.max_epoch
        do_test = not self.cfg.TEST.NO_TEST

        if do_test and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(
                    self.epoch, self.output_dir, val_result=curr_result, model_name=BEST_MODEL_NAME, resumable=False
                )

        self.save_model(self.epoch, self.output_dir, resumable=not last_epoch)
        self.remove_superseded_checkpoints(self.epoch, self.output_dir, keep_every=self.cfg.TRAIN.CHECKPOINT_FREQ)

    @torch.no_grad()
    def test(self, split=None):
        """Evaluate on ``split`` (default TEST.SPLIT; "val" falls back to "test" without a val set)
        and return the first result (accuracy in %)."""
        self.set_model_mode("eval")
        self.evaluator.reset()

        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader

        print(f"Evaluate on the *{split}* set")

        for batch in progress_bar(data_loader, desc=f"Evaluate on {split}"):
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)

        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)

        return list(results.values())[0]

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        input = batch["img"].to(self.device)
        label = batch["label"].to(self.device)
        return input, label

    def get_current_lr(self, names=None):
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """A trainer on labelled data only (``train_loader_x``)."""

    def run_epoch(self):
        """One epoch over train_loader_x; prints the Dassl iteration line.

        In a distributed run the numbers printed are the main process's (its local batches).
        """
        self.set_model_mode("train")
        sampler = self.train_loader_x.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)  # DistributedSampler: a different shuffle every epoch
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        print_freq = self.cfg.TRAIN.PRINT_FREQ
        batches = progress_bar(
            self.train_loader_x, desc=f"epoch {self.epoch + 1}/{self.max_epoch}", total=self.num_batches
        )

        end = time.time()
        for batch_idx, batch in enumerate(batches):
            self.batch_idx = batch_idx
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            # Every batch prints when an epoch is shorter than PRINT_FREQ (few-shot data).
            if (batch_idx + 1) % print_freq == 0 or self.num_batches < print_freq:
                remaining = self.num_batches - batch_idx - 1
                remaining += (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = datetime.timedelta(seconds=int(batch_time.avg * remaining))
                print(
                    " ".join(
                        [
                            f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                            f"batch [{batch_idx + 1}/{self.num_batches}]",
                            f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                            f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                            f"{losses}",
                            f"lr {self.get_current_lr():.4e}",
                            f"eta {eta}",
                        ]
                    )
                )

            n_iter = self.epoch * self.num_batches + batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)

            end = time.time()

    def parse_batch_train(self, batch):
        input = batch["img"].to(self.device)
        label = batch["label"].to(self.device)
        domain = batch["domain"].to(self.device)
        return input, label, domain
