"""Checkpoints of a trainer: what is written, what is kept, resume, and loading a model to test.

``CheckpointMixin`` is part of ``TrainerBase``; it reads the registry (``_models``, ``_optims``,
``_scheds``) and, when the trainer has one, ``cfg``.

What a checkpoint holds: ``state_dict``, ``epoch`` (finished epochs), ``optimizer``,
``scheduler``, ``val_result`` and ``config`` (every config key as plain data, to detect a resume
under a changed config). A resumable checkpoint keeps the optimizer state (SGD momentum: as many
numbers as the weights) and, for a trainer that has some, its own training state
(``training_state``: e.g. a running average of the weights over epochs); the final model and
``model-best.pth.tar`` keep only the weights and the schedule, since nothing resumes from them
mid-training.

A trainer with state of its own that a resumed run needs overrides the pair of hooks
``training_state()`` (what to store: plain containers of tensors and numbers) and
``load_training_state(state, epoch)`` (restore it on resume).
"""

import os
import os.path as osp
import warnings

from yacs.config import CfgNode

from dassl.config import ConfigError, config_differences, config_snapshot
from dassl.utils import (
    POINTER_NAME,
    CheckpointError,
    find_model_file,
    find_resume_checkpoint,
    get_world_size,
    is_main_process,
    load_model_checkpoint,
    load_weights,
    model_file_name,
    pointed_checkpoint,
    restore_checkpoint,
    save_checkpoint,
    saved_epochs,
    synchronize,
)

__all__ = ["RESUME_CHECKED_KEYS", "TRAINING_STATE_KEY", "CheckpointMixin"]

# The config keys (full keys, and nodes ending with ".") that must be unchanged to resume: those
# that decide what the saved weights, optimizer state and schedule mean. Paths, worker counts,
# printing and evaluation settings may change.
RESUME_CHECKED_KEYS = (
    "SEED",
    "DATASET.NAME",
    "DATASET.NUM_SHOTS",
    "DATASET.SUBSAMPLE_CLASSES",
    "DATASET.SOURCE_DOMAINS",
    "DATASET.TARGET_DOMAINS",
    "INPUT.",
    "DATALOADER.TRAIN_X.",
    "DATALOADER.K_TRANSFORMS",
    "MODEL.BACKBONE.NAME",
    "OPTIM.",
    "TRAINER.",
    "LOSS.",  # a loss node some methods add at the top level (ProGrad's, as in its copy of Dassl)
)


# The entry of a resumable checkpoint that holds the trainer's own state (``training_state()``).
TRAINING_STATE_KEY = "training_state"


def _format_val_result(val_result):
    """``{:.1f}`` for a number, ``None`` otherwise (Dassl crashes on a missing val result)."""
    if isinstance(val_result, (int, float)) and not isinstance(val_result, bool):
        return f"{val_result:.1f}"
    return "None"


def _format_value(value):
    return repr(value) if isinstance(value, str) else str(value)


def _describe_differences(changed, stored, cfg, saved_world_size):
    """``changed`` ([(key, old, new)] from ``config_differences``) with formatted values, where the
    training batch counts as the global batch (per-process batch x processes: a checkpoint of 2
    processes x 2 resumes in 1 process x 4, not in 2 x 4)."""
    batch_key, world_size = "DATALOADER.TRAIN_X.BATCH_SIZE", get_world_size()
    described = [(key, _format_value(old), _format_value(new)) for key, old, new in changed if key != batch_key]
    old, new = stored.get(batch_key), cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    if old is not None and old * saved_world_size != new * world_size:
        if saved_world_size == world_size:
            described.append((batch_key, str(old), str(new)))
        else:
            described.append((batch_key, f"{old} x {saved_world_size} processes", f"{new} x {world_size} processes"))
    return described


class CheckpointMixin:
    """Checkpoint methods of TrainerBase (Dassl's API, plus the retention and resume checks)."""

    def _run_config(self):
        cfg = self.__dict__.get("cfg")
        return cfg if isinstance(cfg, CfgNode) else None

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name="", resumable=True):
        """Save every registered model (with its optimizer and scheduler) under ``directory/{name}``.

        ``epoch`` is 0-based; the file stores ``epoch + 1``, the number of finished epochs. With
        ``resumable`` False the optimizer state is left out (a final or best model), and a file
        saved under its own ``model_name`` then does not move the resume pointer. Only the main
        process writes; in a distributed run every process calls this and waits until the files
        are written, so that any process may load them afterwards.
        """
        if is_main_process():
            self._write_checkpoints(epoch, directory, is_best, val_result, model_name, resumable)
        synchronize()

    def _write_checkpoints(self, epoch, directory, is_best, val_result, model_name, resumable=True):
        cfg = self._run_config()
        training_state = self.training_state() if resumable else None
        for name in self.get_model_names():
            optim = self._optims[name]
            sched = self._scheds[name]
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None and resumable else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
                "config": config_snapshot(cfg) if cfg is not None else None,
                "world_size": get_world_size(),  # the training batch of the config is per process
            }
            if training_state is not None:  # each resumable file is complete on its own
                state[TRAINING_STATE_KEY] = training_state
            save_checkpoint(
                state,
                osp.join(directory, name),
                is_best=is_best,
                model_name=model_name,
                update_pointer=resumable or not model_name,
            )

    def training_state(self):
        """Hook: the trainer's own state that a resumed run needs besides the weights, the optimizer
        and the schedule (e.g. a running average of the weights over the finished epochs), or None
        (the default: nothing).

        Called when a resumable checkpoint is written (after each epoch but the last); the value
        is stored in every registered model's file under ``training_state``. Keep it to plain
        containers (dicts, lists, tuples) of tensors, numbers and strings: checkpoints load with
        ``torch.load(weights_only=True)``. Tensors are best moved to the CPU.
        """
        return None

    def load_training_state(self, state, epoch):
        """Hook: restore what ``training_state()`` returned, when a run resumes.

        Args:
            state: the stored value (tensors on the CPU, or where ``load_checkpoint`` maps them),
                or None when the checkpoint holds none: a final model (``epoch`` is then
                ``max_epoch``), or a file written by a trainer or version without such state.
            epoch: the number of finished epochs of the checkpoint.
        Called once per resume, after every registered model's weights, optimizer and scheduler
        are restored. Default: nothing (a trainer without state of its own).
        """

    def remove_superseded_checkpoints(self, epoch, directory, keep_every=0):
        """Delete ``model.pth.tar-K`` for K < ``epoch + 1`` (0-based ``epoch``, just saved) unless K
        is a multiple of ``keep_every`` (> 0). Main process only; a file that is already gone is
        fine."""
        if not is_main_process():
            return
        for name in self.get_model_names():
            folder = osp.join(directory, name)
            for saved in saved_epochs(folder):
                if saved < epoch + 1 and not (keep_every > 0 and saved % keep_every == 0):
                    try:
                        os.remove(osp.join(folder, model_file_name(saved)))
                    except FileNotFoundError:
                        pass

    def last_checkpoint(self, directory):
        """The file the first registered model's resume pointer names under ``directory``, or None."""
        names = self.get_model_names()
        return pointed_checkpoint(osp.join(directory, names[0])) if names else None

    def has_checkpoint(self, directory):
        """Whether ``directory/{name}`` holds a resume pointer or a ``model.pth.tar-N`` for every
        registered model (a folder left empty by a failed first save holds none)."""
        names = self.get_model_names()
        return bool(names) and all(
            osp.isfile(osp.join(directory, name, POINTER_NAME)) or saved_epochs(osp.join(directory, name))
            for name in names
        )

    def resume_model_if_exist(self, directory):
        """Resume every registered model from ``directory/{name}``; return the finished epochs (0 if none).

        Each folder's pointer names the file (the newest intact epoch replaces a damaged one, with a
        warning); ``check_resume_config`` decides whether the optimizer and scheduler state are
        restored with the weights. Then the trainer's own state goes to ``load_training_state``.
        """
        if not self.has_checkpoint(directory):
            print("No checkpoint found, train from scratch")
            return 0

        print(f"Found checkpoint at {directory} (will resume training)")
        epochs, training_states = {}, []
        for name in self.get_model_names():
            fpath, checkpoint = find_resume_checkpoint(osp.join(directory, name))
            training_states.append(checkpoint.get(TRAINING_STATE_KEY))
            keep_state = self.check_resume_config(fpath, checkpoint)
            optim, sched = self._optims[name], self._scheds[name]
            epoch = restore_checkpoint(
                checkpoint, fpath, self._models[name], optim if keep_state else None, sched if keep_state else None
            )
            if not keep_state and sched is not None:
                with warnings.catch_warnings():  # torch warns about a scheduler step before any optimizer step
                    warnings.simplefilter("ignore")
                    for _ in range(epoch):
                        sched.step()
            elif (
                optim is not None and checkpoint.get("optimizer") is None and epoch < self.__dict__.get("max_epoch", 0)
            ):
                print(f'Note: "{fpath}" holds no optimizer state (a final model): the optimizer state starts fresh')
            epochs[name] = epoch
        if len(set(epochs.values())) > 1:
            raise CheckpointError(
                f"Cannot resume from {directory}: the models' checkpoints are from different epochs {epochs}"
            )
        epoch = next(iter(epochs.values()))
        self.load_training_state(training_states[0], epoch)  # the same in every file of an epoch
        return epoch

    def check_resume_config(self, fpath, checkpoint):
        """Compare the config stored in the checkpoint ``fpath`` with this run's (RESUME_CHECKED_KEYS).

        Returns:
            bool: whether the checkpoint's optimizer and scheduler state are restored. False only
            when an OPTIM key changed and TRAIN.RESUME_CHANGED_CONFIG allows it: the new optimizer
            and schedule then apply, advanced to the resumed epoch.
        Raises:
            ConfigError: a checked key changed and TRAIN.RESUME_CHANGED_CONFIG is False; the
                message names every changed key with both values.
            CheckpointError: the stored config is not a config snapshot (a placeholder of the
                safe unpickler, say).
        """
        cfg = self._run_config()
        if cfg is None:
            return True
        stored = checkpoint.get("config")
        if stored is None:
            print(
                f'Note: "{fpath}" records no config (it was written by an older version): the resumed '
                "run cannot be checked against the config it was trained with"
            )
            return True
        if not isinstance(stored, dict):
            raise CheckpointError(
                f'Checkpoint "{fpath}": its "config" entry is {stored!r}, not a config snapshot (a dict)'
            )
        changed = _describe_differences(
            config_differences(stored, cfg, RESUME_CHECKED_KEYS), stored, cfg, checkpoint.get("world_size", 1)
        )
        if not changed:
            return True
        listing = "; ".join(f"{key}: {old} in the checkpoint, {new} now" for key, old, new in changed)
        if not cfg.TRAIN.RESUME_CHANGED_CONFIG:
            raise ConfigError(
                f'Cannot resume from "{fpath}": the config differs from the one it was trained with ({listing}). '
                "Run with the checkpoint's values, choose another --output-dir, or set "
                "TRAIN.RESUME_CHANGED_CONFIG True to continue from its weights under the new config"
            )
        optim_changed = any(key.startswith("OPTIM.") for key, _, _ in changed)
        print(
            f"Warning: resuming under a changed config (TRAIN.RESUME_CHANGED_CONFIG True): {listing}"
            + (
                "; since OPTIM changed, the optimizer state starts fresh and the new schedule is "
                "advanced to the resumed epoch"
                if optim_changed
                else ""
            )
        )
        return not optim_changed

    def load_model(self, directory, epoch=None):
        """Load ``model-best.pth.tar`` (or ``model.pth.tar-{epoch}``) into every registered model."""
        if not directory:
            print(
                "Note that load_model() is skipped as no pretrained model is given "
                "(ignore this if it's done on purpose)"
            )
            return

        for name in self.get_model_names():
            self.load_model_file(name, find_model_file(directory, name, epoch))

    def load_model_file(self, name, model_path):
        """Load the model file ``model_path`` into the registered model ``name`` (strict).

        The one step of ``load_model`` that a trainer with its own checkpoint format overrides.
        """
        checkpoint = load_model_checkpoint(model_path)
        print(
            "Load {} to {} (epoch={}, val_result={})".format(
                model_path, name, checkpoint["epoch"], _format_val_result(checkpoint.get("val_result"))
            )
        )
        load_weights(self._models[name], checkpoint, model_path)
