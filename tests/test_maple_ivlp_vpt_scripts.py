"""The MaPLe, IVLP, language-prompting and VPT scripts end to end on a small toy world (one
epoch): base-to-new through reproduce.sh with the comparison table, the test steps loading the
epoch that training saved, cross-dataset (trained on the toy world as SOURCE), MaPLe's few-shot
step, and the recipe every protocol picks for each method."""

import os
import os.path as osp
import re
import subprocess

import pytest

from tests.script_runs import REPO, run_script, small_toy_env
from tests.script_runs import read_log as read

# method name, trainer, toy recipe, learner folder
METHODS = [
    ("MaPLe", "MaPLe", "toy_clip", "MultiModalPromptLearner"),
    ("IVLP", "IVLP", "toy_clip", "VLPromptLearner"),
    ("LanguagePrompting", "IVLP", "toy_clip_language_only", "VLPromptLearner"),
    ("VPT", "VPT", "toy_clip", "prompt_learner"),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return small_toy_env(tmp_path_factory.mktemp("scripts"), train_per_class=2, shots=2, batch_size=36)


@pytest.fixture(scope="module")
def base2new(env):
    """reproduce.sh base2new for the four methods on the toy world, seed 1: its output."""
    names = " ".join(name for name, *_ in METHODS)
    return run_script("reproduce.sh", "base2new", names, "toy_shapes", "1", env=env)


@pytest.mark.parametrize("name, trainer, recipe, learner", METHODS)
def test_base_to_new_trains_on_base_and_tests_the_saved_epoch_on_new(base2new, env, name, trainer, recipe, learner):
    tail = ("toy_shapes", "shots_2", trainer, recipe, "seed1")
    train_log = read(env, "base2new", "train_base", *tail)
    assert "SUBSAMPLE BASE CLASSES!" in train_log and "Finish training" in train_log
    assert "Trainable parameters (prompt learner): " in train_log
    saved = osp.join(env["OUTPUT"], "base2new", "train_base", *tail, learner, "model.pth.tar-1")
    test_log = read(env, "base2new", "test_new", *tail)
    assert f'Loaded weights to {learner} from "{saved}" (epoch = 1)' in test_log
    assert "SUBSAMPLE NEW CLASSES!" in test_log and re.search(r"^\* total: 36$", test_log, flags=re.M)


def test_the_comparison_table_has_a_row_per_method(base2new):
    """IVLP and language prompting share a trainer: the table tells them apart by their method names
    (the registry knows which recipes each runs), in the order reproduce.sh was given."""
    row = r"^(MaPLe|IVLP|LanguagePrompting|VPT) +1 +1 "  # name, seeds, datasets
    rows = re.findall(row + r"+[\d.]+ \+- 0\.00 +[\d.]+ \+- 0\.00 +[\d.]+$", base2new, re.M)
    assert rows == ["MaPLe", "IVLP", "LanguagePrompting", "VPT"]


def test_cross_dataset_tests_the_epoch_that_training_saved(env):
    """IVLP trained on the toy world as SOURCE for 1 epoch: the test loads epoch 1 (upstream's
    IVLP, language-prompting and VPT test scripts load an epoch 2 that training never saves)."""
    xd_env = dict(env, SOURCE="toy_shapes")
    run_script("ivlp/xd_train.sh", "1", env=xd_env)
    run_script("ivlp/xd_test.sh", "toy_shapes", "1", env=xd_env)
    model_dir = osp.join(env["OUTPUT"], "toy_shapes", "IVLP", "toy_clip_2shots", "seed1")
    test_log = read(env, "evaluation", "IVLP", "toy_clip_2shots", "toy_shapes", "seed1")
    saved = osp.join(model_dir, "VLPromptLearner", "model.pth.tar-1")
    assert f'Loaded weights to VLPromptLearner from "{saved}" (epoch = 1)' in test_log


def test_maple_few_shot_trains_on_all_classes(env):
    run_script("maple/fewshot.sh", "toy_shapes", "1", "1", env=env)
    log = read(env, "toy_shapes", "MaPLe", "toy_clip_1shots", "seed1")
    assert "# classes  36" in log and "Finish training" in log and "* accuracy: " in log


def recipes(folder, *lookups):
    """The recipes that scripts/<folder>/env.sh gives for each "PROTOCOL DATASET [SHOTS]" lookup."""
    script = f"source scripts/lib/protocols.sh && load_method scripts/{folder}"
    script += "".join(f" && recipe {lookup}" for lookup in lookups)
    result = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_each_protocol_picks_the_upstream_recipe():
    maple = recipes("maple", *[f"fewshot caltech101 {k}" for k in (1, 2, 4, 8, 16)], "fewshot imagenet 16")
    assert maple == [
        "vit_b16_c2_ep30_batch4_2ctx_fewshot",  # the epochs the ALIGN repository's train.py forced
        "vit_b16_c2_ep50_batch4_2ctx_fewshot",
        "vit_b16_c2_ep50_batch4_2ctx_fewshot",
        "vit_b16_c2_ep80_batch4_2ctx_fewshot",
        "vit_b16_c2_ep80_batch4_2ctx_fewshot",
        "vit_b16_c2_ep20_batch4_2ctx_fewshot",
    ]
    expected = {
        "maple": ["vit_b16_c2_ep5_batch4_2ctx", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"],
        "ivlp": ["vit_b16_c2_ep5_batch4_2+2ctx"] * 2,
        "lp": ["vit_b16_c2_ep5_batch4_4ctx_language_only"] * 2,
        "vpt": ["vit_b16_c2_ep5_batch4_4"] * 2,
    }
    for folder, names in expected.items():
        assert recipes(folder, "base2new caltech101", "xd imagenet") == names, folder
