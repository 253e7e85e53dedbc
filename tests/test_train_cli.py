"""train.py end to end on the toy dataset and trainer (tests/engine_toys.py): the run's log and
files, resume, eval-only, the config merge order,
seeding, progress bars and the clean errors for bad input."""

import os
import re
import subprocess
import sys

import pytest
import torch

import train
from dassl.utils import collect_env_info
from tests.engine_toys import (
    ALIGN_OPTIM_OPTS,
    CLASSNAMES,
    SPLIT_SIZES,
    ToyLinearProbe,
    align_lr,
    run_train_py,
    toy_argv,
)

N_TEST = SPLIT_SIZES["test"] * len(CLASSNAMES)
N_BATCHES = SPLIT_SIZES["train"] * len(CLASSNAMES) // 4  # batch size 4 in toy_argv
RESULT_BLOCK = re.compile(
    r"=> result\n\* total: (\d+)\n\* correct: (\d+)\n\* accuracy: (\d+\.\d)%\n"
    r"\* error: (\d+\.\d)%\n\* macro_f1: (\d+\.\d)%\n"
)


class FakeTerminal:
    """stderr that claims to be an interactive terminal and keeps what is written."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return True


@pytest.fixture
def run(monkeypatch):
    """Run train.py's main path in-process; returns (exit status, the last ToyLinearProbe or None).

    The environment report is stubbed (it spawns subprocesses for ~1 s) except where a test asks
    for the real one; the stdout tee of every run is closed afterwards.
    """
    monkeypatch.setattr(train, "collect_env_info", lambda: "<environment report>")
    monkeypatch.setattr(ToyLinearProbe, "instances", [])

    def _run(argv):
        status = run_train_py(argv)
        return status, (ToyLinearProbe.instances[-1] if ToyLinearProbe.instances else None)

    return _run


def read_log(output_dir):
    with open(os.path.join(output_dir, "log.txt")) as f:
        return f.read()


def assert_in_order(text, pieces):
    position = 0
    for piece in pieces:
        found = text.find(piece, position)
        assert found >= 0, f"missing (or out of order): {piece!r}"
        position = found + len(piece)


def final_weights(output_dir, epoch):
    path = os.path.join(output_dir, "linear_probe", f"model.pth.tar-{epoch}")
    return torch.load(path, weights_only=True)["state_dict"]


# ---------------------------------------------------------------------------- a whole run


def test_training_run_log_files_and_accuracy(run, data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "collect_env_info", collect_env_info)  # the real report, once
    out = str(tmp_path / "out")
    status, trainer = run(
        toy_argv(
            data_root,
            out,
            "OPTIM.LR",
            "0.05",
            "OPTIM.MAX_EPOCH",
            "3",
            "TRAIN.PRINT_FREQ",
            "5",
            extra_flags=["--seed", "0"],
        )
    )
    assert status == 0

    # The loss goes down.
    first_epoch, last_epoch = trainer.losses[:N_BATCHES], trainer.losses[-N_BATCHES:]
    assert sum(last_epoch) < 0.5 * sum(first_epoch)

    # Every epoch is saved and the previous one removed (CHECKPOINT_FREQ 0): the last epoch is
    # left, as weights and schedule only (nothing resumes from a final model mid-training), and the
    # pointer names it. The lock file is gone.
    model_dir = os.path.join(out, "linear_probe")
    assert sorted(os.listdir(model_dir)) == ["checkpoint", "model.pth.tar-3"]
    assert not os.path.exists(os.path.join(out, ".lock"))
    with open(os.path.join(model_dir, "checkpoint")) as f:
        assert f.read() == "model.pth.tar-3\n"
    final = torch.load(os.path.join(model_dir, "model.pth.tar-3"), weights_only=True)
    assert final["optimizer"] is None and final["scheduler"] is not None and final["epoch"] == 3
    assert final["config"]["OPTIM.LR"] == 0.05 and final["config"]["SEED"] == 0

    log = read_log(out)
    assert log.startswith("Setting fixed seed: 0\n***************\n** Arguments **\n***************\n")
    assert_in_order(
        log,
        [
            "seed: 0\n",
            "************\n** Config **\n************\n",
            "  SUBSAMPLE_CLASSES: all\n",
            "Effective OPTIM.MAX_EPOCH: 3\n",
            "Collecting env info ...\n** System info **\n",
            "        Pillow (",
            "Loading trainer: ToyLinearProbe\nLoading dataset: ToyColors\nBuilding transform_train\n",
            "Dataset    ToyColors\n",
            "Loading evaluator: Classification\n",
            "No checkpoint found, train from scratch\n",
            "epoch [1/3] batch [1/3] ",
            f"Checkpoint saved to {model_dir}/model.pth.tar-1\n",
            "epoch [2/3] batch [3/3] ",
            f"Checkpoint saved to {model_dir}/model.pth.tar-2\n",
            "epoch [3/3] batch [3/3] ",
            f"Checkpoint saved to {model_dir}/model.pth.tar-3\n",
            "Finish training\nFinished training\nDeploy the last-epoch model\nEvaluate on the *test* set\n=> result\n",
            "Elapsed: 0:00:",
        ],
    )
    # Fewer batches than PRINT_FREQ: every batch prints, in Dassl's format.
    lines = re.findall(r"^epoch \[.*$", log, flags=re.M)
    assert len(lines) == 3 * N_BATCHES
    line_format = re.compile(
        r"epoch \[\d/3\] batch \[\d/3\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} \(\d+\.\d{3}\) "
        r"loss \d+\.\d{4} \(\d+\.\d{4}\) acc \d+\.\d{4} \(\d+\.\d{4}\) lr \d\.\d{4}e-\d\d eta \d+:\d\d:\d\d"
    )
    assert all(line_format.fullmatch(line) for line in lines), lines
    assert "lr 5.0000e-02" in lines[0]

    (block,) = RESULT_BLOCK.findall(log)
    total, correct, accuracy, error, _ = block
    assert int(total) == N_TEST
    assert float(accuracy) == round(100 * int(correct) / N_TEST, 1)
    assert float(error) == round(100 - 100 * int(correct) / N_TEST, 1)
    assert int(correct) >= N_TEST - 1  # a linear probe separates the colours

    assert "\r" not in log and "it/s" not in log and "%|" not in log  # no progress-bar fragments


def test_resuming_a_finished_run_only_tests_again_into_a_new_log(run, data_root, tmp_path):
    out = str(tmp_path / "out")
    argv = toy_argv(data_root, out, "OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "2")
    assert run(argv)[0] == 0
    first_log = read_log(out)
    weights = final_weights(out, 2)

    status, trainer = run(argv)
    assert status == 0
    assert trainer.losses == []  # zero epochs ran
    assert read_log(out) == first_log  # the first log is untouched
    (new_log,) = [name for name in os.listdir(out) if name.startswith("log.txt-")]
    with open(os.path.join(out, new_log)) as f:
        resumed = f.read()
    assert_in_order(
        resumed,
        [
            f"Found checkpoint at {out} (will resume training)\n",
            f'Loading checkpoint from "{out}/linear_probe/model.pth.tar-2"\n',
            "Loaded model weights\nLoaded scheduler\nPrevious epoch: 2\n",  # a final model: no optimizer state
            "Finish training\n",
            "Evaluate on the *test* set\n=> result\n",
        ],
    )
    assert "epoch [" not in resumed and "Note:" not in resumed and "Warning" not in resumed
    for key, value in weights.items():
        torch.testing.assert_close(trainer.model.state_dict()[key], value, rtol=0, atol=0)


def test_best_val_saves_and_deploys_the_best_model(run, data_root, tmp_path):
    out = str(tmp_path / "out")
    status, trainer = run(
        toy_argv(
            data_root,
            out,
            "OPTIM.LR",
            "0.05",
            "OPTIM.MAX_EPOCH",
            "3",
            "TEST.FINAL_MODEL",
            "best_val",
            "TRAIN.CHECKPOINT_FREQ",
            "2",
            "TRAIN.PRINT_FREQ",
            "2",
        )
    )
    assert status == 0
    model_dir = os.path.join(out, "linear_probe")
    assert sorted(os.listdir(model_dir)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-2", "model.pth.tar-3"]
    best = torch.load(os.path.join(model_dir, "model-best.pth.tar"), weights_only=True)
    log = read_log(out)
    assert log.count("Evaluate on the *val* set\n") == 3
    assert_in_order(
        log,
        [
            "Evaluate on the *val* set\n=> result\n* total: 6\n",
            f"Checkpoint saved to {model_dir}/model-best.pth.tar\n",
            f"Checkpoint saved to {model_dir}/model.pth.tar-2\n",
            f"Checkpoint saved to {model_dir}/model.pth.tar-3\n",
            "Finish training\nFinished training\nDeploy the model with the best val performance\n",
            "Load {}/model-best.pth.tar to linear_probe (epoch={}, val_result={:.1f})\n".format(
                model_dir, best["epoch"], best["val_result"]
            ),
            "Evaluate on the *test* set\n=> result\n* total: 9\n",
        ],
    )
    # PRINT_FREQ 2 with 3 batches: only batch 2 of each epoch prints.
    assert re.findall(r"batch \[(\d)/3\]", log) == ["2", "2", "2"]
    # The deployed (tested) model is the best one.
    torch.testing.assert_close(trainer.model.weight, best["state_dict"]["weight"], rtol=0, atol=0)


def test_progress_bars_go_to_an_interactive_stderr_only(run, data_root, tmp_path, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    out = str(tmp_path / "out")
    assert run(toy_argv(data_root, out, "OPTIM.MAX_EPOCH", "2"))[0] == 0
    assert "epoch 1/2" in terminal.text and "epoch 2/2" in terminal.text
    assert "Evaluate on test" in terminal.text
    assert re.search(r"\d+/3 \[\d\d:\d\d<", terminal.text)  # count/total [elapsed<remaining
    log = read_log(out)
    assert "\r" not in log and "epoch 1/2" not in log and "Evaluate on test" not in log
    assert "epoch [2/2] batch [3/3]" in log


# ---------------------------------------------------------------------------- resume


def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(run, data_root, tmp_path, monkeypatch, capsys):
    """The shipped ALIGN schedule over 20 epochs with the default checkpointing; a crash after
    epoch 7, then a resume. Sequential sampling and no random augmentation make the two runs the
    same computation on the same inputs, so they agree bit for bit."""
    opts = (
        *ALIGN_OPTIM_OPTS,
        "DATALOADER.TRAIN_X.SAMPLER",
        "SequentialSampler",
        "TRAIN.PRINT_FREQ",
        "100",
        "TEST.NO_TEST",
        "True",
    )
    full_out, resumed_out = str(tmp_path / "full"), str(tmp_path / "resumed")

    status, full = run(toy_argv(data_root, full_out, *opts, extra_flags=["--seed", "1"]))
    assert status == 0
    expected = [align_lr(epoch) for epoch in range(20)]
    assert [full.epoch_lrs[epoch] for epoch in range(20)] == pytest.approx(expected, rel=1e-12, abs=0)

    monkeypatch.setattr(ToyLinearProbe, "interrupt_after_epoch", 7)
    capsys.readouterr()
    assert run(toy_argv(data_root, resumed_out, *opts, extra_flags=["--seed", "1"]))[0] == 1
    monkeypatch.setattr(ToyLinearProbe, "interrupt_after_epoch", None)
    # The crash: its traceback in log.txt (and on stderr), one line naming the error and where the
    # traceback is as the last line; one resumable checkpoint (with the optimizer state) left.
    log_path = os.path.join(resumed_out, "log.txt")
    captured = capsys.readouterr()
    assert captured.out.endswith(f"Error: ToyInterrupt: 7 (the traceback is in {log_path} and on stderr)\n")
    assert "Traceback (most recent call last)" in captured.err and "Traceback" not in captured.out
    log = read_log(resumed_out)
    assert_in_order(
        log, ["epoch [7/20]", "Traceback (most recent call last):\n", "tests.engine_toys.ToyInterrupt: 7\n"]
    )
    assert log.endswith(f"\nError: ToyInterrupt: 7 (the traceback is in {log_path} and on stderr)\n")
    model_dir = os.path.join(resumed_out, "linear_probe")
    assert sorted(os.listdir(model_dir)) == ["checkpoint", "model.pth.tar-7"]
    assert torch.load(os.path.join(model_dir, "model.pth.tar-7"), weights_only=True)["optimizer"] is not None

    status, resumed = run(toy_argv(data_root, resumed_out, *opts, extra_flags=["--seed", "1"]))
    assert status == 0
    assert sorted(resumed.epoch_lrs) == list(range(7, 20))
    assert [resumed.epoch_lrs[epoch] for epoch in range(7, 20)] == [full.epoch_lrs[epoch] for epoch in range(7, 20)]
    full_weights, resumed_weights = final_weights(full_out, 20), final_weights(resumed_out, 20)
    for key in full_weights:
        torch.testing.assert_close(resumed_weights[key], full_weights[key], rtol=0, atol=0)


# ---------------------------------------------------------------------------- eval-only


@pytest.fixture
def trained(run, data_root, tmp_path):
    out = str(tmp_path / "trained")
    assert (
        run(toy_argv(data_root, out, "OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1"))[0] == 0
    )
    return out


def test_eval_only_loads_the_requested_epoch_and_tests(run, data_root, trained, tmp_path):
    out = str(tmp_path / "eval")
    status, trainer = run(
        toy_argv(data_root, out, extra_flags=["--eval-only", "--model-dir", trained, "--load-epoch", "1"])
    )
    assert status == 0
    path = os.path.join(trained, "linear_probe", "model.pth.tar-1")
    log = read_log(out)
    assert_in_order(
        log,
        [
            "Loading evaluator: Classification\n",
            f"Load {path} to linear_probe (epoch=1, val_result=None)\n",
            "Evaluate on the *test* set\n=> result\n* total: 9\n",
        ],
    )
    assert "Finish training" not in log and "tensorboard" not in log.lower()
    assert not os.path.exists(os.path.join(out, "tensorboard"))
    saved = torch.load(path, weights_only=True)["state_dict"]
    torch.testing.assert_close(trainer.model.weight, saved["weight"], rtol=0, atol=0)


def test_eval_only_reads_an_old_checkpoint_without_val_result(run, data_root, trained, tmp_path):
    old_dir = tmp_path / "old" / "linear_probe"
    old_dir.mkdir(parents=True)
    checkpoint = torch.load(os.path.join(trained, "linear_probe", "model.pth.tar-2"), weights_only=True)
    del checkpoint["val_result"]  # written before Dassl added the key
    torch.save(checkpoint, old_dir / "model.pth.tar-2")
    status, _ = run(
        toy_argv(
            data_root,
            tmp_path / "eval",
            extra_flags=["--eval-only", "--model-dir", str(tmp_path / "old"), "--load-epoch", "2"],
        )
    )
    assert status == 0
    assert "(epoch=2, val_result=None)" in read_log(tmp_path / "eval")


# ---------------------------------------------------------------------------- bad input


def expect_error(run, capsys, argv):
    status, _ = run(argv)
    assert status == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    # The message goes to stdout (and so to log.txt once the logger exists), as its last line.
    err = captured.out.rstrip("\n").rsplit("\n", 1)[-1] + "\n"
    assert err.startswith("Error: ")
    return err


def test_unknown_trainer_lists_the_registered_ones(run, data_root, tmp_path, capsys):
    argv = toy_argv(data_root, tmp_path)
    argv[argv.index("ToyLinearProbe")] = "ToyLinearProb"
    err = expect_error(run, capsys, argv)
    assert "Unknown trainer (TRAINER.NAME)" in err
    assert "'ToyLinearProbe'" in err and "but got [ToyLinearProb] (do you mean [ToyLinearProbe]?)" in err


def test_unknown_dataset_lists_the_registered_ones(run, data_root, tmp_path, capsys):
    argv = toy_argv(data_root, tmp_path)
    argv[argv.index("ToyColors")] = "ToyColours"
    err = expect_error(run, capsys, argv)
    assert "Unknown dataset (DATASET.NAME)" in err
    assert "'ToyColors'" in err and "(do you mean [ToyColors]?)" in err


def test_missing_config_file_names_the_path(run, data_root, tmp_path, capsys):
    missing = str(tmp_path / "configs" / "nope.yaml")
    err = expect_error(run, capsys, toy_argv(data_root, tmp_path, extra_flags=["--config-file", missing]))
    assert f'Config file not found: "{missing}"' in err


def test_unknown_config_key_names_the_nearest_keys(run, data_root, tmp_path, capsys):
    err = expect_error(run, capsys, toy_argv(data_root, tmp_path, "OPTIM.MAX_EPOCHS", "3"))
    assert "Non-existent config key: OPTIM.MAX_EPOCHS" in err and "OPTIM.MAX_EPOCH" in err


def test_an_int_for_a_float_key_is_accepted(tmp_path):
    yaml_file = tmp_path / "method.yaml"
    yaml_file.write_text("OPTIM:\n  LR: 2\n")
    args = train.build_parser().parse_args(
        ["--config-file", str(yaml_file), "TRAINER.ALIGN.OT_MEMORY_MB", "512", "OPTIM.WARMUP_CONS_LR", "0"]
    )
    cfg = train.setup_cfg(args)
    assert (cfg.TRAINER.ALIGN.OT_MEMORY_MB, cfg.OPTIM.LR, cfg.OPTIM.WARMUP_CONS_LR) == (512.0, 2.0, 0.0)
    assert {type(cfg.TRAINER.ALIGN.OT_MEMORY_MB), type(cfg.OPTIM.LR), type(cfg.OPTIM.WARMUP_CONS_LR)} == {float}


def test_a_float_for_an_int_key_is_refused(run, data_root, tmp_path, capsys):
    err = expect_error(run, capsys, toy_argv(data_root, tmp_path, "OPTIM.MAX_EPOCH", "2.5"))
    assert "OPTIM.MAX_EPOCH" in err and "Type mismatch" in err


@pytest.mark.parametrize(
    "opts, message",
    [
        (("OPTIM.MAX_EPOCH", "0"), "OPTIM.MAX_EPOCH must be at least 1, but got 0"),
        (
            ("OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "cubic"),
            "OPTIM.WARMUP_TYPE must be constant or linear, but got 'cubic'",
        ),
        (("OPTIM.LR", "-0.01"), "OPTIM.LR must be >= 0, but got -0.01"),
        (("OPTIM.WEIGHT_DECAY", "-1"), "OPTIM.WEIGHT_DECAY must be >= 0, but got -1.0"),
        (("DATALOADER.TRAIN_X.BATCH_SIZE", "0"), "DATALOADER.TRAIN_X.BATCH_SIZE must be at least 1, but got 0"),
        (("DATALOADER.TEST.BATCH_SIZE", "-4"), "DATALOADER.TEST.BATCH_SIZE must be at least 1, but got -4"),
        (
            ("DATASET.SUBSAMPLE_CLASSES", "novel"),
            "DATASET.SUBSAMPLE_CLASSES must be one of all, base, new, but got 'novel'",
        ),
        (("TEST.FINAL_MODEL", "best"), "TEST.FINAL_MODEL must be one of last_step, best_val, but got 'best'"),
        (
            ("OPTIM.NAME", "sgdm"),
            "OPTIM.NAME must be one of adam, amsgrad, sgd, rmsprop, adamw, but got 'sgdm' "
            "(Dassl's radam is not implemented)",
        ),
        (
            ("OPTIM.LR_SCHEDULER", "exp"),
            "OPTIM.LR_SCHEDULER must be one of single_step, multi_step, cosine, but got 'exp'",
        ),
        (
            ("INPUT.TRANSFORMS", "['normalize', 'random_rotate']"),
            "Unknown transform 'random_rotate' in INPUT.TRANSFORMS; supported: random_flip, random_resized_crop, "
            "normalize, instance_norm, random_crop, random_translation, center_crop, cutout, gaussian_noise, "
            "colorjitter, randomgrayscale, gaussian_blur",
        ),
        (
            ("DATALOADER.TRAIN_X.SAMPLER", "RandomSamplr"),
            "DATALOADER.TRAIN_X.SAMPLER = 'RandomSamplr': Unknown sampler type: RandomSamplr "
            "(supported: RandomSampler, SequentialSampler)",
        ),
        (
            ("DATALOADER.TEST.SAMPLER", "RandomDomainSampler"),
            "DATALOADER.TEST.SAMPLER = 'RandomDomainSampler': Sampler RandomDomainSampler (Dassl.pytorch) is not "
            "implemented by this engine; supported: RandomSampler, SequentialSampler",
        ),
        (
            ("MODEL.INIT_WEIGHTS", "/nowhere/prompt_learner/model.pth.tar-5"),
            'MODEL.INIT_WEIGHTS = "/nowhere/prompt_learner/model.pth.tar-5" does not exist: expected a checkpoint '
            "file to start the learned weights from (e.g. a run's <model name>/model.pth.tar-N, or an official "
            "full-model file)",
        ),
    ],
)
def test_invalid_values_are_one_error_line_naming_the_key(run, data_root, tmp_path, capsys, opts, message):
    err = expect_error(run, capsys, toy_argv(data_root, tmp_path / "out", *opts))
    assert err == f"Error: {message}\n"
    assert not os.path.exists(tmp_path / "out" / "linear_probe")  # refused before training


def test_yaml_syntax_error_names_the_file(run, data_root, tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("OPTIM:\n  NAME: sgd\n  LR: [0.1\n")
    err = expect_error(run, capsys, toy_argv(data_root, tmp_path / "out", extra_flags=["--config-file", str(broken)]))
    assert err.startswith(f'Error: Config file "{broken}" is not valid YAML at line 4, column 1: ')


def test_resume_from_a_missing_or_empty_folder_is_an_error(run, data_root, tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    err = expect_error(run, capsys, toy_argv(data_root, tmp_path / "out", extra_flags=["--resume", missing]))
    assert err == f'Error: --resume "{missing}": the folder does not exist\n'
    empty = tmp_path / "empty"
    empty.mkdir()
    err = expect_error(run, capsys, toy_argv(data_root, tmp_path / "out", extra_flags=["--resume", str(empty)]))
    assert err.startswith(f'Error: --resume "{empty}" holds no checkpoint (expected the folder(s) linear_probe in it')


def test_traceback_of_a_user_error_on_request(run, data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DASSL_TRACEBACK", "1")
    status, _ = run(toy_argv(data_root, tmp_path / "out", "OPTIM.MAX_EPOCH", "0"))
    captured = capsys.readouterr()
    assert status == 1 and "Traceback (most recent call last)" in captured.err
    assert captured.out.endswith("Error: OPTIM.MAX_EPOCH must be at least 1, but got 0\n")
    log = read_log(tmp_path / "out")
    assert "Traceback (most recent call last)" in log  # always kept in the log
    assert log.endswith("Error: OPTIM.MAX_EPOCH must be at least 1, but got 0\n")


def test_eval_only_with_a_missing_model_dir_names_what_exists(run, data_root, trained, tmp_path, capsys):
    typo = trained + "x"
    err = expect_error(
        run, capsys, toy_argv(data_root, tmp_path / "e", extra_flags=["--eval-only", "--model-dir", typo])
    )
    assert f'"{typo}" does not exist' in err and os.path.basename(trained) in err


def test_eval_only_with_a_missing_epoch_names_the_saved_epochs(run, data_root, trained, tmp_path, capsys):
    err = expect_error(
        run,
        capsys,
        toy_argv(data_root, tmp_path / "e", extra_flags=["--eval-only", "--model-dir", trained, "--load-epoch", "5"]),
    )
    assert "No model at {}".format(os.path.join(trained, "linear_probe", "model.pth.tar-5")) in err
    assert "saved epochs 1, 2" in err


def test_load_epoch_without_model_dir_is_an_error(run, data_root, tmp_path, capsys):
    err = expect_error(run, capsys, toy_argv(data_root, tmp_path, extra_flags=["--eval-only", "--load-epoch", "2"]))
    assert "--load-epoch 2 needs --model-dir" in err


def test_dataset_layout_error_is_printed_cleanly(run, tmp_path, capsys):
    err = expect_error(run, capsys, toy_argv(tmp_path / "no_data", tmp_path / "out"))
    assert "ToyColors: folder not found" in err and str(tmp_path / "no_data") in err
    assert "Error: ToyColors: folder not found" in (tmp_path / "out" / "log.txt").read_text()


def test_cli_process_exits_with_status_1_without_traceback(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    result = subprocess.run(
        [sys.executable, "train.py", "--config-file", missing, "--output-dir", str(tmp_path / "out")],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stdout.endswith(f'Error: Config file not found: "{missing}"\n')


# ---------------------------------------------------------------------------- config and seed


def test_merge_order_and_no_epoch_override(tmp_path):
    dataset_yaml = tmp_path / "dataset.yaml"
    dataset_yaml.write_text("DATASET:\n  NAME: ImageNet\nOPTIM:\n  MAX_EPOCH: 5\n  LR: 0.1\n")
    method_yaml = tmp_path / "method.yaml"
    method_yaml.write_text("OPTIM:\n  MAX_EPOCH: 7\nOUTPUT_DIR: from_yaml\nTRAINER:\n  MMP:\n    USECT: False\n")
    args = train.build_parser().parse_args(
        [
            "--dataset-config-file",
            str(dataset_yaml),
            "--config-file",
            str(method_yaml),
            "--output-dir",
            "from_flag",
            "--seed",
            "0",
            "--trainer",
            "ALIGN",
            "DATASET.NUM_SHOTS",
            "16",
            "OUTPUT_DIR",
            "from_opts",
        ]
    )
    cfg = train.setup_cfg(args)
    assert cfg.is_frozen()
    assert cfg.OPTIM.MAX_EPOCH == 7  # method YAML after dataset YAML; no few-shot/ImageNet override
    assert cfg.OPTIM.LR == 0.1
    assert cfg.OUTPUT_DIR == "from_opts"  # opts after flags after YAML
    assert cfg.SEED == 0  # --seed 0 is honoured
    assert (cfg.TRAINER.NAME, cfg.DATASET.NUM_SHOTS, cfg.TRAINER.MMP.USECT) == ("ALIGN", 16, False)


def test_reset_cfg_copies_only_given_flags():
    cfg = train.get_cfg_default()
    train.reset_cfg(cfg, train.build_parser().parse_args([]))
    assert cfg == train.get_cfg_default()
    args = train.build_parser().parse_args(
        [
            "--root",
            "r",
            "--resume",
            "x",
            "--source-domains",
            "a",
            "b",
            "--target-domains",
            "c",
            "--transforms",
            "normalize",
            "--backbone",
            "RN50",
            "--head",
            "h",
        ]
    )
    train.reset_cfg(cfg, args)
    assert (cfg.DATASET.ROOT, cfg.RESUME, cfg.DATASET.SOURCE_DOMAINS, cfg.DATASET.TARGET_DOMAINS) == (
        "r",
        "x",
        ["a", "b"],
        ["c"],
    )
    assert (cfg.INPUT.TRANSFORMS, cfg.MODEL.BACKBONE.NAME, cfg.MODEL.HEAD.NAME) == (["normalize"], "RN50", "h")


def test_extend_cfg_adds_the_method_nodes():
    cfg = train.get_cfg_default()
    train.extend_cfg(cfg)
    t = cfg.TRAINER
    # CoOp's keys (other methods may add theirs to its node, as KgCoOp and ProGrad do upstream: their
    # tests check those)
    coop = dict(N_CTX=16, CSC=False, CTX_INIT="", PREC="fp16", CLASS_TOKEN_POSITION="end")
    assert {key: t.COOP[key] for key in coop} == coop
    assert dict(t.COCOOP) == dict(N_CTX=16, CTX_INIT="", PREC="fp16", TEXT_MEMORY_MB=1024.0)
    assert dict(t.MAPLE) == dict(N_CTX=16, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9)
    assert dict(t.IVLP) == dict(
        N_CTX_VISION=2, N_CTX_TEXT=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9
    )
    assert dict(t.VPT) == dict(N_CTX_VISION=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH_VISION=1)
    # ALIGN under its official name reads the same keys (one definition, the shipped recipe's values).
    assert dict(t.MMP) == dict(t.ALIGN)
    official = dict(N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", TEXT_PROMPT_DEPTH=9, VISION_PROMPT_DEPTH=9)
    official.update(TEXT_PROMPT_NUMBER=4, VISION_PROMPT_NUMBER=4, HIERARCHICAL=True, USECT=False)
    assert {key: t.MMP[key] for key in official} == official
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all"


def test_same_seed_same_run_and_no_seed_line_without_seed(run, data_root, tmp_path):
    weights = []
    for name in ("a", "b"):
        out = str(tmp_path / name)
        assert run(toy_argv(data_root, out, "OPTIM.MAX_EPOCH", "1", extra_flags=["--seed", "0"]))[0] == 0
        weights.append(final_weights(out, 1)["weight"])
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)

    out = str(tmp_path / "unseeded")
    assert run(toy_argv(data_root, out, "OPTIM.MAX_EPOCH", "1"))[0] == 0
    assert "Setting fixed seed" not in read_log(out)


# ---------------------------------------------------------------------------- engine details


def test_no_train_builds_without_training_and_warns_when_val_is_test(run, data_root, tmp_path, capsys):
    out = str(tmp_path / "out")
    argv = toy_argv(data_root, out, "TEST.FINAL_MODEL", "best_val", extra_flags=["--no-train"])
    argv[argv.index("ToyColors")] = "ToyColorsValIsTest"
    status, trainer = run(argv)
    assert status == 0 and trainer.losses == []
    assert not os.path.exists(os.path.join(out, "linear_probe"))
    assert (
        "Warning: TEST.FINAL_MODEL is best_val, but the val split of ToyColorsValIsTest is its test split"
        in read_log(out)
    )


def test_missing_tensorboard_gives_a_note_and_no_writer(run, data_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    out = str(tmp_path / "out")
    status, trainer = run(toy_argv(data_root, out, "OPTIM.MAX_EPOCH", "1"))
    assert status == 0 and trainer._writer is None
    assert "Tensorboard is not installed: no event files are written" in read_log(out)


def test_resumed_best_val_run_keeps_the_saved_best_result(run, data_root, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    opts = ("OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "3", "TEST.FINAL_MODEL", "best_val", "TRAIN.CHECKPOINT_FREQ", "1")
    monkeypatch.setattr(ToyLinearProbe, "interrupt_after_epoch", 1)
    assert run(toy_argv(data_root, out, *opts))[0] == 1
    best = torch.load(os.path.join(out, "linear_probe", "model-best.pth.tar"), weights_only=True)
    monkeypatch.setattr(ToyLinearProbe, "interrupt_after_epoch", None)
    status, trainer = run(toy_argv(data_root, out, *opts))
    assert status == 0
    assert trainer.best_result >= best["val_result"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_resume_and_eval_only_on_cuda(run, data_root, tmp_path):
    out = str(tmp_path / "out")
    argv = toy_argv(
        data_root,
        out,
        "OPTIM.LR",
        "0.05",
        "OPTIM.MAX_EPOCH",
        "2",
        "TEST.FINAL_MODEL",
        "best_val",
        "USE_CUDA",
        "True",
        "DATALOADER.NUM_WORKERS",
        "2",
        extra_flags=["--seed", "0"],
    )
    status, trainer = run(argv)
    assert status == 0
    assert trainer.device.type == "cuda" and trainer.model.weight.is_cuda
    assert trainer.train_loader_x.pin_memory
    log = read_log(out)
    assert RESULT_BLOCK.search(log) and "Deploy the model with the best val performance" in log

    status, resumed = run(argv)  # a finished run: loads on the GPU, trains nothing, tests again
    assert status == 0 and resumed.losses == [] and resumed.model.weight.is_cuda

    status, evaluated = run(
        toy_argv(
            data_root,
            tmp_path / "eval",
            "USE_CUDA",
            "True",
            extra_flags=["--eval-only", "--model-dir", out, "--load-epoch", "2"],
        )
    )
    assert status == 0
    saved = torch.load(os.path.join(out, "linear_probe", "model.pth.tar-2"), weights_only=True)
    torch.testing.assert_close(evaluated.model.weight.cpu(), saved["state_dict"]["weight"].cpu(), rtol=0, atol=0)
