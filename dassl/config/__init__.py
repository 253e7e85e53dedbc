from .defaults import _C as cfg_default
from .merge import ConfigError, accept_switch_for_text, config_keys, merge_config_file, merge_config_opts
from .snapshot import config_differences, config_snapshot


def get_cfg_default():
    """A fresh, mutable clone of the default config tree."""
    return cfg_default.clone()
