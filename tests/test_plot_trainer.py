"""The PLOT trainer through train.py (tiny CLIPs, ToyColors): training on a ViT and a ResNet, the
log, checkpoints (ours and plot-coop's), the config checks, DDP, and the shipped recipes."""

import os.path as osp

import pytest
import torch

from dassl.config import ConfigError
from tests.deep_prompt_runs import (
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
from tests.tiny_clip import save_tiny_clip

LEARNER = "prompt_learner"
N, N_CTX, D_TEXT = 3, 2, 64  # the tiny CLIP's text width
SHAPE_OPTS = ("TRAINER.PLOT.N", str(N), "TRAINER.PLOT.N_CTX", str(N_CTX))


def argv(data_root, output_dir, clip_path, *opts, extra_flags=()):
    return trainer_argv(data_root, output_dir, clip_path, "PLOT", *SHAPE_OPTS, *opts, extra_flags=extra_flags)


@pytest.fixture(scope="module")
def trained(data_root, clip_path, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("plot_run")
    assert run_train_py(argv(data_root, output_dir, clip_path)) == 0
    return output_dir


@pytest.fixture(scope="module")
def resnet_clip_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("resnet") / "tiny_resnet.pt"
    save_tiny_clip(str(path), resnet=True, seed=2)
    return str(path)


def test_train_py_on_a_vit_logs_the_setup_and_count_and_saves_ctx(trained):
    log = read_log(trained)
    assert (
        "Building PLOT (N = 3 prompts of n = 2 tokens, M = 16 local features, global term off, "
        "Sinkhorn stopping per batch, precision = fp32)" in log
    )
    assert f"Trainable parameters (prompt learner): {N * N_CTX * D_TEXT:,}" in log
    assert "Finish training" in log and 0.0 <= final_accuracy(log) <= 100.0
    checkpoint = torch.load(osp.join(trained, LEARNER, "model.pth.tar-2"), weights_only=True)
    assert list(checkpoint["state_dict"]) == ["ctx"] and checkpoint["state_dict"]["ctx"].shape == (N, N_CTX, D_TEXT)


def test_eval_only_reloads_the_trained_context(trained, data_root, clip_path, tmp_path):
    trainer = build(argv(data_root, tmp_path, clip_path, extra_flags=["--eval-only"]))
    trainer.load_model(str(trained), epoch=2)
    saved = torch.load(osp.join(trained, LEARNER, "model.pth.tar-2"), weights_only=True)["state_dict"]["ctx"]
    torch.testing.assert_close(trainer.model.prompt_learner.ctx.detach(), saved, rtol=0, atol=0)


def test_a_resnet_trains_on_its_attention_pool_positions(data_root, resnet_clip_path, tmp_path, capsys):
    trainer = build(
        argv(data_root, tmp_path, resnet_clip_path, "INPUT.SIZE", "(64, 64)", "TRAINER.PLOT.STOP_PER_PROBLEM", "True")
    )
    assert "M = 4 local features" in capsys.readouterr().out  # 64 px: the 2x2 map of layer4
    trainer.batch_idx, trainer.num_batches = 0, len(trainer.train_loader_x)
    before = trainer.model.prompt_learner.ctx.detach().clone()
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert torch.isfinite(torch.tensor(summary["loss"]))
    assert not torch.equal(trainer.model.prompt_learner.ctx.detach(), before)
    assert all(param.grad is None for param in trainer.model.clip.parameters())


def test_a_plot_coop_checkpoint_loads(data_root, clip_path, tmp_path, capsys):
    """plot-coop saves the learner: ctx and the prompt-major (N*C)-row token buffers, dropped here."""
    classes = 3
    shapes = {"ctx": (N, N_CTX, D_TEXT), "token_prefix": (N * classes, 1, D_TEXT)}
    shapes["token_suffix"] = (N * classes, 77 - 1 - N_CTX, D_TEXT)
    official = write_upstream_checkpoint(tmp_path / "upstream" / LEARNER, shapes, epoch=50)
    trainer = build(argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    trainer.load_model(str(tmp_path / "upstream"), epoch=50)
    assert f'Loaded weights to {LEARNER} from "{tmp_path / "upstream" / LEARNER / "model.pth.tar-50"}"' in (
        capsys.readouterr().out
    )
    torch.testing.assert_close(trainer.model.prompt_learner.ctx.detach(), official["ctx"], rtol=0, atol=0)


def test_a_checkpoint_of_another_prompt_count_is_refused_naming_the_keys(trained, data_root, clip_path, tmp_path):
    path = str(trained / LEARNER / "model.pth.tar-2")
    with pytest.raises(ConfigError, match=r"ctx \(3, 2, 64\) in the file, \(4, 2, 64\) in the model.*TRAINER.PLOT.N\b"):
        build(argv(data_root, tmp_path, clip_path, "TRAINER.PLOT.N", "4", "MODEL.INIT_WEIGHTS", path))


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("CSC", "True", "TRAINER.PLOT.CSC = True is invalid: expected False"),
        ("CTX_INIT", "a photo of a", "TRAINER.PLOT.CTX_INIT = 'a photo of a' is invalid"),
        ("CLASS_TOKEN_POSITION", "middle", "TRAINER.PLOT.CLASS_TOKEN_POSITION = 'middle' is invalid"),
        ("GLOBAL_LOGITS", "ImageNet", "TRAINER.PLOT.GLOBAL_LOGITS = 'ImageNet' is invalid: expected one of"),
        ("N", "0", "TRAINER.PLOT.N = 0 is invalid: expected >= 1"),
    ],
)
def test_settings_upstream_cannot_run_are_refused_naming_the_key(data_root, clip_path, tmp_path, key, value, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        build(argv(data_root, tmp_path, clip_path, f"TRAINER.PLOT.{key}", value))


def test_the_global_term_switch_is_logged(data_root, clip_path, tmp_path, capsys):
    build(argv(data_root, tmp_path, clip_path, "TRAINER.PLOT.GLOBAL_LOGITS", "on"))
    assert "global term on" in capsys.readouterr().out


def test_trains_through_ddp(one_process_group, data_root, clip_path, tmp_path):  # noqa: F811
    check_ddp_step(build(argv(data_root, tmp_path, clip_path)), LEARNER)


def test_the_shipped_recipes_hold_upstreams_values_and_the_forced_epochs():
    rn50 = recipe_cfg("PLOT/rn50", "PLOT")
    assert (rn50.MODEL.BACKBONE.NAME, rn50.OPTIM.LR, rn50.OPTIM.MAX_EPOCH) == ("RN50", 0.002, 50)
    assert (rn50.DATALOADER.TRAIN_X.BATCH_SIZE, rn50.DATALOADER.TEST.BATCH_SIZE, rn50.TRAIN.PRINT_FREQ) == (128, 200, 5)
    node = rn50.TRAINER.PLOT
    assert (node.N_CTX, node.CSC, node.CTX_INIT, node.PREC, node.CLASS_TOKEN_POSITION, node.N) == (
        16,
        False,
        "",
        "fp16",
        "end",
        4,
    )
    assert (node.GLOBAL_LOGITS, node.STOP_PER_PROBLEM) == ("imagenet", False)
    for name, epochs, batch in [
        ("rn50_ep100", 100, 128),
        ("rn50_ep200", 200, 128),
        ("rn50_b32", 50, 32),
        ("rn50_ep100_b32", 100, 32),
        ("rn50_ep200_b32", 200, 32),
    ]:
        cfg = recipe_cfg(f"PLOT/{name}", "PLOT")
        assert (cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (epochs, batch), name
        assert (cfg.OPTIM.LR, cfg.MODEL.BACKBONE.NAME) == (0.002, "RN50"), name
    vit = recipe_cfg("PLOT/vit_b16", "PLOT")
    assert (vit.MODEL.BACKBONE.NAME, vit.OPTIM.MAX_EPOCH, vit.DATALOADER.TRAIN_X.BATCH_SIZE) == ("ViT-B/16", 200, 32)
    assert recipe_cfg("PLOT/vit_b16_ep50_xd", "PLOT").TRAINER.PLOT.GLOBAL_LOGITS == "on"
