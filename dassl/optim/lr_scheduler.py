"""``build_lr_scheduler`` and the warmup wrappers.

Differences from Dassl.pytorch, each needed to run on current torch or to resume exactly:

- the wrappers never pass ``verbose`` to ``LRScheduler.__init__`` (torch >= 2.6 removed it);
- ``state_dict()`` holds plain data only, the successor's own ``state_dict()`` nested under
  ``"successor"``, so checkpoints load with ``torch.load(weights_only=True)``;
- ``load_state_dict()`` updates the existing successor in place (never replaces it or binds it to
  another optimizer), so the lr keeps following the schedule after a resume. It also accepts
  Dassl.pytorch's state, where ``"successor"`` is a pickled scheduler object, or the placeholder
  that ``load_checkpoint``'s safe unpickler reads in its place.
"""

import torch
from torch.optim.lr_scheduler import LRScheduler

from dassl.config import ConfigError
from dassl.utils.safe_unpickle import Placeholder, PlaceholderError, is_placeholder

__all__ = [
    "AVAI_SCHEDS",
    "ConstantWarmupScheduler",
    "LinearWarmupScheduler",
    "build_lr_scheduler",
]

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


class _BaseWarmupScheduler(LRScheduler):
    """Warmup for ``warmup_epoch`` steps, then hand over to ``successor``.

    While the own counter ``last_epoch < warmup_epoch`` the lr comes from ``warmup_lr()``. At the
    step where the counter reaches ``warmup_epoch`` the lr becomes the successor's last lr; every
    later ``step()`` steps the successor (the own counter then stays at ``warmup_epoch``).
    """

    def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch=last_epoch)

    def warmup_lr(self):
        """The lrs (one per param group) while ``last_epoch < warmup_epoch``."""
        raise NotImplementedError

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return self.warmup_lr()

    def step(self, epoch=None):
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)

    def state_dict(self):
        """Plain data: this scheduler's numbers plus ``"successor"``: the successor's state_dict."""
        state = {key: value for key, value in self.__dict__.items() if key not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict):
        """Load our own state, or Dassl.pytorch's (whose ``"successor"`` is a scheduler object, or
        the safe unpickler's placeholder for one).

        The successor object is kept and updated in place: it stays bound to this optimizer.

        Raises:
            PlaceholderError: ``"successor"`` is a placeholder for something else than a torch
                lr scheduler.
        """
        state = dict(state_dict)
        successor_state = _successor_state(state.pop("successor"))
        super().load_state_dict(state)
        self.successor.load_state_dict(successor_state)


def _successor_state(successor):
    """The successor's state_dict from a warmup state: ours stores it as is; Dassl.pytorch pickles
    the scheduler object itself, bound to a copy of the optimizer: its attributes but that one."""
    if isinstance(successor, LRScheduler):
        attributes = vars(successor)
    elif (
        isinstance(successor, Placeholder)
        and successor.pickled_name.startswith("torch.optim.lr_scheduler.")
        and isinstance(successor.state, dict)
    ):
        # The same object read by the safe unpickler: its pickled attributes, never run.
        attributes = successor.state
    elif is_placeholder(successor):
        raise PlaceholderError(f'its "successor" is {successor!r}, where a torch lr scheduler belongs')
    else:
        return successor
    return {key: value for key, value in attributes.items() if key != "optimizer"}


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """lr = ``cons_lr`` during warmup."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr, last_epoch=-1):
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch=last_epoch)

    def warmup_lr(self):
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """lr = ``min_lr`` at step 0, then ``base_lr * step / warmup_epoch`` during warmup."""

    def __init__(self, optimizer, successor, warmup_epoch, min_lr, last_epoch=-1):
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch=last_epoch)

    def warmup_lr(self):
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def _main_scheduler(optimizer, optim_cfg):
    lr_scheduler = optim_cfg.LR_SCHEDULER
    stepsize = optim_cfg.STEPSIZE
    max_epoch = optim_cfg.MAX_EPOCH

    if lr_scheduler not in AVAI_SCHEDS:
        raise ConfigError(f"OPTIM.LR_SCHEDULER must be one of {', '.join(AVAI_SCHEDS)}, but got {lr_scheduler!r}")

    if lr_scheduler == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise TypeError(
                f"For single_step lr_scheduler, OPTIM.STEPSIZE must be an integer, but got {type(stepsize)}"
            )
        if stepsize <= 0:
            stepsize = max_epoch
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=stepsize, gamma=optim_cfg.GAMMA)

    if lr_scheduler == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(f"For multi_step lr_scheduler, OPTIM.STEPSIZE must be a list, but got {type(stepsize)}")
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(stepsize), gamma=optim_cfg.GAMMA)

    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=float(max_epoch))


def build_lr_scheduler(optimizer, optim_cfg):
    """The ``OPTIM.LR_SCHEDULER`` schedule, wrapped in warmup when ``OPTIM.WARMUP_EPOCH > 0``.

    Stepped once per epoch by the trainer (``update_lr`` at the last batch), never by the engine.
    """
    scheduler = _main_scheduler(optimizer, optim_cfg)

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH

        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR)
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR)
        else:
            raise ConfigError(f"OPTIM.WARMUP_TYPE must be constant or linear, but got {optim_cfg.WARMUP_TYPE!r}")

    return scheduler
