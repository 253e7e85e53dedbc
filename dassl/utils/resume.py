"""Resuming a training run: which checkpoint of a folder to resume from, and restoring it.

The folder's pointer file (``checkpoint``) names the file to resume from; when the pointer or that
file is unusable (empty, missing, damaged), the newest intact ``model.pth.tar-N`` is used and a
warning line says what was skipped.
"""

import os.path as osp

from .safe_unpickle import PlaceholderError, find_placeholders, is_placeholder
from .torchtools import (
    POINTER_NAME,
    CheckpointError,
    load_model_checkpoint,
    model_file_name,
    saved_epochs,
    unsafe_checkpoint_error,
)

__all__ = [
    "find_resume_checkpoint",
    "load_weights",
    "pointed_checkpoint",
    "restore_checkpoint",
    "resume_from_checkpoint",
]


def _pointer_name(fdir):
    """The file name that ``fdir/checkpoint`` holds ("" if it is empty), or None without that file."""
    try:
        with open(osp.join(fdir, POINTER_NAME), errors="replace") as f:
            return f.readline().strip()
    except FileNotFoundError:
        return None


def pointed_checkpoint(fdir):
    """The path the pointer file ``fdir/checkpoint`` names, if that file exists; else None."""
    try:
        name = _pointer_name(fdir)
    except OSError:
        return None
    path = osp.join(fdir, name or "")
    return path if name and osp.isfile(path) else None


def find_resume_checkpoint(fdir):
    """The checkpoint to resume from in ``fdir``: the file the pointer ``fdir/checkpoint`` names,
    or, when the pointer or that file is unusable, the newest intact ``model.pth.tar-N`` (a warning
    line names what was skipped and why).

    Returns:
        (path, checkpoint dict)
    Raises:
        CheckpointError: no intact checkpoint; the message lists every problem found.
    """
    pointer = osp.join(fdir, POINTER_NAME)
    problems, candidates = [], []
    name = _pointer_name(fdir)
    if name is None:
        problems.append(f'there is no pointer file "{pointer}"')
    elif not name:
        problems.append(f'the pointer file "{pointer}" is empty')
    elif not osp.isfile(osp.join(fdir, name)):
        problems.append(f'the pointer file "{pointer}" names "{name}", which does not exist')
    else:
        candidates.append(osp.join(fdir, name))
    for epoch in reversed(saved_epochs(fdir)):
        path = osp.join(fdir, model_file_name(epoch))
        if path not in candidates:
            candidates.append(path)

    for path in candidates:
        try:
            checkpoint = load_model_checkpoint(path)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if problems:
            print(
                f"Warning: {'; '.join(problems)}. Resuming from the newest intact checkpoint "
                f'"{path}" (epoch {checkpoint["epoch"]}) instead'
            )
        return path, checkpoint
    raise CheckpointError(
        f'Cannot resume from "{fdir}": {"; ".join(problems)}; no intact checkpoint is left '
        "(delete the folder to train from scratch)"
    )


def load_weights(model, checkpoint, fpath):
    """``model.load_state_dict(checkpoint["state_dict"])`` (strict).

    Raises:
        CheckpointError: the weights do not fit the model (missing or unexpected keys, other
            shapes); the message names the file and the first differences.
    """
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:
        details = " ".join(line.strip() for line in str(e).splitlines()[:3])
        raise CheckpointError(
            f'Checkpoint "{fpath}" does not fit the model (was it trained with another config?): {details}'
        ) from e


def _refuse_placeholders(state, what, fpath):
    """``UnsafeCheckpointError`` if ``state`` (the file's ``what``) holds a placeholder of the
    safe unpickler: a pickled object where plain data is needed."""
    found = find_placeholders(state, what)
    if found:
        place, placeholder = found[0]
        raise unsafe_checkpoint_error(
            fpath, f"holds a pickled object where plain data is needed: {place} is {placeholder!r}"
        )


def _load_scheduler_state(scheduler, state, fpath):
    """``scheduler.load_state_dict(state)``, after which the scheduler must hold plain data only.

    Dassl.pytorch's warmup state pickles a scheduler object (a placeholder after a safe load),
    whose numbers the warmup scheduler takes; any other placeholder is refused.
    """
    if is_placeholder(state):
        _refuse_placeholders(state, "scheduler", fpath)
    try:
        scheduler.load_state_dict(state)
    except PlaceholderError as e:
        raise unsafe_checkpoint_error(fpath, f"holds a scheduler state that cannot be resumed: {e}") from e
    _refuse_placeholders(scheduler.state_dict(), "scheduler", fpath)


def restore_checkpoint(checkpoint, fpath, model, optimizer=None, scheduler=None):
    """Load a checkpoint's weights into ``model`` and, when given and stored, the optimizer and
    scheduler state; return the number of finished epochs it stores.

    Raises:
        CheckpointError: the stored state does not fit the model or the optimizer (named).
        UnsafeCheckpointError: the optimizer or scheduler state holds a pickled object that the
            safe unpickler left as a placeholder (other than the scheduler object of Dassl.pytorch's
            warmup state, whose numbers the warmup scheduler takes).
    """
    print(f'Loading checkpoint from "{fpath}"')
    load_weights(model, checkpoint, fpath)
    print("Loaded model weights")

    if optimizer is not None and checkpoint.get("optimizer") is not None:
        _refuse_placeholders(checkpoint["optimizer"], "optimizer", fpath)
        try:
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f'Checkpoint "{fpath}": its optimizer state does not fit the optimizer: {e}') from e
        print("Loaded optimizer")

    if scheduler is not None and checkpoint.get("scheduler") is not None:
        _load_scheduler_state(scheduler, checkpoint["scheduler"], fpath)
        print("Loaded scheduler")

    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def resume_from_checkpoint(fdir, model, optimizer=None, scheduler=None):
    """Restore model, optimizer and scheduler from the file ``fdir/checkpoint`` points at (or the
    newest intact epoch, see ``find_resume_checkpoint``).

    Returns:
        int: the number of finished epochs stored in the checkpoint.
    """
    fpath, checkpoint = find_resume_checkpoint(fdir)
    return restore_checkpoint(checkpoint, fpath, model, optimizer, scheduler)
