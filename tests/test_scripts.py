"""The protocol scripts end to end on the toy world (tiny epoch counts), and parse_test_res.py on
the logs they produce.

One module-scoped demo run (two seeds) feeds most tests; each script is run as a user would, in a
subprocess, with DATA and OUTPUT in a temporary folder.
"""

import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SETTING = ("shots_4", "ALIGN", "toy_clip")
ZERO_SHOT_SETTING = ("shots_4", "ZeroshotCLIP", "toy_clip")
LEARNER = "MultiModalPromptLearner"
# One epoch of 4 shots per class, large batches: the scripts' plumbing, not the learning, is tested.
TINY_OPTS = "OPTIM.MAX_EPOCH 1 DATALOADER.TRAIN_X.BATCH_SIZE 32"


def run_script(script, *args, env, expect=0):
    """Run ``bash scripts/<script> args`` from the repository root; return its stdout + stderr."""
    result = subprocess.run(
        ["bash", osp.join("scripts", script), *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    assert result.returncode == expect, output[-3000:]
    return output


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("scripts")
    # demo.sh writes the toy world to $DEMO_OUTPUT/data: the other scripts read it there.
    environment = dict(
        os.environ,
        PYTHON=sys.executable,
        DATA=str(root / "output" / "data"),
        OUTPUT=str(root / "output"),
        DEMO_OUTPUT=str(root / "output"),
        SHOTS="4",
        OPTS=TINY_OPTS,
        CFG="toy_clip",
        OMP_NUM_THREADS="1",
        SEEDS="1 2",
        PYTHONUNBUFFERED="1",
    )
    return environment


@pytest.fixture(scope="module")
def demo(env):
    """scripts/demo.sh with two seeds and one epoch: (exit status, output)."""
    result = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def out(env, *parts):
    return osp.join(env["OUTPUT"], *parts)


def final_accuracy(log_path):
    """The last '* accuracy: X%' of a log, read by hand (independently of parse_test_res.py)."""
    with open(log_path) as f:
        return float(re.findall(r"^\* accuracy: ([\d.]+)%$", f.read(), flags=re.M)[-1])


def test_demo_runs_the_whole_path(demo, env):
    status, output = demo
    # One epoch cannot reach the learning target: the report says so and the exit status is 1.
    assert status in (0, 1), output[-3000:]
    assert ("[MISSED]" in output) == (status == 1)
    assert "Base-to-new results in" in output and "Targets:" in output
    assert osp.isfile(out(env, "demo.png"))
    for seed in (1, 2):
        train_dir = out(env, "base2new", "train_base", "toy_shapes", *SETTING, f"seed{seed}")
        assert osp.isfile(osp.join(train_dir, "log.txt"))
        assert open(osp.join(train_dir, LEARNER, "checkpoint")).read() == "model.pth.tar-1\n"
        test_log = out(env, "base2new", "test_new", "toy_shapes", *SETTING, f"seed{seed}", "log.txt")
        log = open(test_log).read()
        assert "SUBSAMPLE NEW CLASSES!" in log and f'{LEARNER}/model.pth.tar-1" (epoch = 1)' in log
    for side in ("test_base", "test_new"):
        assert osp.isfile(out(env, "base2new", side, "toy_shapes", *ZERO_SHOT_SETTING, "seed1", "log.txt"))


def test_parse_test_res_gives_the_hand_computed_numbers_on_engine_logs(demo, env):
    base = [
        final_accuracy(out(env, "base2new", "train_base", "toy_shapes", *SETTING, f"seed{s}", "log.txt"))
        for s in (1, 2)
    ]
    new = [
        final_accuracy(out(env, "base2new", "test_new", "toy_shapes", *SETTING, f"seed{s}", "log.txt")) for s in (1, 2)
    ]
    mean_base, mean_new = sum(base) / 2, sum(new) / 2
    std_base = ((base[0] - mean_base) ** 2 / 2 + (base[1] - mean_base) ** 2 / 2) ** 0.5
    hm = 2 * mean_base * mean_new / (mean_base + mean_new)

    result = subprocess.run(
        [sys.executable, "parse_test_res.py", out(env, "base2new"), "--base2new", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    settings = {(s["shots"], s["trainer"], s["cfg"]): s for s in json.loads(result.stdout)["settings"]}
    (row,) = settings[SETTING]["rows"]
    assert row["seeds"] == [1, 2]
    assert row["base"]["mean"] == pytest.approx(mean_base, abs=1e-9)
    assert row["base"]["std"] == pytest.approx(std_base, abs=1e-9)
    assert row["new"]["mean"] == pytest.approx(mean_new, abs=1e-9)
    assert row["hm"] == pytest.approx(hm, abs=1e-9)
    assert settings[SETTING]["average"]["hm"] == pytest.approx(hm, abs=1e-9)

    # The CoOp mode on one experiment folder: the same per-run values and numpy's population std.
    result = subprocess.run(
        [sys.executable, "parse_test_res.py", out(env, "base2new", "test_new", "toy_shapes", *SETTING), "--test-log"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"* accuracy: {mean_new:.2f}% +- {np.std(new):.2f}%" in result.stdout


def test_second_runs_are_skipped(demo, env):
    for script, args in (
        ("align/base2new_train.sh", ("toy_shapes", "1")),
        ("align/base2new_test.sh", ("toy_shapes", "2")),
    ):
        output = run_script(script, *args, env=env)
        assert output.startswith("Results are available in ") and "skipping" in output
    output = run_script("align/reproduce_base2new.sh", env=dict(env, DATASETS="toy_shapes"))
    assert output.count("Results are available in ") == 4
    assert "Base-to-new results in" in output and "toy_shapes           1,2" in output


def test_partial_training_folder_is_refused_not_retrained(demo, env):
    partial = out(env, "base2new", "train_base", "toy_shapes", *SETTING, "seed7")
    os.makedirs(partial)
    output = run_script("align/base2new_train.sh", "toy_shapes", "7", env=env, expect=1)
    assert f"Error: {partial} exists but holds no result and no checkpoint" in output
    assert os.listdir(partial) == []


def test_folder_of_failed_starts_is_run_again_and_a_started_one_refused(demo, env):
    """A run that stopped before training (here: a dataset missing from DATA) leaves only its
    log.txt: the next call runs again (keeping the old log); once a log shows a training epoch,
    the folder is refused."""
    failed = out(env, "base2new", "train_base", "caltech101", *SETTING, "seed1")
    first = run_script("align/base2new_train.sh", "caltech101", "1", env=env, expect=1)
    assert "Error: " in first and "caltech-101" in first and "running again" not in first
    assert os.listdir(failed) == ["log.txt"]
    second = run_script("align/base2new_train.sh", "caltech101", "1", env=env, expect=1)
    assert f"Found only the logs of runs that stopped before training in {failed}: running again" in second
    logs = sorted(os.listdir(failed))
    assert len(logs) == 2 and logs[0] == "log.txt" and logs[1].startswith("log.txt-")
    with open(osp.join(failed, "log.txt"), "a") as f:
        f.write("epoch [1/1] batch [1/3] time 0.1 (0.1)\n")
    third = run_script("align/base2new_train.sh", "caltech101", "1", env=env, expect=1)
    assert f"Error: {failed} exists but holds no result and no checkpoint" in third
    assert sorted(os.listdir(failed)) == logs


def test_unfinished_run_with_a_checkpoint_resumes(demo, env):
    finished = out(env, "base2new", "train_base", "toy_shapes", *SETTING, "seed1")
    resumed = out(env, "base2new", "train_base", "toy_shapes", *SETTING, "seed9")
    os.makedirs(osp.join(resumed, LEARNER))
    for name in ("checkpoint", "model.pth.tar-1"):
        with open(osp.join(finished, LEARNER, name), "rb") as src, open(osp.join(resumed, LEARNER, name), "wb") as dst:
            dst.write(src.read())
    # Seed 1's checkpoint: resuming it as seed 9 is a changed config, which needs the override.
    opts = TINY_OPTS + " TRAIN.RESUME_CHANGED_CONFIG True"
    output = run_script("align/base2new_train.sh", "toy_shapes", "9", env=dict(env, OPTS=opts))
    assert "Found an unfinished run with a checkpoint" in output
    log = open(osp.join(resumed, "log.txt")).read()
    assert "Previous epoch: 1" in log and "* accuracy: " in log


def test_test_script_without_a_trained_model_names_what_is_missing(env):
    output = run_script("align/base2new_test.sh", "toy_shapes", "5", env=env, expect=1)
    assert "Error: no trained model in " in output and f"seed5/{LEARNER}/checkpoint" in output


def test_cross_dataset_scripts(demo, env):
    xd_env = dict(env, SOURCE="toy_shapes", CFG="toy_clip")
    run_script("align/xd_train.sh", "1", env=xd_env)
    train_dir = out(env, "toy_shapes", "ALIGN", "toy_clip_4shots", "seed1")
    assert "Finish training" in open(osp.join(train_dir, "log.txt")).read()
    run_script("align/xd_test.sh", "toy_shapes", "1", env=xd_env)
    log = open(out(env, "evaluation", "ALIGN", "toy_clip_4shots", "toy_shapes", "seed1", "log.txt")).read()
    assert "# classes  36" in log and "* accuracy: " in log  # all classes, not a base/new half
    output = run_script("align/reproduce_xd.sh", env=dict(xd_env, TARGETS="toy_shapes", SEEDS="1"))
    assert output.count("Results are available in ") == 2 and "Summary of directory:" in output


def test_fewshot_scripts(demo, env):
    run_script("align/fewshot.sh", "toy_shapes", "2", "1", env=env)
    log = open(out(env, "toy_shapes", "ALIGN", "toy_clip_2shots", "seed1", "log.txt")).read()
    assert "Creating a 2-shot dataset" in log and "# train_x  72" in log  # 36 classes x 2 shots
    output = run_script("align/reproduce_fewshot.sh", env=dict(env, DATASETS="toy_shapes", SHOTS_LIST="2", SEEDS="1"))
    assert "Results are available in " in output and "* accuracy: " in output


def test_fewshot_picks_the_recipe_by_shots(env, tmp_path):
    """Without CFG, fewshot.sh chooses the recipe that carries the official epoch count."""
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/usr/bin/env bash\necho "train.py $*"\n')
    fake_python.chmod(0o755)
    fake_env = {k: v for k, v in env.items() if k != "CFG"}
    fake_env.update(PYTHON=str(fake_python), OUTPUT=str(tmp_path / "out"))
    expected = {
        ("oxford_pets", "1"): "ep30",
        ("oxford_pets", "4"): "ep50",
        ("oxford_pets", "16"): "ep80",
        ("imagenet", "16"): "ep20_batch4_2ctx_xd",
    }
    for (dataset, shots), recipe in expected.items():
        output = run_script("align/fewshot.sh", dataset, shots, "1", env=fake_env)
        assert re.search(rf"--config-file configs/trainers/ALIGN/vit_b16_c2_{recipe}[_a-z0-9]*\.yaml", output), output


def test_zero_shot_script(demo, env):
    run_script("zsclip/zeroshot.sh", "toy_shapes", env=env)
    log = open(out(env, "ZeroshotCLIP", "toy_clip", "toy_shapes", "log.txt")).read()
    assert "# classes  36" in log and "* accuracy: " in log
