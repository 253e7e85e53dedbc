"""The PLOT++ trainer through train.py (tiny ViT CLIP, ToyColors): the two stages (what each
trains, stage 2 starting from the stage-1 file through MODEL.INIT_WEIGHTS or upstream's
PRETRAIN_DIR), upstream's whole-model files, the config checks, the counts at ViT-B/16 widths
(and PLOT's at RN50's), and the shipped recipes."""

import os.path as osp

import pytest
import torch

import clip
from dassl.config import ConfigError
from tests.deep_prompt_runs import (
    check_ddp_step,
    one_process_group,  # noqa: F401  (a fixture)
    read_log,
    recipe_cfg,
    write_upstream_checkpoint,
)
from tests.engine_toys import build_from_argv as build
from tests.engine_toys import run_train_py
from tests.engine_toys import tiny_clip_argv as trainer_argv
from tests.tiny_clip import save_tiny_clip
from trainers.plotpp import TEMPLATES

LEARNER = "prompt_learner"
M, N_CTX_V, D_VISION, D_TEXT = 3, 2, 128, 64  # the tiny CLIP's widths
N, N_CTX = 4, 4  # Caltech101's four templates, of 4 words
SHAPE_OPTS = ("TRAINER.PLOTPP.M", str(M), "TRAINER.PLOTPP.TEMPLATES", "Caltech101")  # ToyColors has no templates
STAGE1 = ("TRAINER.PLOTPP.MODEL_UPD", "vision", "TRAINER.PLOTPP.TRADE_OFF", "True")
STAGE2 = ("TRAINER.PLOTPP.MODEL_UPD", "joint", "TRAINER.PLOTPP.TRADE_OFF", "False")
STAGE1_COUNT = M * N_CTX_V * D_VISION
STAGE2_COUNT = STAGE1_COUNT + N * N_CTX * D_TEXT


def argv(data_root, output_dir, clip_path, *opts, extra_flags=()):
    return trainer_argv(data_root, output_dir, clip_path, "PLOTPP", *SHAPE_OPTS, *opts, extra_flags=extra_flags)


def saved(run_dir, epoch=2):
    return torch.load(osp.join(run_dir, LEARNER, f"model.pth.tar-{epoch}"), weights_only=True)["state_dict"]


def template_start(trainer):
    """ctx as upstream starts it: the embeddings of positions 1..n of each tokenised template."""
    embedding = trainer.model.clip.token_embedding
    return torch.stack([embedding(clip.tokenize(t))[0, 1 : 1 + N_CTX] for t in TEMPLATES["Caltech101"]]).detach()


@pytest.fixture(scope="module")
def stage1(data_root, clip_path, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("stage1")
    assert run_train_py(argv(data_root, output_dir, clip_path, *STAGE1)) == 0
    return output_dir


@pytest.fixture(scope="module")
def stage2(stage1, data_root, clip_path, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("stage2")
    init = ("MODEL.INIT_WEIGHTS", osp.join(stage1, LEARNER, "model.pth.tar-2"))
    assert run_train_py(argv(data_root, output_dir, clip_path, *STAGE2, *init)) == 0
    return output_dir


def test_stage_1_trains_the_visual_prompts_only(stage1, data_root, clip_path, tmp_path):
    log = read_log(stage1)
    assert "trains: vision only, global term on" in log
    assert f"Trainable parameters (prompt learner): {STAGE1_COUNT:,}" in log and "Finish training" in log
    state = saved(stage1)
    assert sorted(state) == ["ctx", "ctx_vision"] and state["ctx_vision"].shape == (M, N_CTX_V, D_VISION)
    fresh = build(argv(data_root, tmp_path, clip_path, *STAGE1))
    assert [name for name, p in fresh.model.prompt_learner.named_parameters() if p.requires_grad] == ["ctx_vision"]
    # The text contexts are where the templates put them; the visual prompts moved from their start.
    torch.testing.assert_close(state["ctx"], template_start(fresh), rtol=0, atol=0)
    assert (state["ctx_vision"] - fresh.model.prompt_learner.ctx_vision.detach()).abs().max() > 1e-3


def test_stage_2_starts_from_the_stage_1_file_and_trains_both(stage1, stage2, data_root, clip_path, tmp_path):
    log = read_log(stage2)
    assert f"Initialising the learned prompts from {osp.join(stage1, LEARNER, 'model.pth.tar-2')}" in log
    assert "trains: joint, global term off" in log
    assert f"Trainable parameters (prompt learner): {STAGE2_COUNT:,}" in log and "Finish training" in log
    first, second = saved(stage1), saved(stage2)
    for key in ("ctx", "ctx_vision"):
        assert (second[key] - first[key]).abs().max() > 1e-4, key
    # Upstream's key does the same as MODEL.INIT_WEIGHTS.
    pretrain = ("TRAINER.PLOTPP.PRETRAIN_DIR", osp.join(stage1, LEARNER, "model.pth.tar-2"))
    trainer = build(argv(data_root, tmp_path, clip_path, *STAGE2, *pretrain))
    for key, value in trainer.model.prompt_learner.state_dict().items():
        torch.testing.assert_close(value, first[key], rtol=0, atol=0)


def test_upstreams_evaluation_evaluates_the_pretrain_dir_file(stage2, data_root, clip_path, tmp_path):
    """plot-pp's evaluation.sh: --eval-only with PRETRAIN_DIR and no --model-dir."""
    pretrain = ("TRAINER.PLOTPP.PRETRAIN_DIR", osp.join(stage2, LEARNER, "model.pth.tar-2"))
    assert run_train_py(argv(data_root, tmp_path, clip_path, *pretrain, extra_flags=["--eval-only"])) == 0
    log = read_log(tmp_path)
    assert "(TRAINER.PLOTPP.PRETRAIN_DIR)" in log and "=> result" in log and "* accuracy: " in log


def test_an_upstream_whole_model_file_loads(data_root, clip_path, tmp_path, capsys):
    classes = 3
    shapes = {
        "prompt_learner.ctx": (N, N_CTX, D_TEXT),
        "prompt_learner.ctx_vision": (M, N_CTX_V, D_VISION),
        "prompt_learner.token_prefix": (N * classes, 1, D_TEXT),
        "prompt_learner.token_suffix": (N * classes, 77 - 1 - N_CTX, D_TEXT),
        "image_encoder.conv1.weight": (D_VISION, 3, 8, 8),
        "image_encoder.class_embedding": (D_VISION,),
        "text_encoder.positional_embedding": (77, D_TEXT),
        "logit_scale": (),
    }
    official = write_upstream_checkpoint(tmp_path / "upstream" / LEARNER, shapes, epoch=50)
    trainer = build(argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    trainer.load_model(str(tmp_path / "upstream"), epoch=50)
    assert "ignoring 4 frozen CLIP entries" in capsys.readouterr().out
    learner = trainer.model.prompt_learner
    torch.testing.assert_close(learner.ctx.detach(), official["prompt_learner.ctx"], rtol=0, atol=0)
    torch.testing.assert_close(learner.ctx_vision.detach(), official["prompt_learner.ctx_vision"], rtol=0, atol=0)


@pytest.mark.parametrize(
    "opts, expected",
    [
        (("TRAINER.PLOTPP.TEMPLATES", ""), r"DATASET.NAME = 'ToyColors' has no PLOT\+\+ templates"),
        (("TRAINER.PLOTPP.TEMPLATES", "Pets"), r"TRAINER.PLOTPP.TEMPLATES = 'Pets' has no PLOT\+\+ templates"),
        (("TRAINER.PLOTPP.MODEL_UPD", "visual"), r"TRAINER.PLOTPP.MODEL_UPD = 'visual' is invalid: expected one of"),
        (("TRAINER.PLOTPP.PRETRAIN_DIR", "FILE", "MODEL.INIT_WEIGHTS", "FILE"), "give the stage-1 file once"),
        (("MODEL.BACKBONE.PATH", "RESNET"), "TRAINER.PLOTPP.M asks for visual prompts, which need a ViT"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(data_root, clip_path, tmp_path, opts, expected):
    if "RESNET" in opts:
        resnet = tmp_path / "resnet.pt"
        save_tiny_clip(str(resnet), resnet=True)
        opts = ("MODEL.BACKBONE.PATH", str(resnet), "INPUT.SIZE", "(64, 64)")
    if "FILE" in opts:  # two existing files: the engine checks that MODEL.INIT_WEIGHTS exists first
        (tmp_path / "stage1.pth.tar").write_bytes(b"")
        opts = tuple(str(tmp_path / "stage1.pth.tar") if opt == "FILE" else opt for opt in opts)
    with pytest.raises(ConfigError, match=expected):
        build(argv(data_root, tmp_path, clip_path, *opts))


def test_random_text_contexts_need_no_templates(data_root, clip_path, tmp_path, capsys):
    opts = ("TRAINER.PLOTPP.TEMPLATES", "", "TRAINER.PLOTPP.CTX_INIT", "False", "TRAINER.PLOTPP.N", "5")
    trainer = build(argv(data_root, tmp_path, clip_path, *opts))
    assert trainer.model.prompt_learner.ctx.shape == (5, 4, D_TEXT)  # N_CTX 4 tokens, five prompts
    assert trainer.model.prompt_learner.prefixes == ["X X X X"] * 5


def test_trains_through_ddp(one_process_group, data_root, clip_path, tmp_path):  # noqa: F811
    check_ddp_step(build(argv(data_root, tmp_path, clip_path, *STAGE2)), LEARNER)


@pytest.fixture(scope="module")
def wide_clip_path(tmp_path_factory):
    """A one-block CLIP with ViT-B/16's widths (text 512, vision 768), for the published counts."""
    path = tmp_path_factory.mktemp("wide") / "wide_clip.pt"
    dims = dict(embed_dim=512, vision_width=768, vision_layers=1, transformer_width=512, transformer_layers=1)
    save_tiny_clip(str(path), vision_patch_size=32, **dims)
    return str(path)


def logged_count(capsys):
    line = [row for row in capsys.readouterr().out.splitlines() if row.startswith("Trainable parameters")][-1]
    return int(line.rsplit(" ", 1)[1].replace(",", ""))


@pytest.mark.parametrize(
    "templates, stage, count",
    [
        ("Caltech101", STAGE1, 6_144),  # 4 x 2 x 768
        ("Caltech101", STAGE2, 14_336),  # + 4 x 4 x 512
        ("DescribableTextures", STAGE2, 16_384),  # n = 5
        ("UCF101", STAGE2, 18_432),  # n = 6
    ],
)
def test_counts_at_vit_b16_widths(data_root, wide_clip_path, tmp_path, capsys, templates, stage, count):
    opts = ("TRAINER.PLOTPP.M", "4", "TRAINER.PLOTPP.TEMPLATES", templates, *stage)
    build(trainer_argv(data_root, tmp_path, wide_clip_path, "PLOTPP", *opts))
    assert logged_count(capsys) == count


def test_plots_count_at_rn50s_text_width(data_root, wide_clip_path, tmp_path, capsys):
    build(trainer_argv(data_root, tmp_path, wide_clip_path, "PLOT"))  # N 4, N_CTX 16 (the defaults)
    assert logged_count(capsys) == 32_768


def test_the_shipped_recipes_hold_upstreams_values_and_the_forced_epochs():
    vit = recipe_cfg("PLOTPP/vit", "PLOTPP")
    assert (vit.MODEL.BACKBONE.NAME, vit.OPTIM.LR, vit.OPTIM.MAX_EPOCH) == ("ViT-B/16", 0.002, 50)
    assert (vit.DATALOADER.TRAIN_X.BATCH_SIZE, vit.DATALOADER.TEST.BATCH_SIZE, vit.TRAIN.PRINT_FREQ) == (32, 100, 20)
    node = vit.TRAINER.PLOTPP
    assert (node.N_CTX, node.CTX_INIT, node.PREC, node.N, node.TRADE_OFF, node.M, node.N_CTX_V) == (
        4,
        True,
        "fp16",
        4,
        False,
        4,
        2,
    )
    assert (node.PRETRAIN_DIR, node.MODEL_UPD, node.TEMPLATES, node.STOP_PER_PROBLEM) == ("", "", "", False)
    for name, epochs in [("vit_ep100", 100), ("vit_ep200", 200), ("vit_xd", 50)]:
        assert recipe_cfg(f"PLOTPP/{name}", "PLOTPP").OPTIM.MAX_EPOCH == epochs
    assert recipe_cfg("PLOTPP/vit_xd", "PLOTPP").TRAINER.PLOTPP.TEMPLATES == "ImageNet"
