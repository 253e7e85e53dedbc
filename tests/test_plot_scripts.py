"""The PLOT and PLOT++ scripts on a small toy world (one epoch): the few-shot results of both through
reproduce.sh, PLOT++'s two stages per shot count, and the recipes each protocol picks (upstream's
per-shot epochs and batches as files). tests/test_plotpp_scripts.py: the upstream entry points,
resuming after a kill, base-to-new."""

import os
import os.path as osp
import re
import subprocess

import pytest

from tests.script_runs import REPO, run_script, small_toy_env
from tests.script_runs import read_log as read

LEARNER = "prompt_learner"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return small_toy_env(tmp_path_factory.mktemp("scripts"), train_per_class=2, shots=2, batch_size=36)


@pytest.fixture(scope="module")
def fewshot(env):
    """TOY=1 SHOTS_LIST=2 reproduce.sh fewshot "plot plotpp" toy_shapes 1: its output."""
    return run_script("reproduce.sh", "fewshot", "plot plotpp", "toy_shapes", "1", env=dict(env, SHOTS_LIST="2"))


def test_reproduce_prints_the_few_shot_results_of_both(fewshot, env):
    for trainer in ("PLOT", "PLOTPP"):
        root = osp.join(env["OUTPUT"], "toy_shapes", trainer, "toy_clip_2shots")
        assert re.search(rf"Summary of directory: {re.escape(root)}\n\* accuracy: [\d.]+% \+- 0\.00%", fewshot)
        log = read(env, "toy_shapes", trainer, "toy_clip_2shots", "seed1")
        assert "# classes  36" in log and "Finish training" in log


def test_plotpp_few_shot_trains_stage_1_then_stage_2_from_its_file(fewshot, env):
    stage1 = read(env, "visiononly", "toy_shapes", "PLOTPP", "toy_clip_2shots", "seed1")
    assert "trains: vision only, global term on" in stage1 and "Finish training" in stage1
    assert f"Trainable parameters (prompt learner): {4 * 2 * 64:,}" in stage1  # M x n_v x the toy width
    stage2 = read(env, "toy_shapes", "PLOTPP", "toy_clip_2shots", "seed1")
    saved = osp.join(env["OUTPUT"], "visiononly", "toy_shapes", "PLOTPP", "toy_clip_2shots", "seed1", LEARNER)
    assert f"Initialising the learned prompts from {saved}/model.pth.tar-1" in stage2
    assert "trains: joint, global term off" in stage2
    assert f"Trainable parameters (prompt learner): {4 * 2 * 64 + 4 * 4 * 64:,}" in stage2


def test_each_shot_count_starts_from_its_own_stage_1_and_seeds_share_it(fewshot, env):
    run_script("plotpp/fewshot.sh", "toy_shapes", "1", "1", env=env)
    saved = osp.join(env["OUTPUT"], "visiononly", "toy_shapes", "PLOTPP", "toy_clip_1shots", "seed1", LEARNER)
    assert f"from {saved}/model.pth.tar-1" in read(env, "toy_shapes", "PLOTPP", "toy_clip_1shots", "seed1")
    # Another seed starts from the seed-1 stage 1 (upstream's), which is not trained again.
    output = run_script("plotpp/fewshot.sh", "toy_shapes", "1", "2", env=env)
    assert f"Results are available in {osp.dirname(saved)}: skipping" in output
    assert f"from {saved}/model.pth.tar-1" in read(env, "toy_shapes", "PLOTPP", "toy_clip_1shots", "seed2")
    # A finished stage 2 is skipped without looking at stage 1.
    output = run_script("plotpp/fewshot.sh", "toy_shapes", "1", "2", env=env)
    assert output.startswith("Results are available in ") and output.count("skipping") == 1


def recipes(folder, *lookups):
    """The recipes that scripts/<folder>/env.sh gives for each "PROTOCOL DATASET [SHOTS]" lookup,
    each checked to exist."""
    script = f"source scripts/lib/protocols.sh && load_method scripts/{folder}"
    script += "".join(f' && config_file "$(recipe {lookup})" > /dev/null && recipe {lookup}' for lookup in lookups)
    environment = {key: value for key, value in os.environ.items() if key not in ("TOY", "CFG")}
    result = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


SHOTS = (1, 2, 4, 8, 16)


def test_plot_few_shot_recipes_are_the_epochs_and_batches_upstream_forced():
    assert recipes("plot", *[f"fewshot caltech101 {k}" for k in SHOTS]) == [
        "rn50",
        "rn50_ep100",
        "rn50_ep100",
        "rn50_ep200",
        "rn50_ep200",
    ]
    for dataset in ("oxford_flowers", "fgvc_aircraft", "stanford_cars"):
        assert recipes("plot", *[f"fewshot {dataset} {k}" for k in SHOTS]) == [
            "rn50_b32",
            "rn50_ep100_b32",
            "rn50_ep100_b32",
            "rn50_ep200_b32",
            "rn50_ep200_b32",
        ], dataset
    assert recipes("plot", *[f"fewshot imagenet {k}" for k in SHOTS]) == ["rn50"] * 5
    assert recipes("plot", "base2new caltech101", "base2new imagenet", "xd imagenet") == [
        "vit_b16",
        "vit_b16_ep50",
        "vit_b16_ep50_xd",
    ]


def test_plotpp_recipes():
    assert recipes("plotpp", *[f"fewshot oxford_flowers {k}" for k in SHOTS], "fewshot imagenet 16") == [
        "vit",
        "vit_ep100",
        "vit_ep100",
        "vit_ep200",
        "vit_ep200",
        "vit",
    ]
    assert recipes("plotpp", "base2new caltech101", "base2new imagenet", "xd imagenet") == [
        "vit_ep200",
        "vit",
        "vit_xd",
    ]
