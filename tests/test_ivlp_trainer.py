"""The IVLP trainer (and its language-only config) through train.py: training, checkpoints,
upstream files with per-block prompts inside the CLIP, precisions, DDP, the shipped recipes, and
base-to-new on the toy world."""

import glob
import os.path as osp

import pytest
import torch

from dassl.config import ConfigError
from tests.deep_prompt_runs import (
    REPO,
    base_to_new,
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
from tests.engine_toys import run_train_py
from tests.engine_toys import tiny_clip_argv as trainer_argv

LEARNER = "VLPromptLearner"  # the upstream registered name: the checkpoint folder
TWO_PLUS_TWO = ("TRAINER.IVLP.PROMPT_DEPTH_TEXT", "3", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "3")
LANGUAGE_ONLY = (
    *("TRAINER.IVLP.N_CTX_TEXT", "4", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "3"),
    *("TRAINER.IVLP.N_CTX_VISION", "0", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "0"),
)
# Tiny CLIP (d_t 64, d_v 128), 2 + 2 tokens, depths 3 / 3: 3 x 2 x 64 + 3 x 2 x 128.
TINY_COUNT = 1_152
LEARNED_KEYS = {"ctx", "deep_text_prompts.0", "deep_text_prompts.1", "visual.shallow", "visual.deep.0", "visual.deep.1"}


def upstream_ivlp_shapes(n_text, depth_text, n_vision, depth_vision, d_text, d_vision, n_classes):
    """Key -> shape of an upstream IVLP checkpoint (the whole CustomCLIP), written from the
    upstream layout: ``ctx`` under ``prompt_learner.``, the per-block prompts inside the towers'
    blocks, the frozen towers around them."""
    shapes = {
        "prompt_learner.ctx": (n_text, d_text),
        "prompt_learner.token_prefix": (n_classes, 1, d_text),
        "prompt_learner.token_suffix": (n_classes, 77 - 1 - n_text, d_text),
        "image_encoder.conv1.weight": (d_vision, 3, 8, 8),
        "text_encoder.transformer.resblocks.1.attn.in_proj_weight": (3 * d_text, d_text),
        "text_encoder.positional_embedding": (77, d_text),
        "logit_scale": (),
    }
    for k in range(1, depth_text):
        shapes[f"text_encoder.transformer.resblocks.{k}.VPT_shallow"] = (n_text, d_text)
    if depth_vision >= 1:
        shapes["image_encoder.VPT"] = (n_vision, d_vision)
    for k in range(1, depth_vision):
        shapes[f"image_encoder.transformer.resblocks.{k}.VPT_shallow"] = (n_vision, d_vision)
    return shapes


def argv(data_root, output_dir, clip_path, *opts, extra_flags=()):
    return trainer_argv(data_root, output_dir, clip_path, "IVLP", *opts, extra_flags=extra_flags)


@pytest.fixture(scope="module")
def trained(data_root, clip_path, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("ivlp_run")
    assert run_train_py(argv(data_root, output_dir, clip_path, *TWO_PLUS_TWO)) == 0
    return output_dir


def test_train_py_logs_the_count_and_saves_only_the_prompts(trained):
    log = read_log(trained)
    assert "Building IVLP (text: n_ctx = 2, depth = 3; vision: n_ctx = 2, depth = 3; precision = fp32)" in log
    assert f"Trainable parameters (prompt learner): {TINY_COUNT:,}" in log
    assert "Finish training" in log and 0.0 <= final_accuracy(log) <= 100.0
    checkpoint = torch.load(osp.join(trained, LEARNER, "model.pth.tar-2"), weights_only=True)
    assert set(checkpoint["state_dict"]) == LEARNED_KEYS


def test_eval_only_reloads_the_trained_prompts_and_encodes_the_text_once(
    trained, data_root, clip_path, tmp_path, monkeypatch
):
    trainer = build(argv(data_root, tmp_path, clip_path, *TWO_PLUS_TWO, extra_flags=["--eval-only"]))
    trainer.load_model(str(trained), epoch=2)
    saved = torch.load(osp.join(trained, LEARNER, "model.pth.tar-2"), weights_only=True)["state_dict"]
    for key, value in trainer.model.prompt_learner.state_dict().items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    check_text_encoded_once_per_evaluation(trainer, monkeypatch)


def test_an_upstream_checkpoint_loads_with_the_prompts_inside_the_blocks(data_root, clip_path, tmp_path, capsys):
    shapes = upstream_ivlp_shapes(2, 3, 2, 3, 64, 128, n_classes=7)
    official = write_upstream_checkpoint(tmp_path / "upstream" / LEARNER, shapes)
    trainer = build(argv(data_root, tmp_path / "eval", clip_path, *TWO_PLUS_TWO, extra_flags=["--eval-only"]))
    trainer.load_model(str(tmp_path / "upstream"), epoch=5)
    assert "ignoring 4 frozen CLIP entries" in capsys.readouterr().out
    learner = trainer.model.prompt_learner
    pairs = {
        "prompt_learner.ctx": learner.ctx,
        "text_encoder.transformer.resblocks.1.VPT_shallow": learner.deep_text_prompts[0],
        "text_encoder.transformer.resblocks.2.VPT_shallow": learner.deep_text_prompts[1],
        "image_encoder.VPT": learner.visual.shallow,
        "image_encoder.transformer.resblocks.1.VPT_shallow": learner.visual.deep[0],
        "image_encoder.transformer.resblocks.2.VPT_shallow": learner.visual.deep[1],
    }
    for key, param in pairs.items():
        torch.testing.assert_close(param.detach(), official[key], rtol=0, atol=0)


def test_an_upstream_language_only_checkpoint_loads_by_init_weights(data_root, clip_path, tmp_path):
    official = write_upstream_checkpoint(tmp_path / "upstream", upstream_ivlp_shapes(4, 3, 0, 0, 64, 128, 3), seed=1)
    path = str(tmp_path / "upstream" / "model.pth.tar-5")
    trainer = build(argv(data_root, tmp_path / "run", clip_path, *LANGUAGE_ONLY, "MODEL.INIT_WEIGHTS", path))
    learner = trainer.model.prompt_learner
    assert learner.visual is None
    torch.testing.assert_close(learner.ctx.detach(), official["prompt_learner.ctx"])
    torch.testing.assert_close(
        learner.deep_text_prompts[1].detach(), official["text_encoder.transformer.resblocks.2.VPT_shallow"]
    )


def test_visual_prompts_of_a_file_are_not_dropped_by_a_language_only_model(data_root, clip_path, tmp_path):
    write_upstream_checkpoint(tmp_path / "upstream" / LEARNER, upstream_ivlp_shapes(4, 3, 2, 2, 64, 128, 3))
    trainer = build(argv(data_root, tmp_path / "eval", clip_path, *LANGUAGE_ONLY, extra_flags=["--eval-only"]))
    with pytest.raises(ConfigError, match=r"does not have: \['visual.deep.0', 'visual.shallow'\].*PROMPT_DEPTH_VISION"):
        trainer.load_model(str(tmp_path / "upstream"), epoch=5)


def test_trains_through_ddp(one_process_group, data_root, clip_path, tmp_path):  # noqa: F811
    check_ddp_step(build(argv(data_root, tmp_path, clip_path, *TWO_PLUS_TWO)), LEARNER)


def test_bf16_on_the_cpu(data_root, clip_path, tmp_path, monkeypatch):
    trainer = build(argv(data_root, tmp_path, clip_path, *TWO_PLUS_TWO, "TRAINER.IVLP.PREC", "bf16"))
    check_bf16_step_and_evaluation(trainer, monkeypatch)


@pytest.mark.parametrize(
    "config, count",
    [("IVLP/toy_clip", 2 * 2 * 64 + 3 * 2 * 64), ("IVLP/toy_clip_language_only", 2 * 4 * 64)],
)
def test_base_to_new_on_the_toy_world(tmp_path, config, count):
    """The toy CLIP has widths 64 and 2 text / 3 vision blocks."""
    train_log, test_log = base_to_new(str(tmp_path), "IVLP", config)
    assert f"Trainable parameters (prompt learner): {count:,}" in train_log
    assert f'Loaded weights to {LEARNER} from "{tmp_path / "train_base" / LEARNER / "model.pth.tar-1"}"' in test_log
    assert "# classes  18" in test_log and 0.0 <= final_accuracy(test_log) <= 100.0


RECIPES = {
    # name: LR, MAX_EPOCH, N_CTX_TEXT, N_CTX_VISION, PROMPT_DEPTH_TEXT, PROMPT_DEPTH_VISION
    "vit_b16_c2_ep5_batch4_2+2ctx": (0.0035, 5, 2, 2, 12, 12),
    "vit_b16_c2_ep5_batch4_4ctx_language_only": (0.0025, 5, 4, 0, 12, 0),
    # PromptSRC's repository: the IVLP its paper compares against
    "vit_b16_c2_ep20_batch4_4+4ctx": (0.0025, 20, 4, 4, 9, 9),
}


def test_every_recipe_is_listed():
    shipped = {osp.basename(p)[: -len(".yaml")] for p in glob.glob(osp.join(REPO, "configs/trainers/IVLP/*.yaml"))}
    assert shipped == set(RECIPES) | {"toy_clip", "toy_clip_language_only"}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_shipped_recipes_hold_the_upstream_values(name):
    cfg = recipe_cfg("IVLP/" + name, "IVLP")
    node = cfg.TRAINER.IVLP
    lr, epochs, n_text, n_vision, depth_text, depth_vision = RECIPES[name]
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (lr, epochs, 4)
    assert (node.N_CTX_TEXT, node.N_CTX_VISION, node.PROMPT_DEPTH_TEXT, node.PROMPT_DEPTH_VISION) == (
        n_text,
        n_vision,
        depth_text,
        depth_vision,
    )
    assert (node.CTX_INIT, node.PREC, cfg.MODEL.BACKBONE.NAME) == ("a photo of a", "fp16", "ViT-B/16")
