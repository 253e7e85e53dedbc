"""The MaPLe trainer through train.py: training, checkpoints, upstream files, precisions, DDP,
the shipped recipes, and base-to-new on the toy world."""

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

LEARNER = "MultiModalPromptLearner"  # the upstream registered name: the checkpoint folder
DEPTH_OPTS = ("TRAINER.MAPLE.N_CTX", "2", "TRAINER.MAPLE.PROMPT_DEPTH", "3")
# Tiny CLIP (d_t 64, d_v 128), n 2, J 3: ctx 128 + proj 8,320 + 2 x (128 + 8,320).
TINY_COUNT = 25_344


def upstream_maple_shapes(n_ctx, depth, d_text, d_vision, n_classes):
    """Key -> shape of an upstream MaPLe checkpoint (the whole CustomCLIP), written from the
    upstream layout: the learner under ``prompt_learner.``, the frozen towers beside it."""
    shapes = {
        "prompt_learner.ctx": (n_ctx, d_text),
        "prompt_learner.proj.weight": (d_vision, d_text),
        "prompt_learner.proj.bias": (d_vision,),
        "prompt_learner.token_prefix": (n_classes, 1, d_text),
        "prompt_learner.token_suffix": (n_classes, 77 - 1 - n_ctx, d_text),
        "image_encoder.conv1.weight": (d_vision, 3, 8, 8),
        "image_encoder.transformer.resblocks.0.attn.in_proj_weight": (3 * d_vision, d_vision),
        "text_encoder.positional_embedding": (77, d_text),
        "text_encoder.transformer.resblocks.1.ln_1.weight": (d_text,),
        "logit_scale": (),
    }
    for k in range(depth - 1):
        shapes[f"prompt_learner.compound_prompts_text.{k}"] = (n_ctx, d_text)
        shapes[f"prompt_learner.compound_prompt_projections.{k}.weight"] = (d_vision, d_text)
        shapes[f"prompt_learner.compound_prompt_projections.{k}.bias"] = (d_vision,)
    return shapes


LEARNED_KEYS = {
    "ctx",
    "proj.weight",
    "proj.bias",
    "compound_prompts_text.0",
    "compound_prompts_text.1",
    "compound_prompt_projections.0.weight",
    "compound_prompt_projections.0.bias",
    "compound_prompt_projections.1.weight",
    "compound_prompt_projections.1.bias",
}


def argv(data_root, output_dir, clip_path, *opts, extra_flags=()):
    return trainer_argv(data_root, output_dir, clip_path, "MaPLe", *DEPTH_OPTS, *opts, extra_flags=extra_flags)


@pytest.fixture(scope="module")
def trained(data_root, clip_path, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("maple_run")
    assert run_train_py(argv(data_root, output_dir, clip_path)) == 0
    return output_dir


def test_train_py_logs_the_count_and_saves_only_the_prompts(trained):
    log = read_log(trained)
    assert "Building MaPLe (n_ctx = 2, depth = 3, precision = fp32)" in log
    assert f"Trainable parameters (prompt learner): {TINY_COUNT:,}" in log
    assert "Finish training" in log and 0.0 <= final_accuracy(log) <= 100.0
    checkpoint = torch.load(osp.join(trained, LEARNER, "model.pth.tar-2"), weights_only=True)
    assert set(checkpoint["state_dict"]) == LEARNED_KEYS


def test_eval_only_reloads_the_trained_prompts_and_encodes_the_text_once(
    trained, data_root, clip_path, tmp_path, monkeypatch
):
    trainer = build(argv(data_root, tmp_path, clip_path, extra_flags=["--eval-only"]))
    trainer.load_model(str(trained), epoch=2)
    saved = torch.load(osp.join(trained, LEARNER, "model.pth.tar-2"), weights_only=True)["state_dict"]
    for key, value in trainer.model.prompt_learner.state_dict().items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    check_text_encoded_once_per_evaluation(trainer, monkeypatch)


def test_an_upstream_checkpoint_loads(data_root, clip_path, tmp_path, capsys):
    official = write_upstream_checkpoint(tmp_path / "upstream" / LEARNER, upstream_maple_shapes(2, 3, 64, 128, 7))
    trainer = build(argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    trainer.load_model(str(tmp_path / "upstream"), epoch=5)
    assert "ignoring 5 frozen CLIP entries" in capsys.readouterr().out
    learned = trainer.model.prompt_learner.state_dict()
    assert set(learned) == LEARNED_KEYS
    for key, value in learned.items():
        torch.testing.assert_close(value, official["prompt_learner." + key], rtol=0, atol=0)


def test_init_weights_takes_an_upstream_checkpoint(data_root, clip_path, tmp_path):
    official = write_upstream_checkpoint(tmp_path / "upstream", upstream_maple_shapes(2, 3, 64, 128, 3), seed=1)
    path = str(tmp_path / "upstream" / "model.pth.tar-5")
    trainer = build(argv(data_root, tmp_path / "run", clip_path, "MODEL.INIT_WEIGHTS", path))
    torch.testing.assert_close(trainer.model.prompt_learner.ctx.detach(), official["prompt_learner.ctx"])


def test_a_checkpoint_of_another_depth_is_refused_naming_the_keys(data_root, clip_path, tmp_path):
    write_upstream_checkpoint(tmp_path / "upstream" / LEARNER, upstream_maple_shapes(2, 9, 64, 128, 3))
    trainer = build(argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    with pytest.raises(ConfigError, match=r"compound_prompts_text.7.*TRAINER.MAPLE.PROMPT_DEPTH"):
        trainer.load_model(str(tmp_path / "upstream"), epoch=5)


def test_trains_through_ddp(one_process_group, data_root, clip_path, tmp_path):  # noqa: F811
    check_ddp_step(build(argv(data_root, tmp_path, clip_path)), LEARNER)


def test_bf16_on_the_cpu(data_root, clip_path, tmp_path, monkeypatch):
    trainer = build(argv(data_root, tmp_path, clip_path, "TRAINER.MAPLE.PREC", "bf16"))
    check_bf16_step_and_evaluation(trainer, monkeypatch)


def test_a_bad_key_is_an_error_line(data_root, clip_path, tmp_path, capsys):
    assert run_train_py(argv(data_root, tmp_path, clip_path, "TRAINER.MAPLE.PROMPT_DEPTH", "0")) == 1
    assert "Error: TRAINER.MAPLE.PROMPT_DEPTH = 0 is invalid: expected >= 1" in capsys.readouterr().out


def test_base_to_new_on_the_toy_world(tmp_path):
    train_log, test_log = base_to_new(str(tmp_path), "MaPLe", "MaPLe/toy_clip")
    assert "Trainable parameters (prompt learner): 8,576" in train_log  # toy CLIP: widths 64, J 2
    assert f'Loaded weights to {LEARNER} from "{tmp_path / "train_base" / LEARNER / "model.pth.tar-1"}"' in test_log
    assert "# classes  18" in test_log and 0.0 <= final_accuracy(test_log) <= 100.0


RECIPES = {
    "vit_b16_c2_ep5_batch4_2ctx": (0.0035, 5, 9),
    "vit_b16_c2_ep5_batch4_2ctx_cross_datasets": (0.0026, 2, 3),
    "vit_b16_c2_ep30_batch4_2ctx_fewshot": (0.0035, 30, 9),
    "vit_b16_c2_ep50_batch4_2ctx_fewshot": (0.0035, 50, 9),
    "vit_b16_c2_ep80_batch4_2ctx_fewshot": (0.0035, 80, 9),
    "vit_b16_c2_ep20_batch4_2ctx_fewshot": (0.0035, 20, 9),
}


def test_every_recipe_is_listed():
    shipped = {osp.basename(p)[: -len(".yaml")] for p in glob.glob(osp.join(REPO, "configs/trainers/MaPLe/*.yaml"))}
    assert shipped == set(RECIPES) | {"toy_clip"}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_shipped_recipes_hold_the_upstream_values(name):
    cfg = recipe_cfg("MaPLe/" + name, "MaPLe")
    lr, epochs, depth = RECIPES[name]
    node = cfg.TRAINER.MAPLE
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (lr, epochs, 4)
    assert (node.N_CTX, node.CTX_INIT, node.PREC, node.PROMPT_DEPTH) == (2, "a photo of a", "fp16", depth)
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16" and cfg.INPUT.SIZE == (224, 224)
