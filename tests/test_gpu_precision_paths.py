"""The GPU precision paths of every method, run on the CPU: fp16 storage, amp and bf16 autocast.

On a CPU the engine runs ``PREC fp16`` and ``amp`` as fp32 (dassl/engine/precision.py), so the
float16 paths that every recipe uses on a GPU would go untested without one. The test and debug
mode ``DASSL_CPU_HALF=1`` keeps them on the CPU exactly as on a GPU: fp16 builds OpenAI's mixed
float16 storage of the frozen CLIP and the methods' float16 learned tensors, amp autocasts to
float16 with a ``torch.amp.GradScaler("cpu")``; bf16 autocasts to bfloat16 as always.

For EVERY method of the registry (``tools.methods.load_methods()``: a method added later is covered
without editing this file) and each of fp16, amp and bf16: train.py with the method's toy recipe
(``configs/trainers/<...>/<TOY_CFG>.yaml``, the committed tiny CLIP ``tools/assets/toy_clip.pt``) on
a tiny ToyShapes (base classes, 1 shot: one training step of 18 images, then one evaluation of 18
test images); a method without training is evaluated (``--eval-only``). Checked:

- the run ends with exit status 0 and really ran the precision asked for (no fallback);
- every training loss and every evaluation logit is finite;
- the frozen CLIP's storage: under fp16 OpenAI's mixed storage (matmul weights and projections
  float16; embeddings, LayerNorms and logit scale float32), under amp and bf16 float32;
- the learned tensors' dtypes are those docs/methods.md and docs/method.md state: under fp16 the
  tensors made from the CLIP's dtype are float16 (``HALF_PRECISION_TENSORS``, per trainer) and the
  others float32; under amp and bf16 all float32. A trainer missing from that table (a new method)
  gets the generic check: float16 or float32 only. SGD's momentum and the saved checkpoint keep
  each tensor's dtype.

``CPU_SKIPS`` lists a (method, precision) that cannot run on a CPU at all, with the reason; it is
empty: with torch 2.14.1 every method runs every precision on the CPU (no CPU half kernel was
missing on these paths).
"""

import os
import os.path as osp

import pytest
import torch
from torch import nn

import train
from clip.model import CLIP
from dassl.engine import precision as precision_module
from dassl.utils import load_checkpoint
from tests.engine_toys import run_train_py
from tools.methods import load_methods
from tools.toy_world import write_toy_world

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_CLIP = osp.join(REPO, "tools", "assets", "toy_clip.pt")
PRECISIONS = ("fp16", "amp", "bf16")
METHODS = load_methods()

# (method name, precision) -> why it cannot run on a CPU. Empty: every pair runs.
CPU_SKIPS = {}

# The learned tensors stored in float16 under PREC fp16 (docs/methods.md, docs/method.md): those
# made from the float16 CLIP, as upstream; every other learned tensor is float32.
HALF_PRECISION_TENSORS = {
    "ALIGN": {"ctx", "proj.weight", "proj.bias"},
    "MMP": {"ctx", "proj.weight", "proj.bias"},
    "MaPLe": {"ctx", "proj.weight", "proj.bias"},
    "CoOp": {"ctx"},
    "CoCoOp": {"ctx"} | {f"meta_net.linear{i}.{kind}" for i in (1, 2) for kind in ("weight", "bias")},
    "IVLP": {"ctx"},
    "PromptSRC": {"ctx"},  # IVLP's prompts
    "VPT": set(),
}  # fmt: skip

# OpenAI's mixed storage: what the frozen CLIP keeps in float32 under fp16 (name suffixes).
FLOAT32_UNDER_FP16 = ("positional_embedding", "class_embedding", "token_embedding.weight", "logit_scale")


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory):
    """A tiny ToyShapes: 36 classes, 1 train, 1 val and 1 test image each."""
    root = str(tmp_path_factory.mktemp("toy_world"))
    write_toy_world(root, 1, {"train": 1, "val": 1, "test": 1})
    return root


class Recorder:
    """The trainer train.py builds, its training losses and its evaluation logits."""

    def __init__(self):
        self.trainer, self.losses, self.logits = None, [], []

    def build(self, build_trainer):
        def recording_build(cfg):
            trainer = build_trainer(cfg)
            self.trainer = trainer
            forward_backward, model_inference = trainer.forward_backward, trainer.model_inference

            def recorded_step(batch):
                summary = forward_backward(batch)
                self.losses.append(summary["loss"])
                return summary

            def recorded_inference(image):
                logits = model_inference(image)
                self.logits.append(logits.detach())
                return logits

            trainer.forward_backward, trainer.model_inference = recorded_step, recorded_inference
            return trainer

        return recording_build


def frozen_clip(trainer):
    """The frozen CLIP a trainer built: the one ``clip.model.CLIP`` among its modules."""
    found = {
        id(module): module
        for value in vars(trainer).values()
        if isinstance(value, nn.Module)
        for module in value.modules()
        if isinstance(module, CLIP)
    }
    assert len(found) == 1, f"{type(trainer).__name__}: expected one frozen CLIP, found {len(found)}"
    return next(iter(found.values()))


def assert_clip_storage(model, prec):
    dtypes = {name: tensor.dtype for name, tensor in model.state_dict().items()}
    if prec != "fp16":
        assert set(dtypes.values()) == {torch.float32}, prec
        return
    assert model.dtype == torch.float16
    matmul = ["visual.conv1.weight", "visual.proj", "text_projection"] + [
        name for name in dtypes if name.endswith(("attn.in_proj_weight", "attn.out_proj.weight", "c_fc.weight"))
    ]
    for name in matmul:
        assert dtypes[name] == torch.float16, name
    for name, dtype in dtypes.items():
        if name.endswith(FLOAT32_UNDER_FP16) or ".ln_" in name or name.startswith(("ln_", "visual.ln_")):
            assert dtype == torch.float32, name


def expected_learned_dtype(trainer_name, name, prec):
    """The documented dtype of learned tensor ``name``, or None when the trainer is not in the table."""
    if prec != "fp16":
        return torch.float32
    if trainer_name not in HALF_PRECISION_TENSORS:
        return None
    return torch.float16 if name in HALF_PRECISION_TENSORS[trainer_name] else torch.float32


def assert_learned_dtypes(trainer, method, prec, output_dir):
    for model_name in trainer.get_model_names():
        learned = {name: param for name, param in trainer._models[model_name].named_parameters() if param.requires_grad}
        assert learned, f"{method.name}: the registered model {model_name} learns nothing"
        for name, param in learned.items():
            expected = expected_learned_dtype(method.trainer, name, prec)
            if expected is None:  # a method without documented dtypes here: at least no other dtype
                assert param.dtype in (torch.float16, torch.float32), (name, param.dtype)
            else:
                assert param.dtype == expected, (method.name, prec, name, param.dtype)
            momentum = trainer._optims[model_name].state.get(param, {}).get("momentum_buffer")
            assert momentum is None or momentum.dtype == param.dtype, name
        saved = load_checkpoint(osp.join(output_dir, model_name, "model.pth.tar-1"))["state_dict"]
        for name, param in learned.items():
            assert saved[name].dtype == param.dtype, (name, saved[name].dtype)


def method_argv(method, prec, toy_world, output_dir):
    node = train.trainer_config_node(method.trainer)
    assert node is not None, f"trainer {method.trainer} states no CONFIG_NODE: the test cannot set its PREC"
    argv = [
        *("--root", toy_world, "--seed", "1", "--trainer", method.trainer, "--output-dir", str(output_dir)),
        *("--dataset-config-file", osp.join(REPO, "configs", "datasets", "toy_shapes.yaml")),
        *("--config-file", osp.join(REPO, method.config_dir, method.toy_cfg + ".yaml")),
        *("DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", "base", "USE_CUDA", "False"),
        *("OPTIM.MAX_EPOCH", "1", "DATALOADER.TRAIN_X.BATCH_SIZE", "18", "DATALOADER.TEST.BATCH_SIZE", "100"),
        *("DATALOADER.NUM_WORKERS", "0", "TRAIN.PRINT_FREQ", "1", "MODEL.BACKBONE.PATH", TOY_CLIP),
        *(f"TRAINER.{node}.PREC", prec),
    ]
    return argv if method.trains else ["--eval-only", *argv]


# amp: the GradScaler skips a first step whose float16 gradients overflow at its initial scale 2^16
# (as on a GPU), and torch then warns that the scheduler stepped before the optimizer.
@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`")
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("method", METHODS, ids=[method.name for method in METHODS])
def test_one_step_and_one_evaluation_under_the_gpu_precisions(method, prec, toy_world, tmp_path, monkeypatch, capsys):
    if (method.name, prec) in CPU_SKIPS:
        pytest.skip(CPU_SKIPS[method.name, prec])
    monkeypatch.setenv(precision_module.CPU_HALF_ENV, "1")
    monkeypatch.setattr(train, "collect_env_info", lambda: "<environment report>")
    recorder = Recorder()
    monkeypatch.setattr(train, "build_trainer", recorder.build(train.build_trainer))
    output_dir = tmp_path / "run"

    status = run_train_py(method_argv(method, prec, toy_world, output_dir))
    out = capsys.readouterr().out
    assert status == 0, out[-3000:]
    trainer = recorder.trainer
    assert trainer.precision.name == prec  # kept on the CPU, not run as fp32
    assert "is not supported on the CPU" not in out

    if method.trains:
        assert len(recorder.losses) == 1 and all(map(torch.isfinite, map(torch.tensor, recorder.losses)))
    assert len(recorder.logits) == 1
    logits = recorder.logits[0]
    assert logits.shape == (18, 18) and torch.isfinite(logits.float()).all()
    assert "* accuracy: " in out

    assert_clip_storage(frozen_clip(trainer), prec)
    if method.trains:
        assert_learned_dtypes(trainer, method, prec, output_dir)
    else:
        assert trainer.get_model_names() == []


def test_every_registered_method_is_covered():
    """The parameters come from the registry (a sanity check that it is read, not a list)."""
    names = {method.name for method in METHODS}
    assert {"ZeroshotCLIP", "CoOp", "CoCoOp", "MaPLe", "IVLP", "VPT", "ALIGN"} <= names
    assert set(CPU_SKIPS) <= {(name, prec) for name in names for prec in PRECISIONS}
    assert os.path.isfile(TOY_CLIP)
