"""Checkpoint files that go wrong: damaged files and pointers (one error naming the file, resume
falling back to the newest intact epoch), failed writes (the file and the OS reason, no .tmp left),
and what the engine writes: the pointer, weights-only final files, the config snapshot."""

import errno
import os
import re

import pytest
import torch
import torch.nn as nn

from dassl.engine import TrainerBase
from dassl.utils import (
    CheckpointError,
    CheckpointWriteError,
    find_resume_checkpoint,
    load_checkpoint,
    load_model_checkpoint,
    resume_from_checkpoint,
    save_checkpoint,
)


def model_and_optimizer():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def write_epochs(folder, epochs):
    """model.pth.tar-N for each N (weights scaled by N, to tell them apart); the pointer names the last."""
    model, optimizer = model_and_optimizer()
    for epoch in epochs:
        state_dict = {key: value * epoch for key, value in model.state_dict().items()}
        save_checkpoint({"state_dict": state_dict, "epoch": epoch, "optimizer": optimizer.state_dict()}, str(folder))
    return model


def damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "text":
        path.write_text("hello, I am not a checkpoint\n")
    elif how == "list":
        torch.save([1, 2, 3], path)
    elif how == "no_state_dict":
        torch.save({"epoch": 3}, path)
    elif how == "legacy_truncated":
        torch.save({"state_dict": {}, "epoch": 3}, path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[:40])


DAMAGE = {
    "truncated": r"is truncated or damaged \(an incomplete zip archive of [\d,]+ bytes\)",
    "empty": r"is empty \(0 bytes\)",
    "text": r"is not a PyTorch checkpoint \(it starts with b'hell'\)",
    "list": r"holds a list, not a checkpoint \(a dict\)",
    "no_state_dict": r'is not a model checkpoint: it has no "state_dict" entry',
    "legacy_truncated": r"is truncated or damaged \(torch.load failed with \w+: ",
}


# ---------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_file_is_one_error_naming_it_and_what_is_wrong(tmp_path, how):
    write_epochs(tmp_path, [3])
    path = tmp_path / "model.pth.tar-3"
    damage(path, how)
    with pytest.raises(CheckpointError) as err:
        load_model_checkpoint(str(path))
    message = str(err.value)
    assert re.fullmatch(f'Checkpoint "{re.escape(str(path))}" {DAMAGE[how]}.*', message), message
    assert "\n" not in message


@pytest.mark.parametrize("how", ["truncated", "empty", "text"])
def test_resume_falls_back_to_the_newest_intact_epoch_and_says_so(tmp_path, capsys, how):
    write_epochs(tmp_path, [1, 2, 3])
    damage(tmp_path / "model.pth.tar-3", how)
    model, optimizer = model_and_optimizer()
    assert resume_from_checkpoint(str(tmp_path), model, optimizer) == 2
    out = capsys.readouterr().out
    (warning,) = [line for line in out.splitlines() if line.startswith("Warning:")]
    assert f'Checkpoint "{tmp_path / "model.pth.tar-3"}" ' in warning
    assert warning.endswith(
        f'Resuming from the newest intact checkpoint "{tmp_path / "model.pth.tar-2"}" (epoch 2) instead'
    )
    reference = write_epochs(tmp_path / "ref", [2])
    torch.testing.assert_close(model.weight, reference.weight * 2, rtol=0, atol=0)  # both: weight x 2, exact


@pytest.mark.parametrize(
    "pointer, problem",
    [
        ("", r'the pointer file "{}" is empty'),
        ("model.pth.tar-9\n", r'the pointer file "{}" names "model.pth.tar-9", which does not exist'),
        (None, r'there is no pointer file "{}"'),
    ],
)
def test_a_broken_pointer_falls_back_to_the_newest_epoch(tmp_path, capsys, pointer, problem):
    write_epochs(tmp_path, [1, 2])
    pointer_path = tmp_path / "checkpoint"
    if pointer is None:
        pointer_path.unlink()
    else:
        pointer_path.write_text(pointer)
    capsys.readouterr()
    path, checkpoint = find_resume_checkpoint(str(tmp_path))
    assert (path, checkpoint["epoch"]) == (str(tmp_path / "model.pth.tar-2"), 2)
    warning = capsys.readouterr().out
    assert re.match("Warning: " + problem.format(re.escape(str(pointer_path))) + r"\. Resuming from", warning)


def test_no_intact_checkpoint_is_an_error_listing_every_problem(tmp_path):
    write_epochs(tmp_path, [1, 2])
    damage(tmp_path / "model.pth.tar-1", "empty")
    damage(tmp_path / "model.pth.tar-2", "truncated")
    with pytest.raises(CheckpointError) as err:
        find_resume_checkpoint(str(tmp_path))
    message = str(err.value)
    assert message.startswith(
        f'Cannot resume from "{tmp_path}": Checkpoint "{tmp_path / "model.pth.tar-2"}" is truncated'
    )
    assert f'Checkpoint "{tmp_path / "model.pth.tar-1"}" is empty (0 bytes)' in message
    assert message.endswith("no intact checkpoint is left (delete the folder to train from scratch)")


def test_weights_that_do_not_fit_the_model_are_named(tmp_path):
    write_epochs(tmp_path, [1])
    with pytest.raises(CheckpointError) as err:
        resume_from_checkpoint(str(tmp_path), nn.Linear(5, 2))
    message = str(err.value)
    assert message.startswith(f'Checkpoint "{tmp_path / "model.pth.tar-1"}" does not fit the model')
    assert "size mismatch for weight" in message


# ---------------------------------------------------------------------------- failed writes


def saved_state():
    model, optimizer = model_and_optimizer()
    return {"state_dict": model.state_dict(), "epoch": 2, "optimizer": optimizer.state_dict()}


def test_disk_full_names_the_file_and_removes_the_tmp_file(tmp_path):
    """A real ENOSPC: the temporary file is a link to /dev/full, where every write fails."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    write_epochs(tmp_path, [1])
    tmp_file = tmp_path / "model.pth.tar-2.tmp"
    tmp_file.symlink_to("/dev/full")
    with pytest.raises(CheckpointWriteError) as err:
        save_checkpoint(saved_state(), str(tmp_path))
    assert str(err.value) == f'Cannot write checkpoint "{tmp_path / "model.pth.tar-2"}": No space left on device'
    assert not tmp_file.exists() and not tmp_file.is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.pth.tar-1"]
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-1\n"  # still the intact epoch


def test_disk_full_while_torch_writes(tmp_path, monkeypatch):
    def full_disk(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError, match=r'"[^"]*model.pth.tar-2": No space left on device$'):
        save_checkpoint(saved_state(), str(tmp_path))
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_names_the_file(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(CheckpointWriteError) as err:
            save_checkpoint(saved_state(), str(tmp_path))
    finally:
        tmp_path.chmod(0o755)
    assert str(err.value) == f'Cannot write checkpoint "{tmp_path / "model.pth.tar-2"}": Permission denied'
    assert os.listdir(tmp_path) == []


def test_a_folder_that_cannot_be_created_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointWriteError, match=r'Cannot create the checkpoint folder ".*file/learner": '):
        save_checkpoint(saved_state(), str(tmp_path / "file" / "learner"))


def test_an_interrupted_write_leaves_no_tmp_file(tmp_path, monkeypatch):
    def interrupted(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(saved_state(), str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_a_named_file_may_leave_the_pointer_alone(tmp_path):
    write_epochs(tmp_path, [1])
    state = saved_state()
    save_checkpoint(state, str(tmp_path), model_name="model-best.pth.tar", update_pointer=False)
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-1\n"
    assert load_checkpoint(str(tmp_path / "model-best.pth.tar"))["epoch"] == 2


# ---------------------------------------------------------------------------- what the engine writes


class Registered(TrainerBase):
    def __init__(self):
        super().__init__()
        self.model, self.optim = model_and_optimizer()
        self.register_model("learner", self.model, self.optim, None)


def test_resumable_checkpoints_keep_the_optimizer_and_final_ones_do_not(tmp_path):
    trainer = Registered()
    trainer.save_model(0, str(tmp_path))
    trainer.save_model(1, str(tmp_path), resumable=False)
    trainer.save_model(1, str(tmp_path), model_name="model-best.pth.tar", resumable=False)
    folder = tmp_path / "learner"
    resumable, final, best = (
        torch.load(folder / name, weights_only=True)
        for name in ("model.pth.tar-1", "model.pth.tar-2", "model-best.pth.tar")
    )
    momentum = resumable["optimizer"]["state"][0]["momentum_buffer"]
    assert momentum.shape == trainer.model.weight.shape
    assert final["optimizer"] is None and best["optimizer"] is None
    assert final["config"] is None  # a TrainerBase without cfg stores none
    assert (folder / "checkpoint").read_text() == "model.pth.tar-2\n"  # the best file never moves it
    # The final file holds the weights only: about half the resumable one (SGD momentum = weights).
    assert os.path.getsize(folder / "model.pth.tar-2") < os.path.getsize(folder / "model.pth.tar-1")


def test_superseded_epochs_are_removed_except_the_kept_multiples(tmp_path):
    trainer = Registered()
    for epoch in range(5):
        trainer.save_model(epoch, str(tmp_path))
        trainer.remove_superseded_checkpoints(epoch, str(tmp_path), keep_every=2)
    assert sorted(os.listdir(tmp_path / "learner")) == [
        "checkpoint",
        "model.pth.tar-2",
        "model.pth.tar-4",
        "model.pth.tar-5",
    ]
    trainer.remove_superseded_checkpoints(5, str(tmp_path), keep_every=0)  # after a sixth epoch
    assert sorted(os.listdir(tmp_path / "learner")) == ["checkpoint"]
    assert trainer.last_checkpoint(str(tmp_path)) is None  # the pointer names a removed file
