"""Checkpoints as Dassl.pytorch writes them, and pickles that carry a payload.

- ``dassl_pytorch_checkpoint(state_dict, epoch)``: the dict Dassl.pytorch's ``save_model`` saves
  for a model trained with SGD, a constant warmup and a cosine schedule (CoOp, CoCoOp, MaPLe,
  PromptSRC and ALIGN all train so): the optimizer's state dict, and the warmup scheduler's
  state, which is torch's default ``LRScheduler.state_dict()``: the wrapper's ``__dict__`` minus
  the optimizer, so its ``"successor"`` is the cosine scheduler object itself, pickled with the
  optimizer it is bound to.
- ``Payload(marker)``: an object whose unpickling runs ``touch marker`` (through ``os.system``),
  what a crafted file carries; ``marker`` existing afterwards proves the code ran.
"""

import os

import torch
import torch.nn as nn

from dassl.optim.lr_scheduler import ConstantWarmupScheduler

MAX_EPOCH = 10


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def dassl_pytorch_schedule(epochs):
    """(optimizer, warmup scheduler) over one parameter, stepped through ``epochs`` epochs as
    Dassl.pytorch's trainer steps them (one optimizer step per batch, the scheduler per epoch)."""
    param = nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=0.0025, momentum=0.9, weight_decay=5e-4)
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=float(MAX_EPOCH))
    scheduler = ConstantWarmupScheduler(optimizer, successor, warmup_epoch=1, cons_lr=1e-5)
    for epoch in range(epochs):
        param.grad = torch.full((3,), float(epoch + 1))
        optimizer.step()
        scheduler.step()
    return optimizer, scheduler


def upstream_scheduler_state(scheduler):
    """Dassl.pytorch's state of a warmup scheduler: its ``__dict__`` minus the optimizer."""
    return {key: value for key, value in vars(scheduler).items() if key != "optimizer"}


def dassl_pytorch_checkpoint(state_dict, epoch, marker=None):
    """The checkpoint dict Dassl.pytorch saves after ``epoch`` epochs, with ``state_dict`` as the
    weights. With ``marker``, the pickled scheduler object also carries a ``Payload(marker)``."""
    optimizer, scheduler = dassl_pytorch_schedule(epoch)
    if marker is not None:
        scheduler.successor.payload = Payload(marker)
    return {
        "state_dict": state_dict,
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": upstream_scheduler_state(scheduler),
        "val_result": None,
    }
