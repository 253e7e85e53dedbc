"""The CoCoOp trainer through the engine and train.py: training and checkpoints (ours and upstream's),
precisions, the shipped configs, and base-to-new on the toy world."""

import glob
import os.path as osp
import re

import pytest
import torch

import train
from dassl.config import ConfigError
from tests.engine_toys import build_from_argv as build
from tests.engine_toys import run_train_py, tiny_clip_argv
from tests.tiny_clip import save_tiny_clip
from tests.upstream_files import dassl_pytorch_checkpoint
from tools.toy_world import write_toy_world

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LEARNER = "prompt_learner"
D_TEXT, D_IMAGE = 64, 64  # the tiny CLIP's text width and joint dimension
LEARNED = [
    "ctx",
    "meta_net.linear1.weight",
    "meta_net.linear1.bias",
    "meta_net.linear2.weight",
    "meta_net.linear2.bias",
]


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")
    save_tiny_clip(path, seed=1, embed_dim=D_IMAGE)
    return path


def cocoop_argv(data_root, output_dir, clip_path, *opts, extra_flags=()):
    """train.py arguments for CoCoOp ("a photo of a") on the engine's ToyColors images with a tiny
    CLIP (CPU, fp32), 2 epochs."""
    init = ("TRAINER.COCOOP.CTX_INIT", "a photo of a")
    return tiny_clip_argv(data_root, output_dir, clip_path, "CoCoOp", *init, *opts, extra_flags=extra_flags)


def test_train_py_trains_and_saves_the_upstream_keys(data_root, clip_path, tmp_path):
    # A small budget: every training step and test batch runs the text tower in several chunks.
    argv = cocoop_argv(data_root, tmp_path, clip_path, "TRAINER.COCOOP.TEXT_MEMORY_MB", "0.1")
    assert run_train_py(argv) == 0
    log = (tmp_path / "log.txt").read_text()
    # ctx 4 x 64; linear1 64 -> 4 (+4); linear2 4 -> 64 (+64)
    assert f"Trainable parameters (prompt learner): {4 * 64 + 64 * 4 + 4 + 4 * 64 + 64}" in log
    assert "Finish training" in log and "* accuracy: " in log
    state = torch.load(tmp_path / LEARNER / "model.pth.tar-2", weights_only=True)["state_dict"]
    assert list(state) == LEARNED


def upstream_cocoop_state(generator, n_classes=5, n_ctx=4):
    """The official CoCoOp ``prompt_learner`` state dict: learned tensors and the buffers of ITS
    classes (5 here, 3 in the run: dropped)."""
    hidden = D_IMAGE // 16
    shapes = {
        "ctx": (n_ctx, D_TEXT),
        "meta_net.linear1.weight": (hidden, D_IMAGE),
        "meta_net.linear1.bias": (hidden,),
        "meta_net.linear2.weight": (D_TEXT, hidden),
        "meta_net.linear2.bias": (D_TEXT,),
        "token_prefix": (n_classes, 1, D_TEXT),
        "token_suffix": (n_classes, 77 - 1 - n_ctx, D_TEXT),
    }
    return {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}


def write_upstream(folder, state, epoch=10):
    """The official checkpoint: Dassl.pytorch's, with pickled scheduler objects."""
    path = folder / LEARNER / f"model.pth.tar-{epoch}"
    path.parent.mkdir(parents=True)
    torch.save(dassl_pytorch_checkpoint(state, epoch), path)


def test_upstream_checkpoint_loads(data_root, clip_path, tmp_path):
    state = upstream_cocoop_state(torch.Generator().manual_seed(0))
    write_upstream(tmp_path / "upstream", state)
    fresh = build(cocoop_argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    fresh.load_model(str(tmp_path / "upstream"), epoch=10)
    loaded = fresh.model.prompt_learner.state_dict()
    assert list(loaded) == LEARNED
    for key in LEARNED:
        torch.testing.assert_close(loaded[key], state[key], msg=key)


def test_a_missing_meta_net_tensor_is_reported(data_root, clip_path, tmp_path):
    state = upstream_cocoop_state(torch.Generator().manual_seed(1))
    del state["meta_net.linear2.bias"]
    write_upstream(tmp_path / "upstream", state)
    fresh = build(cocoop_argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    with pytest.raises(ConfigError, match=r"learned tensors missing from the file: \['meta_net.linear2.bias'\]"):
        fresh.load_model(str(tmp_path / "upstream"), epoch=10)


@pytest.mark.parametrize("prec, effective", [("fp16", "fp32"), ("amp", "fp32"), ("bf16", "bf16")])
def test_cpu_precisions_train(data_root, clip_path, tmp_path, prec, effective):
    trainer = build(cocoop_argv(data_root, tmp_path, clip_path, "TRAINER.COCOOP.PREC", prec))
    assert trainer.precision.name == effective
    learner = trainer.model.prompt_learner
    assert {param.dtype for param in learner.parameters()} == {torch.float32}
    before = {name: param.detach().clone() for name, param in learner.named_parameters()}
    trainer.batch_idx, trainer.num_batches = 0, len(trainer.train_loader_x)
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert torch.isfinite(torch.tensor(summary["loss"]))
    for name, param in learner.named_parameters():
        assert not torch.equal(param.detach(), before[name]), name
    assert 0.0 <= trainer.test() <= 100.0


CONFIGS = sorted(glob.glob(osp.join(REPO, "configs/trainers/CoCoOp/*.yaml")))


def test_the_upstream_config_files_are_shipped():
    assert {osp.basename(path) for path in CONFIGS} == {
        "vit_b16_c4_ep10_batch1_ctxv1.yaml",
        "vit_b16_c4_ep10_batch1.yaml",
        "vit_b16_c8_ep10_batch1.yaml",
        "vit_b16_c16_ep10_batch1.yaml",
        "toy_clip.yaml",
    }


@pytest.mark.parametrize("config", [path for path in CONFIGS if not path.endswith("toy_clip.yaml")])
def test_shipped_configs_have_the_upstream_values(config):
    name = osp.basename(config)
    args = train.build_parser().parse_args(
        ["--config-file", config, "--dataset-config-file", osp.join(REPO, "configs/datasets/imagenet.yaml")]
    )
    cfg = train.setup_cfg(args)
    node = cfg.TRAINER.COCOOP
    assert node.N_CTX == int(re.search(r"_c(\d+)_", name).group(1)) and node.PREC == "fp16"
    assert node.CTX_INIT == ("a photo of a" if name.endswith("_ctxv1.yaml") else "")
    assert node.TEXT_MEMORY_MB == 1024.0
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TEST.BATCH_SIZE) == (1, 100)
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.LR_SCHEDULER) == ("sgd", 0.002, 10, "cosine")
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16"


def test_base_to_new_through_train_py(tmp_path):
    """Train on the 18 base classes of a small toy world, then evaluate the saved epoch on the new ones."""
    write_toy_world(str(tmp_path / "data"), 1, {"train": 2, "val": 1, "test": 1})

    def argv(output_dir, subsample, *flags):
        return [
            "--root",
            str(tmp_path / "data"),
            "--seed",
            "1",
            "--trainer",
            "CoCoOp",
            "--dataset-config-file",
            osp.join(REPO, "configs/datasets/toy_shapes.yaml"),
            "--config-file",
            osp.join(REPO, "configs/trainers/CoCoOp/toy_clip.yaml"),
            "--output-dir",
            str(output_dir),
            *flags,
            "DATASET.NUM_SHOTS",
            "2",
            "DATASET.SUBSAMPLE_CLASSES",
            subsample,
            "OPTIM.MAX_EPOCH",
            "1",
            "MODEL.BACKBONE.PATH",
            osp.join(REPO, "tools/assets/toy_clip.pt"),
        ]

    assert run_train_py(argv(tmp_path / "base", "base")) == 0
    train_log = (tmp_path / "base" / "log.txt").read_text()
    assert "SUBSAMPLE BASE CLASSES!" in train_log and "* accuracy: " in train_log.split("Finish training")[1]
    flags = ("--eval-only", "--model-dir", str(tmp_path / "base"), "--load-epoch", "1")
    assert run_train_py(argv(tmp_path / "new", "new", *flags)) == 0
    test_log = (tmp_path / "new" / "log.txt").read_text()
    saved = tmp_path / "base" / LEARNER / "model.pth.tar-1"
    assert (
        "SUBSAMPLE NEW CLASSES!" in test_log and f'Loaded weights to {LEARNER} from "{saved}" (epoch = 1)' in test_log
    )
    assert re.search(r"^\* total: 18$", test_log, flags=re.M)
