"""The protocol scripts end to end on the toy world (tiny epoch counts), and parse_test_res.py on
the logs they produce.

One module-scoped demo run (two seeds) feeds most tests; each script is run as a user would, in a
subprocess, with DATA and OUTPUT in a temporary folder.
"""

import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.script_runs import run_script
from tools.methods import load_methods

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SETTING = ("shots_4", "ALIGN", "toy_clip")
ZERO_SHOT_SETTING = ("shots_4", "ZeroshotCLIP", "toy_clip")
LEARNER = "MultiModalPromptLearner"
# One epoch of 4 shots per class, large batches: the scripts' plumbing, not the learning, is tested.
TINY_OPTS = "OPTIM.MAX_EPOCH 1 DATALOADER.TRAIN_X.BATCH_SIZE 32"
# A PYTHON that prints the train.py call it gets (the scripts' own checks, python -m ..., run).
FAKE_PYTHON = f'#!/usr/bin/env bash\nif [ "$1" = -m ]; then exec {sys.executable} "$@"; fi\necho "train.py $*"\n'


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
        DEMO_METHODS="ZeroshotCLIP ALIGN",  # the demo's path; the baselines' scripts have tests of their own
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
    assert "Base-to-new comparison in" in output and "Targets:" in output
    # One table, a row per method with the seeds it used (zero-shot CLIP draws nothing: one seed).
    assert re.search(r"^ZeroshotCLIP +1 +1 ", output, flags=re.M) and re.search(r"^ALIGN +1,2 +1 ", output, flags=re.M)
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


def test_a_folder_that_train_py_cannot_have_written_is_refused_not_retrained(demo, env):
    partial = out(env, "base2new", "train_base", "toy_shapes", *SETTING, "seed7")
    os.makedirs(partial)
    with open(osp.join(partial, "notes.txt"), "w") as f:
        f.write("mine\n")
    output = run_script("align/base2new_train.sh", "toy_shapes", "7", env=env, expect=1)
    refusal = f"Error: {partial} holds no result and no checkpoint, and what train.py does not write there"
    assert f"{refusal} (notes.txt): it is not trained over." in output
    assert f"Delete it to train again: rm -r {partial}" in output
    assert os.listdir(partial) == ["notes.txt"]


def test_folder_of_failed_starts_is_run_again_also_once_a_log_shows_an_epoch(demo, env):
    """A run that stopped before training (here: a dataset missing from DATA) leaves only its
    log.txt: the next call runs again (keeping the old log); a log that shows a training epoch but
    no checkpoint (killed in its first epoch) is started again too, the old logs kept."""
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
    assert f"Found a run in {failed} that stopped before its first checkpoint without a result" in third
    assert len(os.listdir(failed)) == 3 and set(logs) < set(os.listdir(failed))


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
    model_dir = out(env, "base2new", "train_base", "toy_shapes", *SETTING, "seed5")
    assert f"Error: no trained model in {model_dir}: no log there shows a finished training" in output


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
    fake_python.write_text(FAKE_PYTHON)
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


# ------------------------------------------------------------------------------------------------
# Called from anywhere (relative script path, relative OUTPUT)
# ------------------------------------------------------------------------------------------------


def test_scripts_run_from_any_folder_by_a_relative_path(demo, env, tmp_path):
    """From another folder, by a relative path: the script finds its files; a relative OUTPUT is
    the caller's."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = osp.relpath(osp.join(REPO, "scripts", "align", "base2new_test.sh"), elsewhere)
    output_rel = osp.relpath(env["OUTPUT"], elsewhere)
    result = subprocess.run(
        ["bash", script, "toy_shapes", "1"],
        cwd=elsewhere,
        env=dict(env, OUTPUT=output_rel),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    tail = osp.join("base2new", "test_new", "toy_shapes", *SETTING, "seed1")
    assert result.stdout.startswith(f"Results are available in {elsewhere}/{output_rel}/{tail}: skipping")
    done = out(env, tail)
    # From the method's own folder, as the official scripts are run.
    result = subprocess.run(
        ["bash", "base2new_test.sh", "toy_shapes", "1"],
        cwd=osp.join(REPO, "scripts", "align"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout.startswith(f"Results are available in {done}: skipping")


# ------------------------------------------------------------------------------------------------
# The result of a folder: the newest complete log (shared with parse_test_res.py)
# ------------------------------------------------------------------------------------------------


def bash_result_log(folder, kind):
    """What the scripts decide for a folder (scripts/common.sh's run_status, CHECK_ONLY=1, without a
    request): (0, the log it names) when it is done, (its exit status, "") when it is to run."""
    script = 'source scripts/common.sh && TRAIN_ARGS=() && CHECK_ONLY=1 run_status "$1" "$0"'
    result = subprocess.run(
        ["bash", "-c", script, str(folder), kind],
        cwd=REPO,
        env=dict(os.environ, PYTHON=sys.executable),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return result.returncode, ""
    return 0, osp.join(str(folder), re.search(r"; result in (\S+)\)$", result.stdout, flags=re.M).group(1))


@pytest.mark.parametrize(
    "logs, kind, expected",
    [
        # A later start killed before its result: the earlier result stands.
        ({"log.txt": "train", "log.txt-2024-05-01-12-00-00": "unfinished"}, "train", "log.txt"),
        # A resumed run that finished: the newest complete log.
        (
            {"log.txt": "unfinished", "log.txt-2024-05-01-12-00-00": "train", "log.txt-2024-05-02-08-00-00": "train"},
            "train",
            "log.txt-2024-05-02-08-00-00",
        ),
        # Killed during the final test, after "Finish training": no result yet.
        ({"log.txt": "tested_nothing"}, "train", None),
        ({"log.txt": "unfinished", "log.txt-2024-05-01-12-00-00": "unfinished"}, "train", None),
        # An evaluation repeated after a crash; the val results of a training log are no eval result.
        ({"log.txt": "unfinished", "log.txt-2024-05-01-12-00-00": "eval"}, "eval", "log.txt-2024-05-01-12-00-00"),
        ({}, "eval", None),
    ],
)
def test_the_newest_complete_log_is_the_result_in_scripts_and_parser(tmp_path, logs, kind, expected):
    from tests.log_fixtures import eval_only_log, training_log, write
    from tools.results.logs import FOUND, TEST_END_SIGNAL, TRAIN_END_SIGNALS, keyword_metric, read_run

    folder = tmp_path / "seed1"
    folder.mkdir()
    texts = {
        "train": training_log("x", 70.0),
        "unfinished": training_log("x", 60.0, finished=False),
        "tested_nothing": training_log("x", 60.0).split("Evaluate on the *test* set")[0],
        "eval": eval_only_log("x", 50.0),
    }
    for name, content in logs.items():
        write(folder / name, texts[content])
    status, log = bash_result_log(folder, kind)
    assert (status, log) == ((0, str(folder / expected)) if expected else (10, ""))
    signals = TRAIN_END_SIGNALS if kind == "train" else (TEST_END_SIGNAL,)
    read = read_run(str(folder), [keyword_metric("accuracy")], signals)
    assert (read.status == FOUND) == (expected is not None)
    if expected:
        assert read.path == str(folder / expected)


def test_killed_training_resumes_into_a_new_log_and_counts_once_finished(demo, env):
    """A real train.py killed mid-run (SIGKILL, after epoch 1's checkpoint): the next call resumes
    into log.txt-<time>, whose result then counts for the scripts (no third run) and for
    parse_test_res.py; with TEST.FINAL_MODEL best_val the new-class test loads the model whose
    test gave the base result, model-best.pth.tar."""
    opts = "OPTIM.MAX_EPOCH 2 DATALOADER.TRAIN_X.BATCH_SIZE 32 TRAIN.CHECKPOINT_FREQ 1 TEST.FINAL_MODEL best_val"
    run_env = dict(env, OPTS=opts)
    folder = out(env, "base2new", "train_base", "toy_shapes", *SETTING, "seed11")
    process = subprocess.Popen(
        ["bash", "scripts/align/base2new_train.sh", "toy_shapes", "11"],
        cwd=REPO,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: bash and train.py are killed together
    )
    seen = []
    for line in process.stdout:  # epoch 1 is saved once epoch 2 prints its first batch
        seen.append(line)
        if line.startswith("epoch [2/2]"):
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    assert os.listdir(folder) and not osp.exists(osp.join(folder, "log.txt-"))
    assert "Finish training" not in open(osp.join(folder, "log.txt")).read()

    output = run_script("align/base2new_train.sh", "toy_shapes", "11", env=run_env)
    assert f"Found an unfinished run with a checkpoint in {folder}: resuming" in output
    (resumed,) = [name for name in os.listdir(folder) if name.startswith("log.txt-")]
    assert "Finish training" in open(osp.join(folder, resumed)).read()

    output = run_script("align/base2new_train.sh", "toy_shapes", "11", env=run_env)
    assert (
        output
        == f"Results are available in {folder}: skipping (delete the folder to run it again; result in {resumed})\n"
    )

    run_script("align/base2new_test.sh", "toy_shapes", "11", env=run_env)
    test_log = open(out(env, "base2new", "test_new", "toy_shapes", *SETTING, "seed11", "log.txt")).read()
    assert f'{folder}/{LEARNER}/model-best.pth.tar"' in test_log and "SUBSAMPLE NEW CLASSES!" in test_log

    result = subprocess.run(
        [sys.executable, "parse_test_res.py", out(env, "base2new"), "--base2new", "--seeds", "11", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    settings = {(s["shots"], s["trainer"], s["cfg"]): s for s in json.loads(result.stdout)["settings"]}
    ((pair,),) = [row["per_seed"] for row in settings[SETTING]["rows"]]
    assert pair["base_log"] == osp.join(folder, resumed)
    assert pair["base"] == final_accuracy(osp.join(folder, resumed))


# ------------------------------------------------------------------------------------------------
# reproduce.sh: a protocol over methods x datasets x seeds, then the table
# ------------------------------------------------------------------------------------------------


def test_reproduce_checks_methods_and_protocols_first(env):
    available = " ".join(method.name for method in load_methods())
    assert available.startswith("ZeroshotCLIP ") and "ALIGN" in available  # the registry's order
    output = run_script("reproduce.sh", "base2new", "ZeroshotCLIP NoSuchMethod", "toy_shapes", env=env, expect=2)
    assert output.startswith(f"Error: unknown method 'NoSuchMethod' (or not available yet); available: {available}")
    output = run_script("reproduce.sh", "fewshot", "ALIGN zsclip", "toy_shapes", env=env, expect=2)
    assert output.startswith("Error: zsclip has no fewshot scripts (no scripts/zsclip/fewshot.sh)")
    output = run_script("reproduce.sh", "base2new", "ALIGN", "toy_shape", env=env, expect=2)
    assert output.startswith("Error: unknown dataset 'toy_shape' (no configs/datasets/toy_shape.yaml)")
    output = run_script("reproduce.sh", "transfer", "ALIGN", env=env, expect=2)
    assert "Error: unknown protocol 'transfer'" in output and f"methods: {available}" in output


def test_reproduce_base2new_prints_the_comparison(demo, env):
    output = run_script("reproduce.sh", "base2new", "zeroshotclip ALIGN", "toy_shapes", "1 2", env=env)
    assert output.count("Results are available in ") == 6  # ALIGN 2 x 2, zero-shot seed 1 x 2
    table = output[output.index("Base-to-new comparison in") :].splitlines()
    assert table[3].startswith("ZeroshotCLIP  1") and table[4].startswith("ALIGN         1,2")
    # Zero-shot CLIP's seed 2 ran now: it draws nothing, so both seeds give the same numbers.
    assert re.match(r"ZeroshotCLIP +1,2 +1 +([\d.]+) \+- 0\.00 +([\d.]+) \+- 0\.00 ", table[3])


def test_reproduce_goes_on_after_a_failed_run_and_lists_it(demo, env):
    output = run_script("reproduce.sh", "base2new", "ZeroshotCLIP", "caltech101 toy_shapes", "1", env=env, expect=1)
    assert "Base-to-new comparison" not in output  # one method: its own table
    assert "toy_shapes           1  " in output and "caltech101: only base runs; left out of the average" in output
    assert output.rstrip().endswith("Failed (1):\n  bash scripts/zsclip/base2new_train.sh caltech101 1")


def test_reproduce_xd_for_two_methods(demo, env):
    xd_env = dict(env, SOURCE="toy_shapes")
    output = run_script("reproduce.sh", "xd", "ZeroshotCLIP ALIGN", "toy_shapes", "1", env=xd_env)
    assert "ZeroshotCLIP has nothing to train" in output
    for trainer in ("ZeroshotCLIP", "ALIGN"):
        log = out(env, "evaluation", trainer, "toy_clip_4shots", "toy_shapes", "seed1", "log.txt")
        assert "# classes  36" in open(log).read()
        assert f"Summary of directory: {osp.dirname(osp.dirname(log))}" in output


# ------------------------------------------------------------------------------------------------
# The official entry points: scripts/mmp/ (from a temporary copy of the repository)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """A copy of the repository with a toy MMP recipe (the toy ALIGN recipe under TRAINER.MMP)."""
    copy = tmp_path_factory.mktemp("copy") / "repo"
    ignore = shutil.ignore_patterns(".git", ".venv", "output", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(REPO, copy, ignore=ignore)
    toy = open(osp.join(REPO, "configs", "trainers", "ALIGN", "toy_clip.yaml")).read()
    toy = toy.replace("\n  ALIGN:\n", "\n  MMP:\n") + "    USECT: False  # the official default True is rejected\n"
    (copy / "configs" / "trainers" / "MMP" / "toy_clip.yaml").write_text(toy)
    return copy


def test_mmp_scripts_from_their_folder_and_from_the_root(demo, env, repo_copy):
    mmp_dir = repo_copy / "scripts" / "mmp"
    mmp_env = dict(env, OUTPUT=str(repo_copy / "output"))
    for script in ("base_to_new_train.sh", "base_to_new_test.sh"):
        result = subprocess.run(
            ["bash", script, "toy_shapes", "1"], cwd=mmp_dir, env=mmp_env, capture_output=True, text=True
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    setting = ("shots_4", "MMP", "toy_clip")
    train_log = open(
        osp.join(mmp_env["OUTPUT"], "base2new", "train_base", "toy_shapes", *setting, "seed1", "log.txt")
    ).read()
    assert "trainer: MMP" in train_log and "Finish training" in train_log and "SUBSAMPLE BASE CLASSES!" in train_log
    test_log = open(
        osp.join(mmp_env["OUTPUT"], "base2new", "test_new", "toy_shapes", *setting, "seed1", "log.txt")
    ).read()
    assert "SUBSAMPLE NEW CLASSES!" in test_log and f'{LEARNER}/model.pth.tar-1" (epoch = 1)' in test_log
    result = subprocess.run(
        ["bash", "scripts/mmp/base_to_new_test.sh", "toy_shapes", "1"],
        cwd=repo_copy,
        env=mmp_env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout.startswith("Results are available in ")


def test_mmp_scripts_default_to_the_official_dataset_seed_and_configs(env, repo_copy, tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text(FAKE_PYTHON)
    fake_python.chmod(0o755)
    fake_env = {k: v for k, v in env.items() if k not in ("CFG", "SHOTS")}
    fake_env.update(PYTHON=str(fake_python), OUTPUT=str(tmp_path / "out"))
    mmp_dir = repo_copy / "scripts" / "mmp"

    def call(*args):
        result = subprocess.run(["bash", *args], cwd=mmp_dir, env=fake_env, capture_output=True, text=True)
        return result.returncode, result.stdout + result.stderr

    status, output = call("base_to_new_train.sh")
    assert status == 0, output
    for piece in (
        "--seed 1 --trainer MMP --dataset-config-file configs/datasets/caltech101.yaml",
        "--config-file configs/trainers/MMP/vit_b16_c2_ep5_batch4_2ctx.yaml",
        "/base2new/train_base/caltech101/shots_16/MMP/vit_b16_c2_ep5_batch4_2ctx/seed1",
        "DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base",
    ):
        assert piece in output
    status, output = call("base_to_new_train.sh", "sun397", "2")
    assert status == 0 and "--config-file configs/trainers/MMP/sun397.yaml" in output and "--seed 2" in output
    status, output = call("base_to_new_test.sh")
    model_dir = f"{tmp_path}/out/base2new/train_base/caltech101/shots_16/MMP/vit_b16_c2_ep5_batch4_2ctx/seed1"
    assert status == 1 and f"Error: no trained model in {model_dir}" in output


# The official configs/trainers/MMP/ files: (LR, evaluation batch, prompts T = V, backbone).
OFFICIAL_MMP = {
    "vit_b16_c2_ep5_batch4_2ctx.yaml": (0.0025, 100, 4, "ViT-B/16"),
    "sun397.yaml": (0.002, 4, 2, "ViT-B/16"),
    "vit_h.yaml": (0.0025, 100, 4, "ViT-H/14"),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_MMP))
def test_mmp_configs_hold_the_official_values(name):
    import train

    assert sorted(os.listdir(osp.join(REPO, "configs", "trainers", "MMP"))) == sorted(OFFICIAL_MMP)
    args = train.build_parser().parse_args(
        [
            "--config-file",
            osp.join(REPO, "configs", "trainers", "MMP", name),
            "--dataset-config-file",
            osp.join(REPO, "configs", "datasets", "caltech101.yaml"),
            "--trainer",
            "MMP",
        ]
    )
    cfg = train.setup_cfg(args)
    lr, test_batch, prompts, backbone = OFFICIAL_MMP[name]
    optim = cfg.OPTIM
    assert (optim.NAME, optim.LR, optim.MAX_EPOCH, optim.LR_SCHEDULER) == ("sgd", lr, 20, "cosine")
    assert (optim.WARMUP_EPOCH, optim.WARMUP_TYPE, optim.WARMUP_CONS_LR) == (1, "constant", 1e-5)
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TEST.BATCH_SIZE) == (4, test_batch)
    assert (tuple(cfg.INPUT.SIZE), cfg.INPUT.INTERPOLATION, cfg.MODEL.BACKBONE.NAME) == (
        (224, 224),
        "bicubic",
        backbone,
    )
    assert list(cfg.INPUT.TRANSFORMS) == ["random_resized_crop", "random_flip", "normalize"]
    mmp = cfg.TRAINER.MMP
    assert (mmp.N_CTX, mmp.CTX_INIT, mmp.PREC, mmp.TEXT_PROMPT_DEPTH, mmp.VISION_PROMPT_DEPTH) == (
        2,
        "a photo of a",
        "fp16",
        9,
        9,
    )
    assert (mmp.TEXT_PROMPT_NUMBER, mmp.VISION_PROMPT_NUMBER, mmp.HIERARCHICAL, mmp.USECT) == (
        prompts,
        prompts,
        True,
        False,
    )
    if backbone == "ViT-H/14":  # no OpenAI weights: the file says how to give open_clip's
        assert "MODEL.BACKBONE.PATH" in open(osp.join(REPO, "configs", "trainers", "MMP", name)).read()
