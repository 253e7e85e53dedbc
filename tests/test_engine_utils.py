"""dassl.utils additions: the logger tee, meters, accuracy,
checkpoints, pretrained weights, progress bars and the rank-0 seam."""

import gc
import io
import os
import re
import sys

import pytest
import torch
import torch.nn as nn

from dassl.config import get_cfg_default
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import (
    AverageMeter,
    CheckpointError,
    CheckpointNotFoundError,
    ImageReadError,
    MetricMeter,
    count_num_param,
    find_model_file,
    load_checkpoint,
    load_pretrained_weights,
    progress_bar,
    read_image,
    resume_from_checkpoint,
    save_checkpoint,
    setup_logger,
)
from dassl.utils import logger as logger_module
from dassl.utils import progress as progress_module
from dassl.utils.safe_unpickle import Placeholder


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def restore_stdout():
    """Undo setup_logger: close the log file and put the original stdout back."""
    original = sys.stdout
    yield original
    if isinstance(sys.stdout, logger_module.Logger):
        sys.stdout.close()
    sys.stdout = original


# ---------------------------------------------------------------------------- logger


def test_setup_logger_tees_stdout_into_log_txt(tmp_path, restore_stdout, capsys):
    setup_logger(str(tmp_path / "run"))
    print("hello")
    print("partial", end="")
    sys.stdout.flush()
    assert (tmp_path / "run" / "log.txt").read_text() == "hello\npartial"
    assert capsys.readouterr().out == "hello\npartial"


def test_existing_log_is_never_overwritten(tmp_path, restore_stdout):
    (tmp_path / "log.txt").write_text("first run\n")
    setup_logger(str(tmp_path))
    print("second run")
    sys.stdout.flush()
    assert (tmp_path / "log.txt").read_text() == "first run\n"
    (new_log,) = [p for p in tmp_path.iterdir() if p.name != "log.txt"]
    assert re.fullmatch(r"log\.txt-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}", new_log.name)
    assert new_log.read_text() == "second run\n"


def test_a_second_start_in_the_same_second_gets_a_log_of_its_own(tmp_path, restore_stdout, monkeypatch):
    import dassl.utils.logger as logger_module

    monkeypatch.setattr(logger_module.time, "strftime", lambda fmt: "-2024-05-01-12-00-00")
    (tmp_path / "log.txt").write_text("first run\n")
    (tmp_path / "log.txt-2024-05-01-12-00-00").write_text("second run\n")
    setup_logger(str(tmp_path))
    print("third run")
    sys.stdout.flush()
    assert (tmp_path / "log.txt-2024-05-01-12-00-00").read_text() == "second run\n"
    assert (tmp_path / "log.txt-2024-05-01-12-00-00-1").read_text() == "third run\n"


def test_explicit_log_file_path(tmp_path, restore_stdout):
    setup_logger(str(tmp_path / "logs" / "train.log"))
    print("x")
    sys.stdout.flush()
    assert (tmp_path / "logs" / "train.log").read_text() == "x\n"


def test_setup_logger_none_is_a_no_op(restore_stdout):
    setup_logger(None)
    assert sys.stdout is restore_stdout


def test_second_setup_replaces_the_tee_instead_of_stacking(tmp_path, restore_stdout):
    setup_logger(str(tmp_path / "a"))
    print("for a")
    setup_logger(str(tmp_path / "b"))
    print("for b")
    sys.stdout.flush()
    assert (tmp_path / "a" / "log.txt").read_text() == "for a\n"
    assert (tmp_path / "b" / "log.txt").read_text() == "for b\n"
    assert sys.stdout.console is restore_stdout


def test_tee_never_closes_the_console(tmp_path, restore_stdout):
    console = FakeTerminal()
    tee = logger_module.Logger(str(tmp_path / "log.txt"), console)
    tee.write("line\n")
    tee.close()
    del tee
    gc.collect()
    assert not console.closed
    assert console.getvalue() == "line\n"


def test_tee_delegates_terminal_queries_to_the_console(tmp_path, restore_stdout):
    tee = logger_module.Logger(str(tmp_path / "log.txt"), FakeTerminal())
    assert tee.isatty()
    tee.close()


def test_non_main_process_writes_no_log(tmp_path, restore_stdout, monkeypatch):
    monkeypatch.setattr(logger_module, "is_main_process", lambda: False)
    setup_logger(str(tmp_path))
    assert sys.stdout is restore_stdout
    assert not (tmp_path / "log.txt").exists()


def test_lines_printed_during_a_progress_bar_reach_the_log_whole(tmp_path, restore_stdout, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    setup_logger(str(tmp_path))
    for i in progress_bar(range(3), desc="demo"):
        print(f"step {i}")
    sys.stdout.flush()
    assert (tmp_path / "log.txt").read_text() == "step 0\nstep 1\nstep 2\n"
    assert "demo" in terminal.getvalue()  # the bar went to the (fake) terminal on stderr


# ---------------------------------------------------------------------------- progress bars


def test_progress_bar_is_the_plain_iterable_off_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    items = [1, 2]
    assert progress_bar(items, desc="x") is items


def test_progress_bar_on_a_terminal_shows_an_eta(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress_bar(range(4), desc="evaluate")) == [0, 1, 2, 3]
    assert "evaluate" in terminal.getvalue() and "<" in terminal.getvalue()  # elapsed<remaining


def test_no_progress_bar_on_non_main_process(monkeypatch):
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    monkeypatch.setattr(progress_module, "is_main_process", lambda: False)
    items = [1]
    assert progress_bar(items, desc="x") is items


# ---------------------------------------------------------------------------- meters, accuracy


def test_average_meter_and_ema():
    meter = AverageMeter()
    for value in [1.0, torch.tensor(2.0), 6.0]:
        meter.update(value)
    assert (meter.val, meter.sum, meter.count, meter.avg) == (6.0, 9.0, 3, 3.0)
    ema = AverageMeter(ema=True)
    ema.update(10.0)
    ema.update(0.0)
    assert ema.avg == pytest.approx((0 * 0.9 + 10 * 0.1) * 0.9 + 0 * 0.1)


def test_metric_meter_string_and_errors():
    losses = MetricMeter()
    losses.update({"loss": 1.0, "acc": torch.tensor(50.0), "skipped": None})
    losses.update({"loss": 0.5, "acc": 75.0})
    assert str(losses) == "loss 0.5000 (0.7500) acc 75.0000 (62.5000)"
    with pytest.raises(TypeError, match="must be a dictionary"):
        losses.update([1.0])


def test_compute_accuracy_matches_a_loop():
    torch.manual_seed(0)
    output = torch.randn(50, 7)
    target = torch.randint(0, 7, (50,))
    top1, top3 = compute_accuracy(output, target, topk=(1, 3))
    for k, got in ((1, top1), (3, top3)):
        correct = 0
        for scores, label in zip(output.tolist(), target.tolist()):
            ranked = sorted(range(7), key=lambda c: -scores[c])
            correct += label in ranked[:k]
        assert got.shape == (1,)
        assert got.item() == pytest.approx(100.0 * correct / 50)
    assert compute_accuracy((output, None), target)[0].item() == top1.item()


# ---------------------------------------------------------------------------- checkpoints


def small_training_state():
    model = nn.Linear(3, 2)
    cfg = get_cfg_default().OPTIM
    cfg.NAME, cfg.LR_SCHEDULER, cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE = "sgd", "cosine", 1, "constant"
    optimizer = build_optimizer(model, cfg)
    scheduler = build_lr_scheduler(optimizer, cfg)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def test_save_checkpoint_layout_and_weights_only_load(tmp_path, capsys):
    model, optimizer, scheduler = small_training_state()
    state_dict = {"module." + k: v for k, v in model.state_dict().items()}
    state = {
        "state_dict": state_dict,
        "epoch": 3,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "val_result": None,
    }
    save_dir = tmp_path / "prompt_learner"
    save_checkpoint(state, str(save_dir), is_best=True)
    fpath = save_dir / "model.pth.tar-3"
    out = capsys.readouterr().out
    assert f"Checkpoint saved to {fpath}\n" in out
    assert f'Best checkpoint saved to "{save_dir / "model-best.pth.tar"}"' in out
    assert (save_dir / "checkpoint").read_text() == "model.pth.tar-3\n"
    assert sorted(p.name for p in save_dir.iterdir()) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-3"]

    loaded = torch.load(fpath, weights_only=True)
    assert set(loaded["state_dict"]) == {"weight", "bias"}  # "module." stripped
    assert loaded["epoch"] == 3
    assert loaded["scheduler"]["successor"]["last_epoch"] == scheduler.successor.last_epoch
    assert load_checkpoint(str(fpath))["epoch"] == 3
    assert "unsafe" not in capsys.readouterr().out


def test_named_checkpoint_moves_the_pointer(tmp_path):
    model, _, _ = small_training_state()
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 1}, str(tmp_path))
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 1}, str(tmp_path), model_name="model-best.pth.tar")
    assert (tmp_path / "checkpoint").read_text() == "model-best.pth.tar\n"


def write_upstream_checkpoint(path):
    """A checkpoint the way Dassl.pytorch writes one with warmup: the scheduler's state is its
    __dict__ minus the optimizer, so it pickles the successor scheduler object."""
    model, optimizer, scheduler = small_training_state()
    upstream_sched_state = {k: v for k, v in vars(scheduler).items() if k != "optimizer"}
    torch.save(
        {
            "state_dict": model.state_dict(),
            "epoch": 1,
            "optimizer": optimizer.state_dict(),
            "scheduler": upstream_sched_state,
        },
        path,
    )
    return model, scheduler


def test_upstream_checkpoint_loads_through_the_safe_unpickler(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DASSL_ALLOW_UNSAFE_LOAD", raising=False)
    path = str(tmp_path / "model.pth.tar-1")
    model, scheduler = write_upstream_checkpoint(path)
    checkpoint = load_checkpoint(path)
    successor = checkpoint["scheduler"]["successor"]
    assert isinstance(successor, Placeholder)
    assert successor.pickled_name == "torch.optim.lr_scheduler.CosineAnnealingLR"
    assert successor.state["last_epoch"] == scheduler.successor.last_epoch
    torch.testing.assert_close(checkpoint["state_dict"]["weight"], model.weight.detach(), rtol=0, atol=0)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert f'"{path}" holds pickled Python objects' in out
    assert "read as inert placeholders, never run (torch.optim.lr_scheduler.CosineAnnealingLR, " in out


def test_upstream_checkpoint_loads_with_full_unpickling_on_request(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DASSL_ALLOW_UNSAFE_LOAD", "1")
    path = str(tmp_path / "model.pth.tar-1")
    model, scheduler = write_upstream_checkpoint(path)
    checkpoint = load_checkpoint(path)
    assert isinstance(checkpoint["scheduler"]["successor"], torch.optim.lr_scheduler.CosineAnnealingLR)
    assert checkpoint["scheduler"]["successor"].last_epoch == scheduler.successor.last_epoch
    torch.testing.assert_close(checkpoint["state_dict"]["weight"], model.weight.detach(), rtol=0, atol=0)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert f'Loading "{path}" with full unpickling (weights_only=False, DASSL_ALLOW_UNSAFE_LOAD=1)' in out


@pytest.mark.parametrize("unsafe_load", [None, "1"], ids=["safe", "full"])
def test_resume_from_an_upstream_checkpoint_continues_the_schedule(tmp_path, capsys, monkeypatch, unsafe_load):
    if unsafe_load is None:
        monkeypatch.delenv("DASSL_ALLOW_UNSAFE_LOAD", raising=False)
    else:
        monkeypatch.setenv("DASSL_ALLOW_UNSAFE_LOAD", unsafe_load)
    saved_model, saved_scheduler = write_upstream_checkpoint(str(tmp_path / "model.pth.tar-1"))
    (tmp_path / "checkpoint").write_text("model.pth.tar-1\n")
    saved_weight = saved_model.weight.detach().clone()
    expected_next_lrs = []
    for _ in range(3):
        saved_scheduler.optimizer.step()
        saved_scheduler.step()
        expected_next_lrs.append(saved_scheduler.optimizer.param_groups[0]["lr"])

    model, optimizer, scheduler = small_training_state()
    start_epoch = resume_from_checkpoint(str(tmp_path), model, optimizer, scheduler)
    assert start_epoch == 1
    torch.testing.assert_close(model.weight.detach(), saved_weight, rtol=0, atol=0)
    out = capsys.readouterr().out
    assert out.endswith("Loaded model weights\nLoaded optimizer\nLoaded scheduler\nPrevious epoch: 1\n")
    lrs = []
    for _ in range(3):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == expected_next_lrs


def test_load_checkpoint_bad_inputs(tmp_path, capsys):
    with pytest.raises(ValueError):
        load_checkpoint(None)
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match=f'File is not found at "{re.escape(missing)}"'):
        load_checkpoint(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f'Checkpoint "{re.escape(str(garbage))}" is not a PyTorch checkpoint'):
        load_checkpoint(str(garbage))


def test_find_model_file_names_what_exists(tmp_path):
    model_dir = tmp_path / "run" / "prompt_learner"
    model_dir.mkdir(parents=True)
    for name in ["model.pth.tar-5", "model.pth.tar-10", "model-best.pth.tar", "checkpoint"]:
        (model_dir / name).write_bytes(b"")
    assert find_model_file(str(tmp_path / "run"), "prompt_learner", 10) == str(model_dir / "model.pth.tar-10")

    with pytest.raises(CheckpointNotFoundError) as err:
        find_model_file(str(tmp_path / "run"), "prompt_learner", 7)
    assert str(err.value) == 'No model at {}: "{}" holds saved epochs 5, 10 and model-best.pth.tar'.format(
        model_dir / "model.pth.tar-7", model_dir
    )

    with pytest.raises(CheckpointNotFoundError) as err:
        find_model_file(str(tmp_path / "rnu"), "prompt_learner")
    assert str(err.value) == 'No model at {}: "{}" does not exist; "{}" holds: run'.format(
        tmp_path / "rnu" / "prompt_learner" / "model-best.pth.tar", tmp_path / "rnu", tmp_path
    )

    (tmp_path / "empty" / "prompt_learner").mkdir(parents=True)
    with pytest.raises(CheckpointNotFoundError, match="holds no model file"):
        find_model_file(str(tmp_path / "empty"), "prompt_learner", 1)


def test_load_pretrained_weights_keeps_matching_entries(tmp_path, capsys):
    source = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = {"module." + k: v for k, v in source.state_dict().items()}
    state["module.extra"] = torch.zeros(1)
    path = str(tmp_path / "weights.pth")
    torch.save({"state_dict": state}, path)

    target = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))  # second layer differs in size
    before = target[1].weight.detach().clone()
    load_pretrained_weights(target, path)
    torch.testing.assert_close(target[0].weight, source[0].weight)
    torch.testing.assert_close(target[1].weight, before)
    out = capsys.readouterr().out
    assert f"Successfully loaded pretrained weights from {path}" in out
    assert "Layers discarded due to unmatched keys or size: ['1.weight', '1.bias', 'extra']" in out

    torch.save({"other": torch.zeros(1)}, path)
    with pytest.warns(UserWarning, match="Cannot load"):
        load_pretrained_weights(target, path)


def test_count_num_param():
    model = nn.Linear(3, 2)
    assert count_num_param(model) == 8
    assert count_num_param(params=[model.weight, {"params": model.bias}]) == 8
    with pytest.raises(ValueError):
        count_num_param()


def test_read_image_names_a_bad_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match=f'^Cannot decode image "{re.escape(str(bad))}": '):
        read_image(str(bad))
    with pytest.raises(ImageReadError, match=f'^Image not found: "{re.escape(str(tmp_path / "gone.png"))}"$'):
        read_image(str(tmp_path / "gone.png"))
    assert issubclass(ImageReadError, OSError)


def test_image_error_message_survives_a_dataloader_worker(tmp_path):
    """A worker's exception reaches the main process re-created with the worker's traceback as its
    message; message_of gives back the original line."""
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG but truncated")

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return torch.tensor(read_image(str(bad)).size)

    loader = torch.utils.data.DataLoader(Images(), num_workers=1)
    with pytest.raises(ImageReadError) as err:
        next(iter(loader))
    assert str(err.value).startswith("Caught ImageReadError in DataLoader worker process 0")
    message = ImageReadError.message_of(err.value)
    assert message.startswith(f'Cannot decode image "{bad}": ') and "\n" not in message
    direct = ImageReadError(f'Image not found: "{bad}"')
    assert ImageReadError.message_of(direct) == f'Image not found: "{bad}"'


def test_environment_variable_name_is_documented():
    docs = open(os.path.join(os.path.dirname(__file__), "..", "docs", "engine.md")).read()
    assert "DASSL_ALLOW_UNSAFE_LOAD" in docs
