"""``build_optimizer``: Dassl's optimizers (adam, amsgrad, sgd, rmsprop, radam, adamw) from OPTIM."""

import warnings

import torch
import torch.nn as nn

from dassl.config import ConfigError

from .lr_scheduler import AVAI_SCHEDS

__all__ = ["AVAI_OPTIMS", "build_optimizer", "check_optim_cfg"]

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "adamw"]


def check_optim_cfg(optim_cfg):
    """Reject OPTIM settings that the optimizer or scheduler would refuse later with a traceback.

    Raises:
        ConfigError: naming the key, its value and what is allowed.
    """
    if optim_cfg.NAME not in AVAI_OPTIMS:
        raise ConfigError(
            f"OPTIM.NAME must be one of {', '.join(AVAI_OPTIMS)}, but got {optim_cfg.NAME!r} "
            "(Dassl's radam is not implemented)"
        )
    if optim_cfg.LR_SCHEDULER not in AVAI_SCHEDS:
        raise ConfigError(
            f"OPTIM.LR_SCHEDULER must be one of {', '.join(AVAI_SCHEDS)}, but got {optim_cfg.LR_SCHEDULER!r}"
        )
    if optim_cfg.WARMUP_EPOCH > 0 and optim_cfg.WARMUP_TYPE not in ("constant", "linear"):
        raise ConfigError(f"OPTIM.WARMUP_TYPE must be constant or linear, but got {optim_cfg.WARMUP_TYPE!r}")
    for key in ("LR", "WEIGHT_DECAY", "MOMENTUM"):
        if optim_cfg[key] < 0:
            raise ConfigError(f"OPTIM.{key} must be >= 0, but got {optim_cfg[key]}")
    if optim_cfg.NAME == "sgd" and optim_cfg.SGD_NESTEROV and (optim_cfg.MOMENTUM <= 0 or optim_cfg.SGD_DAMPNING != 0):
        raise ConfigError(
            "OPTIM.SGD_NESTEROV True needs OPTIM.MOMENTUM > 0 and OPTIM.SGD_DAMPNING 0, but got "
            f"{optim_cfg.MOMENTUM} and {optim_cfg.SGD_DAMPNING}"
        )


def _staged_param_groups(model, optim_cfg):
    """Two groups: the ``NEW_LAYERS`` children at LR, all other children at LR * BASE_LR_MULT."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            "When OPTIM.STAGED_LR is True, the model given to build_optimizer() must be an "
            f"nn.Module, got {type(model)}"
        )
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module

    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    if not new_layers:
        warnings.warn(
            "OPTIM.STAGED_LR is True but OPTIM.NEW_LAYERS is empty: every layer gets the base lr", stacklevel=2
        )
    children = [name for name, _ in model.named_children()]
    unknown = [name for name in new_layers if name not in children]
    if unknown:
        raise ValueError(
            f"OPTIM.NEW_LAYERS names {unknown}, which are not top-level children of the model (children: {children})"
        )

    base_params, new_params = [], []
    for name, module in model.named_children():
        if name in new_layers:
            new_params.extend(module.parameters())
        else:
            base_params.extend(module.parameters())

    return [
        {"params": base_params, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
        {"params": new_params},
    ]


def build_optimizer(model, optim_cfg, param_groups=None):
    """Build the optimizer named by ``optim_cfg.NAME``.

    Args:
        model (nn.Module or iterable): the model, or an iterable of parameters / param groups.
        optim_cfg (CfgNode): the ``OPTIM`` config node.
        param_groups (list, optional): used as is when given.

    Frozen parameters are handed to the optimizer too; their grad stays None, so steps skip them.
    """
    check_optim_cfg(optim_cfg)
    optim = optim_cfg.NAME

    if param_groups is not None and optim_cfg.STAGED_LR:
        warnings.warn(
            "OPTIM.STAGED_LR will be ignored as the param_groups given to build_optimizer() are used", stacklevel=2
        )

    if param_groups is None:
        if optim_cfg.STAGED_LR:
            param_groups = _staged_param_groups(model, optim_cfg)
        elif isinstance(model, nn.Module):
            param_groups = model.parameters()
        else:
            param_groups = model

    lr = optim_cfg.LR
    weight_decay = optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)

    if optim in ("adam", "amsgrad"):
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=weight_decay, betas=betas, amsgrad=optim == "amsgrad")
    if optim == "sgd":
        return torch.optim.SGD(
            param_groups,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=weight_decay,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if optim == "rmsprop":
        return torch.optim.RMSprop(
            param_groups,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=weight_decay,
            alpha=optim_cfg.RMSPROP_ALPHA,
        )
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay, betas=betas)
