"""ProGrad (trainers/prograd.py) against references written from its definition.

- the initial context (zeros, then the template's words in the last rows), the zero-shot teacher
  (float32 text features even from a float16 CLIP) and the teacher term (a per-image loop);
- the update: one training step of the trainer against g_xe where it agrees in direction with
  g_kl, else g_xe - LAMBDA (g_xe . u) u with u = g_kl / |g_kl|, both gradients taken by autograd
  from the definitions; in a case where the directions agree and one where they conflict; under
  a GradScaler on the CPU (this torch has one) and bf16 autocast; and with two processes (torchrun,
  gloo), each on half of the global batch, against one process on the whole batch;
- the configs (ProGrad's files load as they are; LOSS.NAME must be "prograd") and the counts.

The engine's ToyColors images and the tiny random CLIP of tests/conftest.py; ToyColors gets the
template "a photo of a {}." for the test's duration. This file is also the torchrun worker of the
DDP test (``python -m tests.test_prograd``, see the end).
"""

import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import clip
import train
from clip.model import CLIP, convert_weights
from dassl.config import ConfigError
from dassl.engine.precision import resolve_precision
from dassl.utils import torchrun_session
from tests.engine_toys import build_from_argv, tiny_clip_argv
from tests.tiny_clip import tiny_vit_state_dict
from trainers.prograd import (
    PROGRAD_TEMPLATES,
    ProGrad,
    ProGradPromptLearner,
    float32_text_features,
    prograd_context,
)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLASSNAMES = ["red", "green", "blue"]  # ToyColors
TEMPLATE = "a photo of a {}."
LR, LAMBDA = 0.05, 0.7  # LAMBDA below 1, so that it is seen in the update
GLOBAL_BATCH = 4


def register_template():
    PROGRAD_TEMPLATES["ToyColors"] = TEMPLATE


@pytest.fixture(autouse=True)
def toy_template(monkeypatch):
    monkeypatch.setitem(PROGRAD_TEMPLATES, "ToyColors", TEMPLATE)


def prograd_argv(data_root, output_dir, clip_path, *opts, extra_flags=()):
    """ProGrad on ToyColors with the tiny CLIP: 6 context tokens from "a photo of a" (2 zero rows),
    LAMBDA 0.7, SGD LR 0.05 without weight decay (the first step is then ctx - LR x gradient)."""
    return tiny_clip_argv(
        data_root, output_dir, clip_path, "ProGrad",
        *("LOSS.NAME", "prograd", "LOSS.LAMBDA", str(LAMBDA), "OPTIM.LR", str(LR), "OPTIM.WEIGHT_DECAY", "0"),
        *("TRAINER.COOP.CTX_INIT", "True", "TRAINER.COOP.N_CTX", "6"),
        *opts,
        extra_flags=extra_flags,
    )  # fmt: skip


def global_batch():
    """4 fixed random images (32 px) and no labels yet."""
    return torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------ the references


def teacher_logits(clip_model, images, image_features=None):
    """The zero-shot CLIP's logits from its unprompted towers (a float32 CLIP): (B, C).

    image_features: (B, D) normalised features to use instead of the image tower's float32 ones
    (the trainer's teacher reads the step's, in the run's precision).
    """
    with torch.no_grad():
        image = F.normalize(clip_model.encode_image(images), dim=-1) if image_features is None else image_features
        text = F.normalize(clip_model.encode_text(clip.tokenize([TEMPLATE.format(n) for n in CLASSNAMES])), dim=-1)
        return clip_model.logit_scale.exp() * image.float() @ text.t()


def teacher_term(logits, teacher, temperature):
    """mean over images of sum over classes of -p0 log q, times T^2 (a loop over images)."""
    terms = []
    for z, z0 in zip(logits.float(), teacher):
        p0 = torch.softmax(z0 / temperature, dim=0)
        log_q = torch.log_softmax(z / temperature, dim=0)
        terms.append(-(p0 * log_q).sum() * temperature**2)
    return torch.stack(terms).mean()


def expected_update(trainer, images, labels):
    """(g_xe . g_kl, ProGrad's gradient for ctx, g_xe) from the definitions, at the current ctx."""
    model = trainer.model
    ctx = model.prompt_learner.ctx
    with trainer.precision.autocast("cpu"):
        image_features = model.encode_image(images)
        logits = model.classify(image_features, model.encode_text())
    # The cross-entropy of the logits as the model returns them (bfloat16 under bf16), as the shared step.
    g_xe = torch.autograd.grad(F.cross_entropy(logits, labels), ctx, retain_graph=True)[0].float()
    # Under autocast the trainer's teacher reads the step's (bfloat16) image features: so does this one.
    teacher = teacher_logits(model.clip, images, image_features.detach() if trainer.precision.autocast_dtype else None)
    g_kl = torch.autograd.grad(teacher_term(logits, teacher, 1.0), ctx)[0].float()
    dot = torch.dot(g_xe.flatten(), g_kl.flatten())
    if dot >= 0:
        return dot, g_xe, g_xe
    unit = g_kl / g_kl.norm()
    return dot, g_xe - LAMBDA * torch.dot(g_xe.flatten(), unit.flatten()) * unit, g_xe


def conflicting_labels(trainer, images):
    """The class the teacher ranks last for each image: cross-entropy towards it opposes the teacher."""
    return teacher_logits(trainer.model.clip, images).argmin(dim=1)


def agreeing_labels(trainer, images):
    return teacher_logits(trainer.model.clip, images).argmax(dim=1)


def one_step(trainer, images, labels):
    """Run the trainer's training step on (images, labels): (ctx before, ctx after, its gradient)."""
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 2  # not the epoch's last batch: no LR step
    ctx = trainer.model.prompt_learner.ctx
    before = ctx.detach().clone()
    summary = trainer.forward_backward({"img": images, "label": labels, "impath": [""] * len(labels)})
    assert list(summary) == ["loss", "loss_ce", "loss_kl", "acc"] and summary["loss"] == summary["loss_ce"]
    return before, ctx.detach().clone(), ctx.grad.detach().clone()


# ------------------------------------------------------------------------------ the learner and teacher


def test_the_context_starts_with_zeros_then_the_template_words(tiny_clip):
    words = "a type of pet, a photo of a"  # 8 words, 9 BPE tokens ("pet," is 2)
    learner = ProGradPromptLearner(["cat", "big dog"], tiny_clip, n_ctx=10, ctx_init=words)
    ids = clip.tokenize(words)[0]
    embeddings = tiny_clip.token_embedding(ids)[1:9]  # the words' first 8 tokens
    assert learner.n_ctx == 10 and learner.prefix == "X X " + words
    torch.testing.assert_close(learner.ctx.detach(), torch.cat([torch.zeros(2, 64), embeddings]), rtol=0, atol=0)
    # The sentence: [SOS] two slots, the 8 learned tokens, then "a" (the 9th token) and the name.
    for row, name in enumerate(["cat", "big dog"]):
        sentence = clip.tokenize(f"X X {words} {name}.")[0]
        inputs = tiny_clip.token_embedding(sentence[: learner.tokenized.shape[1]]).clone()
        inputs[1:11] = learner.ctx.detach()
        torch.testing.assert_close(learner.text_inputs()[row], inputs, rtol=0, atol=0)
    with pytest.raises(ValueError, match="7 context tokens cannot hold the 8 initial words"):
        prograd_context(tiny_clip, 7, words)


def test_without_words_the_context_is_coop_random_start(tiny_clip):
    torch.manual_seed(0)
    learner = ProGradPromptLearner(CLASSNAMES, tiny_clip, n_ctx=5)
    assert learner.prefix == "X X X X X" and learner.ctx.shape == (5, 64)
    assert 0.015 < learner.ctx.std().item() < 0.025  # normal(0, 0.02)


@pytest.fixture(scope="module")
def tiny_clip():
    return clip.build_model(tiny_vit_state_dict(seed=3)).requires_grad_(False)


def test_teacher_text_features_are_float32_from_a_float16_clip(tiny_clip):
    half = clip.build_model(tiny_vit_state_dict(seed=3)).requires_grad_(False)
    convert_weights(half, torch.float16)
    features = float32_text_features(half, [TEMPLATE], CLASSNAMES)
    reference = F.normalize(half.float().encode_text(clip.tokenize([TEMPLATE.format(n) for n in CLASSNAMES])), dim=-1)
    assert features.dtype == torch.float32
    torch.testing.assert_close(features, reference, rtol=0, atol=1e-6)


def test_float32_features_leave_the_float16_clip_as_it_was():
    half = clip.build_model(tiny_vit_state_dict(seed=3)).requires_grad_(False)
    convert_weights(half, torch.float16)
    before = {name: (p.dtype, p.clone()) for name, p in half.named_parameters()}
    float32_text_features(half, [TEMPLATE], CLASSNAMES)
    for name, p in half.named_parameters():
        assert p.dtype == before[name][0] and torch.equal(p, before[name][1]), name


def test_training_forward_returns_the_teacher_term_and_evaluation_the_logits(data_root, clip_path, tmp_path):
    trainer = build_from_argv(prograd_argv(data_root, tmp_path, clip_path, "LOSS.T", "2.0"))
    model, images = trainer.model, global_batch()
    model.prompt_learner.train()
    output = model(images)
    term = output.terms["loss_kl"]
    assert term.weight == 0.0  # logged, not optimised: ProGrad uses its gradient only
    teacher = teacher_logits(model.clip, images)
    torch.testing.assert_close(term.value, teacher_term(output.logits, teacher, 2.0), rtol=1e-5, atol=1e-6)
    model.prompt_learner.eval()
    torch.testing.assert_close(model(images), output.logits, rtol=0, atol=0)


# ------------------------------------------------------------------------------ the update


@pytest.mark.parametrize("case", ["conflicting", "agreeing"])
def test_one_step_follows_the_definition(data_root, clip_path, tmp_path, case):
    trainer = build_from_argv(prograd_argv(data_root, tmp_path, clip_path))
    images = global_batch()
    labels = (conflicting_labels if case == "conflicting" else agreeing_labels)(trainer, images)
    dot, expected, g_xe = expected_update(trainer, images, labels)
    assert (dot < 0) == (case == "conflicting")  # the case is what it says
    if case == "conflicting":
        assert (expected - g_xe).abs().max() > 1  # the projection changes the step
    else:
        assert torch.equal(expected, g_xe)
    before, after, grad = one_step(trainer, images, labels)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(after, before - LR * expected, rtol=1e-5, atol=1e-7)


def test_one_step_under_a_grad_scaler(data_root, clip_path, tmp_path):
    """amp's path on the CPU: the engine gives no GradScaler there, but this torch has a CPU one.
    Both gradients are scaled alike; the step unscales the projected one."""
    trainer = build_from_argv(prograd_argv(data_root, tmp_path, clip_path))
    trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    images = global_batch()
    labels = conflicting_labels(trainer, images)
    _, expected, _ = expected_update(trainer, images, labels)
    before, after, grad = one_step(trainer, images, labels)
    assert trainer.grad_scaler.get_scale() == 2.0**12  # no overflow: the step was taken
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(after, before - LR * expected, rtol=1e-5, atol=1e-7)


def test_one_step_under_bf16_autocast(data_root, clip_path, tmp_path):
    trainer = build_from_argv(prograd_argv(data_root, tmp_path, clip_path, "TRAINER.COOP.PREC", "bf16"))
    assert trainer.precision.autocast_dtype == torch.bfloat16
    images = global_batch()
    labels = conflicting_labels(trainer, images)
    dot, expected, _ = expected_update(trainer, images, labels)
    assert dot < 0
    before, after, grad = one_step(trainer, images, labels)
    assert grad.dtype == torch.float32  # the context stays float32; autocast lowers the compute
    torch.testing.assert_close(grad, expected, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(after, before - LR * expected, rtol=1e-3, atol=1e-5)


def test_two_processes_project_the_averaged_gradients(data_root, clip_path, tmp_path):
    """torchrun, 2 processes (gloo), each one step on its half of the global batch: both gradients
    are averaged over the processes before the projection, so the update is the single-process
    one on the whole batch (here a conflicting one)."""
    trainer = build_from_argv(prograd_argv(data_root, tmp_path / "single", clip_path))
    images = global_batch()
    labels = conflicting_labels(trainer, images)
    dot, expected, g_xe = expected_update(trainer, images, labels)
    assert dot < 0
    result = tmp_path / "ddp.pt"
    argv = prograd_argv(data_root, tmp_path / "ddp", clip_path)
    torch.save({"argv": argv, "labels": labels}, tmp_path / "job.pt")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "tests.test_prograd", str(tmp_path / "job.pt"), str(result)]
    done = subprocess.run(
        command, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (before, after, grad), other = [torch.load(f"{result}.{rank}", weights_only=True) for rank in (0, 1)]
    assert all(torch.equal(a, b) for a, b in zip((before, after, grad), other))  # the replicas agree
    # Float32 summation order differs (two half-batch means averaged vs one mean): ~1e-5 on values
    # up to ~10, far below what the projection changes.
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after, before - LR * expected, rtol=1e-4, atol=1e-5)
    assert (expected - g_xe).abs().max() > 1000 * 1e-4


def test_an_upstream_checkpoint_loads(data_root, clip_path, tmp_path, capsys):
    """Upstream's file: the learner's state dict, ctx with the class buffers of its own classes."""
    ctx = torch.randn(6, 64)
    path = tmp_path / "upstream" / "prompt_learner" / "model.pth.tar-50"
    path.parent.mkdir(parents=True)
    state = {"ctx": ctx, "token_prefix": torch.randn(5, 1, 64), "token_suffix": torch.randn(5, 70, 64)}
    torch.save({"state_dict": state, "epoch": 50, "optimizer": None, "scheduler": None}, path)
    trainer = build_from_argv(prograd_argv(data_root, tmp_path / "eval", clip_path, extra_flags=["--eval-only"]))
    trainer.load_model(str(tmp_path / "upstream"), epoch=50)
    torch.testing.assert_close(trainer.model.prompt_learner.ctx.detach(), ctx, rtol=0, atol=0)
    assert "(epoch = 50)" in capsys.readouterr().out


# ------------------------------------------------------------------------------ configs and counts


@pytest.mark.parametrize(
    "name, epochs, strength",
    [("rn50", 200, 1.0), ("rn50_ep50", 50, 1.0), ("rn50_ep100", 100, 1.0), ("rn50_lambda0.8", 200, 0.8)],
)
def test_shipped_configs_load_with_upstream_values(name, epochs, strength):
    args = train.build_parser().parse_args(
        [
            *("--config-file", osp.join(REPO, f"configs/trainers/ProGrad/{name}.yaml")),
            *("--dataset-config-file", osp.join(REPO, "configs/datasets/oxford_pets.yaml")),
        ]
    )
    cfg = train.setup_cfg(args)
    node = cfg.TRAINER.COOP
    assert node.CTX_INIT == "True" and node.N_CTX == 16  # the YAML's bool True, stored as text
    assert (cfg.LOSS.NAME, cfg.LOSS.T, cfg.LOSS.LAMBDA) == ("prograd", 1.0, strength)
    assert cfg.MODEL.BACKBONE.NAME == "RN50" and cfg.OPTIM.MAX_EPOCH == epochs
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.LR) == (32, 0.002)
    ProGrad.check_cfg(cfg)
    assert ProGrad.switch_words(cfg) == "a type of pet, a photo of a"


def test_an_upstream_yaml_loads_as_written(tmp_path):
    """Upstream's file text: a bool CTX_INIT and the LOSS node."""
    path = tmp_path / "upstream.yaml"
    path.write_text('LOSS:\n  NAME: "prograd"\n  T: 1.0\nTRAINER:\n  COOP:\n    CTX_INIT: True\n')
    cfg = train.setup_cfg(train.build_parser().parse_args(["--config-file", str(path)]))
    assert cfg.TRAINER.COOP.CTX_INIT == "True" and cfg.LOSS.NAME == "prograd"


@pytest.mark.parametrize(
    "opts, message",
    [
        ((), r"LOSS.NAME = '' is invalid: the ProGrad trainer needs 'prograd'"),
        (("LOSS.NAME", "kd"), r"LOSS.NAME = 'kd' is invalid"),
        (("LOSS.NAME", "prograd", "LOSS.T", "0.0"), r"LOSS.T = 0.0 is invalid: expected a temperature > 0"),
        (
            ("LOSS.NAME", "prograd", "TRAINER.COOP.CTX_INIT", "True", "TRAINER.COOP.N_CTX", "3"),
            r"TRAINER.COOP.N_CTX = 3 is invalid: expected >= 4, the number of initial words 'a photo of a'",
        ),
        (
            ("LOSS.NAME", "prograd", "DATASET.NAME", "Nowhere"),
            r"No template for DATASET.NAME = 'Nowhere'.*PROGRAD_TEMPLATES",
        ),
    ],
)
def test_bad_settings_are_named(data_root, clip_path, tmp_path, opts, message):
    argv = tiny_clip_argv(data_root, tmp_path, clip_path, "ProGrad", *opts)
    with pytest.raises(ConfigError, match=message):
        build_from_argv(argv)


def test_rn50_count():
    """The shipped recipes on RN50 (text width 512): 16 tokens x 512 = 8,192 (rn50_ep100, OxfordPets)."""
    rn50_text = CLIP(1024, 64, (1, 1, 1, 1), 8, None, 77, 49408, 512, 8, 1).requires_grad_(False)
    args = train.build_parser().parse_args(
        [
            *("--config-file", osp.join(REPO, "configs/trainers/ProGrad/rn50_ep100.yaml")),
            *("--dataset-config-file", osp.join(REPO, "configs/datasets/oxford_pets.yaml")),
        ]
    )
    trainer = object.__new__(ProGrad)  # the trainer's learner path, without data or a full CLIP
    trainer.cfg = train.setup_cfg(args)
    trainer.precision = resolve_precision("fp32", "cpu")
    learner = trainer.build_learner(rn50_text, ["abyssinian", "beagle"])
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == 8_192
    assert learner.prefix == "X X X X X X X X a type of pet, a photo of a"


@pytest.mark.parametrize(
    "protocol, dataset, shots, expected",
    [
        ("base2new", "caltech101", "", "rn50_ep100"),
        ("base2new", "imagenet", "", "rn50_ep50"),
        ("xd", "imagenet", "", "rn50_ep50"),
        ("fewshot", "dtd", "1", "rn50_ep50"),
        ("fewshot", "dtd", "2", "rn50_ep100"),
        ("fewshot", "dtd", "4", "rn50_ep100"),
        ("fewshot", "dtd", "16", "rn50"),
        ("fewshot", "imagenet", "16", "rn50_ep50"),
    ],
)
def test_recipes_of_the_protocols(protocol, dataset, shots, expected):
    """The recipe each protocol runs (ProGrad's scripts and README), and that it exists."""
    command = (
        "source scripts/lib/protocols.sh; load_method scripts/prograd; "
        f'config_file "$(recipe {protocol} {dataset} {shots})"'
    )
    environment = {key: value for key, value in os.environ.items() if key not in ("TOY", "CFG")}
    result = subprocess.run(["bash", "-c", command], cwd=REPO, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"configs/trainers/ProGrad/{expected}.yaml"


# ------------------------------------------------------------------------------ the torchrun worker

if __name__ == "__main__":
    # python -m torch.distributed.run --nproc_per_node 2 -m tests.test_prograd JOB RESULT: one
    # ProGrad step on this process's half of the global batch; writes RESULT.<rank> = (ctx
    # before, ctx after, its gradient).
    job, result = torch.load(sys.argv[1], weights_only=True), sys.argv[2]
    register_template()
    with torchrun_session(use_cuda=False):
        rank = torch.distributed.get_rank()
        trainer = build_from_argv(job["argv"])
        half = slice(rank * GLOBAL_BATCH // 2, (rank + 1) * GLOBAL_BATCH // 2)
        outcome = one_step(trainer, global_batch()[half], job["labels"][half])
        torch.save(outcome, f"{result}.{rank}")


def test_the_loss_node_has_upstreams_defaults():
    import train

    cfg = train.get_cfg_default()
    train.extend_cfg(cfg)
    assert dict(cfg.LOSS) == dict(NAME="", T=1.0, LAMBDA=1.0, GM=False, ALPHA=0.0)  # a top-level node, as upstream


def test_a_resume_under_another_lambda_is_a_changed_config():
    import train
    from dassl.config import config_differences, config_snapshot
    from dassl.engine.checkpointing import RESUME_CHECKED_KEYS

    cfg = train.get_cfg_default()
    train.extend_cfg(cfg)
    snapshot = config_snapshot(cfg)
    cfg.LOSS.LAMBDA = 0.5
    assert config_differences(snapshot, cfg, RESUME_CHECKED_KEYS) == [("LOSS.LAMBDA", 1.0, 0.5)]
