"""The overnight table, right and safe: the protocol scripts and reproduce.sh on a small toy world.

- a test result is tied to the model it evaluated: a retrained model is tested again, and
  parse_test_res.py never pairs a New with another model's Base;
- a training folder whose logs explain why it stopped (interrupted before its first checkpoint) starts
  again; a folder in use, or holding what train.py does not write, is refused;
- a finished run made with other settings than those asked for now is refused (before a sweep runs
  anything) unless ALLOW_MIXED=1; an evaluation with changed method keys too;
- Ctrl-C / SIGTERM stop reproduce.sh and it says what finished, what was interrupted and what was
  not started;
- the scripts and parse_test_res.py read a malformed newest log the same way (never counted).

One module-scoped run (ALIGN's toy recipe, seed 1: training and test) is copied into each test's
own OUTPUT.
"""

import fcntl
import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys

import pytest

from tests.script_runs import REPO, run_script, small_toy_env
from tools.results import provenance, status

SETTING = ("shots_2", "ALIGN", "toy_clip")
LEARNER = "MultiModalPromptLearner"
# 18 base classes x 2 shots in batches of 2: 18 batches in the one epoch, time to interrupt it.
OPTS = "OPTIM.MAX_EPOCH 1 DATALOADER.TRAIN_X.BATCH_SIZE 2"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The environment of a toy world where ALIGN's seed 1 was trained and tested."""
    root = tmp_path_factory.mktemp("sweeps")
    env = dict(small_toy_env(root, train_per_class=2, shots=2, batch_size=2), OPTS=OPTS)
    run_script("align/base2new_train.sh", "toy_shapes", "1", env=env)
    run_script("align/base2new_test.sh", "toy_shapes", "1", env=env)
    return env


@pytest.fixture
def env(trained, tmp_path):
    """The trained environment with an OUTPUT of this test's own (a copy)."""
    output = tmp_path / "output"
    shutil.copytree(trained["OUTPUT"], output)
    return dict(trained, OUTPUT=str(output))


def folder(env, side, seed=1):
    return osp.join(env["OUTPUT"], "base2new", side, "toy_shapes", *SETTING, f"seed{seed}")


def read(path):
    with open(path) as f:
        return f.read()


def parse_json(env, *options):
    result = subprocess.run(
        [sys.executable, "parse_test_res.py", osp.join(env["OUTPUT"], "base2new"), "--base2new", "--format", "json"]
        + list(options),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    return result.returncode, json.loads(result.stdout)


def script(name, *args, env, expect=None):
    """(exit status, stdout + stderr) of a method script."""
    result = subprocess.run(
        ["bash", osp.join("scripts", name), *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    if expect is not None:
        assert result.returncode == expect, output[-3000:]
    return result.returncode, output


def test_logs_name_the_request_and_the_model_files(trained):
    train_log = read(osp.join(folder(trained, "train_base"), "log.txt"))
    test_log = read(osp.join(folder(trained, "test_new"), "log.txt"))
    model = osp.join(folder(trained, "train_base"), LEARNER, "model.pth.tar-1")
    line = f"Model file of {LEARNER}: {model} (sha256 {provenance.file_sha256(model)})"
    assert line in train_log.splitlines() and line in test_log.splitlines()
    assert re.search(r"^Run request: [0-9a-f]{64}$", train_log, flags=re.M)
    # The names the light modules repeat are the engine's.
    from dassl.utils import BEST_MODEL_NAME, POINTER_NAME
    from dassl.utils.lock import LOCK_FILE_NAME

    assert (provenance.POINTER_NAME, provenance.BEST_MODEL_NAME) == (POINTER_NAME, BEST_MODEL_NAME)
    assert status.LOCK_FILE_NAME == LOCK_FILE_NAME


# ------------------------------------------------------------------------------------------------
# 3. A test result is tied to the model it evaluated
# ------------------------------------------------------------------------------------------------


def test_a_retrained_model_is_tested_again_and_never_paired_with_the_old_new(env):
    """Seed 1 trained and tested; its training folder deleted and trained again with other settings:
    the table leaves the old New out (stale) instead of pairing it with the new Base, and the test
    script evaluates the new model (a new log; the old one is kept), which then pairs."""
    train_dir, test_dir = folder(env, "train_base"), folder(env, "test_new")
    shutil.rmtree(train_dir)
    retrain_env = dict(env, OPTS=OPTS + " OPTIM.LR 0.01")
    run_script("align/base2new_train.sh", "toy_shapes", "1", env=retrain_env)

    status_code, report = parse_json(env)
    assert status_code == 1  # no pair is left
    (setting,) = report["settings"]
    (stale,) = [item for item in setting["missing"] if item["kind"] == "stale"]
    assert (stale["seed"], stale["side"], stale["path"]) == (1, "new", osp.join(test_dir, "log.txt"))
    assert stale["reason"].startswith(f"evaluated another model than the base run's ({LEARNER}: ")

    output = run_script("align/base2new_test.sh", "toy_shapes", "1", env=retrain_env)
    assert f"The result in {test_dir} (log.txt) is of another model: it evaluated " in output
    logs = sorted(os.listdir(test_dir))
    assert logs[0] == "log.txt" and len([name for name in logs if name.startswith("log.txt")]) == 2
    status_code, report = parse_json(env)
    assert status_code == 0
    ((pair,),) = [row["per_seed"] for row in report["settings"][0]["rows"]]
    assert pair["new_log"] == osp.join(test_dir, logs[1]) and report["settings"][0]["missing"] == []
    # Asked again, the test is done: it is the test of the model there now.
    assert run_script("align/base2new_test.sh", "toy_shapes", "1", env=retrain_env).startswith(
        f"Results are available in {test_dir}: skipping"
    )


# ------------------------------------------------------------------------------------------------
# 4. A folder that its logs explain starts again; one that they do not is refused
# ------------------------------------------------------------------------------------------------


def check_only(step, seed, env):
    """(exit status, output) of a step script with CHECK_ONLY=1: 0 done, 10 to run, 3 other
    settings, 1 refused."""
    return script(f"align/{step}.sh", "toy_shapes", str(seed), env=dict(env, CHECK_ONLY="1"))


def test_an_interrupted_first_epoch_starts_again_and_a_folder_in_use_is_refused(env):
    stopped = folder(env, "train_base", 5)
    os.makedirs(osp.join(stopped, LEARNER))
    os.makedirs(osp.join(stopped, "tensorboard"))
    line = "Interrupted at epoch 1 batch 3 (SIGTERM); last checkpoint: none; rerun the same command to start again"
    with open(osp.join(stopped, "log.txt"), "w") as f:
        f.write("epoch [1/1] batch [1/18] time 0.1 (0.1)\n" + line + "\n")
    code, output = check_only("base2new_train", 5, env)
    assert code == 10, output
    assert (
        f"Found a run in {stopped} that was interrupted before its first checkpoint ({line}): starting again" in output
    )

    # A live train.py holds the folder's lock: refused, naming it.
    with open(osp.join(stopped, ".lock"), "w") as lock:
        lock.write("pid 123 on host h, started t\n")
        lock.flush()
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, output = check_only("base2new_train", 5, env)
    assert code == 1 and f"Error: {stopped} is in use by a running train.py (pid 123 on host h, started t)" in output
    code, _ = check_only("base2new_train", 5, env)
    assert code == 10


# ------------------------------------------------------------------------------------------------
# 5. Settings do not mix silently
# ------------------------------------------------------------------------------------------------


def test_a_sweep_refuses_to_mix_settings_before_running_anything(env):
    """Seed 1 was made with OPTIM.MAX_EPOCH 1: a sweep over seeds 1 2 with other settings stops
    before it runs anything, naming the keys; ALLOW_MIXED=1 keeps the old run; an evaluation is
    checked on the keys that change it (the method's, not training's, not another method's)."""
    mixed_env = dict(env, OPTS="OPTIM.MAX_EPOCH 2 DATALOADER.TRAIN_X.BATCH_SIZE 2 OPTIM.LR 0.05")
    output = run_script("reproduce.sh", "base2new", "ALIGN", "toy_shapes", "1 2", env=mixed_env, expect=3)
    train_dir = folder(env, "train_base")
    assert (
        f"Error: {train_dir} holds a finished run (log.txt) made with other settings than those asked for now:"
        in output
    )
    assert "  OPTIM.MAX_EPOCH: 1 there, 2 now\n" in output and "  OPTIM.LR: 0.04 there, 0.05 now\n" in output
    assert (
        "Error: 1 finished run(s) were made with other settings than those asked for now (above); nothing was run."
        in output
    )
    assert not osp.exists(folder(env, "train_base", 2)) and "Base-to-new" not in output

    code, output = script("align/base2new_train.sh", "toy_shapes", "1", env=dict(mixed_env, ALLOW_MIXED="1"), expect=0)
    assert output.startswith(f"Results are available in {train_dir}: skipping")
    assert "  OPTIM.MAX_EPOCH: 1 there, 2 now" in output and "(ALLOW_MIXED=1)" in output

    eval_env = dict(env, OPTS=OPTS + " TRAINER.ALIGN.EPS 0.05 TRAINER.COOP.N_CTX 8 OPTIM.LR 0.05")
    code, output = script("align/base2new_test.sh", "toy_shapes", "1", env=eval_env, expect=3)
    differences = [line for line in output.splitlines() if line.endswith(" now")]
    assert differences == ["  TRAINER.ALIGN.EPS: 0.1 there, 0.05 now"]
    # The same settings (OPTS in another order, and a key that does not change a result): done.
    same_env = dict(env, OPTS="DATALOADER.TRAIN_X.BATCH_SIZE 2 OPTIM.MAX_EPOCH 1 DATALOADER.NUM_WORKERS 0")
    code, output = script("align/base2new_train.sh", "toy_shapes", "1", env=same_env, expect=0)
    assert output.startswith(f"Results are available in {train_dir}: skipping")


# ------------------------------------------------------------------------------------------------
# 6. Ctrl-C and SIGTERM stop reproduce.sh (and 4: the interrupted run starts again)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_sweep_and_says_where(env, sig, code):
    process = subprocess.Popen(
        ["bash", "scripts/reproduce.sh", "base2new", "ALIGN", "toy_shapes", "1 2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("epoch [1/1] batch [1/"):  # seed 2's training, before its first checkpoint
            os.killpg(process.pid, sig)
            break
    seen += process.stdout.read()
    process.wait()
    output = "".join(seen)
    assert process.returncode == code, output[-3000:]
    report = output[output.index(f"Stopped by {sig.name}: the sweep ends here") :].splitlines()
    assert report[1:] == [
        "Finished (2):",
        "  bash scripts/align/base2new_train.sh toy_shapes 1 (done before)",
        "  bash scripts/align/base2new_test.sh toy_shapes 1 (done before)",
        "Interrupted (1; it resumes, or starts again, when the sweep runs again):",
        "  bash scripts/align/base2new_train.sh toy_shapes 2",
        "Not started (1):",
        "  bash scripts/align/base2new_test.sh toy_shapes 2",
    ]
    stopped = folder(env, "train_base", 2)
    assert re.search(
        rf"^Interrupted at epoch 1 batch \d+ \({sig.name}\); last checkpoint: none;",
        read(osp.join(stopped, "log.txt")),
        flags=re.M,
    )
    if sig == signal.SIGTERM:  # 4: the next call starts the run again (it was refused for ever)
        output = run_script("align/base2new_train.sh", "toy_shapes", "2", env=env)
        assert (
            f"Found a run in {stopped} that was interrupted before its first checkpoint (Interrupted at epoch 1"
            in output
        )
        assert "Finish training" in output and len(os.listdir(stopped)) > 2


# ------------------------------------------------------------------------------------------------
# 9. A malformed newest log: never counted, by the scripts as by parse_test_res.py
# ------------------------------------------------------------------------------------------------


def test_a_malformed_newest_log_is_never_counted_and_run_again(env):
    test_dir = folder(env, "test_new")
    malformed = osp.join(test_dir, "log.txt-2000-01-01-00-00-00")
    with open(malformed, "w") as f:
        f.write("=> result\n* accuracy: 9.1.2%\n")
    status_code, report = parse_json(env)
    assert status_code == 1 and [m["kind"] for m in report["settings"][0]["missing"]][0] == "malformed"

    # Training folders too: a malformed newest log there means the run is not done (it resumes
    # from its final checkpoint, which only tests again).
    train_dir = folder(env, "train_base")
    with open(osp.join(train_dir, "log.txt-2000-01-01-00-00-00"), "w") as f:
        f.write("Finish training\n* accuracy: 7.7.7%\n")
    code, output = check_only("base2new_train", 1, env)
    assert code == 10 and f"Found an unfinished run with a checkpoint in {train_dir}: resuming" in output
    assert "log.txt-2000-01-01-00-00-00, cannot be counted (malformed: " in output
    os.remove(osp.join(train_dir, "log.txt-2000-01-01-00-00-00"))

    output = run_script("align/base2new_test.sh", "toy_shapes", "1", env=env)
    assert f"The newest log of {test_dir} with a result line, log.txt-2000-01-01-00-00-00, cannot be counted" in output
    assert "evaluating again" in output
    status_code, report = parse_json(env)
    assert status_code == 0
    ((pair,),) = [row["per_seed"] for row in report["settings"][0]["rows"]]
    assert pair["new_log"] not in (malformed, osp.join(test_dir, "log.txt"))
