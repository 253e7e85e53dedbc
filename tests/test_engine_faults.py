"""Runs that stop early, on the toy dataset: a real train.py process paused at a known training
step (tests/engine_toys.py, TOY_PAUSE_AT) and then killed, interrupted or terminated; a second run
on a folder in use; a crash in the final test; a full disk. What must hold: no line of the log is
lost, the next run resumes, and every stop is reported in one line."""

import builtins
import errno
import io
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

from dassl.utils import LOCK_FILE_NAME, lock_output_dir
from tests.engine_toys import make_toy_images, run_train_py, toy_argv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTS = ("OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "3")


@pytest.fixture
def run(monkeypatch):
    """train.py in-process (environment report stubbed); returns the exit status."""
    import train

    monkeypatch.setattr(train, "collect_env_info", lambda: "<environment report>")
    return run_train_py


def start_paused(data_root, out, epoch, batch):
    """Start train.py in a process that stops before the training step of (epoch, batch);
    return (process, what it printed until then)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOY_PAUSE_AT=f"{epoch},{batch}")
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "tests.engine_toys", *toy_argv(data_root, out, *OPTS)],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed = []
    for line in process.stdout:  # blocks until the process prints a line or ends
        printed.append(line)
        if line == "paused\n":
            return process, "".join(printed)
    process.wait()
    raise AssertionError(f"the run ended before pausing:\n{''.join(printed)}\n{process.stderr.read()}")


def logs(out):
    return sorted(name for name in os.listdir(out) if name.startswith("log.txt"))


def read(path):
    with open(path) as f:
        return f.read()


def last_line(text):
    return text.rstrip("\n").rsplit("\n", 1)[-1]


# ---------------------------------------------------------------------------- a killed run


def test_a_second_run_is_refused_and_a_killed_run_leaves_its_log_and_no_lock(run, data_root, tmp_path, capsys):
    out = str(tmp_path / "out")
    process, printed = start_paused(data_root, out, epoch=2, batch=2)
    try:
        # The folder is in use: a second run is refused, naming the folder and the holder, and
        # writes nothing there (no second log).
        capsys.readouterr()
        assert run(toy_argv(data_root, out, *OPTS)) == 1
        error = last_line(capsys.readouterr().out)
        assert error.startswith(
            f'Error: Output folder "{out}" is in use by another run (pid {process.pid} on host {socket.gethostname()}, '
            "started "
        )
        assert error.endswith("); wait until it ends, or choose another --output-dir")
        assert logs(out) == ["log.txt"]
        # Every line the run printed is already in its log.
        log = read(os.path.join(out, "log.txt"))
        assert log == printed and "epoch [2/3] batch [1/3]" in log
    finally:
        process.kill()  # SIGKILL: no cleanup of any kind
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert read(os.path.join(out, "log.txt")) == printed

    # The lock died with the process (its file may stay); the epoch-1 checkpoint is resumed.
    assert run(toy_argv(data_root, out, *OPTS)) == 0
    assert not os.path.exists(os.path.join(out, LOCK_FILE_NAME))
    (_, resumed_log) = logs(out)
    resumed = read(os.path.join(out, resumed_log))
    assert "Previous epoch: 1\n" in resumed and "epoch [2/3] batch [1/3]" in resumed and "epoch [1/3]" not in resumed
    assert "* accuracy: " in resumed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_say_where_the_run_stopped(data_root, tmp_path, sig):
    out = str(tmp_path / "out")
    process, _ = start_paused(data_root, out, epoch=2, batch=2)
    process.send_signal(sig)
    stdout, stderr = process.communicate()
    assert process.returncode == 128 + sig  # 130 for Ctrl-C, 143 for SIGTERM
    checkpoint = os.path.join(out, "linear_probe", "model.pth.tar-1")
    line = (
        f"Interrupted at epoch 2 batch 2 ({signal.Signals(sig).name}); last checkpoint: {checkpoint}; "
        "rerun the same command to resume"
    )
    assert stdout == line + "\n"  # after the pause, only the line: no traceback
    assert "Traceback" not in stderr
    log = read(os.path.join(out, "log.txt"))
    assert log.endswith("paused\n" + line + "\n")
    assert not os.path.exists(os.path.join(out, LOCK_FILE_NAME))  # released on the way out
    assert torch.load(checkpoint, weights_only=True)["optimizer"] is not None  # resumable


def test_an_interrupt_before_the_first_checkpoint_says_there_is_none(run, data_root, tmp_path, capsys, monkeypatch):
    from tests.engine_toys import ToyLinearProbe

    def interrupted(self, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(ToyLinearProbe, "forward_backward", interrupted)
    out = str(tmp_path / "out")
    capsys.readouterr()
    assert run(toy_argv(data_root, out, *OPTS)) == 130
    line = "Interrupted at epoch 1 batch 1 (SIGINT); last checkpoint: none; rerun the same command to start again"
    assert last_line(capsys.readouterr().out) == line
    assert last_line(read(os.path.join(out, "log.txt"))) == line


# ---------------------------------------------------------------------------- the lock itself


def test_the_lock_names_this_process_and_is_removed_on_release(run, data_root, tmp_path, capsys):
    out = str(tmp_path / "out")
    with lock_output_dir(out):
        holder = read(os.path.join(out, LOCK_FILE_NAME))
        assert holder.startswith(f"pid {os.getpid()} on host {socket.gethostname()}, started ")
        capsys.readouterr()
        assert run(toy_argv(data_root, out, "OPTIM.MAX_EPOCH", "1")) == 1
        assert holder.strip() in last_line(capsys.readouterr().out)
        assert os.listdir(out) == [LOCK_FILE_NAME]  # the refused run wrote nothing
    assert os.listdir(out) == []


def test_a_stale_lock_file_does_not_block(run, data_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE_NAME).write_text("pid 1 on host gone, started long ago\n")  # no process holds it
    assert run(toy_argv(data_root, str(out), "OPTIM.MAX_EPOCH", "1")) == 0


# ---------------------------------------------------------------------------- other stops


def test_a_corrupt_image_in_the_final_test_is_one_line_naming_it(run, data_root, tmp_path, capsys):
    root = tmp_path / "data"
    make_toy_images(str(root))
    bad = root / "toy_colors" / "test" / "green" / "1.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a whole jpeg")
    out = str(tmp_path / "out")
    capsys.readouterr()
    argv = toy_argv(str(root), out, "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "1")
    assert run(argv) == 1
    captured = capsys.readouterr()
    error = last_line(captured.out)
    assert error.startswith(f'Error: Cannot decode image "{bad}": ')
    assert error.endswith(f". Check every image with: python -m tools.check_datasets --root {root} --verify-images")
    assert "Traceback" not in captured.out + captured.err
    log = read(os.path.join(out, "log.txt"))
    assert "Finish training" in log and "Traceback (most recent call last)" in log  # the traceback: in the log
    assert last_line(log) == error


def test_a_full_disk_is_one_line_naming_the_checkpoint(run, data_root, tmp_path, capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    folder = tmp_path / "out" / "linear_probe"
    folder.mkdir(parents=True)
    (folder / "model.pth.tar-1.tmp").symlink_to("/dev/full")  # every write fails with ENOSPC
    capsys.readouterr()
    assert run(toy_argv(data_root, str(tmp_path / "out"), "OPTIM.MAX_EPOCH", "2")) == 1
    error = last_line(capsys.readouterr().out)
    assert error == f'Error: Cannot write checkpoint "{folder / "model.pth.tar-1"}": No space left on device'
    assert os.listdir(folder) == []


class FullDisk(io.FileIO):
    """A file on a disk that fills up: once ``trigger`` (bytes) is in a write, or ``limit`` bytes
    have been written, every write fails with ENOSPC, as write(2) on a full disk does. Closing
    works (nothing buffered is left to flush)."""

    def __init__(self, path, trigger=None, limit=None):
        super().__init__(path, "wb")
        self.trigger, self.limit, self.written, self.full = trigger, limit, 0, False

    def write(self, data):
        data = bytes(data)
        if self.trigger is not None and self.trigger in data:
            self.full = True
        if self.limit is not None and self.written + len(data) > self.limit:
            self.full = True
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += len(data)
        return super().write(data)


def fill_the_disk_at(monkeypatch, path, **when):
    """Every later ``open(path, "w" or "wb")`` in this process writes to a FullDisk(**when):
    unbuffered in binary mode (each of torch's writes reaches the disk), line-buffered text as
    the log opens it."""
    real_open = builtins.open
    path = os.fspath(path)

    def fake_open(file, mode="r", buffering=-1, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == path and mode in ("w", "wb"):
            raw = FullDisk(path, **when)
            if mode == "wb":
                return raw
            return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", line_buffering=buffering == 1)
        return real_open(file, mode, buffering, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)


def test_a_disk_that_fills_while_torch_writes_a_checkpoint_is_one_line_and_loses_nothing(
    run, data_root, tmp_path, capsys, monkeypatch
):
    """torch's zip writer turns the failed write into a RuntimeError (the OSError is its context):
    still the documented line, the temporary file removed, the previous epoch intact and resumable."""
    out = tmp_path / "out"
    folder = out / "linear_probe"
    fill_the_disk_at(monkeypatch, folder / "model.pth.tar-2.tmp", limit=600)  # a few records into the file
    capsys.readouterr()
    assert run(toy_argv(data_root, str(out), *OPTS)) == 1
    captured = capsys.readouterr()
    assert last_line(captured.out) == (
        f'Error: Cannot write checkpoint "{folder / "model.pth.tar-2"}": No space left on device'
    )
    assert "Traceback" not in captured.out + captured.err and "RuntimeError" not in captured.out
    assert sorted(os.listdir(folder)) == ["checkpoint", "model.pth.tar-1"]  # no partial file, epoch 1 kept
    log = read(os.path.join(out, "log.txt"))
    assert "RuntimeError" in log and last_line(log) == last_line(captured.out)  # the traceback: in the log
    monkeypatch.undo()
    assert run(toy_argv(data_root, str(out), *OPTS)) == 0  # the disk has room again: resumes from epoch 1
    (_, resumed_log) = logs(out)
    assert "Previous epoch: 1\n" in read(os.path.join(out, resumed_log))


def test_a_disk_that_fills_while_the_log_is_written_is_one_line(run, data_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    fill_the_disk_at(monkeypatch, out / "log.txt", trigger=b"epoch [2/3] batch [1/3]")
    capsys.readouterr()
    assert run(toy_argv(data_root, str(out), *OPTS)) == 1
    captured = capsys.readouterr()
    lines = captured.out.rstrip("\n").split("\n")
    # The line that did not fit still reached the console; then one Error line, no traceback.
    assert lines[-2].startswith("epoch [2/3] batch [1/3]")
    assert lines[-1] == (
        f'Error: Cannot write the log "{out / "log.txt"}": No space left on device. Free space (or fix the '
        "folder), then run the same command again: it resumes from the last checkpoint"
    )
    assert "Traceback" not in captured.out + captured.err
    log = read(os.path.join(out, "log.txt"))
    assert "epoch [1/3] batch [3/3]" in log and "epoch [2/3]" not in log  # everything before the full disk
    assert sorted(os.listdir(out / "linear_probe")) == ["checkpoint", "model.pth.tar-1"]
    assert not os.path.exists(os.path.join(out, LOCK_FILE_NAME))  # released
