"""Small file-system and reproducibility helpers (Dassl's ``dassl.utils.tools``)."""

import errno
import json
import os
import os.path as osp
import random
import warnings

import numpy as np
import PIL
import torch
from PIL import Image

__all__ = [
    "ImageReadError",
    "mkdir_if_missing",
    "check_isfile",
    "read_json",
    "write_json",
    "set_random_seed",
    "collect_env_info",
    "listdir_nohidden",
    "read_image",
    "tolist_if_not",
]


def mkdir_if_missing(dirname):
    """Create ``dirname`` (and its parents) if it does not exist; tolerates the EEXIST race."""
    if not osp.exists(dirname):
        try:
            os.makedirs(dirname)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


def check_isfile(fpath):
    """Return whether ``fpath`` is a file, warning (not raising) when it is not."""
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"', stacklevel=2)
    return isfile


def read_json(fpath):
    """Load a JSON file."""
    with open(fpath) as f:
        return json.load(f)


def write_json(obj, fpath):
    """Write ``obj`` as JSON (indent 4, Dassl's separators), creating the parent folder."""
    mkdir_if_missing(osp.dirname(fpath))
    with open(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def set_random_seed(seed):
    """Seed Python's ``random``, numpy, and torch on the CPU and every CUDA device.

    No cudnn determinism flag is set (as upstream): same-seed runs are close, not bit-identical.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def collect_env_info():
    """torch's environment report plus the Pillow version line."""
    from torch.utils.collect_env import get_pretty_env_info

    env_str = get_pretty_env_info()
    env_str += f"\n        Pillow ({PIL.__version__})"
    return env_str


def listdir_nohidden(path, sort=False):
    """Entries of ``path`` whose names do not start with ``.`` (sorted only if ``sort``)."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


class ImageReadError(OSError):
    """An image file is missing or cannot be decoded; the message names the file.

    Raised inside a DataLoader worker, it reaches the main process re-created by torch with the
    worker's traceback as its message; ``message_of`` recovers the original one-line message.
    """

    @staticmethod
    def message_of(error):
        """The original one-line message of ``error`` (an ImageReadError, possibly re-raised by a
        DataLoader: then its message's last line is "<module>.ImageReadError: <message>")."""
        text = str(error).strip()
        if not text.startswith("Caught ImageReadError"):  # raised in this process
            return text
        last_line = text.splitlines()[-1]
        return last_line.partition("ImageReadError: ")[2] or last_line


def read_image(path):
    """Open an image with PIL and convert it to RGB.

    A missing file or one that cannot be decoded raises ``ImageReadError`` (an ``OSError``) naming
    the file; nothing is skipped.
    """
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise ImageReadError(f'Image not found: "{path}"') from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f'Cannot decode image "{path}": {e}') from e


def tolist_if_not(x):
    """Wrap ``x`` in a list if it is not one already."""
    if not isinstance(x, list):
        x = [x]
    return x
