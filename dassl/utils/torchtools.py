"""Checkpoint save/load/resume and parameter helpers (Dassl's ``dassl.utils.torchtools``).

Everything ``save_checkpoint`` writes loads with ``torch.load(weights_only=True)``. Checkpoints
written by Dassl.pytorch pickle scheduler (and optimizer) objects; ``load_checkpoint`` reads them
through a documented fallback to ``weights_only=False`` that prints a line naming the file. Set the
environment variable ``DASSL_ALLOW_UNSAFE_LOAD=0`` to refuse such files instead (dassl-api §9.2).
"""

import os
import os.path as osp
import pickle
import re
import shutil
import warnings
from collections import OrderedDict

import torch

from .tools import listdir_nohidden, mkdir_if_missing

__all__ = [
    "BEST_MODEL_NAME",
    "CheckpointNotFoundError",
    "UNSAFE_LOAD_ENV",
    "UnsafeCheckpointError",
    "count_num_param",
    "find_model_file",
    "load_checkpoint",
    "load_pretrained_weights",
    "model_file_name",
    "resume_from_checkpoint",
    "save_checkpoint",
]

BEST_MODEL_NAME = "model-best.pth.tar"
_EPOCH_FILE = re.compile(r"model\.pth\.tar-(\d+)")
# Environment variable that controls the weights_only=False fallback ("0" disables it).
UNSAFE_LOAD_ENV = "DASSL_ALLOW_UNSAFE_LOAD"


class CheckpointNotFoundError(FileNotFoundError):
    """A model file is missing; the message names the path and what exists instead."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs ``weights_only=False`` and the fallback is disabled."""


def model_file_name(epoch=None):
    """``model-best.pth.tar`` without an epoch, else ``model.pth.tar-{epoch}``."""
    return BEST_MODEL_NAME if epoch is None else f"model.pth.tar-{epoch}"


def _describe_model_dir(model_dir):
    """What a model folder holds, or, if it is missing, what its nearest existing ancestor holds."""
    if osp.isdir(model_dir):
        files = listdir_nohidden(model_dir)
        epochs = sorted(int(m.group(1)) for m in map(_EPOCH_FILE.fullmatch, files) if m)
        found = []
        if epochs:
            found.append("saved epochs {}".format(", ".join(map(str, epochs))))
        if BEST_MODEL_NAME in files:
            found.append(BEST_MODEL_NAME)
        if not found:
            return f'"{model_dir}" holds no model file'
        return '"{}" holds {}'.format(model_dir, " and ".join(found))

    missing, parent = model_dir, osp.dirname(model_dir)
    while parent and not osp.isdir(parent):
        missing, parent = parent, osp.dirname(parent)
    entries = listdir_nohidden(parent or ".", sort=True)
    return '"{}" does not exist; "{}" holds: {}'.format(
        missing, parent or ".", ", ".join(entries) if entries else "nothing"
    )


def find_model_file(directory, name, epoch=None):
    """Path of the model file of registered model ``name`` under ``directory``.

    Raises:
        CheckpointNotFoundError: ``No model at {path}: ...`` followed by what exists (the saved
            epochs, model-best.pth.tar, or the nearest existing folder's entries).
    """
    model_dir = osp.join(directory, name)
    fpath = osp.join(model_dir, model_file_name(epoch))
    if not osp.isfile(fpath):
        raise CheckpointNotFoundError(f"No model at {fpath}: {_describe_model_dir(model_dir)}")
    return fpath


def save_checkpoint(state, save_dir, is_best=False, remove_module_from_keys=True, model_name=""):
    """Save ``state`` to ``save_dir/model_name`` (default ``model.pth.tar-{state["epoch"]}``).

    Strips a leading ``module.`` from the state-dict keys, writes the file atomically (a partial
    file never replaces a good one), then points ``save_dir/checkpoint`` at it. With ``is_best``
    the file is also copied to ``model-best.pth.tar``.

    Args:
        state (dict): ``state_dict``, ``epoch``, ``optimizer``, ``scheduler``, ``val_result``.
    """
    mkdir_if_missing(save_dir)

    if remove_module_from_keys:
        state["state_dict"] = OrderedDict(
            (k[len("module.") :] if k.startswith("module.") else k, v) for k, v in state["state_dict"].items()
        )

    if not model_name:
        model_name = model_file_name(state["epoch"])
    fpath = osp.join(save_dir, model_name)
    _write_atomically(fpath, lambda tmp_fpath: torch.save(state, tmp_fpath))
    print(f"Checkpoint saved to {fpath}")

    with open(osp.join(save_dir, "checkpoint"), "w") as f:
        f.write(f"{osp.basename(fpath)}\n")

    if is_best:
        best_fpath = osp.join(save_dir, BEST_MODEL_NAME)
        _write_atomically(best_fpath, lambda tmp_fpath: shutil.copyfile(fpath, tmp_fpath))
        print(f'Best checkpoint saved to "{best_fpath}"')


def _write_atomically(fpath, write):
    """Run ``write(tmp_path)``, then rename the result to ``fpath``."""
    tmp_fpath = fpath + ".tmp"
    write(tmp_fpath)
    os.replace(tmp_fpath, fpath)


def _unsafe_load_allowed():
    return os.environ.get(UNSAFE_LOAD_ENV, "1") != "0"


def _torch_load(fpath, map_location, **pickle_load_args):
    try:
        return torch.load(fpath, map_location=map_location, weights_only=True, **pickle_load_args)
    except pickle.UnpicklingError as e:
        if not _unsafe_load_allowed():
            raise UnsafeCheckpointError(
                f'Checkpoint "{fpath}" holds pickled Python objects (as files written by Dassl.pytorch '
                "do) and cannot be loaded with weights_only=True; the weights_only=False fallback "
                f"is disabled by {UNSAFE_LOAD_ENV}=0. Set {UNSAFE_LOAD_ENV}=1 to load a file you trust. "
                f"torch said: {str(e).splitlines()[0]}"
            ) from e
    print(
        f'Loading "{fpath}" with the unsafe loader (weights_only=False): it holds pickled Python objects, '
        f"as checkpoints written by Dassl.pytorch do. Load only files you trust; {UNSAFE_LOAD_ENV}=0 refuses "
        "them."
    )
    return torch.load(fpath, map_location=map_location, weights_only=False, **pickle_load_args)


def load_checkpoint(fpath):
    """Load a checkpoint file (a dict), on the CPU when CUDA is unavailable.

    Tries ``torch.load(weights_only=True)`` first. A file that needs full unpickling (Dassl.pytorch
    checkpoints pickle their warmup scheduler objects) is loaded with ``weights_only=False`` after
    printing a line that names it, unless the environment variable ``DASSL_ALLOW_UNSAFE_LOAD`` is
    ``0``: then ``UnsafeCheckpointError`` is raised. Only load files you trust.

    Raises:
        ValueError: ``fpath`` is None.
        FileNotFoundError: the file does not exist.
    """
    if fpath is None:
        raise ValueError("File path is None")
    if not osp.exists(fpath):
        raise FileNotFoundError(f'File is not found at "{fpath}"')

    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        try:
            return _torch_load(fpath, map_location)
        except UnicodeDecodeError:
            # Checkpoints pickled by Python 2.
            return _torch_load(fpath, map_location, encoding="latin1")
    except Exception:
        print(f'Unable to load checkpoint from "{fpath}"')
        raise


def resume_from_checkpoint(fdir, model, optimizer=None, scheduler=None):
    """Restore model, optimizer and scheduler from the file ``fdir/checkpoint`` points at.

    Returns:
        int: the number of finished epochs stored in the checkpoint.
    """
    pointer = osp.join(fdir, "checkpoint")
    if not osp.isfile(pointer):
        raise FileNotFoundError(
            f'Cannot resume from "{fdir}": it has no "checkpoint" file naming the model file to load '
            "(delete the folder to train from scratch)"
        )
    with open(pointer) as checkpoint:
        model_name = checkpoint.readlines()[0].strip("\n")
        fpath = osp.join(fdir, model_name)

    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")

    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")

    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")

    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")

    return start_epoch


def load_pretrained_weights(model, weight_path):
    """Load the entries of a checkpoint whose key and size match ``model``'s (dassl-api §5.3)."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)

    model_dict = model.state_dict()
    new_state_dict = OrderedDict()
    matched_layers, discarded_layers = [], []

    for k, v in state_dict.items():
        if k.startswith("module."):
            k = k[len("module.") :]

        if k in model_dict and model_dict[k].size() == v.size():
            new_state_dict[k] = v
            matched_layers.append(k)
        else:
            discarded_layers.append(k)

    model_dict.update(new_state_dict)
    model.load_state_dict(model_dict)

    if len(matched_layers) == 0:
        warnings.warn(f"Cannot load {weight_path} (check the key names manually)", stacklevel=2)
    else:
        print(f"Successfully loaded pretrained weights from {weight_path}")
        if len(discarded_layers) > 0:
            print(f"Layers discarded due to unmatched keys or size: {discarded_layers}")


def count_num_param(model=None, params=None):
    """Number of parameters of ``model``, or of a params iterable (tensors or param-group dicts)."""
    if model is not None:
        return sum(p.numel() for p in model.parameters())

    if params is not None:
        s = 0
        for p in params:
            if isinstance(p, dict):
                s += p["params"].numel()
            else:
                s += p.numel()
        return s

    raise ValueError("model and params must be provided")
