"""Checkpoint save and load, and parameter helpers (Dassl's ``dassl.utils.torchtools``; resuming:
``dassl.utils.resume``).

Everything ``save_checkpoint`` writes loads with ``torch.load(weights_only=True)``. Checkpoints
written by Dassl.pytorch also pickle Python objects (their warmup schedulers): ``load_checkpoint``
reads those with the safe unpickler of ``dassl.utils.safe_unpickle``, which rebuilds the tensors
and plain data and turns every other object into an inert placeholder, running nothing the file
carries. Only ``DASSL_ALLOW_UNSAFE_LOAD=1`` loads them with ``weights_only=False`` (full
unpickling, which runs any code in the file).
"""

import contextlib
import os
import os.path as osp
import pickle
import re
import shutil
import warnings
import zipfile
from collections import OrderedDict

import torch

from .safe_unpickle import UnsupportedPickleError, find_placeholders, load_torch_file, placeholder_names
from .tools import listdir_nohidden, mkdir_if_missing

__all__ = [
    "BEST_MODEL_NAME",
    "POINTER_NAME",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointWriteError",
    "UNSAFE_LOAD_ENV",
    "UnsafeCheckpointError",
    "count_num_param",
    "find_model_file",
    "load_checkpoint",
    "load_model_checkpoint",
    "load_pretrained_weights",
    "model_file_name",
    "save_checkpoint",
    "saved_epochs",
]

BEST_MODEL_NAME = "model-best.pth.tar"
# One line in every checkpoint folder: the name of the file to resume from (Dassl's pointer).
POINTER_NAME = "checkpoint"
_EPOCH_FILE = re.compile(r"model\.pth\.tar-(\d+)")
# Environment variable that opts in to full unpickling (weights_only=False) when it is "1".
UNSAFE_LOAD_ENV = "DASSL_ALLOW_UNSAFE_LOAD"
# How many of the replaced objects' names the line about a safe load lists.
_NAMES_SHOWN = 3


class CheckpointNotFoundError(FileNotFoundError):
    """A model file is missing; the message names the path and what exists instead."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: empty, truncated, damaged, not a checkpoint, or it does not
    fit the model; the message names the file and what is wrong."""


class CheckpointWriteError(OSError):
    """A checkpoint cannot be written (disk full, folder not writable); the message names the file
    and the operating system's reason."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds pickled objects that the safe unpickler cannot use where they are
    needed; the message names the file and suggests ``DASSL_ALLOW_UNSAFE_LOAD=1`` for a trusted
    file."""


def unsafe_checkpoint_error(fpath, problem):
    """``UnsafeCheckpointError``: ``Checkpoint "{fpath}" {problem}``, and how to load a trusted file."""
    return UnsafeCheckpointError(
        f'Checkpoint "{fpath}" {problem}. If you trust the file, set {UNSAFE_LOAD_ENV}=1 to load it with '
        "full unpickling (weights_only=False), which runs any code the file carries"
    )


def model_file_name(epoch=None):
    """``model-best.pth.tar`` without an epoch, else ``model.pth.tar-{epoch}``."""
    return BEST_MODEL_NAME if epoch is None else f"model.pth.tar-{epoch}"


def saved_epochs(fdir):
    """The N of every ``model.pth.tar-N`` in ``fdir``, ascending (empty if there is no folder)."""
    if not osp.isdir(fdir):
        return []
    return sorted(int(m.group(1)) for m in map(_EPOCH_FILE.fullmatch, os.listdir(fdir)) if m)


def _describe_model_dir(model_dir):
    """What a model folder holds, or, if it is missing, what its nearest existing ancestor holds."""
    if osp.isdir(model_dir):
        files = listdir_nohidden(model_dir)
        epochs = saved_epochs(model_dir)
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


def save_checkpoint(state, save_dir, is_best=False, remove_module_from_keys=True, model_name="", update_pointer=True):
    """Save ``state`` to ``save_dir/model_name`` (default ``model.pth.tar-{state["epoch"]}``).

    Strips a leading ``module.`` from the state-dict keys, writes the file atomically (a partial
    file never replaces a good one, and the data is on disk before the rename), then points
    ``save_dir/checkpoint`` at it (unless ``update_pointer`` is False). With ``is_best`` the file
    is also copied to ``model-best.pth.tar``.

    Args:
        state (dict): ``state_dict``, ``epoch``, ``optimizer``, ``scheduler``, ``val_result``
            (and, from this engine's trainers, ``config``).

    Raises:
        CheckpointWriteError: a file cannot be written (disk full, folder not writable); the
            message names the file and the OS reason, and no temporary file is left behind.
    """
    try:
        mkdir_if_missing(save_dir)
    except OSError as e:
        raise CheckpointWriteError(f'Cannot create the checkpoint folder "{save_dir}": {_os_reason(e)}') from e

    if remove_module_from_keys:
        state["state_dict"] = OrderedDict(
            (k[len("module.") :] if k.startswith("module.") else k, v) for k, v in state["state_dict"].items()
        )

    if not model_name:
        model_name = model_file_name(state["epoch"])
    fpath = osp.join(save_dir, model_name)
    _write_atomically(fpath, lambda f: torch.save(state, f))
    print(f"Checkpoint saved to {fpath}")

    if update_pointer:
        pointer = f"{osp.basename(fpath)}\n".encode()
        _write_atomically(osp.join(save_dir, POINTER_NAME), lambda f: f.write(pointer))

    if is_best:
        best_fpath = osp.join(save_dir, BEST_MODEL_NAME)
        with open(fpath, "rb") as source:
            _write_atomically(best_fpath, lambda f: shutil.copyfileobj(source, f))
        print(f'Best checkpoint saved to "{best_fpath}"')


def _os_reason(error):
    return error.strerror or str(error)


def _remove_if_present(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _write_atomically(fpath, write):
    """Run ``write(file)`` on ``fpath + ".tmp"`` (opened "wb"), sync it to disk, rename it to ``fpath``.

    On any failure (also an interrupt) the temporary file is removed; an OSError becomes a
    CheckpointWriteError naming ``fpath`` and the OS reason. torch's zip writer reports a failed
    write (a full disk) as a RuntimeError raised while the OSError is handled: the OSError in the
    exception's chain is the reason.
    """
    tmp_fpath = fpath + ".tmp"
    try:
        with open(tmp_fpath, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_fpath, fpath)
    except BaseException as e:
        _remove_if_present(tmp_fpath)
        os_error = _os_error_in_chain(e)
        if os_error is not None:
            raise CheckpointWriteError(f'Cannot write checkpoint "{fpath}": {_os_reason(os_error)}') from e
        raise


def _os_error_in_chain(error):
    """``error`` if it is an OSError, else the first OSError among its causes and contexts (None
    for an interrupt or when there is none)."""
    seen = set()
    while error is not None and id(error) not in seen and not isinstance(error, KeyboardInterrupt):
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _unsafe_load_requested():
    return os.environ.get(UNSAFE_LOAD_ENV) == "1"


def _listing(names):
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown if len(names) <= _NAMES_SHOWN else f"{shown} and {len(names) - _NAMES_SHOWN} more"


def _safe_load(fpath, map_location, **pickle_load_args):
    """``load_torch_file``: tensors and plain data, every other object an inert placeholder.

    Prints one line naming the file and the replaced objects. The weights (``state_dict``, or the
    file itself without one) must hold no placeholder: they are the one part every caller uses.
    """
    try:
        checkpoint = load_torch_file(fpath, map_location, **pickle_load_args)
    except UnsupportedPickleError as e:
        raise unsafe_checkpoint_error(
            fpath, f"holds pickled objects that the safe unpickler cannot rebuild ({e})"
        ) from e
    names = placeholder_names(checkpoint)
    if names:
        print(
            f'"{fpath}" holds pickled Python objects (as checkpoints written by Dassl.pytorch do): read as '
            f"inert placeholders, never run ({_listing(names)}); its tensors and plain data are loaded"
        )
    if isinstance(checkpoint, dict):
        weights = checkpoint.get("state_dict", checkpoint)
        path = "['state_dict']" if "state_dict" in checkpoint else ""
        found = find_placeholders(weights, path)
        if found:
            where = ", ".join(f"{place} is {placeholder!r}" for place, placeholder in found[:_NAMES_SHOWN])
            raise unsafe_checkpoint_error(fpath, f"holds pickled objects among its weights, not tensors: {where}")
    return checkpoint


def _torch_load(fpath, map_location, **pickle_load_args):
    """``torch.load(weights_only=True)``; for a file that pickles Python objects, the safe
    unpickler, or with ``DASSL_ALLOW_UNSAFE_LOAD=1`` full unpickling (``weights_only=False``)."""
    try:
        return torch.load(fpath, map_location=map_location, weights_only=True, **pickle_load_args)
    except pickle.UnpicklingError:
        pass  # it pickles objects other than tensors and plain data (or it is damaged: see below)
    if _unsafe_load_requested():
        print(
            f'Loading "{fpath}" with full unpickling (weights_only=False, {UNSAFE_LOAD_ENV}=1): it holds '
            "pickled Python objects, and any code they carry runs. Load only files you trust"
        )
        return torch.load(fpath, map_location=map_location, weights_only=False, **pickle_load_args)
    # A damaged file fails here too, and load_checkpoint reports it as damaged.
    return _safe_load(fpath, map_location, **pickle_load_args)


def _format_problem(fpath):
    """What is wrong with the file's format at first sight (a sentence), or None if it looks like a
    torch checkpoint: the zip format (torch >= 1.6) or the legacy pickle format."""
    size = osp.getsize(fpath)
    if size == 0:
        return "is empty (0 bytes)"
    with open(fpath, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        if not zipfile.is_zipfile(fpath):
            return f"is truncated or damaged (an incomplete zip archive of {size:,} bytes)"
        return None
    if head[:1] == b"\x80":  # a pickle: torch's legacy format, checked by torch.load itself
        return None
    return f"is not a PyTorch checkpoint (it starts with {head!r})"


def load_checkpoint(fpath):
    """Load a checkpoint file (a dict), on the CPU when CUDA is unavailable.

    Tries ``torch.load(weights_only=True)`` first. A file that pickles Python objects (Dassl.pytorch
    checkpoints pickle their warmup scheduler objects) is read with the safe unpickler: its tensors
    and plain data load, every other object is an inert ``Placeholder`` (nothing in the file runs),
    and one printed line names the file and the replaced objects. With the environment variable
    ``DASSL_ALLOW_UNSAFE_LOAD=1`` such a file is loaded with ``weights_only=False`` instead, after
    a printed warning: only for files you trust.

    Raises:
        ValueError: ``fpath`` is None.
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is empty, truncated, damaged, not a torch file, or holds
            something other than a dict; the message names the file and what is wrong.
        UnsafeCheckpointError: the safe unpickler cannot rebuild the file, or its weights hold
            pickled objects; the message suggests ``DASSL_ALLOW_UNSAFE_LOAD=1`` for a trusted file.
    """
    if fpath is None:
        raise ValueError("File path is None")
    if not osp.exists(fpath):
        raise FileNotFoundError(f'File is not found at "{fpath}"')

    problem = _format_problem(fpath)
    if problem is not None:
        raise CheckpointError(f'Checkpoint "{fpath}" {problem}')
    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        try:
            checkpoint = _torch_load(fpath, map_location)
        except UnicodeDecodeError:
            # Checkpoints pickled by Python 2.
            checkpoint = _torch_load(fpath, map_location, encoding="latin1")
    except UnsafeCheckpointError:
        print(f'Unable to load checkpoint from "{fpath}"')
        raise
    except Exception as e:
        # torch reports a damaged file as OSError, EOFError, KeyError, RuntimeError ... depending on
        # where the damage is: name the file instead.
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no message'}"
        raise CheckpointError(f'Checkpoint "{fpath}" is truncated or damaged (torch.load failed with {reason})') from e
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'Checkpoint "{fpath}" holds a {type(checkpoint).__name__}, not a checkpoint (a dict)')
    return checkpoint


def load_model_checkpoint(fpath):
    """``load_checkpoint(fpath)``, checked to be a model checkpoint: a dict with a ``state_dict``
    dict and an integer ``epoch`` (what resume and ``load_model`` read).

    Raises:
        CheckpointError: as ``load_checkpoint``, or an entry is missing (named).
    """
    checkpoint = load_checkpoint(fpath)
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f'Checkpoint "{fpath}" is not a model checkpoint: it has no "state_dict" entry')
    if not isinstance(checkpoint.get("epoch"), int):
        raise CheckpointError(f'Checkpoint "{fpath}" is not a model checkpoint: it has no integer "epoch" entry')
    return checkpoint


def load_pretrained_weights(model, weight_path):
    """Load the entries of a checkpoint whose key and size match ``model``'s."""
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


# Dassl's import path of the resume helper (it lives in resume.py with the other resume pieces).
