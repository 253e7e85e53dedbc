"""Merging YAML files and ``KEY VALUE`` lists into a config, with errors that help.

yacs already refuses unknown keys and type mismatches (dassl-api §2.1, §9.20); these helpers keep
that strictness and only make the messages useful: an unknown key is reported with the nearest
valid keys (difflib over the full dotted paths), a type mismatch with where the value came from.
"""

import difflib
import os.path as osp

from yacs.config import CfgNode

__all__ = ["ConfigError", "merge_config_file", "merge_config_opts", "config_keys"]


class ConfigError(ValueError):
    """A config file or an override cannot be merged: missing file, unknown key, wrong type."""


def config_keys(cfg, prefix=""):
    """All full dotted key paths of ``cfg``, nodes and leaves, in tree order."""
    keys = []
    for key, value in cfg.items():
        full_key = prefix + key
        keys.append(full_key)
        if isinstance(value, CfgNode):
            keys.extend(config_keys(value, full_key + "."))
    return keys


def _unknown_key_error(cfg, full_key, source):
    parts = full_key.split(".")
    ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
    valid = [key for key in config_keys(cfg) if key not in ancestors]
    nearest = difflib.get_close_matches(full_key, valid, n=3, cutoff=0.6)
    if not nearest:
        # No close spelling: list what exists under the deepest existing parent node.
        node, parent = cfg, ""
        for part in parts[:-1]:
            if not isinstance(node.get(part), CfgNode):
                break
            node, parent = node[part], parent + part + "."
        nearest = [parent + key for key in node.keys()]
    return ConfigError(
        "Non-existent config key: {} (from {}); nearest valid keys: {}".format(full_key, source, ", ".join(nearest))
    )


def _check_key_exists(cfg, full_key, source):
    node = cfg
    for part in full_key.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            raise _unknown_key_error(cfg, full_key, source)
        node = node[part]


def _check_tree_keys(cfg, incoming, source, prefix=""):
    """Raise ConfigError for the first key of ``incoming`` (a nested dict) that ``cfg`` lacks."""
    for key, value in incoming.items():
        full_key = prefix + key
        _check_key_exists(cfg, full_key, source)
        if isinstance(value, dict):
            _check_tree_keys(cfg, value, source, full_key + ".")


def _type_mismatch_error(error, source):
    return ConfigError(
        f"{error} (from {source}); a value must have the type of the key's default: write a float key as 1.0, not 1"
    )


def merge_config_file(cfg, path):
    """``cfg.merge_from_file(path)`` with a clear error for a missing file or a bad key."""
    if not osp.isfile(path):
        raise ConfigError(f'Config file not found: "{path}"')
    with open(path) as f:
        incoming = cfg.load_cfg(f)
    source = f'config file "{path}"'
    _check_tree_keys(cfg, incoming, source)
    try:
        cfg.merge_from_other_cfg(incoming)
    except ValueError as e:  # yacs raises ValueError only for a type mismatch here
        raise _type_mismatch_error(e, source) from None


def merge_config_opts(cfg, opts):
    """``cfg.merge_from_list(opts)`` (``KEY VALUE`` pairs) with clear errors."""
    source = "the command-line opts"
    if len(opts) % 2 != 0:
        raise ConfigError(f"Config opts must be KEY VALUE pairs, got an odd number of items: {opts}")
    for full_key in opts[0::2]:
        _check_key_exists(cfg, full_key, source)
    try:
        cfg.merge_from_list(opts)
    except ValueError as e:  # yacs raises ValueError only for a type mismatch here
        raise _type_mismatch_error(e, source) from None
