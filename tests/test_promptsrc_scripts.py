"""PromptSRC's scripts (scripts/promptsrc/) on a small toy world (one epoch): base-to-new through
reproduce.sh with its table row, upstream's reproduce_base2novel_setting.sh on released weights in
upstream's layout (a whole-model file with its second image tower), and, with a stand-in python
that prints its arguments, upstream's other entry points (xd_train.sh DATASET SEED, few_shot.sh
DATASET SHOTS, reproduce_xd.sh, reproduce_few_shot.sh), the recipe each protocol picks, and a
script started from its own folder."""

import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from tests.script_runs import REPO, run_script, small_toy_env
from tests.script_runs import read_log as read
from tools.results.reference import load_reference

LEARNER = "VLPromptLearner"
TAIL = ("toy_shapes", "shots_2", "PromptSRC", "toy_clip", "seed1")
B2N = "vit_b16_c2_ep20_batch4_4+4ctx"
XD = "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets"
XD_FILE = f"configs/trainers/PromptSRC/{XD}.yaml"
FEW_SHOT = "vit_b16_c2_ep50_batch4_4+4ctx_few_shot"
FEW_SHOT_LATE_GPA = "vit_b16_c2_ep50_batch4_4+4ctx_few_shot_gpa45_5"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return small_toy_env(tmp_path_factory.mktemp("scripts"), train_per_class=2, shots=2, batch_size=36)


@pytest.fixture(scope="module")
def base2new(env):
    """reproduce.sh base2new for PromptSRC on the toy world, seed 1: its output."""
    return run_script("reproduce.sh", "base2new", "PromptSRC", "toy_shapes", "1", env=env)


@pytest.fixture
def fake_env(env, tmp_path):
    """The scripts' environment with a python that prints "train.py ARGS" instead of running
    train.py (the scripts' other Python calls, such as their run-folder checks, run as they are)."""
    fake_python = tmp_path / "python"
    fake_python.write_text(
        '#!/usr/bin/env bash\nif [ "$1" = train.py ]; then echo "train.py ${*:2}"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    fake_python.chmod(0o755)
    fake = {key: value for key, value in env.items() if key not in ("TOY", "OPTS")}
    return dict(fake, PYTHON=str(fake_python), OUTPUT=str(tmp_path / "out"), SHOTS="16")


def train_py_calls(output):
    return [line for line in output.splitlines() if line.startswith("train.py ")]


def test_reproduce_base2new_prints_a_table_row(base2new, env):
    # One method: its table, a row per dataset (several methods: a row per method).
    assert "shots_2 / PromptSRC / toy_clip (accuracy %" in base2new
    row = r"^toy_shapes +1 +[\d.]+ \+- 0\.00 +[\d.]+ \+- 0\.00 +[\d.]+$"
    assert re.search(row, base2new, flags=re.M), base2new[-2000:]
    train_log = read(env, "base2new", "train_base", *TAIL)
    assert "SUBSAMPLE BASE CLASSES!" in train_log and "GPA: added epoch 1 with weight 1.0000" in train_log
    assert " loss_text " in train_log and " loss_image " in train_log and " loss_logits " in train_log
    saved = osp.join(env["OUTPUT"], "base2new", "train_base", *TAIL, LEARNER, "model.pth.tar-1")
    test_log = read(env, "base2new", "test_new", *TAIL)
    assert f'Loaded weights to {LEARNER} from "{saved}" (epoch = 1)' in test_log
    assert "SUBSAMPLE NEW CLASSES!" in test_log


def upstream_layout(learned, clip_state):
    """An upstream PromptSRC whole-model state dict holding ``learned`` (our learner's keys; the
    toy recipe's depths: 2 text blocks, 3 vision blocks): ``prompt_learner.ctx``, the per-block
    prompts inside the towers' blocks, the class buffers, the frozen towers, and the second image
    tower under ``prompt_learner.ZS_image_encoder.``."""
    state = {
        "prompt_learner.ctx": learned["ctx"],
        "prompt_learner.token_prefix": torch.zeros(18, 1, 64),
        "prompt_learner.token_suffix": torch.zeros(18, 72, 64),
        "text_encoder.transformer.resblocks.1.VPT_shallow": learned["deep_text_prompts.0"],
        "image_encoder.VPT": learned["visual.shallow"],
        "image_encoder.transformer.resblocks.1.VPT_shallow": learned["visual.deep.0"],
        "image_encoder.transformer.resblocks.2.VPT_shallow": learned["visual.deep.1"],
        "logit_scale": clip_state["logit_scale"],
    }
    for key, value in clip_state.items():
        if key.startswith("visual."):
            state["image_encoder." + key[len("visual.") :]] = value
            state["prompt_learner.ZS_image_encoder." + key[len("visual.") :]] = value
        elif key.startswith("transformer."):
            state["text_encoder." + key] = value
    return state


def test_released_weights_evaluate_on_base_and_new(base2new, env, tmp_path):
    """reproduce_base2novel_setting.sh DATASET SEED WEIGHTS: the model of WEIGHTS/base/seed1 at
    epoch 20, an upstream whole-model file, tested on the base classes gives the accuracy of the
    training run that produced its prompts."""
    train_dir = osp.join(env["OUTPUT"], "base2new", "train_base", *TAIL)
    learned = torch.load(osp.join(train_dir, LEARNER, "model.pth.tar-1"), weights_only=True)["state_dict"]
    clip_state = torch.load(osp.join(REPO, "tools", "assets", "toy_clip.pt"), weights_only=True)
    clip_state = clip_state.get("state_dict", clip_state)
    weights = tmp_path / "weights"
    folder = weights / "base" / "seed1" / LEARNER
    folder.mkdir(parents=True)
    torch.save({"state_dict": upstream_layout(learned, clip_state), "epoch": 20}, folder / "model.pth.tar-20")

    released_env = dict(env, OUTPUT=str(tmp_path / "out"))
    run_script("promptsrc/reproduce_base2novel_setting.sh", "toy_shapes", "1", str(weights), env=released_env)
    base_log, new_log = (read(released_env, "base2new", f"test_{sub}", *TAIL) for sub in ("base", "new"))
    assert f'from "{folder}/model.pth.tar-20" (epoch = 20)' in base_log
    assert "Upstream checkpoint: ignoring " in base_log and "(ZS_image_encoder." in base_log
    accuracy = re.compile(r"^\* accuracy: ([\d.]+)%$", flags=re.M)
    assert accuracy.findall(base_log)[-1] == accuracy.findall(read(env, "base2new", "train_base", *TAIL))[-1]
    assert "SUBSAMPLE NEW CLASSES!" in new_log and accuracy.search(new_log)
    again = run_script("promptsrc/reproduce_base2novel_setting.sh", "toy_shapes", "1", str(weights), env=released_env)
    assert again.count("Results are available in ") == 2  # both evaluations are skipped


def test_upstream_entry_points_and_their_layouts(fake_env):
    out = fake_env["OUTPUT"]
    (call,) = train_py_calls(run_script("promptsrc/xd_train.sh", "imagenet", "1", env=fake_env))
    assert f"--dataset-config-file configs/datasets/imagenet.yaml --config-file {XD_FILE}" in call
    assert f"--output-dir {out}/imagenet/PromptSRC/{XD}_16shots/seed1 " in call
    assert call.endswith("DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES all")

    calls = train_py_calls(run_script("promptsrc/few_shot.sh", "dtd", "4", env=fake_env))
    assert [re.search(r"--seed (\d)", call).group(1) for call in calls] == ["1", "2", "3"]
    assert all(f"--output-dir {out}/dtd/PromptSRC/{FEW_SHOT_LATE_GPA}_4shots/seed" in call for call in calls)

    (call,) = train_py_calls(run_script("promptsrc/reproduce_xd.sh", "oxford_pets", "2", "/w", env=fake_env))
    assert f"--output-dir {out}/evaluation/PromptSRC/{XD}_16shots/oxford_pets/seed2 " in call
    assert call.endswith("--model-dir /w/seed2 --load-epoch 20 --eval-only")

    calls = train_py_calls(run_script("promptsrc/reproduce_few_shot.sh", "caltech101", "8", "/w", env=fake_env))
    assert len(calls) == 3
    assert f"--output-dir {out}/few_shot/caltech101/PromptSRC/{FEW_SHOT}_8shots/seed3 " in calls[2]
    assert calls[2].endswith("--model-dir /w/8shot/seed3 --load-epoch 50 --eval-only DATASET.NUM_SHOTS 8")

    usage = run_script("promptsrc/reproduce_xd.sh", "oxford_pets", "2", env=fake_env, expect=2)
    assert "usage: " in usage and "DATASET SEED WEIGHTS" in usage


def recipes(*lookups):
    """The recipes that scripts/promptsrc/env.sh gives for each "PROTOCOL DATASET [SHOTS]" lookup."""
    script = "source scripts/lib/protocols.sh && load_method scripts/promptsrc"
    script += "".join(f" && recipe {lookup}" for lookup in lookups)
    result = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_each_protocol_picks_the_upstream_recipe():
    late = ["stanford_cars", "oxford_flowers", "fgvc_aircraft", "dtd", "eurosat"]
    early = ["imagenet", "caltech101", "oxford_pets", "food101", "ucf101", "sun397"]
    few_shot = recipes(*[f"fewshot {dataset} 4" for dataset in late + early])
    assert few_shot == [FEW_SHOT_LATE_GPA] * len(late) + [FEW_SHOT] * len(early)
    assert recipes("base2new caltech101", "base2new imagenet", "xd imagenet") == [B2N, B2N, XD]


def test_a_script_runs_from_its_own_folder(base2new, env):
    result = subprocess.run(
        ["bash", "base2new_train.sh", "toy_shapes", "1"],
        cwd=osp.join(REPO, "scripts", "promptsrc"),
        env=env,
        capture_output=True,
        text=True,
    )
    done = osp.join(env["OUTPUT"], "base2new", "train_base", *TAIL)
    assert result.returncode == 0 and result.stdout.startswith(f"Results are available in {done}: skipping")


def test_the_published_rows_of_promptsrc_s_readme():
    """parse_test_res.py --reference docs/published_base2new.csv puts PromptSRC's README beside
    PromptSRC and beside the IVLP recipe its table compares against (4 + 4 tokens, 20 epochs)."""
    reference = load_reference(osp.join(REPO, "docs", "published_base2new.csv"))
    found = lambda trainer, cfg: reference.find(trainer, cfg, "average")  # noqa: E731
    promptsrc = found("PromptSRC", B2N)
    assert (promptsrc.base, promptsrc.new, promptsrc.hm) == (84.26, 76.10, 79.97)
    ivlp = found("IVLP", "vit_b16_c2_ep20_batch4_4+4ctx")
    assert (ivlp.base, ivlp.new, ivlp.hm) == (84.21, 71.79, 77.51)
    assert found("IVLP", "vit_b16_c2_ep5_batch4_2+2ctx").base == 82.15  # MaPLe's README, as before
