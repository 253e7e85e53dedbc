"""The VPT trainer through train.py: training, checkpoints, upstream files (no ``prompt_learner.``
keys: every prompt lives inside the image tower), precisions, DDP, the shipped recipe, and
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
    final_accuracy,
    one_process_group,  # noqa: F401  (a fixture)
    read_log,
    recipe_cfg,
    write_upstream_checkpoint,
)
from tests.engine_toys import build_from_argv as build
from tests.engine_toys import run_train_py
from tests.engine_toys import tiny_clip_argv as trainer_argv

LEARNER = "prompt_learner"  # the upstream registered name: the checkpoint folder
DEPTH_OPTS = ("TRAINER.VPT.N_CTX_VISION", "4", "TRAINER.VPT.PROMPT_DEPTH_VISION", "3")
TINY_COUNT = 3 * 4 * 128  # 4 tokens of width 128 in 3 blocks
LEARNED_KEYS = {"shallow", "deep.0", "deep.1"}


def upstream_vpt_shapes(n_ctx, depth, d_text, d_vision):
    """Key -> shape of an upstream VPT checkpoint (the whole CustomCLIP, saved under the folder
    "prompt_learner"), written from the upstream layout: the prompts inside the image tower."""
    shapes = {
        "image_encoder.VPT": (n_ctx, d_vision),
        "image_encoder.conv1.weight": (d_vision, 3, 8, 8),
        "image_encoder.class_embedding": (d_vision,),
        "image_encoder.transformer.resblocks.1.attn.in_proj_weight": (3 * d_vision, d_vision),
        "text_encoder.positional_embedding": (77, d_text),
        "text_encoder.transformer.resblocks.1.ln_1.weight": (d_text,),
        "logit_scale": (),
    }
    for k in range(1, depth):
        shapes[f"image_encoder.transformer.resblocks.{k}.VPT_shallow"] = (n_ctx, d_vision)
    return shapes


def argv(data_root, output_dir, clip_path, *opts, extra_flags=()):
    return trainer_argv(data_root, output_dir, clip_path, "VPT", *DEPTH_OPTS, *opts, extra_flags=extra_flags)


@pytest.fixture(scope="module")
def trained(data_root, clip_path, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("vpt_run")
    assert run_train_py(argv(data_root, output_dir, clip_path)) == 0
    return output_dir


def test_train_py_logs_the_count_and_saves_only_the_prompts(trained):
    log = read_log(trained)
    assert 'Building VPT (n_ctx = 4, depth = 3, precision = fp32; text: "a photo of a {class}.")' in log
    assert f"Trainable parameters (prompt learner): {TINY_COUNT:,}" in log
    assert "Finish training" in log and 0.0 <= final_accuracy(log) <= 100.0
    checkpoint = torch.load(osp.join(trained, LEARNER, "model.pth.tar-2"), weights_only=True)
    assert set(checkpoint["state_dict"]) == LEARNED_KEYS


def test_eval_only_reloads_the_trained_prompts(trained, data_root, clip_path, tmp_path):
    trainer = build(argv(data_root, tmp_path, clip_path, extra_flags=["--eval-only"]))
    trainer.load_model(str(trained), epoch=2)
    saved = torch.load(osp.join(trained, LEARNER, "model.pth.tar-2"), weights_only=True)["state_dict"]
    for key, value in trainer.model.prompt_learner.state_dict().items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)


def test_an_upstream_checkpoint_loads(data_root, clip_path, tmp_path, capsys):
    official = write_upstream_checkpoint(tmp_path / "upstream" / LEARNER, upstream_vpt_shapes(4, 3, 64, 128))
    trainer = build(argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    trainer.load_model(str(tmp_path / "upstream"), epoch=5)
    assert "ignoring 6 frozen CLIP entries" in capsys.readouterr().out
    learner = trainer.model.prompt_learner
    torch.testing.assert_close(learner.shallow.detach(), official["image_encoder.VPT"], rtol=0, atol=0)
    for k in (1, 2):
        expected = official[f"image_encoder.transformer.resblocks.{k}.VPT_shallow"]
        torch.testing.assert_close(learner.deep[k - 1].detach(), expected, rtol=0, atol=0)


def test_an_upstream_checkpoint_of_another_depth_is_refused_naming_the_keys(data_root, clip_path, tmp_path):
    write_upstream_checkpoint(tmp_path / "upstream", upstream_vpt_shapes(4, 2, 64, 128))
    path = str(tmp_path / "upstream" / "model.pth.tar-5")
    with pytest.raises(ConfigError, match=r"missing from the file: \['deep.1'\].*TRAINER.VPT.PROMPT_DEPTH_VISION"):
        build(argv(data_root, tmp_path / "run", clip_path, "MODEL.INIT_WEIGHTS", path))


def test_trains_through_ddp(one_process_group, data_root, clip_path, tmp_path):  # noqa: F811
    check_ddp_step(build(argv(data_root, tmp_path, clip_path)), LEARNER)


def test_bf16_on_the_cpu(data_root, clip_path, tmp_path, monkeypatch):
    trainer = build(argv(data_root, tmp_path, clip_path, "TRAINER.VPT.PREC", "bf16"))
    check_bf16_step_and_evaluation(trainer, monkeypatch)
    assert (
        trainer.model.fixed_text.get(trainer.model.clip).dtype == torch.float32
    )  # the fixed text is encoded outside autocast


def test_base_to_new_on_the_toy_world(tmp_path):
    train_log, test_log = base_to_new(str(tmp_path), "VPT", "VPT/toy_clip")
    assert f"Trainable parameters (prompt learner): {3 * 8 * 64:,}" in train_log  # toy CLIP: width 64, 3 blocks
    assert f'Loaded weights to {LEARNER} from "{tmp_path / "train_base" / LEARNER / "model.pth.tar-1"}"' in test_log
    assert "# classes  18" in test_log and 0.0 <= final_accuracy(test_log) <= 100.0


def test_the_shipped_recipe_holds_the_upstream_values():
    shipped = {osp.basename(p) for p in glob.glob(osp.join(REPO, "configs/trainers/VPT/*.yaml"))}
    assert shipped == {"vit_b16_c2_ep5_batch4_4.yaml", "toy_clip.yaml"}
    cfg = recipe_cfg("VPT/vit_b16_c2_ep5_batch4_4", "VPT")
    node = cfg.TRAINER.VPT
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (0.0025, 5, 4)
    assert (node.N_CTX_VISION, node.PROMPT_DEPTH_VISION, node.PREC) == (8, 12, "fp16")
