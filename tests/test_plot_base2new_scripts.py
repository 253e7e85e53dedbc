"""PLOT and PLOT++ in the base-to-new comparison table (not in upstream): reproduce.sh base2new on a
small toy world (one epoch), PLOT++'s stage 1 on the base classes outside the table's folders, and
the test steps loading the epoch that (stage-2) training saved."""

import os.path as osp
import re

import pytest

from tests.script_runs import read_log as read
from tests.script_runs import run_script, small_toy_env

LEARNER = "prompt_learner"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return small_toy_env(tmp_path_factory.mktemp("scripts"), train_per_class=2, shots=2, batch_size=36)


@pytest.fixture(scope="module")
def base2new(env):
    return run_script("reproduce.sh", "base2new", "plot plotpp", "toy_shapes", "1", env=env)


def test_the_comparison_table_has_a_row_per_method(base2new):
    rows = re.findall(r"^(PLOT|PLOTPP) +1 +1 +[\d.]+ \+- 0\.00 +[\d.]+ \+- 0\.00 +[\d.]+$", base2new, re.M)
    assert rows == ["PLOT", "PLOTPP"]


@pytest.mark.parametrize("trainer", ["PLOT", "PLOTPP"])
def test_base_to_new_trains_on_base_and_tests_the_saved_epoch_on_new(base2new, env, trainer):
    tail = ("toy_shapes", "shots_2", trainer, "toy_clip", "seed1")
    assert "SUBSAMPLE BASE CLASSES!" in read(env, "base2new", "train_base", *tail)
    saved = osp.join(env["OUTPUT"], "base2new", "train_base", *tail, LEARNER, "model.pth.tar-1")
    test_log = read(env, "base2new", "test_new", *tail)
    assert f'Loaded weights to {LEARNER} from "{saved}" (epoch = 1)' in test_log
    assert "SUBSAMPLE NEW CLASSES!" in test_log and re.search(r"^\* total: 36$", test_log, flags=re.M)


def test_plotpp_stage_1_trains_on_the_base_classes_outside_the_table(base2new, env):
    tail = ("toy_shapes", "shots_2", "PLOTPP", "toy_clip", "seed1")
    stage1 = read(env, "visiononly", "base2new", "train_base", *tail)
    assert "SUBSAMPLE BASE CLASSES!" in stage1 and "trains: vision only" in stage1
    saved = osp.join(env["OUTPUT"], "visiononly", "base2new", "train_base", *tail, LEARNER, "model.pth.tar-1")
    assert f"Initialising the learned prompts from {saved}" in read(env, "base2new", "train_base", *tail)
