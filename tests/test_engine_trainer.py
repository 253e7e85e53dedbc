"""dassl.engine.trainer: the model registry API and the train() lifecycle."""

import pytest
import torch
import torch.nn as nn

from dassl.engine import TrainerBase


class Recorder(TrainerBase):
    """A TrainerBase that records its hook calls; before_train resumes at ``resume_at``."""

    def __init__(self, resume_at=0):
        super().__init__()
        self.calls = []
        self.resume_at = resume_at

    def before_train(self):
        self.calls.append("before_train")
        self.start_epoch = self.resume_at

    def before_epoch(self):
        self.calls.append(f"before_epoch {self.epoch}")

    def run_epoch(self):
        self.calls.append(f"run_epoch {self.epoch}")

    def after_epoch(self):
        self.calls.append(f"after_epoch {self.epoch}")

    def after_train(self):
        self.calls.append("after_train")


def test_train_calls_the_hooks_in_order_and_reads_the_range_after_before_train():
    trainer = Recorder(resume_at=1)
    trainer.train(0, 3)
    assert trainer.calls == [
        "before_train",
        "before_epoch 1",
        "run_epoch 1",
        "after_epoch 1",
        "before_epoch 2",
        "run_epoch 2",
        "after_epoch 2",
        "after_train",
    ]
    assert trainer.epoch == 2


def test_no_epoch_when_resuming_a_finished_run():
    trainer = Recorder(resume_at=3)
    trainer.epoch = 0
    trainer.train(0, 3)
    assert trainer.calls == ["before_train", "after_train"]
    assert trainer.epoch == 0


def make_registered(lr=0.1):
    trainer = TrainerBase()
    model = nn.Linear(2, 1)
    optim = torch.optim.SGD(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(optim, step_size=1, gamma=0.5)
    trainer.register_model("model", model, optim, sched)
    trainer.register_model("frozen", nn.Linear(1, 1))
    return trainer, model, optim, sched


def test_register_model_rules():
    class Early(TrainerBase):
        def __init__(self):
            self.register_model("model", nn.Linear(1, 1))

    with pytest.raises(AttributeError, match="Cannot assign model before super\\(\\).__init__\\(\\) call"):
        Early()
    trainer, *_ = make_registered()
    with pytest.raises(ValueError, match="Found duplicate model names"):
        trainer.register_model("model", nn.Linear(1, 1))


def test_get_model_names():
    trainer, *_ = make_registered()
    assert trainer.get_model_names() == ["model", "frozen"]
    assert trainer.get_model_names("frozen") == ["frozen"]
    with pytest.raises(KeyError, match="not registered"):
        trainer.get_model_names(["missing"])


def test_set_model_mode_touches_registered_modules_only():
    trainer, model, *_ = make_registered()
    outside = nn.Linear(1, 1)
    outside.eval()
    trainer.set_model_mode("eval")
    assert not model.training
    trainer.set_model_mode("train")
    assert model.training and not outside.training
    trainer.set_model_mode("test", names="model")
    assert not model.training
    with pytest.raises(KeyError):
        trainer.set_model_mode("predict")


def test_backward_and_update_steps_only_the_optimizers_and_update_lr_steps_schedulers():
    trainer, model, optim, sched = make_registered(lr=0.1)
    before = model.weight.detach().clone()
    x = torch.tensor([[1.0, 2.0]])
    loss = model(x).sum()
    trainer.model_backward_and_update(loss)
    torch.testing.assert_close(model.weight, before - 0.1 * x)
    assert optim.param_groups[0]["lr"] == 0.1  # no automatic scheduler step
    trainer.update_lr()
    assert optim.param_groups[0]["lr"] == 0.05


def test_detect_anomaly():
    trainer, model, *_ = make_registered()
    for bad in (torch.tensor(float("nan")), torch.tensor([1.0, float("inf")])):
        with pytest.raises(FloatingPointError, match="Loss is infinite or NaN!"):
            trainer.model_backward(bad.requires_grad_())
    trainer.detect_anomaly(torch.tensor(1.0))


def test_write_scalar_without_writer_is_a_no_op():
    trainer = TrainerBase()
    trainer.write_scalar("test/accuracy", 1.0, 0)
    trainer.close_writer()
    assert trainer._writer is None
