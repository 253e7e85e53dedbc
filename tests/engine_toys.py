"""A toy dataset and a toy trainer that exercise the dassl engine end to end on tiny images.

- ``make_toy_images(root)`` writes ``root/toy_colors/{train,val,test}/{red,green,blue}/*``: 8x8
  images whose dominant colour is the class (PNG for train/val, JPEG for test).
- ``ToyColors`` (registered dataset) reads that tree into Datum lists; ``ToyColorsValIsTest``
  uses its test split as val, as ImageNet does.
- ``ToyLinearProbe`` (registered trainer) trains a linear layer on the raw pixels through the
  engine's public hooks only, as a Dassl trainer file would, and records the lr of each epoch.
- ``toy_argv(...)`` builds a train.py command line for them; ``run_train_py(argv)`` runs it in-process.
- ``tiny_clip_argv(...)``: a prompt-learning trainer on ToyColors with a tiny CLIP (CPU, fp32);
  ``build_from_argv(argv)``: the trainer train.py would build from it.

``python -m tests.engine_toys ARGS`` is train.py with these registered. With the environment
variable ``TOY_PAUSE_AT=E,B`` it prints ``paused`` before the training step of epoch E, batch B
(1-based) and waits for a line on stdin, so that a test can signal or kill a run at a known point;
such a run skips the environment report (seconds of subprocesses).
"""

import math
import os
import os.path as osp
import sys

import numpy as np
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, DatasetLayoutError, Datum
from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils.logger import Logger

CLASSNAMES = ["red", "green", "blue"]
SPLIT_SIZES = {"train": 4, "val": 2, "test": 3}  # images per class
IMAGE_SIZE = 8


def make_toy_images(root, seed=0):
    """Write the toy tree under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed)
    for split, per_class in SPLIT_SIZES.items():
        ext = "jpg" if split == "test" else "png"
        for label, classname in enumerate(CLASSNAMES):
            folder = osp.join(root, "toy_colors", split, classname)
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 100, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
                pixels[..., label] += 120
                Image.fromarray(pixels.astype(np.uint8)).save(osp.join(folder, f"{i}.{ext}"))
    return root


@DATASET_REGISTRY.register()
class ToyColors(DatasetBase):
    dataset_dir = "toy_colors"

    def __init__(self, cfg):
        root = osp.join(osp.abspath(osp.expanduser(cfg.DATASET.ROOT)), self.dataset_dir)
        if not osp.isdir(root):
            raise DatasetLayoutError(
                f'ToyColors: folder not found: "{root}" (expected '
                f"{self.dataset_dir}/{{train,val,test}}/<class>/<image>)"
            )
        train, val, test = (self._read(osp.join(root, split)) for split in ("train", "val", "test"))
        super().__init__(train_x=train, val=self.pick_val(val, test), test=test)

    @staticmethod
    def pick_val(val, test):
        return val

    @staticmethod
    def _read(split_dir):
        return [
            Datum(impath=osp.join(split_dir, classname, fname), label=label, classname=classname)
            for label, classname in enumerate(CLASSNAMES)
            for fname in sorted(os.listdir(osp.join(split_dir, classname)))
        ]


@DATASET_REGISTRY.register()
class ToyColorsValIsTest(ToyColors):
    @staticmethod
    def pick_val(val, test):
        return test


def align_lr(epoch):
    """The shipped ALIGN schedule as a closed form: SGD 0.0025, cosine over 20 epochs, 1 constant
    warmup epoch at 1e-5, recount: lr(e) = base (1 + cos(pi (e - W) / MAX_EPOCH)) / 2 for e >= W."""
    base, warmup, max_epoch = 0.0025, 1, 20
    if epoch < warmup:
        return 1e-5
    return base * (1 + math.cos(math.pi * (epoch - warmup) / max_epoch)) / 2


# The OPTIM opts of the shipped ALIGN recipe.
ALIGN_OPTIM_OPTS = (
    "OPTIM.LR",
    "0.0025",
    "OPTIM.MAX_EPOCH",
    "20",
    "OPTIM.LR_SCHEDULER",
    "cosine",
    "OPTIM.WARMUP_EPOCH",
    "1",
    "OPTIM.WARMUP_TYPE",
    "constant",
    "OPTIM.WARMUP_CONS_LR",
    "1e-5",
)


class ToyInterrupt(Exception):
    """Raised by ToyLinearProbe after epoch ``interrupt_after_epoch`` to simulate a crash."""


@TRAINER_REGISTRY.register()
class ToyLinearProbe(TrainerX):
    """Linear classifier on flattened pixels: (B, 3, H, W) -> (B, num_classes)."""

    instances = []  # every trainer built, so that tests can inspect the one train.py made
    interrupt_after_epoch = None
    pause_at = None  # (epoch, batch), 1-based: print "paused" there and wait for a line on stdin

    def build_model(self):
        height, width = self.cfg.INPUT.SIZE
        self.model = nn.Linear(3 * height * width, self.num_classes).to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("linear_probe", self.model, self.optim, self.sched)
        self.epoch_lrs = {}  # epoch -> lr used during that epoch
        self.losses = []  # loss of every batch
        ToyLinearProbe.instances.append(self)

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        if (self.epoch + 1, self.batch_idx + 1) == ToyLinearProbe.pause_at:
            print("paused", flush=True)
            sys.stdin.readline()
        self.epoch_lrs.setdefault(self.epoch, self.get_current_lr())
        output = self.model(image.flatten(1))
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if self.batch_idx + 1 == self.num_batches:
            self.update_lr()
        self.losses.append(loss.item())
        return {"loss": self.losses[-1], "acc": compute_accuracy(output, label)[0].item()}

    def model_inference(self, image):
        return self.model(image.flatten(1))

    def after_epoch(self):
        super().after_epoch()
        if self.epoch + 1 == ToyLinearProbe.interrupt_after_epoch:
            raise ToyInterrupt(self.epoch + 1)


def run_train_py(argv):
    """Run train.py's main path in-process and return its exit status.

    The stdout tee that train.py installs is closed afterwards (which flushes log.txt) and the
    previous stdout restored, so that later tests print normally.
    """
    import train

    original_stdout = sys.stdout
    try:
        return train.run(argv)
    finally:
        if isinstance(sys.stdout, Logger):
            sys.stdout.close()
        sys.stdout = original_stdout


def toy_argv(root, output_dir, *opts, extra_flags=()):
    """A train.py command line for ToyLinearProbe on ToyColors (CPU, fp32, no workers)."""
    return [
        "--root",
        str(root),
        "--output-dir",
        str(output_dir),
        "--trainer",
        "ToyLinearProbe",
        *extra_flags,
        "DATASET.NAME",
        "ToyColors",
        "USE_CUDA",
        "False",
        "INPUT.SIZE",
        f"({IMAGE_SIZE}, {IMAGE_SIZE})",
        "INPUT.TRANSFORMS",
        "['normalize']",
        "DATALOADER.NUM_WORKERS",
        "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE",
        "4",
        "DATALOADER.TEST.BATCH_SIZE",
        "4",
        "OPTIM.NAME",
        "sgd",
        *opts,
    ]


if __name__ == "__main__":
    # train.py with the toy dataset and trainer registered, for runs in a separate process:
    # `python -m tests.engine_toys ARGS`, `torchrun --nproc_per_node 2 -m tests.engine_toys ARGS`.
    import train

    if os.environ.get("TOY_PAUSE_AT"):
        ToyLinearProbe.pause_at = tuple(int(n) for n in os.environ["TOY_PAUSE_AT"].split(","))
        train.collect_env_info = lambda: "<environment report>"
    sys.exit(train.run())


def trainer_node(trainer):
    """The config node a registered trainer reads (where its PREC is): train.py's rule."""
    import train

    return train.trainer_config_node(trainer)


def tiny_clip_argv(data_root, output_dir, clip_path, trainer, *opts, extra_flags=()):
    """train.py arguments: ``trainer`` on ToyColors (3 classes, 32 px images) with the tiny CLIP
    at ``clip_path``, on the CPU in fp32, 2 epochs of batch 4; ``opts`` come last (they override)."""
    return [
        *("--root", str(data_root), "--output-dir", str(output_dir), "--trainer", trainer, "--seed", "1"),
        *extra_flags,
        *("DATASET.NAME", "ToyColors", "USE_CUDA", "False", "INPUT.SIZE", "(32, 32)"),
        *("INPUT.TRANSFORMS", "['normalize']", "DATALOADER.NUM_WORKERS", "0"),
        *("DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "4"),
        *("OPTIM.NAME", "sgd", "OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "2", "TRAIN.PRINT_FREQ", "100"),
        *("MODEL.BACKBONE.PATH", str(clip_path), f"TRAINER.{trainer_node(trainer)}.PREC", "fp32"),
        *opts,
    ]


def build_from_argv(argv):
    """The trainer that train.py would build from ``argv`` (not trained)."""
    import train

    return build_trainer(train.setup_cfg(train.build_parser().parse_args(argv)))
