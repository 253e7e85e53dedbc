"""The CoOp trainer through the engine and train.py: training, checkpoints (ours and upstream's),
the evaluation text cache, precisions, DDP, the shipped configs, and base-to-new on the toy world."""

import glob
import os.path as osp
import re

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

import train
from dassl.config import ConfigError
from dassl.utils import set_random_seed
from tests.engine_toys import build_from_argv as build
from tests.engine_toys import run_train_py, tiny_clip_argv
from tests.tiny_clip import save_tiny_clip
from tests.upstream_files import dassl_pytorch_checkpoint
from tools.toy_world import write_toy_world

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LEARNER = "prompt_learner"
D_TEXT = 64  # the tiny CLIP's text width
TOY_SPLITS = {"train": 4, "val": 1, "test": 2}  # images per class of the small toy world


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")
    save_tiny_clip(path, seed=1)
    return path


def coop_argv(data_root, output_dir, clip_path, *opts, extra_flags=()):
    """train.py arguments for CoOp (4 random context tokens) on the engine's ToyColors images with a
    tiny CLIP (CPU, fp32), 8 epochs."""
    return tiny_clip_argv(
        data_root, output_dir, clip_path, "CoOp", "OPTIM.MAX_EPOCH", "8", "TRAINER.COOP.N_CTX", "4", *opts,
        extra_flags=extra_flags,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(data_root, clip_path, tmp_path_factory):
    """A CoOp run of 8 epochs with class-specific contexts (the random tiny CLIP has no notion of
    the class names: a unified context cannot separate them): (trainer, output_dir, losses per step)."""
    output_dir = tmp_path_factory.mktemp("coop_run")
    set_random_seed(1)
    trainer = build(coop_argv(data_root, output_dir, clip_path, "TRAINER.COOP.CSC", "True"))
    losses = []
    step = trainer.forward_backward

    def recorded_step(batch):
        summary = step(batch)
        losses.append(summary["loss"])
        return summary

    trainer.forward_backward = recorded_step
    trainer.train()
    return trainer, output_dir, losses


def test_training_lowers_the_loss(trained):
    trainer, _, losses = trained
    batches = trainer.num_batches
    assert sum(losses[-batches:]) < 0.7 * sum(losses[:batches])


def test_checkpoint_holds_only_the_context_and_round_trips(trained, data_root, clip_path, tmp_path):
    trainer, output_dir, _ = trained
    checkpoint = torch.load(osp.join(output_dir, LEARNER, "model.pth.tar-8"), weights_only=True)
    assert list(checkpoint["state_dict"]) == ["ctx"] and checkpoint["state_dict"]["ctx"].shape == (3, 4, D_TEXT)
    fresh = build(coop_argv(data_root, tmp_path, clip_path, "TRAINER.COOP.CSC", "True", extra_flags=["--eval-only"]))
    fresh.load_model(str(output_dir), epoch=8)
    image = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh.model(image), trainer.model(image), rtol=0, atol=0)


def write_upstream(folder, state, epoch=200):
    """A checkpoint as the official CoOp/CoCoOp trainers save the registered ``prompt_learner``:
    the module's state dict (learned tensors and the class buffers) in Dassl.pytorch's checkpoint,
    whose pickled scheduler objects the safe unpickler reads as placeholders."""
    path = folder / LEARNER / f"model.pth.tar-{epoch}"
    path.parent.mkdir(parents=True)
    torch.save(dassl_pytorch_checkpoint(state, epoch), path)
    return path


def upstream_coop_state(ctx_shape, n_classes=5, n_ctx=4, generator=None):
    """Upstream keys: ``ctx`` and the buffers of ITS classes (5 here, 3 in the run: dropped)."""
    return {
        "ctx": torch.randn(ctx_shape, generator=generator),
        "token_prefix": torch.randn(n_classes, 1, D_TEXT),
        "token_suffix": torch.randn(n_classes, 77 - 1 - n_ctx, D_TEXT),
    }


def test_upstream_checkpoint_loads_without_its_class_buffers(data_root, clip_path, tmp_path, capsys):
    state = upstream_coop_state((4, D_TEXT), generator=torch.Generator().manual_seed(0))
    write_upstream(tmp_path / "upstream", state)
    fresh = build(coop_argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    fresh.load_model(str(tmp_path / "upstream"), epoch=200)
    assert "(epoch = 200)" in capsys.readouterr().out
    torch.testing.assert_close(fresh.model.prompt_learner.ctx.detach(), state["ctx"])
    assert fresh.model.prompt_learner.token_prefix.shape[0] == 3  # its own classes


def test_init_weights_reads_an_upstream_checkpoint(data_root, clip_path, tmp_path):
    state = upstream_coop_state((4, D_TEXT), generator=torch.Generator().manual_seed(1))
    path = write_upstream(tmp_path / "upstream", state)
    trainer = build(coop_argv(data_root, tmp_path / "run", clip_path, "MODEL.INIT_WEIGHTS", str(path)))
    torch.testing.assert_close(trainer.model.prompt_learner.ctx.detach(), state["ctx"])


def test_a_missing_context_is_reported(data_root, clip_path, tmp_path):
    state = upstream_coop_state((4, D_TEXT))
    del state["ctx"]
    write_upstream(tmp_path / "upstream", state)
    fresh = build(coop_argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    with pytest.raises(ConfigError, match=r"learned tensors missing from the file: \['ctx'\]"):
        fresh.load_model(str(tmp_path / "upstream"), epoch=200)


def test_a_class_specific_checkpoint_is_refused_naming_csc(data_root, clip_path, tmp_path):
    write_upstream(tmp_path / "upstream", upstream_coop_state((5, 4, D_TEXT)))
    fresh = build(coop_argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    with pytest.raises(ConfigError, match=r"ctx \(5, 4, 64\) in the file, \(4, 64\) in the model.*TRAINER.COOP.CSC"):
        fresh.load_model(str(tmp_path / "upstream"), epoch=200)


def test_evaluation_encodes_the_text_once(trained, monkeypatch):
    trainer = trained[0]
    calls = []
    encode_text = trainer.model.encode_text
    monkeypatch.setattr(trainer.model, "encode_text", lambda: calls.append(1) or encode_text())
    trainer.test()
    assert len(calls) == 1 and len(trainer.test_loader) == 3


@pytest.mark.parametrize(
    "prec, effective, autocast", [("fp16", "fp32", None), ("amp", "fp32", None), ("bf16", "bf16", torch.bfloat16)]
)
def test_cpu_precisions_train(data_root, clip_path, tmp_path, monkeypatch, prec, effective, autocast):
    """fp16 and amp fall back to fp32 on the CPU; bf16 runs the towers under autocast."""
    trainer = build(coop_argv(data_root, tmp_path, clip_path, "TRAINER.COOP.PREC", prec))
    assert trainer.precision.name == effective and trainer.grad_scaler is None
    seen = []
    encode_text = trainer.model.clip.encode_text

    def recording_encode_text(*args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return encode_text(*args, **kwargs)

    monkeypatch.setattr(trainer.model.clip, "encode_text", recording_encode_text)
    trainer.batch_idx, trainer.num_batches = 0, len(trainer.train_loader_x)
    before = trainer.model.prompt_learner.ctx.detach().clone()
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert torch.isfinite(torch.tensor(summary["loss"]))
    assert trainer.model.prompt_learner.ctx.dtype == torch.float32
    assert not torch.equal(trainer.model.prompt_learner.ctx.detach(), before)
    trainer.test()
    assert seen and set(seen) == {autocast}


@pytest.fixture
def one_process_group(tmp_path):
    """A real gloo process group of one process inside the test process."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_coop_trains_through_ddp_and_registers_the_plain_learner(one_process_group, data_root, clip_path, tmp_path):
    trainer = build(coop_argv(data_root, tmp_path, clip_path))
    assert isinstance(trainer.train_model, DistributedDataParallel) and trainer.train_model.module is trainer.model
    assert trainer.get_model_names() == [LEARNER] and trainer._models[LEARNER] is trainer.model.prompt_learner
    trainer.batch_idx, trainer.num_batches = 0, len(trainer.train_loader_x)
    trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert trainer.model.prompt_learner.ctx.grad is not None
    assert trainer.model.clip.token_embedding.weight.grad is None


CONFIGS = sorted(glob.glob(osp.join(REPO, "configs/trainers/CoOp/*.yaml")))
BACKBONES = {"vit_b16": "ViT-B/16", "vit_b32": "ViT-B/32", "rn50": "RN50", "rn101": "RN101"}


def test_the_upstream_config_files_are_shipped():
    names = {osp.basename(path)[: -len(".yaml")] for path in CONFIGS}
    assert names == {
        "vit_b16",
        "vit_b16_ep50",
        "vit_b16_ep100",
        "vit_b16_ctxv1",
        "vit_b16_ep50_ctxv1",
        "vit_b16_ep100_ctxv1",
        "vit_b32",
        "vit_b32_ep50",
        "rn50",
        "rn50_ep50",
        "rn50_ep100",
        "rn50_ctxv1",
        "rn50_ep50_ctxv1",
        "rn50_val",
        "rn101",
        "rn101_ep50",
        "toy_clip",
    }


@pytest.mark.parametrize("config", [path for path in CONFIGS if not path.endswith("toy_clip.yaml")])
def test_shipped_configs_have_the_upstream_values(config):
    """Backbone, epochs and CTX_INIT from the file name; batch 32, LR 0.002 (rn50_val: batch 200, no OPTIM)."""
    name = osp.basename(config)[: -len(".yaml")]
    args = train.build_parser().parse_args(
        ["--config-file", config, "--dataset-config-file", osp.join(REPO, "configs/datasets/caltech101.yaml")]
    )
    cfg = train.setup_cfg(args)
    assert cfg.MODEL.BACKBONE.NAME == BACKBONES[name.split("_")[0] if name.startswith("rn") else name[:7]]
    assert cfg.INPUT.SIZE == (224, 224) and cfg.DATALOADER.TEST.BATCH_SIZE in (100, 200)
    node = cfg.TRAINER.COOP
    assert (node.N_CTX, node.CSC, node.PREC, node.CLASS_TOKEN_POSITION) == (16, False, "fp16", "end")
    assert node.CTX_INIT == ("a photo of a" if name.endswith("_ctxv1") else "")
    if name == "rn50_val":
        assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == cfg.DATALOADER.TEST.BATCH_SIZE == 200
        return
    epochs = re.search(r"_ep(\d+)", name)
    assert cfg.OPTIM.MAX_EPOCH == (int(epochs.group(1)) if epochs else 200)
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.LR, cfg.OPTIM.NAME) == (32, 0.002, "sgd")
    assert (cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_CONS_LR) == ("cosine", 1, 1e-5)


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory):
    """A small ToyShapes (36 classes, 4 / 1 / 2 images per class): the DATA folder."""
    root = str(tmp_path_factory.mktemp("toy_world"))
    write_toy_world(root, 1, TOY_SPLITS)
    return root


def toy_argv(toy_world, output_dir, subsample, *flags):
    """train.py on the toy world with the toy CoOp config (the tiny pretrained CLIP), 4 shots."""
    return [
        "--root",
        toy_world,
        "--seed",
        "1",
        "--trainer",
        "CoOp",
        "--dataset-config-file",
        osp.join(REPO, "configs/datasets/toy_shapes.yaml"),
        "--config-file",
        osp.join(REPO, "configs/trainers/CoOp/toy_clip.yaml"),
        "--output-dir",
        str(output_dir),
        *flags,
        "DATASET.NUM_SHOTS",
        "4",
        "DATASET.SUBSAMPLE_CLASSES",
        subsample,
        "OPTIM.MAX_EPOCH",
        "2",
        "MODEL.BACKBONE.PATH",
        osp.join(REPO, "tools/assets/toy_clip.pt"),
    ]


def test_base_to_new_through_train_py(toy_world, tmp_path):
    """Train on the 18 base classes, then evaluate the saved epoch on the 18 new ones."""
    assert run_train_py(toy_argv(toy_world, tmp_path / "base", "base")) == 0
    train_log = (tmp_path / "base" / "log.txt").read_text()
    assert "SUBSAMPLE BASE CLASSES!" in train_log and "Finish training" in train_log
    assert "Trainable parameters (prompt learner): 256" in train_log  # 4 tokens ("a photo of a") x 64
    assert "* accuracy: " in train_log.split("Finish training")[1]
    flags = ("--eval-only", "--model-dir", str(tmp_path / "base"), "--load-epoch", "2")
    assert run_train_py(toy_argv(toy_world, tmp_path / "new", "new", *flags)) == 0
    test_log = (tmp_path / "new" / "log.txt").read_text()
    saved = tmp_path / "base" / LEARNER / "model.pth.tar-2"
    assert (
        "SUBSAMPLE NEW CLASSES!" in test_log and f'Loaded weights to {LEARNER} from "{saved}" (epoch = 2)' in test_log
    )
    assert re.search(r"^\* total: 36$", test_log, flags=re.M)  # 18 new classes x 2 test images
