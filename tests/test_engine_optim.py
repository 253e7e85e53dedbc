"""dassl.optim: optimizers, lr schedules with warmup and the scheduler
fixes (builds on current torch, plain-data state, in-place resume)."""

import io

import pytest
import torch
import torch.nn as nn

from dassl.config import get_cfg_default
from dassl.optim import ConstantWarmupScheduler, LinearWarmupScheduler, build_lr_scheduler, build_optimizer
from dassl.utils.safe_unpickle import Placeholder, PlaceholderError, load_torch_file
from tests.engine_toys import align_lr


def optim_cfg(**overrides):
    cfg = get_cfg_default().OPTIM
    cfg.NAME = "sgd"
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def make_schedule(**overrides):
    """A one-parameter SGD optimizer and its scheduler."""
    cfg = optim_cfg(**overrides)
    optimizer = build_optimizer([nn.Parameter(torch.zeros(2))], cfg)
    return optimizer, build_lr_scheduler(optimizer, cfg)


def epoch_lrs(optimizer, scheduler, n_epochs):
    """The lr used during each epoch, stepping the scheduler once per epoch as trainers do."""
    lrs = []
    for _ in range(n_epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


# Dassl's schedule: base LR 0.002, MAX_EPOCH 10, cosine; epochs e0..e4 and e9.
SPEC_TABLE = {
    "no warmup": (dict(), [2.000e-3, 1.951e-3, 1.809e-3, 1.588e-3, 1.309e-3, 4.894e-5]),
    "constant W=1, recount": (
        dict(WARMUP_EPOCH=1, WARMUP_TYPE="constant"),
        [1.0e-5, 2.000e-3, 1.951e-3, 1.809e-3, 1.588e-3, 1.910e-4],
    ),
    "constant W=1, no recount": (
        dict(WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_RECOUNT=False),
        [1.0e-5, 2.000e-3, 1.854e-3, 1.628e-3, 1.342e-3, 5.017e-5],
    ),
    "linear W=3, recount": (
        dict(WARMUP_EPOCH=3, WARMUP_TYPE="linear"),
        [1.0e-5, 6.667e-4, 1.333e-3, 2.000e-3, 1.951e-3, 6.910e-4],
    ),
}


@pytest.mark.parametrize("setting", list(SPEC_TABLE))
def test_spec_table(setting):
    overrides, expected = SPEC_TABLE[setting]
    optimizer, scheduler = make_schedule(LR=0.002, MAX_EPOCH=10, LR_SCHEDULER="cosine", **overrides)
    lrs = epoch_lrs(optimizer, scheduler, 10)
    got = lrs[:5] + [lrs[9]]
    # The table is printed with 4 significant digits.
    for epoch, (value, table_value) in enumerate(zip(got, expected)):
        assert value == pytest.approx(table_value, rel=5e-4), (setting, epoch)


ALIGN_OPTIM = dict(
    LR=0.0025, MAX_EPOCH=20, LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5
)


def test_align_schedule_follows_the_closed_form():
    optimizer, scheduler = make_schedule(**ALIGN_OPTIM)
    lrs = epoch_lrs(optimizer, scheduler, 20)
    expected = [align_lr(e) for e in range(20)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert lrs[-1] > 0  # the last epoch uses step MAX_EPOCH - 1 - W, so never 0


def test_linear_warmup_formula():
    optimizer, scheduler = make_schedule(
        LR=0.01, MAX_EPOCH=6, LR_SCHEDULER="single_step", WARMUP_EPOCH=4, WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-4
    )
    lrs = epoch_lrs(optimizer, scheduler, 6)
    # min_lr, then base * counter / W, then the successor (StepLR with step MAX_EPOCH: still base).
    assert lrs == pytest.approx([1e-4, 0.0025, 0.005, 0.0075, 0.01, 0.01])


def test_step_schedulers():
    optimizer, scheduler = make_schedule(LR=1.0, LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.5)
    assert epoch_lrs(optimizer, scheduler, 5) == pytest.approx([1, 1, 0.5, 0.5, 0.25])
    optimizer, scheduler = make_schedule(LR=1.0, LR_SCHEDULER="multi_step", STEPSIZE=(1, 3), GAMMA=0.1)
    assert epoch_lrs(optimizer, scheduler, 4) == pytest.approx([1, 0.1, 0.1, 0.01])


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (dict(LR_SCHEDULER="exp"), ValueError, "OPTIM.LR_SCHEDULER must be one of"),
        (dict(LR_SCHEDULER="single_step", STEPSIZE=(1.5,)), TypeError, "must be an integer"),
        (dict(LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="cubic"), ValueError, "constant or linear"),
    ],
)
def test_bad_scheduler_config(overrides, error, message):
    with pytest.raises(error, match=message):
        make_schedule(**overrides)


def test_warmup_state_dict_is_plain_data_loadable_with_weights_only():
    optimizer, scheduler = make_schedule(**ALIGN_OPTIM)
    epoch_lrs(optimizer, scheduler, 3)
    state = scheduler.state_dict()
    assert isinstance(state["successor"], dict)
    buffer = io.BytesIO()
    torch.save({"scheduler": state}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["scheduler"] == state


def continue_from_state(scheduler_state, optimizer_state, n_epochs):
    """A fresh optimizer + scheduler loaded from saved state; the lrs of the next epochs."""
    optimizer, scheduler = make_schedule(**ALIGN_OPTIM)
    successor = scheduler.successor
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    assert scheduler.successor is successor  # updated in place, not replaced
    assert scheduler.successor.optimizer is optimizer  # still bound to the live optimizer
    return epoch_lrs(optimizer, scheduler, n_epochs)


@pytest.mark.parametrize("k", [0, 1, 2, 7])
def test_resumed_schedule_continues_exactly(k):
    optimizer, scheduler = make_schedule(**ALIGN_OPTIM)
    uninterrupted = epoch_lrs(optimizer, scheduler, 20)

    optimizer, scheduler = make_schedule(**ALIGN_OPTIM)
    epoch_lrs(optimizer, scheduler, k)
    resumed = continue_from_state(scheduler.state_dict(), optimizer.state_dict(), 20 - k)
    assert resumed == uninterrupted[k:]


@pytest.mark.parametrize("k", [1, 5])
def test_upstream_state_with_a_pickled_successor_object_resumes_in_place(k):
    """Dassl.pytorch's wrapper state is LRScheduler's default state_dict: its __dict__ minus the
    optimizer, so "successor" is the scheduler object itself (bound to its own optimizer), or the
    placeholder the safe unpickler reads for it."""
    optimizer, scheduler = make_schedule(**ALIGN_OPTIM)
    uninterrupted = epoch_lrs(optimizer, scheduler, 20)

    optimizer, scheduler = make_schedule(**ALIGN_OPTIM)
    epoch_lrs(optimizer, scheduler, k)
    upstream_state = {key: value for key, value in vars(scheduler).items() if key != "optimizer"}
    buffer = io.BytesIO()
    torch.save({"scheduler": upstream_state, "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(buffer, weights_only=True)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    assert isinstance(saved["scheduler"]["successor"], torch.optim.lr_scheduler.CosineAnnealingLR)
    buffer.seek(0)
    read_safely = load_torch_file(buffer)
    assert read_safely["scheduler"]["successor"].pickled_name == "torch.optim.lr_scheduler.CosineAnnealingLR"

    for state in (saved, read_safely):
        resumed = continue_from_state(state["scheduler"], state["optimizer"], 20 - k)
        assert resumed == uninterrupted[k:]


def test_a_successor_placeholder_of_another_class_is_refused():
    optimizer, scheduler = make_schedule(**ALIGN_OPTIM)
    state = scheduler.state_dict()
    state["successor"] = type("Placeholder", (Placeholder,), {"pickled_name": "posix.system"})("touch x")
    with pytest.raises(PlaceholderError, match=r'its "successor" is <placeholder for posix.system>, where a torch lr'):
        scheduler.load_state_dict(state)


def test_warmup_classes_take_no_verbose_argument():
    """Upstream passed `verbose` to LRScheduler.__init__, which torch >= 2.6 rejects."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4.0)
    constant = ConstantWarmupScheduler(optimizer, successor, warmup_epoch=2, cons_lr=1e-3)
    assert optimizer.param_groups[0]["lr"] == 1e-3
    linear = LinearWarmupScheduler(optimizer, successor, warmup_epoch=2, min_lr=1e-4)
    assert optimizer.param_groups[0]["lr"] == 1e-4
    assert not hasattr(constant, "verbose") and not hasattr(linear, "verbose")


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)
        self.frozen = nn.Linear(1, 1)
        self.frozen.requires_grad_(False)


def test_sgd_settings_and_frozen_parameters_are_included():
    model = TwoLayers()
    cfg = optim_cfg(LR=0.0025, MOMENTUM=0.9, WEIGHT_DECAY=5e-4, SGD_DAMPNING=0, SGD_NESTEROV=False)
    optimizer = build_optimizer(model, cfg)
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["dampening"], group["nesterov"]) == (
        0.0025,
        0.9,
        5e-4,
        0,
        False,
    )
    assert len(group["params"]) == 6  # the frozen layer too; its grad stays None


@pytest.mark.parametrize(
    "name, cls, check",
    [
        ("adam", torch.optim.Adam, lambda g: g["betas"] == (0.9, 0.999) and not g["amsgrad"]),
        ("amsgrad", torch.optim.Adam, lambda g: g["amsgrad"]),
        ("rmsprop", torch.optim.RMSprop, lambda g: g["alpha"] == 0.99 and g["momentum"] == 0.9),
        ("adamw", torch.optim.AdamW, lambda g: g["weight_decay"] == 5e-4),
    ],
)
def test_other_optimizers(name, cls, check):
    optimizer = build_optimizer(TwoLayers(), optim_cfg(NAME=name))
    assert type(optimizer) is cls and check(optimizer.param_groups[0])


def test_unknown_optimizer_is_rejected():
    with pytest.raises(ValueError, match="OPTIM.NAME must be one of"):
        build_optimizer(TwoLayers(), optim_cfg(NAME="lamb"))


def test_staged_lr_groups():
    model = TwoLayers()
    optimizer = build_optimizer(model, optim_cfg(LR=0.1, STAGED_LR=True, NEW_LAYERS=("head",), BASE_LR_MULT=0.1))
    base, new = optimizer.param_groups
    assert base["lr"] == pytest.approx(0.01) and new["lr"] == 0.1
    assert {id(p) for p in new["params"]} == {id(p) for p in model.head.parameters()}
    with pytest.raises(ValueError, match="not top-level children"):
        build_optimizer(model, optim_cfg(STAGED_LR=True, NEW_LAYERS=("neck",)))
