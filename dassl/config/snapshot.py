"""A config as plain data, stored in checkpoints, and its comparison with a later run's config."""

from yacs.config import CfgNode

__all__ = ["config_differences", "config_snapshot"]


def _plain(value):
    """Tuples become lists (what a checkpoint loaded with weights_only=True gives back anyway)."""
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


def config_snapshot(cfg, prefix=""):
    """Every leaf of ``cfg`` as ``{"OPTIM.LR": 0.0025, ...}`` (plain data: numbers, strings,
    bools, None, lists), in tree order."""
    snapshot = {}
    for key, value in cfg.items():
        if isinstance(value, CfgNode):
            snapshot.update(config_snapshot(value, f"{prefix}{key}."))
        else:
            snapshot[prefix + key] = _plain(value)
    return snapshot


def _selected(key, selection):
    return any(key == wanted or (wanted.endswith(".") and key.startswith(wanted)) for wanted in selection)


def config_differences(snapshot, cfg, selection):
    """The selected keys whose value in ``cfg`` differs from ``snapshot``'s.

    Args:
        snapshot (dict): a ``config_snapshot`` (of the config a checkpoint was trained with).
        cfg (CfgNode): the current config.
        selection: full keys (``"SEED"``) and node prefixes ending with a dot (``"OPTIM."``).
            Keys missing from either side are not compared: a key added to the defaults after
            the snapshot was taken cannot have been set then.
    Returns:
        [(key, value in snapshot, value now)], in tree order.
    """
    current = config_snapshot(cfg)
    return [
        (key, snapshot[key], value)
        for key, value in current.items()
        if _selected(key, selection) and key in snapshot and snapshot[key] != value
    ]
