"""``DistributedMixin``: a trainer's DistributedDataParallel wrapping and its safety check.

Under torchrun every process trains the module a training step calls through
``DistributedDataParallel``; registered parameters that no wrapper synchronises would be updated
separately on each process, so training refuses them.
"""

import inspect

from torch.nn.parallel import DistributedDataParallel

from dassl.config import ConfigError
from dassl.utils import is_distributed

# DDP's switch for broadcasting buffers before every forward: torch 2.13 renamed it (the old name
# still works there, with a deprecation warning).
_DDP_BUFFER_SYNC_ARG = (
    "forward_sync_buffers"
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else "broadcast_buffers"
)


class DistributedMixin:
    """``wrap_ddp`` and the check that every trainable registered parameter is wrapped.

    Needs ``self._ddp_param_ids`` (a set, made by TrainerBase), ``get_model_names()`` and
    ``self._models``.
    """

    def wrap_ddp(self, module, sync_buffers=True):
        """The module a training step calls: ``DistributedDataParallel(module)`` in a distributed
        (torchrun) run, ``module`` itself otherwise.

        During backward, DDP averages the gradients of ``module``'s trainable parameters over the
        processes, so every process applies the same update; each process's loss stays the mean
        over its own batch. Only calls through the returned wrapper synchronise: register,
        evaluate, save and load the unwrapped module (checkpoint keys then carry no ``module.``
        prefix, and the module's own methods stay reachable).

        Args:
            module (nn.Module): on its device, with the trainable parameters; its forward computes
                the training output. Frozen parameters (``requires_grad`` False) are ignored by DDP.
            sync_buffers (bool): broadcast rank 0's buffers before every forward (DDP's default,
                for e.g. BatchNorm statistics). False for buffers that every process builds
                identically, where the broadcast would only cost time.
        """
        if not is_distributed():
            return module
        device = next(module.parameters()).device
        wrapped = DistributedDataParallel(
            module,
            device_ids=[device.index] if device.type == "cuda" else None,
            **{_DDP_BUFFER_SYNC_ARG: sync_buffers},
        )
        self._ddp_param_ids.update(id(param) for param in module.parameters() if param.requires_grad)
        return wrapped

    def _check_distributed_training(self):
        """In a distributed run, refuse to train registered parameters that no DDP wrapper
        synchronises: each process would silently update its own copy."""
        if not is_distributed():
            return
        unsynced = [
            name
            for name in self.get_model_names()
            if any(p.requires_grad and id(p) not in self._ddp_param_ids for p in self._models[name].parameters())
        ]
        if unsynced:
            raise ConfigError(
                f"{type(self).__name__} cannot train in a distributed (torchrun) run: the trainable "
                f"parameters of {unsynced} are "
                "not wrapped in DistributedDataParallel, so each process would update its own copy. "
                "In build_model, wrap the module that the training forward calls with "
                "self.wrap_ddp(module) and call the returned module in forward_backward "
                "(docs/engine.md), or run a single process."
            )
