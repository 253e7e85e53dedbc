"""Merging YAML files and ``KEY VALUE`` lists into a config, with errors that help.

yacs already refuses unknown keys and type mismatches; these helpers keep that strictness and make
the messages useful: an unknown key is reported with the nearest valid keys (difflib over the full
dotted paths), a type mismatch or a YAML syntax error with where the value came from. Two
relaxations: an integer given for a float key is that float (``OPTIM.LR 1`` is 1.0, as a user
means it; int keys still refuse floats, and a bool is never a number), and the few text keys
that upstream configs also set to a bool (``accept_switch_for_text``) store it as text.
"""

import difflib
import os.path as osp

import yaml
from yacs.config import CfgNode

__all__ = ["ConfigError", "accept_switch_for_text", "merge_config_file", "merge_config_opts", "config_keys"]

# Text keys that upstream configs also set to a YAML bool (KgCoOp and ProGrad write
# TRAINER.COOP.CTX_INIT: True where CoOp writes words): a bool given for one of them is stored as
# text, True as "True" and False as "" (the key's "nothing"), so the key keeps one type.
_SWITCH_TEXT_KEYS = set()


def accept_switch_for_text(full_key):
    """Let the text key ``full_key`` (e.g. "TRAINER.COOP.CTX_INIT") also take a bool (see above)."""
    _SWITCH_TEXT_KEYS.add(full_key)


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
    return ConfigError(f"{error} (from {source}); a value must have the type of the key's default")


def _float_if_int(value, default):
    """``value`` as a float when the key's default is a float and ``value`` an int (not a bool)."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _lookup(cfg, full_key):
    node = cfg
    for part in full_key.split("."):
        node = node[part]
    return node


def _text_if_switch(value, full_key):
    """``value`` as text when it is a bool given for a key of ``accept_switch_for_text``. The text
    is quoted, as yacs decodes every incoming value once more (an unquoted "True" would become the
    bool again)."""
    if full_key in _SWITCH_TEXT_KEYS and isinstance(value, bool):
        return repr("True" if value else "")
    return value


def _relax_types(cfg, incoming, prefix=""):
    """In ``incoming`` (a nested dict whose keys all exist in ``cfg``): ints for float keys become
    floats, bools for switch-or-text keys become text."""
    for key, value in incoming.items():
        if isinstance(value, dict):
            _relax_types(cfg[key], value, prefix + key + ".")
        else:
            incoming[key] = _text_if_switch(_float_if_int(value, cfg[key]), prefix + key)


def _load_yaml(cfg, path):
    """The YAML file ``path`` as a CfgNode; a syntax error or a non-mapping file is a ConfigError."""
    try:
        with open(path) as f:
            incoming = cfg.load_cfg(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f'Config file "{path}" is not valid YAML{where}: {problem}') from None
    except AttributeError:  # yacs calls .items() on what the file holds
        raise ConfigError(
            f'Config file "{path}" must hold a mapping of KEY: value (nested), not a list or a scalar'
        ) from None
    return incoming


def merge_config_file(cfg, path):
    """``cfg.merge_from_file(path)`` with a clear error for a missing file or a bad key."""
    if not osp.isfile(path):
        raise ConfigError(f'Config file not found: "{path}"')
    incoming = _load_yaml(cfg, path)
    source = f'config file "{path}"'
    _check_tree_keys(cfg, incoming, source)
    _relax_types(cfg, incoming)
    try:
        cfg.merge_from_other_cfg(incoming)
    except ValueError as e:  # yacs raises ValueError only for a type mismatch here
        raise _type_mismatch_error(e, source) from None


def merge_config_opts(cfg, opts):
    """``cfg.merge_from_list(opts)`` (``KEY VALUE`` pairs) with clear errors."""
    source = "the command-line opts"
    if len(opts) % 2 != 0:
        raise ConfigError(f"Config opts must be KEY VALUE pairs, got an odd number of items: {opts}")
    opts = list(opts)
    for i in range(0, len(opts), 2):
        full_key, value = opts[i], opts[i + 1]
        _check_key_exists(cfg, full_key, source)
        decoded = cfg._decode_cfg_value(value)
        relaxed = _text_if_switch(_float_if_int(decoded, _lookup(cfg, full_key)), full_key)
        if relaxed is not decoded:  # an int for a float key, a bool for a switch-or-text key
            opts[i + 1] = relaxed
    try:
        cfg.merge_from_list(opts)
    except ValueError as e:  # yacs raises ValueError only for a type mismatch here
        raise _type_mismatch_error(e, source) from None
