"""The CoOp, CoCoOp and ZeroshotCLIP2 scripts end to end on a small toy world (one epoch): the
protocol steps through reproduce.sh, the test steps loading the epoch that training saved, CoOp's
main.sh with its arguments and output layout, and the recipes each protocol picks."""

import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from tests.script_runs import REPO, run_script, small_toy_env
from tests.script_runs import read_log as read

LEARNER = "prompt_learner"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return small_toy_env(tmp_path_factory.mktemp("scripts"), train_per_class=4, shots=4, batch_size=32)


@pytest.fixture(scope="module")
def base2new(env):
    """reproduce.sh base2new for the three methods on the toy world, seed 1: its output."""
    return run_script("reproduce.sh", "base2new", "ZeroshotCLIP2 CoOp CoCoOp", "toy_shapes", "1", env=env)


def test_base_to_new_trains_on_base_and_tests_the_saved_epoch_on_new(base2new, env):
    for trainer in ("CoOp", "CoCoOp"):
        tail = ("toy_shapes", "shots_4", trainer, "toy_clip", "seed1")
        train_log = read(env, "base2new", "train_base", *tail)
        assert "SUBSAMPLE BASE CLASSES!" in train_log and "Finish training" in train_log
        test_log = read(env, "base2new", "test_new", *tail)
        saved = osp.join(env["OUTPUT"], "base2new", "train_base", *tail, LEARNER, "model.pth.tar-1")
        assert f'Loaded weights to {LEARNER} from "{saved}" (epoch = 1)' in test_log
        assert "SUBSAMPLE NEW CLASSES!" in test_log and re.search(r"^\* total: 36$", test_log, flags=re.M)
    for side in ("test_base", "test_new"):
        log = read(env, "base2new", side, "toy_shapes", "shots_4", "ZeroshotCLIP2", "toy_clip", "seed1")
        assert "Prompt ensembling (n=8)" in log and "* accuracy: " in log
    # parse_test_res.py's comparison table: a row per method, Base and New of the one seed.
    rows = re.findall(
        r"^(ZeroshotCLIP2|CoOp|CoCoOp) +1 +1 +[\d.]+ \+- 0\.00 +[\d.]+ \+- 0\.00 +[\d.]+$", base2new, re.M
    )
    assert rows == ["ZeroshotCLIP2", "CoOp", "CoCoOp"]


def test_second_runs_are_skipped(base2new, env):
    for script, args in (
        ("coop/base2new_train.sh", ("toy_shapes", "1")),
        ("cocoop/base2new_test.sh", ("toy_shapes", "1")),
    ):
        output = run_script(script, *args, env=env)
        assert output.startswith("Results are available in ") and "skipping" in output


def test_cross_dataset_steps(env):
    """CoCoOp's (CoOp's two scripts are the same two lines with its env.sh)."""
    environment = dict(env, SOURCE="toy_shapes")
    run_script("cocoop/xd_train.sh", "1", env=environment)
    run_script("cocoop/xd_test.sh", "toy_shapes", "1", env=environment)
    model_dir = osp.join(env["OUTPUT"], "toy_shapes", "CoCoOp", "toy_clip_4shots", "seed1")
    log = read(env, "evaluation", "CoCoOp", "toy_clip_4shots", "toy_shapes", "seed1")
    assert f'from "{osp.join(model_dir, LEARNER, "model.pth.tar-1")}" (epoch = 1)' in log


def test_coop_main_sh_takes_coop_arguments_and_writes_coop_layout(env):
    args = ("toy_shapes", "toy_clip", "middle", "3", "2", "True")
    run_script("coop/main.sh", *args, env=dict(env, SEEDS="1 2"))
    root = osp.join(env["OUTPUT"], "toy_shapes", "CoOp", "toy_clip_2shots", "nctx3_cscTrue_ctpmiddle")
    assert sorted(os.listdir(root)) == ["seed1", "seed2"]
    log = read(env, "toy_shapes", "CoOp", "toy_clip_2shots", "nctx3_cscTrue_ctpmiddle", "seed2")
    assert "Setting fixed seed: 2" in log and "Initializing class-specific contexts" in log
    assert f"Trainable parameters (prompt learner): {36 * 3 * 64:,}" in log  # all 36 classes x 3 x d_t
    assert re.search(r"^\* total: 72$", log, flags=re.M)  # all classes, 2 test images each
    output = run_script("coop/main.sh", *args, env=dict(env, SEEDS="1 2"))
    assert output.count("Results are available in ") == 2
    result = subprocess.run(
        [sys.executable, "parse_test_res.py", root], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert re.search(r"\* accuracy: [\d.]+% \+- [\d.]+%", result.stdout)


@pytest.mark.parametrize(
    "method, protocol, dataset, shots, expected",
    [
        ("coop", "base2new", "caltech101", "", "vit_b16_ctxv1"),
        ("coop", "base2new", "imagenet", "", "vit_b16_ep50_ctxv1"),
        ("coop", "xd", "imagenet", "", "vit_b16_ep50_ctxv1"),
        ("coop", "fewshot", "caltech101", "1", "vit_b16_ep50"),
        ("coop", "fewshot", "caltech101", "2", "vit_b16_ep100"),
        ("coop", "fewshot", "caltech101", "4", "vit_b16_ep100"),
        ("coop", "fewshot", "caltech101", "8", "vit_b16"),
        ("coop", "fewshot", "caltech101", "16", "vit_b16"),
        ("coop", "fewshot", "imagenet", "1", "vit_b16_ep50"),
        ("cocoop", "base2new", "imagenet", "", "vit_b16_c4_ep10_batch1_ctxv1"),
        ("cocoop", "xd", "imagenet", "", "vit_b16_c4_ep10_batch1_ctxv1"),
        ("zsclip2", "base2new", "caltech101", "", "vit_b16"),
    ],
)
def test_recipes_of_the_protocols(env, method, protocol, dataset, shots, expected):
    """The recipe each protocol runs (CoOp's README for the few-shot epochs), and that it exists."""
    command = (
        f"source scripts/lib/protocols.sh; load_method scripts/{method}; "
        f'config_file "$(recipe {protocol} {dataset} {shots})"'
    )
    environment = {key: value for key, value in env.items() if key not in ("TOY", "CFG")}
    result = subprocess.run(["bash", "-c", command], cwd=REPO, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"/{expected}.yaml")
