"""The PromptSRC trainer through train.py on the engine's ToyColors images with the tiny CLIP (CPU):
the terms in the log, Gaussian prompt aggregation (the final model against a reference average of
the saved per-epoch states; a run killed with SIGKILL and resumed ends with the same model as an
uninterrupted one), upstream whole-model checkpoints with their second image tower, precisions,
DDP, and the shipped recipes.

Every run here trains on the 12 ToyColors images in one batch per epoch without random
augmentation, so an epoch's result does not depend on the data order: a resumed run goes through
the same per-epoch states as an uninterrupted one (up to float rounding).
"""

import glob
import math
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from tests.deep_prompt_runs import (
    REPO,
    check_bf16_step_and_evaluation,
    check_ddp_step,
    check_text_encoded_once_per_evaluation,
    final_accuracy,
    one_process_group,  # noqa: F401  (a fixture)
    read_log,
    recipe_cfg,
    write_upstream_checkpoint,
)
from tests.engine_toys import build_from_argv as build
from tests.engine_toys import run_train_py, tiny_clip_argv

LEARNER = "VLPromptLearner"
EPOCHS = 3
GPA_MEAN, GPA_STD = 2.0, 1.0
OPTS = (
    *("TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "3", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "3"),
    *("TRAINER.PROMPTSRC.GPA_MEAN", str(GPA_MEAN), "TRAINER.PROMPTSRC.GPA_STD", str(GPA_STD)),
    *("OPTIM.MAX_EPOCH", str(EPOCHS), "DATALOADER.TRAIN_X.BATCH_SIZE", "12", "TRAIN.PRINT_FREQ", "1"),
    *("TRAIN.CHECKPOINT_FREQ", "1"),  # every epoch's state stays on disk, for the reference average
)
# Tiny CLIP (d_t 64, d_v 128), 4 + 4 tokens, depths 3 / 3: 3 x 4 x 64 + 3 x 4 x 128.
TINY_COUNT = 2_304
LEARNED_KEYS = {"ctx", "deep_text_prompts.0", "deep_text_prompts.1", "visual.shallow", "visual.deep.0", "visual.deep.1"}


def argv(data_root, output_dir, clip_path, *opts, extra_flags=()):
    return tiny_clip_argv(data_root, output_dir, clip_path, "PromptSRC", *OPTS, *opts, extra_flags=extra_flags)


def gpa_weights():
    """w_e = N(e; mean, std^2) / sum over e = 1..EPOCHS, from the density."""
    density = lambda e: math.exp(-0.5 * ((e - GPA_MEAN) / GPA_STD) ** 2) / (GPA_STD * math.sqrt(2 * math.pi))  # noqa: E731
    densities = [density(e) for e in range(1, EPOCHS + 1)]
    return [d / sum(densities) for d in densities]


def load(run_dir, name):
    return torch.load(osp.join(run_dir, LEARNER, name), weights_only=True)


def epoch_states(run_dir):
    """The learned tensors after each epoch: model.pth.tar-1, -2 (resumable files) and the last
    epoch's own prompts, kept in model-before-gpa.pth.tar."""
    names = [f"model.pth.tar-{e}" for e in range(1, EPOCHS)] + ["model-before-gpa.pth.tar"]
    return [load(run_dir, name)["state_dict"] for name in names]


def reference_average(states, epochs=EPOCHS):
    weights = gpa_weights()
    return {key: sum(weights[e] * states[e][key].double() for e in range(epochs)) for key in states[0]}


def assert_states_close(state, expected, atol):
    assert set(state) == set(expected)
    for key in state:
        torch.testing.assert_close(state[key].double(), expected[key].double(), rtol=0, atol=atol, msg=key)


@pytest.fixture(scope="module")
def trained(data_root, clip_path, tmp_path_factory):
    """An uninterrupted run (in-process): its folder."""
    output_dir = tmp_path_factory.mktemp("promptsrc_run")
    assert run_train_py(argv(data_root, output_dir, clip_path)) == 0
    return output_dir


# ---------------------------------------------------------------------------- a training run


def test_the_log_shows_the_count_the_gpa_weights_and_every_term_per_step(trained):
    log = read_log(trained)
    assert "Building PromptSRC (text: n_ctx = 4, depth = 3; vision: n_ctx = 4, depth = 3; " in log
    assert "loss weights: text 25, image 10, logits 1; precision = fp32)" in log
    assert f"Trainable parameters (prompt learner): {TINY_COUNT:,}" in log
    weights = ", ".join(f"{e}: {w:.4f}" for e, w in enumerate(gpa_weights(), start=1))
    assert f"(GPA_MEAN 2, GPA_STD 1; epoch: weight): {weights}\n" in log
    steps = [line for line in log.splitlines() if line.startswith("epoch [")]
    assert len(steps) == EPOCHS
    for line in steps:
        values = dict(re.findall(r"(loss\w*) ([\d.]+) \(", line))
        assert list(values) == ["loss", "loss_ce", "loss_text", "loss_image", "loss_logits"], line
        total = float(values["loss_ce"]) + 25 * float(values["loss_text"])
        total += 10 * float(values["loss_image"]) + float(values["loss_logits"])
        assert float(values["loss"]) == pytest.approx(total, abs=2e-3)  # the printed values are rounded
    assert f"GPA: added epoch {EPOCHS} with weight {gpa_weights()[-1]:.4f}" in log
    assert "Finish training" in log and 0.0 <= final_accuracy(log) <= 100.0


def test_the_final_model_is_the_weighted_average_of_the_epoch_states(trained):
    states = epoch_states(trained)
    final = load(trained, f"model.pth.tar-{EPOCHS}")
    assert set(final["state_dict"]) == LEARNED_KEYS  # no teacher, no frozen weights
    assert_states_close(final["state_dict"], reference_average(states), atol=1e-6)
    # The last epoch's own prompts are kept beside it, and are not the GPA model.
    assert (states[-1]["ctx"] - final["state_dict"]["ctx"]).abs().max() > 1e-4
    assert "training_state" not in final and final["optimizer"] is None


def test_each_resumable_checkpoint_holds_the_running_average(trained):
    weights = gpa_weights()
    states = epoch_states(trained)
    for epoch in range(1, EPOCHS):
        gpa = load(trained, f"model.pth.tar-{epoch}")["training_state"]["gpa"]
        assert gpa["epochs"] == epoch and gpa["weights"] == pytest.approx(weights, abs=1e-15)
        partial = {key: sum(weights[e] * states[e][key].double() for e in range(epoch)) for key in LEARNED_KEYS}
        assert_states_close(gpa["sums"], partial, atol=1e-7)


def test_eval_only_loads_the_gpa_model_and_encodes_the_text_once(trained, data_root, clip_path, tmp_path, monkeypatch):
    trainer = build(argv(data_root, tmp_path, clip_path, extra_flags=["--eval-only"]))
    trainer.load_model(str(trained), epoch=EPOCHS)
    final = load(trained, f"model.pth.tar-{EPOCHS}")["state_dict"]
    assert_states_close(trainer.model.prompt_learner.state_dict(), final, atol=0)
    check_text_encoded_once_per_evaluation(trainer, monkeypatch)


# ---------------------------------------------------------------------------- kill and resume


def start_and_kill(args, line_prefix):
    """Run train.py in a process (tests.engine_toys: ToyColors registered) and SIGKILL it as soon
    as it prints a line starting with ``line_prefix``; returns what it printed."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "tests.engine_toys", *args],
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed = []
    for line in process.stdout:
        printed.append(line)
        if line.startswith(line_prefix):
            process.kill()
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL, "".join(printed)[-3000:]
    return "".join(printed)


def test_a_killed_and_resumed_run_ends_with_the_same_gpa_model(trained, data_root, clip_path, tmp_path):
    out = tmp_path / "killed"
    args = argv(data_root, out, clip_path)
    # Killed after the training step of epoch 2: epoch 1 is saved, epoch 2 perhaps (a race).
    start_and_kill(args, f"epoch [2/{EPOCHS}]")
    assert not osp.exists(out / LEARNER / f"model.pth.tar-{EPOCHS}")
    assert run_train_py(args) == 0

    (resumed_log,) = glob.glob(str(out / "log.txt-*"))
    with open(resumed_log) as f:
        resumed = f.read()
    previous = int(re.search(r"^Previous epoch: (\d)$", resumed, flags=re.M).group(1))
    assert previous in (1, 2) and f"GPA: resumed the running average of epochs 1-{previous}" in resumed
    final = load(out, f"model.pth.tar-{EPOCHS}")["state_dict"]
    assert_states_close(final, reference_average(epoch_states(out)), atol=1e-6)
    assert_states_close(final, load(trained, f"model.pth.tar-{EPOCHS}")["state_dict"], atol=1e-5)


def test_a_checkpoint_without_the_running_average_is_not_resumed(trained, data_root, clip_path, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(trained, out, ignore=shutil.ignore_patterns("log.txt*"))
    checkpoint = load(out, "model.pth.tar-2")
    del checkpoint["training_state"]
    torch.save(checkpoint, out / LEARNER / "model.pth.tar-2")
    (out / LEARNER / f"model.pth.tar-{EPOCHS}").unlink()
    (out / LEARNER / "checkpoint").write_text("model.pth.tar-2\n")
    assert run_train_py(argv(data_root, out, clip_path)) == 1
    assert "holds no GPA running average" in read_log(out)


def test_a_resume_under_other_gpa_settings_says_that_the_finished_epochs_keep_their_weights(
    trained, data_root, clip_path, tmp_path
):
    out = tmp_path / "changed"
    shutil.copytree(trained, out, ignore=shutil.ignore_patterns("log.txt*", f"model.pth.tar-{EPOCHS}"))
    (out / LEARNER / "checkpoint").write_text("model.pth.tar-2\n")
    changed = ("TRAINER.PROMPTSRC.GPA_MEAN", "3.0", "TRAIN.RESUME_CHANGED_CONFIG", "True")
    assert run_train_py(argv(data_root, out, clip_path, *changed)) == 0
    assert "Warning: the GPA weights of the resumed epochs differ from this config's" in read_log(out)


def test_resuming_a_finished_run_only_tests_the_gpa_model_again(trained, data_root, clip_path, tmp_path):
    out = tmp_path / "finished"
    shutil.copytree(trained, out)
    assert run_train_py(argv(data_root, out, clip_path)) == 0
    (again,) = glob.glob(str(out / "log.txt-*"))
    with open(again) as f:
        log = f.read()
    assert f"Previous epoch: {EPOCHS}" in log and "epoch [" not in log
    assert final_accuracy(log) == final_accuracy(read_log(trained))


# ---------------------------------------------------------------------------- upstream checkpoints


def upstream_promptsrc_shapes(n_classes=7, d_text=64, d_vision=128, n_ctx=4, depth=3):
    """Key -> shape of an upstream PromptSRC checkpoint (the whole CustomCLIP), from the upstream
    layout: ``ctx``, the class buffers and the second image tower ``ZS_image_encoder`` under
    ``prompt_learner.``, the per-block prompts inside the towers' blocks, the frozen towers."""
    shapes = {
        "prompt_learner.ctx": (n_ctx, d_text),
        "prompt_learner.token_prefix": (n_classes, 1, d_text),
        "prompt_learner.token_suffix": (n_classes, 77 - 1 - n_ctx, d_text),
        "prompt_learner.ZS_image_encoder.class_embedding": (d_vision,),
        "prompt_learner.ZS_image_encoder.conv1.weight": (d_vision, 3, 8, 8),
        "prompt_learner.ZS_image_encoder.transformer.resblocks.0.attn.in_proj_weight": (3 * d_vision, d_vision),
        "prompt_learner.ZS_image_encoder.proj": (d_vision, 32),
        "prompt_learner.ZS_image_encoder.ln_post.weight": (d_vision,),
        "image_encoder.conv1.weight": (d_vision, 3, 8, 8),
        "text_encoder.positional_embedding": (77, d_text),
        "logit_scale": (),
        "image_encoder.VPT": (n_ctx, d_vision),
    }
    for k in range(1, depth):
        shapes[f"text_encoder.transformer.resblocks.{k}.VPT_shallow"] = (n_ctx, d_text)
        shapes[f"image_encoder.transformer.resblocks.{k}.VPT_shallow"] = (n_ctx, d_vision)
    return shapes


def test_an_upstream_checkpoint_loads_without_its_second_image_tower(data_root, clip_path, tmp_path, capsys):
    official = write_upstream_checkpoint(tmp_path / "upstream" / LEARNER, upstream_promptsrc_shapes(), epoch=20)
    trainer = build(argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    capsys.readouterr()
    trainer.load_model(str(tmp_path / "upstream"), epoch=20)
    printed = capsys.readouterr().out.splitlines()
    (ignored,) = [line for line in printed if "ZS_image_encoder" in line]
    assert ignored == (
        "Upstream checkpoint: ignoring 5 entries the method does not learn (ZS_image_encoder.class_embedding, "
        "ZS_image_encoder.conv1.weight, ZS_image_encoder.ln_post.weight, ZS_image_encoder.proj and 1 more)"
    )
    assert "Official full-model checkpoint: ignoring 3 frozen CLIP entries" in printed
    learner = trainer.model.prompt_learner
    pairs = {
        "prompt_learner.ctx": learner.ctx,
        "text_encoder.transformer.resblocks.2.VPT_shallow": learner.deep_text_prompts[1],
        "image_encoder.VPT": learner.visual.shallow,
        "image_encoder.transformer.resblocks.1.VPT_shallow": learner.visual.deep[0],
    }
    for key, param in pairs.items():
        torch.testing.assert_close(param.detach(), official[key], rtol=0, atol=0)


def test_an_upstream_checkpoint_initialises_a_run(data_root, clip_path, tmp_path):
    official = write_upstream_checkpoint(tmp_path / "upstream", upstream_promptsrc_shapes(n_classes=3), seed=2)
    path = str(tmp_path / "upstream" / "model.pth.tar-5")
    learner = build(argv(data_root, tmp_path / "run", clip_path, "MODEL.INIT_WEIGHTS", path)).model.prompt_learner
    expected = official["image_encoder.transformer.resblocks.2.VPT_shallow"]
    torch.testing.assert_close(learner.visual.deep[1].detach(), expected)


# ---------------------------------------------------------------------------- precisions, DDP


def test_bf16_on_the_cpu(data_root, clip_path, tmp_path, monkeypatch):
    trainer = build(argv(data_root, tmp_path, clip_path, "TRAINER.PROMPTSRC.PREC", "bf16"))
    check_bf16_step_and_evaluation(trainer, monkeypatch)


def test_trains_through_ddp(one_process_group, data_root, clip_path, tmp_path):  # noqa: F811
    trainer = build(argv(data_root, tmp_path, clip_path))
    check_ddp_step(trainer, LEARNER)
    assert trainer.aggregate.weights == pytest.approx(gpa_weights(), abs=1e-15)


# ---------------------------------------------------------------------------- the shipped recipes

RECIPES = {
    # name: MAX_EPOCH, prompt depth (both towers), GPA_MEAN, GPA_STD
    "vit_b16_c2_ep20_batch4_4+4ctx": (20, 9, 15, 1),
    "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets": (20, 3, 6, 10),
    "vit_b16_c2_ep50_batch4_4+4ctx_few_shot": (50, 9, 30, 30),
    "vit_b16_c2_ep50_batch4_4+4ctx_few_shot_gpa45_5": (50, 9, 45, 5),
}


def test_every_recipe_is_listed():
    shipped = {osp.basename(p)[: -len(".yaml")] for p in glob.glob(osp.join(REPO, "configs/trainers/PromptSRC/*.yaml"))}
    assert shipped == set(RECIPES) | {"toy_clip"}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_shipped_recipes_hold_the_upstream_values(name):
    cfg = recipe_cfg("PromptSRC/" + name, "PromptSRC")
    node = cfg.TRAINER.PROMPTSRC
    epochs, depth, mean, std = RECIPES[name]
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (0.0025, epochs, 4)
    assert (node.PROMPT_DEPTH_TEXT, node.PROMPT_DEPTH_VISION, node.GPA_MEAN, node.GPA_STD) == (depth, depth, mean, std)
    assert (node.N_CTX_TEXT, node.N_CTX_VISION, node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT) == (4, 4, 25, 10)
    assert (node.CTX_INIT, node.PREC, cfg.MODEL.BACKBONE.NAME) == ("a photo of a", "fp16", "ViT-B/16")
    assert (cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_CONS_LR, cfg.DATALOADER.TEST.BATCH_SIZE) == (1, 1e-5, 100)
