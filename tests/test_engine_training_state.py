"""A trainer's own state in resumable checkpoints (``training_state`` / ``load_training_state`` of
dassl/engine/checkpointing.py), through train.py on the toy dataset: a toy trainer that keeps the
sum of its weights over the finished epochs ends a crashed-and-resumed run with the sum of the
weights its epochs saved, as an uninterrupted run does; only resumable files hold the state."""

import os

import pytest
import torch

from dassl.engine import TRAINER_REGISTRY
from tests import test_train_cli
from tests.engine_toys import ToyLinearProbe, toy_argv

# train.py in-process, returning (status, trainer); the toy images are conftest's data_root.
run = test_train_cli.run

# Three epochs, every epoch file kept: the per-epoch weights stay readable.
OPTS = ("OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_FREQ", "1")


@TRAINER_REGISTRY.register()
class ToyWeightSum(ToyLinearProbe):
    """ToyLinearProbe that adds its weight matrix to ``weight_sum`` after every epoch."""

    restored = []  # (state, epoch) of every load_training_state call

    def build_model(self):
        super().build_model()
        self.weight_sum = torch.zeros_like(self.model.weight)
        self.epochs_summed = 0

    def after_epoch(self):
        self.weight_sum += self.model.weight.detach()
        self.epochs_summed += 1
        super().after_epoch()

    def training_state(self):
        return {"weight_sum": self.weight_sum.cpu(), "epochs": self.epochs_summed}

    def load_training_state(self, state, epoch):
        ToyWeightSum.restored.append((state, epoch))
        if state is None:  # a final model: training is over
            return
        self.weight_sum = state["weight_sum"].to(self.device, copy=True)
        self.epochs_summed = state["epochs"]


def argv(data_root, out):
    return toy_argv(data_root, out, *OPTS, extra_flags=["--seed", "1", "--trainer", "ToyWeightSum"])


def saved(out, epoch):
    return torch.load(os.path.join(out, "linear_probe", f"model.pth.tar-{epoch}"), weights_only=True)


@pytest.fixture(autouse=True)
def no_restores(monkeypatch):
    monkeypatch.setattr(ToyWeightSum, "restored", [])


def test_a_resumed_run_ends_with_the_state_of_its_saved_epochs(run, data_root, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    monkeypatch.setattr(ToyLinearProbe, "interrupt_after_epoch", 1)
    assert run(argv(data_root, out))[0] == 1  # crashed after epoch 1 was saved
    monkeypatch.setattr(ToyLinearProbe, "interrupt_after_epoch", None)
    status, trainer = run(argv(data_root, out))
    assert status == 0

    ((state, epoch),) = ToyWeightSum.restored
    assert epoch == 1 and state["epochs"] == 1
    torch.testing.assert_close(state["weight_sum"], saved(out, 1)["state_dict"]["weight"], rtol=0, atol=0)
    expected = sum(saved(out, e)["state_dict"]["weight"] for e in (1, 2, 3))
    assert trainer.epochs_summed == 3
    torch.testing.assert_close(trainer.weight_sum, expected, rtol=1e-6, atol=1e-7)


def test_an_uninterrupted_run_sums_the_same_way_and_final_files_hold_no_state(run, data_root, tmp_path):
    out = str(tmp_path / "out")
    status, trainer = run(argv(data_root, out))
    assert status == 0 and ToyWeightSum.restored == []  # nothing to resume
    expected = sum(saved(out, e)["state_dict"]["weight"] for e in (1, 2, 3))
    torch.testing.assert_close(trainer.weight_sum, expected, rtol=1e-6, atol=1e-7)
    assert saved(out, 2)["training_state"]["epochs"] == 2  # resumable
    assert "training_state" not in saved(out, 3)  # the final model: nothing resumes from it

    # Resuming the finished run restores its weights; the final file gives the hook None.
    status, _ = run(argv(data_root, out))
    assert status == 0 and ToyWeightSum.restored == [(None, 3)]


def test_a_trainer_without_state_writes_none(run, data_root, tmp_path):
    out = str(tmp_path / "out")
    assert run(toy_argv(data_root, out, *OPTS))[0] == 0
    assert "training_state" not in saved(out, 1)
