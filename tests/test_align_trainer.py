"""The ALIGN trainer through the engine: training, evaluation cache, checkpoints, configs, errors."""

import glob
import os.path as osp

import pytest
import torch

import train
from benchmarks import precision_check
from dassl.config import ConfigError
from dassl.data import build_data_loader
from dassl.data.transforms import build_transform
from dassl.utils import CheckpointNotFoundError, set_random_seed
from tests.engine_toys import build_from_argv as build
from tests.engine_toys import run_train_py, tiny_clip_argv
from tests.tiny_clip import save_tiny_clip
from tests.upstream_files import dassl_pytorch_checkpoint
from trainers.align import ALIGN, ALIGNCLIP, LEARNER_NAME, ALIGNSettings

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    """A tiny CLIP whose vision width is its text width (64), unlike conftest's: the official-layout
    checkpoints built here have 64-wide projections."""
    path = str(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")
    save_tiny_clip(path, seed=1, vision_layers=3, transformer_layers=3)
    return path


def align_argv(data_root, output_dir, clip_path, *opts, trainer="ALIGN", node="ALIGN", extra_flags=()):
    """train.py arguments for ALIGN on the engine's ToyColors images with a tiny CLIP (CPU, fp32), 8 epochs."""
    prompts = (f"TRAINER.{node}.TEXT_PROMPT_DEPTH", "3", f"TRAINER.{node}.TEXT_PROMPT_NUMBER", "2")
    prompts += (f"TRAINER.{node}.VISION_PROMPT_NUMBER", "2")
    return tiny_clip_argv(
        data_root, output_dir, clip_path, trainer, "OPTIM.MAX_EPOCH", "8", *prompts, *opts, extra_flags=extra_flags
    )


@torch.no_grad()
def accuracy_on(trainer, data_source):
    """Top-1 accuracy (%) of the trainer's model on ``data_source`` with the test transform."""
    loader = build_data_loader(
        trainer.cfg,
        data_source=data_source,
        batch_size=4,
        tfm=build_transform(trainer.cfg, is_train=False),
        is_train=False,
    )
    correct = total = 0
    with trainer.model.cached_text_features():
        for batch in loader:
            image, label = trainer.parse_batch_test(batch)
            correct += (trainer.model_inference(image).argmax(1) == label).sum().item()
            total += label.numel()
    return 100.0 * correct / total


@pytest.fixture(scope="module")
def trained(data_root, clip_path, tmp_path_factory):
    """An ALIGN run of 8 epochs; returns (trainer, output_dir, losses, accuracy before training)."""
    output_dir = tmp_path_factory.mktemp("align_run")
    set_random_seed(1)  # as train.py does: prompts and data order must not depend on earlier tests
    trainer = build(align_argv(data_root, output_dir, clip_path))
    accuracy_before = accuracy_on(trainer, trainer.dm.dataset.train_x)
    losses = []
    step = trainer.forward_backward

    def recorded_step(batch):
        summary = step(batch)
        losses.append(summary["loss"])
        return summary

    trainer.forward_backward = recorded_step
    trainer.train()
    return trainer, output_dir, losses, accuracy_before


def test_training_lowers_the_loss_and_raises_training_accuracy(trained):
    trainer, _, losses, accuracy_before = trained
    batches = trainer.num_batches
    first, last = losses[:batches], losses[-batches:]
    assert sum(last) / batches < 0.7 * sum(first) / batches
    accuracy_after = accuracy_on(trainer, trainer.dm.dataset.train_x)
    assert accuracy_after > accuracy_before and accuracy_after >= 90


def test_checkpoint_holds_only_the_learned_prompts_and_round_trips(trained, data_root, clip_path, tmp_path):
    trainer, output_dir, _, _ = trained
    path = osp.join(output_dir, LEARNER_NAME, "model.pth.tar-8")
    checkpoint = torch.load(path, weights_only=True)
    learned = {name for name, _ in trainer.model.prompt_learner.named_parameters()}
    assert set(checkpoint["state_dict"]) == learned
    assert osp.getsize(path) < 200_000  # prompts only, not the frozen CLIP

    fresh = build(align_argv(data_root, tmp_path, clip_path, extra_flags=["--eval-only"]))
    fresh.load_model(str(output_dir), epoch=8)
    image = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh.model(image), trainer.model(image), rtol=0, atol=0)


def test_learned_prompts_transfer_to_other_classes(trained, clip_path):
    """Base-to-new: the checkpoint has no class-dependent entry, so it loads for new class names."""
    trainer, _, _, _ = trained
    state = trainer.model.prompt_learner.state_dict()
    other = ALIGNCLIP(trainer.settings, ["violet", "orange", "cyan", "black"], trainer.model.clip)
    other.prompt_learner.load_state_dict(state)  # strict
    assert other(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def official_full_model_state(n_prompts, n_ctx, depth, d_text, d_vision, n_classes, generator):
    """A state dict with the key names and shapes of the official trainer's checkpoint (the whole
    CustomCLIP: learner under ``prompt_learner.``, frozen towers under ``image_encoder.`` and
    ``text_encoder.``), written from the official layout, not from this project's modules."""
    shapes = {
        "prompt_learner.ctx": (n_prompts, n_ctx, d_text),
        "prompt_learner.proj.weight": (d_vision, d_text),
        "prompt_learner.proj.bias": (d_vision,),
        "prompt_learner.token_prefix": (n_classes * n_prompts, 1, d_text),
        "prompt_learner.token_suffix": (n_classes * n_prompts, 77 - 1 - n_ctx, d_text),
        "image_encoder.conv1.weight": (d_vision, 3, 8, 8),
        "image_encoder.class_embedding": (d_vision,),
        "text_encoder.positional_embedding": (77, d_text),
        "text_encoder.ln_final.weight": (d_text,),
        "logit_scale": (),
    }
    for k in range(depth - 1):
        shapes[f"prompt_learner.compound_prompts_text.{k}"] = (n_prompts, n_ctx, d_text)
        shapes[f"prompt_learner.compound_prompt_projections.{k}.weight"] = (d_vision, d_text)
        shapes[f"prompt_learner.compound_prompt_projections.{k}.bias"] = (d_vision,)
    return {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}


LEARNED_OFFICIAL_KEYS = 3 + 3 * 2  # ctx, proj.{weight,bias}, and per deep layer (depth 3: 2 layers)


def _write_official(folder, state, epoch=5):
    """The official checkpoint: Dassl.pytorch's, with pickled scheduler objects."""
    folder.mkdir(parents=True)
    path = folder / f"model.pth.tar-{epoch}"
    torch.save(dassl_pytorch_checkpoint(state, epoch), path)
    return path


def _assert_holds_official(learner, official):
    learned = learner.state_dict()
    assert len(learned) == LEARNED_OFFICIAL_KEYS
    for key, value in learned.items():
        torch.testing.assert_close(value, official["prompt_learner." + key].to(value.dtype))


def test_official_full_model_checkpoint_loads(data_root, clip_path, tmp_path, capsys):
    official = official_full_model_state(2, 2, 3, 64, 64, 3, torch.Generator().manual_seed(0))
    _write_official(tmp_path / "official" / LEARNER_NAME, official)
    fresh = build(align_argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    fresh.load_model(str(tmp_path / "official"), epoch=5)
    assert "ignoring 5 frozen CLIP entries" in capsys.readouterr().out
    _assert_holds_official(fresh.model.prompt_learner, official)


def test_init_weights_takes_the_learned_tensors_of_an_official_checkpoint(data_root, clip_path, tmp_path):
    official = official_full_model_state(2, 2, 3, 64, 64, 3, torch.Generator().manual_seed(1))
    path = _write_official(tmp_path / "official", official)
    trainer = build(align_argv(data_root, tmp_path / "run", clip_path, "MODEL.INIT_WEIGHTS", str(path)))
    _assert_holds_official(trainer.model.prompt_learner, official)


def test_a_checkpoint_of_another_config_is_refused_naming_the_keys(data_root, clip_path, tmp_path):
    official = official_full_model_state(4, 2, 3, 64, 64, 3, torch.Generator().manual_seed(2))
    _write_official(tmp_path / "official" / LEARNER_NAME, official)
    fresh = build(align_argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    with pytest.raises(
        ConfigError, match=r"ctx \(4, 2, 64\) in the file, \(2, 2, 64\) in the model.*TEXT_PROMPT_NUMBER"
    ):
        fresh.load_model(str(tmp_path / "official"), epoch=5)


def test_missing_model_file_is_named(trained, data_root, clip_path, tmp_path):
    fresh = build(align_argv(data_root, tmp_path, clip_path, extra_flags=["--eval-only"]))
    with pytest.raises(CheckpointNotFoundError, match=r"No model at .*model.pth.tar-3: .* holds saved epochs 8"):
        fresh.load_model(str(trained[1]), epoch=3)


def test_evaluation_encodes_the_text_once(trained, monkeypatch):
    trainer = trained[0]
    calls = []
    encode_text = trainer.model.encode_text
    monkeypatch.setattr(trainer.model, "encode_text", lambda: calls.append(1) or encode_text())
    accuracy = trainer.test()
    assert len(calls) == 1
    assert len(trainer.test_loader) == 3  # three batches share the one text encoding
    assert 0.0 <= accuracy <= 100.0

    image = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        uncached = trainer.model(image)
        with trainer.model.cached_text_features():
            cached = trainer.model(image)
    torch.testing.assert_close(cached, uncached, rtol=0, atol=0)


def test_nan_features_give_an_error_naming_the_batch(trained, monkeypatch):
    trainer = trained[0]
    encode_image = trainer.model.clip.encode_image

    def nan_tokens(*args, **kwargs):
        return encode_image(*args, **kwargs) * float("nan")

    monkeypatch.setattr(trainer.model.clip, "encode_image", nan_tokens)
    batch = next(iter(trainer.train_loader_x))
    trainer.batch_idx, trainer.num_batches = 1, len(trainer.train_loader_x)
    with pytest.raises(FloatingPointError, match=r"training \(epoch \d+, batch 2; 4 images, first: .*toy_colors"):
        trainer.forward_backward(batch)
    with pytest.raises(FloatingPointError, match=r"Non-finite optimal transport in evaluation"):
        trainer.test()


def test_train_py_runs_align_end_to_end(data_root, clip_path, tmp_path):
    status = run_train_py(align_argv(data_root, tmp_path, clip_path, "OPTIM.MAX_EPOCH", "1"))
    assert status == 0
    log = (tmp_path / "log.txt").read_text()
    assert "Trainable parameters (prompt learner): " in log
    assert "Finish training" in log and "* accuracy: " in log
    assert osp.isfile(tmp_path / LEARNER_NAME / "model.pth.tar-1")
    losses = precision_check.epoch_losses(log)  # the GPU precision check reads these lines
    assert list(losses) == [1] and losses[1] > 0


def test_mmp_alias_reads_the_official_keys(data_root, clip_path, tmp_path):
    argv = align_argv(
        data_root, tmp_path, clip_path, "TRAINER.MMP.USECT", "False", "OPTIM.MAX_EPOCH", "1", trainer="MMP", node="MMP"
    )
    assert run_train_py(argv) == 0
    assert "T = V = 2, n_ctx = 2, depth = 3" in (tmp_path / "log.txt").read_text()


def test_mmp_usect_is_rejected_cleanly(data_root, clip_path, tmp_path, capsys):
    argv = align_argv(data_root, tmp_path, clip_path, "TRAINER.MMP.USECT", "True", trainer="MMP", node="MMP")
    assert run_train_py(argv) == 1
    assert "Error: TRAINER.MMP.USECT True is not supported" in capsys.readouterr().out


@pytest.mark.parametrize(
    "prec, effective, autocast", [("fp16", "fp32", None), ("amp", "fp32", None), ("bf16", "bf16", torch.bfloat16)]
)
def test_cpu_precisions_train(data_root, clip_path, tmp_path, monkeypatch, prec, effective, autocast):
    """fp16 and amp fall back to fp32 on the CPU; bf16 runs the towers under autocast (the
    training step and evaluation), with float32 weights and no gradient scaler."""
    trainer = build(align_argv(data_root, tmp_path / prec, clip_path, "TRAINER.ALIGN.PREC", prec))
    assert trainer.precision.name == effective and trainer.grad_scaler is None
    seen = []
    encode_image = trainer.model.clip.encode_image

    def recording_encode_image(*args, **kwargs):
        enabled = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if enabled else None)
        return encode_image(*args, **kwargs)

    monkeypatch.setattr(trainer.model.clip, "encode_image", recording_encode_image)
    trainer.batch_idx, trainer.num_batches = 0, len(trainer.train_loader_x)
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert torch.isfinite(torch.tensor(summary["loss"]))
    assert trainer.model.prompt_learner.ctx.dtype == torch.float32
    trainer.test()
    assert seen and set(seen) == {autocast}


RECIPES = sorted(glob.glob(osp.join(REPO, "configs/trainers/ALIGN/vit_b16_*.yaml"))) + [
    osp.join(REPO, "configs/trainers/MMP", name) for name in ("vit_b16_c2_ep5_batch4_2ctx.yaml", "sun397.yaml")
]


def test_every_recipe_is_checked():
    """The ViT-B/16 recipes are checked below; the only other config is the demo's toy one."""
    others = set(glob.glob(osp.join(REPO, "configs/trainers/ALIGN/*.yaml"))) - set(RECIPES)
    assert len(RECIPES) == 8 and {osp.basename(p) for p in others} == {"toy_clip.yaml"}


@pytest.mark.parametrize("config", RECIPES)
def test_shipped_configs_load_and_validate(config):
    node = "MMP" if osp.basename(osp.dirname(config)) == "MMP" else "ALIGN"
    args = train.build_parser().parse_args(
        [
            "--config-file",
            config,
            "--dataset-config-file",
            osp.join(REPO, "configs/datasets/caltech101.yaml"),
            "--trainer",
            "MMP" if node == "MMP" else "ALIGN",
        ]
    )
    cfg = train.setup_cfg(args)
    settings = ALIGNSettings.from_cfg(cfg, node)
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16" and cfg.OPTIM.MAX_EPOCH in (20, 30, 50, 80)
    assert (settings.n_ctx, settings.depth, settings.prec) == (2, 9, "fp16")
    assert settings.n_prompts == (2 if "sun397" in config else 4)


def test_input_size_must_match_the_backbone(data_root, clip_path, tmp_path):
    with pytest.raises(ConfigError, match=r"INPUT.SIZE \(64, 64\) does not match the backbone's input resolution 32"):
        build(align_argv(data_root, tmp_path, clip_path, "INPUT.SIZE", "(64, 64)"))


@pytest.mark.parametrize("key, value", [("OT_THRESH", "-0.5"), ("EPS", "0.0"), ("OT_MAX_ITER", "0")])
def test_ot_settings_are_checked_before_anything_is_built(data_root, clip_path, tmp_path, monkeypatch, key, value):
    """A bad OT setting is one error naming the key at build time, not at the first forward."""
    monkeypatch.setattr(ALIGN, "build_model", lambda self: pytest.fail("build_model ran with an invalid setting"))
    with pytest.raises(ConfigError, match=rf"TRAINER.ALIGN.{key} = {value[:3]}.* is invalid"):
        build(align_argv(data_root, tmp_path, clip_path, f"TRAINER.ALIGN.{key}", value))
