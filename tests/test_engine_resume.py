"""Resume through train.py on the toy dataset: which checkpoints a run keeps, a resume under a
changed config (refused, or allowed by TRAIN.RESUME_CHANGED_CONFIG), checkpoints without a stored
config, and damaged checkpoints (fallback to the newest intact epoch, or one error line)."""

import math
import os

import pytest
import torch

from tests import test_train_cli
from tests.engine_toys import ToyLinearProbe, toy_argv
from tests.test_train_cli import expect_error
from tests.upstream_files import Payload

# train.py's fixtures: the toy images, and an in-process run returning (status, trainer).
run = test_train_cli.run

COSINE = ("OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "3", "OPTIM.LR_SCHEDULER", "cosine")


def learner_files(out):
    return sorted(os.listdir(os.path.join(out, "linear_probe")))


def load(out, name):
    return torch.load(os.path.join(out, "linear_probe", name), weights_only=True)


def newest_log(out):
    name = sorted(name for name in os.listdir(out) if name.startswith("log.txt"))[-1]
    with open(os.path.join(out, name)) as f:
        return f.read()


@pytest.fixture
def crashed(run, data_root, tmp_path, monkeypatch):
    """A cosine run of 3 epochs (seed 1) that crashed after epoch 1 with CHECKPOINT_FREQ 1:
    returns its OUTPUT_DIR (model.pth.tar-1 and the pointer)."""
    out = str(tmp_path / "out")
    monkeypatch.setattr(ToyLinearProbe, "interrupt_after_epoch", 1)
    assert run(toy_argv(data_root, out, *COSINE, extra_flags=["--seed", "1"]))[0] == 1
    monkeypatch.setattr(ToyLinearProbe, "interrupt_after_epoch", None)
    assert learner_files(out) == ["checkpoint", "model.pth.tar-1"]
    return out


# ---------------------------------------------------------------------------- what a run keeps


def test_a_run_keeps_one_resumable_epoch_the_kept_multiples_and_the_final_model(run, data_root, tmp_path):
    out = str(tmp_path / "out")
    argv = toy_argv(
        data_root, out, "OPTIM.MAX_EPOCH", "5", "TRAIN.CHECKPOINT_FREQ", "2", "TEST.FINAL_MODEL", "best_val"
    )
    assert run(argv)[0] == 0
    assert learner_files(out) == [
        "checkpoint",
        "model-best.pth.tar",
        "model.pth.tar-2",
        "model.pth.tar-4",
        "model.pth.tar-5",
    ]
    assert [load(out, f"model.pth.tar-{n}")["optimizer"] is not None for n in (2, 4, 5)] == [True, True, False]
    assert load(out, "model-best.pth.tar")["optimizer"] is None
    with open(os.path.join(out, "linear_probe", "checkpoint")) as f:
        assert f.read() == "model.pth.tar-5\n"  # never model-best: the pointer names what to resume from


# ---------------------------------------------------------------------------- changed config


def test_a_changed_config_is_refused_naming_every_key_with_both_values(run, data_root, crashed, capsys):
    argv = toy_argv(data_root, crashed, *COSINE, "OPTIM.LR", "0.1", "INPUT.SIZE", "(8, 8)", extra_flags=["--seed", "2"])
    capsys.readouterr()
    err = expect_error(run, capsys, argv)
    path = os.path.join(crashed, "linear_probe", "model.pth.tar-1")
    assert err.startswith(
        f'Error: Cannot resume from "{path}": the config differs from the one it was trained with '
        "(SEED: 1 in the checkpoint, 2 now; OPTIM.LR: 0.05 in the checkpoint, 0.1 now). "
    )
    assert err.endswith("or set TRAIN.RESUME_CHANGED_CONFIG True to continue from its weights under the new config\n")
    assert learner_files(crashed) == ["checkpoint", "model.pth.tar-1"]  # nothing trained


def test_keys_that_do_not_decide_training_may_change(run, data_root, crashed):
    argv = toy_argv(
        data_root,
        crashed,
        *COSINE,
        "TRAIN.PRINT_FREQ",
        "1",
        "DATALOADER.TEST.BATCH_SIZE",
        "2",
        extra_flags=["--seed", "1"],
    )
    status, trainer = run(argv)
    assert status == 0 and sorted(trainer.epoch_lrs) == [1, 2]
    assert "Loaded optimizer\n" in newest_log(crashed)


def test_an_allowed_optim_change_applies_the_new_lr_from_the_resumed_epoch(run, data_root, crashed):
    argv = toy_argv(
        data_root,
        crashed,
        *COSINE,
        "OPTIM.LR",
        "0.1",
        "TRAIN.RESUME_CHANGED_CONFIG",
        "True",
        extra_flags=["--seed", "1"],
    )
    status, trainer = run(argv)
    assert status == 0
    # cosine over 3 epochs from 0.1: the lr the new config gives epochs 2 and 3 (0-based 1, 2).
    expected = {epoch: 0.1 * (1 + math.cos(math.pi * epoch / 3)) / 2 for epoch in (1, 2)}
    assert trainer.epoch_lrs == pytest.approx(expected, rel=1e-12)
    log = newest_log(crashed)
    assert (
        "Warning: resuming under a changed config (TRAIN.RESUME_CHANGED_CONFIG True): OPTIM.LR: 0.05 in the "
        "checkpoint, 0.1 now; since OPTIM changed, the optimizer state starts fresh and the new schedule is "
        "advanced to the resumed epoch\n"
    ) in log
    assert "Loaded model weights\nPrevious epoch: 1\n" in log  # no optimizer or scheduler state loaded


def test_an_allowed_change_outside_optim_keeps_the_optimizer_state(run, data_root, crashed):
    argv = toy_argv(data_root, crashed, *COSINE, "TRAIN.RESUME_CHANGED_CONFIG", "True", extra_flags=["--seed", "7"])
    assert run(argv)[0] == 0
    log = newest_log(crashed)
    assert "(TRAIN.RESUME_CHANGED_CONFIG True): SEED: 1 in the checkpoint, 7 now\n" in log
    assert "Loaded optimizer\nLoaded scheduler\nPrevious epoch: 1\n" in log


def test_a_checkpoint_without_a_config_resumes_with_a_note(run, data_root, crashed):
    path = os.path.join(crashed, "linear_probe", "model.pth.tar-1")
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["config"]  # as written before configs were stored
    torch.save(checkpoint, path)
    assert run(toy_argv(data_root, crashed, *COSINE, "OPTIM.LR", "0.1", extra_flags=["--seed", "1"]))[0] == 0
    log = newest_log(crashed)
    note = (
        f'Note: "{path}" records no config (it was written by an older version): the resumed run cannot be '
        "checked against the config it was trained with\n"
    )
    assert log.count("Note: ") == 1 and note in log and "Previous epoch: 1\n" in log


# ---------------------------------------------------------------------------- pickled objects


def test_a_config_entry_that_is_a_pickled_object_is_one_error_line_and_runs_nothing(run, data_root, crashed, capsys):
    path = os.path.join(crashed, "linear_probe", "model.pth.tar-1")
    checkpoint = torch.load(path, weights_only=True)
    marker = os.path.join(crashed, "MARKER")
    checkpoint["config"] = Payload(marker)
    torch.save(checkpoint, path)
    err = expect_error(run, capsys, toy_argv(data_root, crashed, *COSINE, extra_flags=["--seed", "1"]))
    system = f"{os.system.__module__}.{os.system.__name__}"
    assert err == (
        f'Error: Checkpoint "{path}": its "config" entry is <placeholder for {system}>, '
        "not a config snapshot (a dict)\n"
    )
    assert not os.path.exists(marker)


def test_a_best_val_result_that_is_a_pickled_object_is_ignored_with_a_warning(run, data_root, crashed):
    checkpoint = torch.load(os.path.join(crashed, "linear_probe", "model.pth.tar-1"), weights_only=True)
    marker = os.path.join(crashed, "MARKER")
    checkpoint["val_result"] = Payload(marker)
    best = os.path.join(crashed, "linear_probe", "model-best.pth.tar")
    torch.save(checkpoint, best)
    argv = toy_argv(data_root, crashed, *COSINE, "TEST.FINAL_MODEL", "best_val", extra_flags=["--seed", "1"])
    status, trainer = run(argv)
    assert status == 0 and sorted(trainer.epoch_lrs) == [1, 2]
    system = f"{os.system.__module__}.{os.system.__name__}"
    warning = (
        f'Warning: "{best}" stores its val result as a pickled object (<placeholder for {system}>): '
        "the best val result restarts from this run's epochs\n"
    )
    assert warning in newest_log(crashed)
    assert not os.path.exists(marker)


# ---------------------------------------------------------------------------- damaged checkpoints


def test_a_damaged_last_epoch_resumes_from_the_newest_intact_one(run, data_root, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    opts = (*COSINE, "TRAIN.CHECKPOINT_FREQ", "1")
    monkeypatch.setattr(ToyLinearProbe, "interrupt_after_epoch", 2)
    assert run(toy_argv(data_root, out, *opts))[0] == 1
    monkeypatch.setattr(ToyLinearProbe, "interrupt_after_epoch", None)
    damaged = os.path.join(out, "linear_probe", "model.pth.tar-2")
    with open(damaged, "r+b") as f:
        f.truncate(100)

    status, trainer = run(toy_argv(data_root, out, *opts))
    assert status == 0 and sorted(trainer.epoch_lrs) == [1, 2]
    log = newest_log(out)
    intact = os.path.join(out, "linear_probe", "model.pth.tar-1")
    assert (
        f'Warning: Checkpoint "{damaged}" is truncated or damaged (an incomplete zip archive of 100 bytes). '
        f'Resuming from the newest intact checkpoint "{intact}" (epoch 1) instead\n'
    ) in log
    assert "Previous epoch: 1\n" in log
    assert load(out, "model.pth.tar-2")["epoch"] == 2  # written again


def test_eval_only_on_a_damaged_model_file_is_one_error_line(run, data_root, crashed, tmp_path, capsys):
    path = os.path.join(crashed, "linear_probe", "model.pth.tar-1")
    open(path, "w").close()
    argv = toy_argv(
        data_root, tmp_path / "eval", extra_flags=["--eval-only", "--model-dir", crashed, "--load-epoch", "1"]
    )
    assert expect_error(run, capsys, argv) == f'Error: Checkpoint "{path}" is empty (0 bytes)\n'


def test_no_intact_checkpoint_to_resume_is_one_error_line(run, data_root, crashed, capsys):
    path = os.path.join(crashed, "linear_probe", "model.pth.tar-1")
    with open(path, "w") as f:
        f.write("oops")
    err = expect_error(run, capsys, toy_argv(data_root, crashed, *COSINE, extra_flags=["--seed", "1"]))
    assert err.startswith(f'Error: Cannot resume from "{os.path.dirname(path)}": Checkpoint "{path}" is not a PyTorch')


@pytest.mark.parametrize(
    "saved_batch, saved_world_size, refusal",
    [
        (2, 2, None),  # 2 processes x 2: the same global batch as this process's 4
        (4, 2, "DATALOADER.TRAIN_X.BATCH_SIZE: 4 x 2 processes in the checkpoint, 4 x 1 processes now"),
        (8, 1, "DATALOADER.TRAIN_X.BATCH_SIZE: 8 in the checkpoint, 4 now"),
    ],
)
def test_the_training_batch_is_compared_as_the_global_batch(
    run, data_root, crashed, capsys, saved_batch, saved_world_size, refusal
):
    path = os.path.join(crashed, "linear_probe", "model.pth.tar-1")
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["world_size"] == 1 and checkpoint["config"]["DATALOADER.TRAIN_X.BATCH_SIZE"] == 4
    checkpoint["world_size"], checkpoint["config"]["DATALOADER.TRAIN_X.BATCH_SIZE"] = saved_world_size, saved_batch
    torch.save(checkpoint, path)
    argv = toy_argv(data_root, crashed, *COSINE, extra_flags=["--seed", "1"])
    if refusal is None:
        assert run(argv)[0] == 0
    else:
        assert f"the config differs from the one it was trained with ({refusal})" in expect_error(run, capsys, argv)
