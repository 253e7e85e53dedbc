"""train.py runs of the deep-prompt baselines (MaPLe, IVLP, VPT) for their trainer tests.

- ``base_to_new``: the base-to-new protocol through train.py on a small ToyShapes tree with a
  method's toy_clip recipe (the demo's pretrained tiny CLIP).
- ``write_upstream_checkpoint``: a full-model file as the upstream trainers save it.
- ``one_process_group`` (a fixture) and ``check_*``: checks every method's trainer passes.
"""

import os.path as osp
import re

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import train
from tests.engine_toys import run_train_py
from tests.tiny_clip import save_tiny_clip
from tests.upstream_files import dassl_pytorch_checkpoint
from tools import toy_world

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_CLIP = osp.join(REPO, "tools", "assets", "toy_clip.pt")
# A small ToyShapes tree: 2 training, 1 validation and 2 test images per class.
SMALL_TOY_SPLITS = {"train": 2, "val": 1, "test": 2}


def save_clip(path):
    """The tiny CLIP of the trainer tests (3 blocks per tower, d_t 64, d_v 128); returns ``path``."""
    save_tiny_clip(str(path), seed=1, vision_layers=3, transformer_layers=3, vision_width=128)
    return str(path)


def read_log(output_dir):
    with open(osp.join(output_dir, "log.txt")) as f:
        return f.read()


def final_accuracy(log):
    """The last '* accuracy: X%' of a log."""
    return float(re.findall(r"^\* accuracy: ([\d.]+)%$", log, flags=re.M)[-1])


def base_to_new(root, trainer, config, epochs=1):
    """Train ``trainer`` on the base classes of a small ToyShapes tree with
    configs/trainers/``config``.yaml, then evaluate the saved epoch on the new classes.

    Returns (training log, test log); both runs must exit with status 0.
    """
    data = osp.join(root, "data")
    if not osp.isdir(osp.join(data, "toy_shapes")):
        toy_world.write_toy_world(data, split_sizes=SMALL_TOY_SPLITS)
    common = [
        *("--root", data, "--seed", "1", "--trainer", trainer),
        *("--dataset-config-file", osp.join(REPO, "configs/datasets/toy_shapes.yaml")),
        *("--config-file", osp.join(REPO, "configs/trainers", f"{config}.yaml")),
    ]
    opts = ["MODEL.BACKBONE.PATH", TOY_CLIP, "DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", str(epochs)]
    train_dir, test_dir = osp.join(root, "train_base"), osp.join(root, "test_new")
    assert run_train_py([*common, "--output-dir", train_dir, *opts, "DATASET.SUBSAMPLE_CLASSES", "base"]) == 0
    evaluation = ["--output-dir", test_dir, "--eval-only", "--model-dir", train_dir, "--load-epoch", str(epochs)]
    assert run_train_py([*common, *evaluation, *opts, "DATASET.SUBSAMPLE_CLASSES", "new"]) == 0
    return read_log(train_dir), read_log(test_dir)


def write_upstream_checkpoint(folder, shapes, epoch=5, seed=0):
    """Write {key: shape} as random tensors in an upstream-style ``model.pth.tar-<epoch>`` under
    ``folder`` (Dassl.pytorch's checkpoint, with pickled scheduler objects); returns the state dict."""
    generator = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(dassl_pytorch_checkpoint(state, epoch), folder / f"model.pth.tar-{epoch}")
    return state


@pytest.fixture
def one_process_group(tmp_path):
    """A real gloo process group of one process inside the test process (what torchrun sets up)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def check_ddp_step(trainer, learner_name):
    """Under a process group the training forward runs through DDP around the prompted model, the
    plain learner is what is registered (and saved), and a step gives the learner gradients only."""
    assert isinstance(trainer.train_model, DistributedDataParallel) and trainer.train_model.module is trainer.model
    assert trainer.get_model_names() == [learner_name]
    assert trainer._models[learner_name] is trainer.model.prompt_learner
    trainer.batch_idx, trainer.num_batches = 0, len(trainer.train_loader_x)
    trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert all(param.grad is not None for param in trainer.model.prompt_learner.parameters())
    assert all(param.grad is None for param in trainer.model.clip.parameters())


def check_bf16_step_and_evaluation(trainer, monkeypatch):
    """PREC bf16 on the CPU: the towers run under bfloat16 autocast in training and evaluation,
    with float32 prompts and no gradient scaler."""
    assert trainer.precision.name == "bf16" and trainer.grad_scaler is None
    seen = []
    encode_image = trainer.model.clip.encode_image

    def recording_encode_image(*args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return encode_image(*args, **kwargs)

    monkeypatch.setattr(trainer.model.clip, "encode_image", recording_encode_image)
    trainer.batch_idx, trainer.num_batches = 0, len(trainer.train_loader_x)
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert torch.isfinite(torch.tensor(summary["loss"]))
    assert {param.dtype for param in trainer.model.prompt_learner.parameters()} == {torch.float32}
    assert 0.0 <= trainer.test() <= 100.0
    assert seen and set(seen) == {torch.bfloat16}


def check_text_encoded_once_per_evaluation(trainer, monkeypatch):
    """One evaluation (several test batches) encodes the class texts once."""
    calls = []
    encode_text = trainer.model.clip.encode_text
    monkeypatch.setattr(trainer.model.clip, "encode_text", lambda *a, **k: calls.append(1) or encode_text(*a, **k))
    trainer.test()
    assert len(trainer.test_loader) > 1 and len(calls) == 1


def recipe_cfg(config, trainer):
    """The frozen config train.py builds from configs/trainers/``config``.yaml (on Caltech101)."""
    flags = ["--config-file", osp.join(REPO, "configs/trainers", config + ".yaml"), "--trainer", trainer]
    flags += ["--dataset-config-file", osp.join(REPO, "configs/datasets/caltech101.yaml")]
    return train.setup_cfg(train.build_parser().parse_args(flags))
