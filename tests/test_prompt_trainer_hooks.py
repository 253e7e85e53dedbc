"""The shared training step of PromptTrainer (trainers/base.py): loss terms as data, each logged,
summed with their weights; reference gradients and the alter_gradients hook; the freezing hook.

Three small methods, each a subclass of CoOp in a few lines (what docs/adding_a_method.md
promises), on the engine's ToyColors images with the tiny CLIP (CPU, fp32).
"""

import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY
from dassl.utils import set_random_seed
from tests.engine_toys import build_from_argv as build
from tests.engine_toys import run_train_py, tiny_clip_argv
from trainers.base import weighted_loss
from trainers.coop import CoOp, CoOpCLIP
from trainers.prompting import LossTerm, TrainingOutput

EXTRA_WEIGHT = 0.5


class NormPenaltyCLIP(CoOpCLIP):
    """CoOp plus a penalty on the context's squared norm, weight ``weight`` (a TrainingOutput)."""

    weight = EXTRA_WEIGHT

    def forward(self, image):
        logits = super().forward(image)
        if not self.training_step:
            return logits
        penalty = self.prompt_learner.ctx.float().pow(2).sum()
        return TrainingOutput(logits, {"loss_norm": LossTerm(penalty, self.weight)})


class LoggedOnlyCLIP(NormPenaltyCLIP):
    weight = 0.0


def _trainer(name, model_class, **attributes):
    """Register a CoOp subclass called ``name`` whose prompted model is ``model_class``."""

    def build_prompted_model(self, clip_model, classnames):
        coop = CoOp.build_prompted_model(self, clip_model, classnames)
        return model_class(clip_model, coop.prompt_learner)

    cls = type(name, (CoOp,), {"build_prompted_model": build_prompted_model, **attributes})
    if name not in TRAINER_REGISTRY:
        TRAINER_REGISTRY.register(cls)
    return cls


class _Recorder:
    references = None


def _record_and_zero(self, references):
    """alter_gradients of HookedCoOp: keep the references, then zero the gradients."""
    _Recorder.references = references
    for param in self.trainable_parameters():
        param.grad.zero_()


_trainer("NormPenaltyCoOp", NormPenaltyCLIP)
_trainer("LoggedOnlyCoOp", LoggedOnlyCLIP)
_trainer("HookedCoOp", NormPenaltyCLIP, REFERENCE_TERMS=("loss_norm",), alter_gradients=_record_and_zero)
_trainer("HalfFrozenCoOp", CoOpCLIP, is_trainable=lambda self, name: False)


def argv(data_root, output_dir, clip_path, trainer, *opts):
    set_random_seed(1)  # the same random context for every trainer built from these arguments
    return tiny_clip_argv(
        data_root, output_dir, clip_path, trainer, "TRAINER.COOP.N_CTX", "4", "OPTIM.WEIGHT_DECAY", "0", *opts
    )


def one_step(trainer):
    """(summary, ctx before, ctx after, gradient of the step) of one training step."""
    trainer.batch_idx, trainer.num_batches = 0, 2
    trainer.set_model_mode("train")
    set_random_seed(2)  # the same batch for every trainer
    batch = next(iter(trainer.train_loader_x))
    ctx = trainer.model.prompt_learner.ctx
    before = ctx.detach().clone()
    summary = trainer.forward_backward(batch)
    return summary, before, ctx.detach().clone(), ctx.grad.detach().clone(), batch


def reference_loss(trainer, batch, ctx, weight):
    """CE of CoOp's logits + weight * |ctx|^2, from the prompted model at ``ctx``."""
    learner = trainer.model.prompt_learner
    with torch.no_grad():
        learner.ctx.copy_(ctx)
    logits = CoOpCLIP.forward(trainer.model, batch["img"])
    return F.cross_entropy(logits, batch["label"]) + weight * learner.ctx.pow(2).sum()


def test_extra_terms_are_summed_with_their_weights_and_logged(data_root, clip_path, tmp_path):
    trainer = build(argv(data_root, tmp_path, clip_path, "NormPenaltyCoOp"))
    summary, before, after, grad, batch = one_step(trainer)
    assert list(summary) == ["loss", "loss_ce", "loss_norm", "acc"]
    assert summary["loss"] == pytest.approx(summary["loss_ce"] + EXTRA_WEIGHT * summary["loss_norm"], rel=1e-6)

    trainer.model.prompt_learner.ctx.grad = None
    expected = reference_loss(trainer, batch, before, EXTRA_WEIGHT)
    expected.backward()
    assert expected.item() == pytest.approx(summary["loss"], rel=1e-6)
    torch.testing.assert_close(grad, trainer.model.prompt_learner.ctx.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(after, before - 0.05 * grad)  # SGD, lr 0.05, no momentum buffer yet


def test_a_zero_weight_term_is_logged_but_not_optimised(data_root, clip_path, tmp_path):
    plain = build(argv(data_root, tmp_path / "plain", clip_path, "CoOp"))
    logged = build(argv(data_root, tmp_path / "logged", clip_path, "LoggedOnlyCoOp"))
    plain_summary, _, plain_after, _, _ = one_step(plain)
    summary, _, after, _, _ = one_step(logged)
    assert list(plain_summary) == ["loss", "acc"]  # CoOp's iteration line is unchanged
    assert summary["loss"] == summary["loss_ce"] == plain_summary["loss"] and summary["loss_norm"] > 0
    torch.testing.assert_close(after, plain_after, rtol=0, atol=0)


def test_weighted_loss_refuses_terms_that_are_all_unoptimised():
    with pytest.raises(ValueError, match="No loss term is optimised"):
        weighted_loss({"loss_x": LossTerm(torch.tensor(1.0), 0.0)})


def test_alter_gradients_receives_the_reference_gradients_before_the_step(data_root, clip_path, tmp_path):
    trainer = build(argv(data_root, tmp_path, clip_path, "HookedCoOp"))
    summary, before, after, grad, _ = one_step(trainer)
    (reference,) = _Recorder.references["loss_norm"]
    torch.testing.assert_close(reference, 2 * before)  # d|ctx|^2 / d ctx
    assert not grad.any()  # the hook's change reached the step: zero gradients, no update
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert summary["loss"] == pytest.approx(summary["loss_ce"] + EXTRA_WEIGHT * summary["loss_norm"], rel=1e-6)


def test_is_trainable_freezes_learner_tensors(data_root, clip_path, tmp_path, capsys):
    trainer = build(argv(data_root, tmp_path, clip_path, "HalfFrozenCoOp"))
    assert not any(p.requires_grad for p in trainer.model.parameters())
    assert "Trainable parameters (prompt learner): 0" in capsys.readouterr().out


def test_the_iteration_line_names_each_term(data_root, clip_path, tmp_path):
    assert run_train_py(argv(data_root, tmp_path, clip_path, "NormPenaltyCoOp", "TRAIN.PRINT_FREQ", "1")) == 0
    with open(osp.join(tmp_path, "log.txt")) as f:
        lines = [line for line in f if line.startswith("epoch [")]
    assert lines and all(" loss_ce " in line and " loss_norm " in line and " acc " in line for line in lines)
