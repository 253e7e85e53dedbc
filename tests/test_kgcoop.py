"""KgCoOp (trainers/kgcoop.py): CoOp plus W x (1 - mean_c cos(g_c, w0_c)).

- W 0 trains exactly as CoOp through train.py (the same losses, the same checkpoint);
- the term and its gradient against a per-class loop written from the definition; w0 = the frozen
  CLIP's normalised features of KgCoOp's hand-written prompts; one text-tower pass per step;
- upstream checkpoints (with their unused ``bias_vectors`` and ``meta_net``) load, the unused
  entries named; upstream's YAMLs load (a bool CTX_INIT); the shipped count; bad settings;
- the scripts: each protocol's recipe; on the toy world, reproduce.sh base2new with KgCoOp and
  ProGrad prints a row for each.

The engine's ToyColors images and the tiny random CLIP of tests/conftest.py; ToyColors gets the
template "a photo of a {}." for the test's duration.
"""

import os
import os.path as osp
import re
import subprocess

import pytest
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import clip
import train
from clip.model import CLIP
from dassl.config import ConfigError
from dassl.engine.precision import resolve_precision
from tests.deep_prompt_runs import one_process_group  # noqa: F401  (a fixture)
from tests.engine_toys import build_from_argv, run_train_py, tiny_clip_argv
from tests.script_runs import run_script, small_toy_env
from tests.tiny_clip import tiny_vit_state_dict
from trainers.coop import CoOpCLIP, CoOpPromptLearner
from trainers.kgcoop import KGCOOP_TEMPLATES, KgCoOp, KgCoOpCLIP, knowledge_gap
from trainers.text import CUSTOM_TEMPLATES, FrozenTextFeatures

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LEARNER = "prompt_learner"
D_TEXT = 64  # the tiny CLIP's text width
TEMPLATE = "a photo of a {}."
CLASSNAMES = ["cat", "dog_house", "big red fire truck", "axolotl"]


@pytest.fixture(autouse=True)
def toy_template(monkeypatch):
    monkeypatch.setitem(KGCOOP_TEMPLATES, "ToyColors", TEMPLATE)


@pytest.fixture(scope="module")
def tiny_clip():
    return clip.build_model(tiny_vit_state_dict(seed=3)).requires_grad_(False)


def kgcoop_model(clip_model, weight=8.0):
    """KgCoOp's prompted model with a moved context (so that the term is not 0) and w0 of TEMPLATE."""
    torch.manual_seed(0)
    learner = CoOpPromptLearner(CLASSNAMES, clip_model, ctx_init="a photo of a")
    with torch.no_grad():
        learner.ctx.add_(0.3 * torch.randn_like(learner.ctx))
    names = [name.replace("_", " ") for name in CLASSNAMES]

    def hand_written(model):
        return F.normalize(model.encode_text(clip.tokenize([TEMPLATE.format(n) for n in names])), dim=-1)

    return KgCoOpCLIP(clip_model, learner, FrozenTextFeatures(hand_written), weight)


# ------------------------------------------------------------------------------ the term


def test_the_templates_are_zero_shot_clips_except_dtd():
    differing = {key for key in CUSTOM_TEMPLATES if KGCOOP_TEMPLATES[key] != CUSTOM_TEMPLATES[key]}
    assert differing <= {"DescribableTextures", "ToyColors"}  # ToyColors: this file's fixture
    assert KGCOOP_TEMPLATES["DescribableTextures"] == "a photo of a {}, a type of texture."
    assert KGCOOP_TEMPLATES["ToyShapes"] == TEMPLATE


def test_the_term_and_its_gradient_match_a_per_class_loop(tiny_clip):
    model = kgcoop_model(tiny_clip)
    model.prompt_learner.train()
    output = model(torch.randn(2, 3, 32, 32))
    term = output.terms["loss_kg"]
    assert term.weight == 8.0
    (grad,) = torch.autograd.grad(term.value, model.prompt_learner.ctx)

    # From the definition: g_c the prompted features of class c, w0_c the hand-written sentence's.
    text = model.encode_text()
    cosines = []
    for c, name in enumerate(CLASSNAMES):
        sentence = clip.tokenize(TEMPLATE.format(name.replace("_", " ")))
        w0 = tiny_clip.encode_text(sentence)[0]
        g = text[c]
        cosines.append((g * w0).sum() / (g.norm() * w0.norm()))
    reference = 1 - sum(cosines) / len(cosines)
    (reference_grad,) = torch.autograd.grad(reference, model.prompt_learner.ctx)
    assert reference.item() > 0.01  # a moved context: a term worth testing
    torch.testing.assert_close(term.value, reference, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad, reference_grad, rtol=1e-4, atol=1e-7)

    # The paper's form: the mean squared distance of the unit features, twice the code's term.
    w0 = model.hand_crafted.get(tiny_clip)
    squared = ((text - w0) ** 2).sum(dim=-1).mean()
    torch.testing.assert_close(squared / 2, knowledge_gap(text, w0), rtol=1e-5, atol=1e-7)


def test_evaluation_returns_logits_and_training_encodes_the_text_once(tiny_clip, monkeypatch):
    model = kgcoop_model(tiny_clip)
    image = torch.randn(2, 3, 32, 32)
    model.prompt_learner.eval()
    logits = model(image)
    torch.testing.assert_close(logits, CoOpCLIP.forward(model, image), rtol=0, atol=0)  # CoOp's logits

    calls = []
    encode = CoOpCLIP.encode_text
    monkeypatch.setattr(CoOpCLIP, "encode_text", lambda self: calls.append(1) or encode(self))
    model.prompt_learner.train()
    output = model(image)
    assert len(calls) == 1  # the logits and the term share one text-tower pass
    torch.testing.assert_close(output.logits, logits, rtol=0, atol=0)


def test_hand_written_features_are_the_frozen_clips(data_root, clip_path, tmp_path):
    trainer = build_from_argv(tiny_clip_argv(data_root, tmp_path, clip_path, "KgCoOp"))
    model = trainer.model
    features = model.hand_crafted.get(model.clip)
    sentences = clip.tokenize([TEMPLATE.format(name) for name in ("red", "green", "blue")])
    reference = F.normalize(model.clip.encode_text(sentences), dim=-1)
    torch.testing.assert_close(features, reference, rtol=0, atol=1e-6)
    assert not features.requires_grad and "hand_crafted" not in dict(model.named_buffers())
    assert list(model.prompt_learner.state_dict()) == ["ctx"]  # never saved


# ------------------------------------------------------------------------------ training and loading


def losses_of(log):
    """The 'loss X' value of every iteration line of a log."""
    return re.findall(r"^epoch \[.*? loss ([\d.]+) ", log, flags=re.M)


def test_w0_trains_exactly_as_coop(data_root, clip_path, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "collect_env_info", lambda: "<environment report>")  # seconds, not under test
    runs = {}
    for trainer in ("CoOp", "KgCoOp"):
        output = tmp_path / trainer
        opts = ("TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.W", "0.0", "TRAIN.PRINT_FREQ", "1")
        assert run_train_py(tiny_clip_argv(data_root, output, clip_path, trainer, *opts)) == 0
        log = (output / "log.txt").read_text()
        state = torch.load(output / LEARNER / "model.pth.tar-2", weights_only=True)["state_dict"]
        runs[trainer] = (log, state)
    (coop_log, coop_state), (kg_log, kg_state) = runs["CoOp"], runs["KgCoOp"]
    assert len(losses_of(coop_log)) == 6 and losses_of(kg_log) == losses_of(coop_log)
    assert all(" loss_kg " in line for line in kg_log.splitlines() if line.startswith("epoch ["))
    assert list(kg_state) == ["ctx"] and torch.equal(kg_state["ctx"], coop_state["ctx"])


def test_a_training_step_through_ddp(one_process_group, data_root, clip_path, tmp_path):  # noqa: F811
    """The training output (logits and the term) passes through DistributedDataParallel."""
    trainer = build_from_argv(tiny_clip_argv(data_root, tmp_path, clip_path, "KgCoOp", "TRAINER.COOP.W", "8.0"))
    assert isinstance(trainer.train_model, DistributedDataParallel)
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 2
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert summary["loss"] == pytest.approx(summary["loss_ce"] + 8.0 * summary["loss_kg"], rel=1e-5)
    assert trainer.model.prompt_learner.ctx.grad is not None


def write_upstream_checkpoint(folder, ctx, epoch=100):
    """A file as upstream's KgCoOp saves its learner: ctx, the unused bias_vectors (1, 512) and
    meta_net.linear1 (512 -> 512), and the class buffers of its own classes (5 here)."""
    path = folder / LEARNER / f"model.pth.tar-{epoch}"
    path.parent.mkdir(parents=True)
    state = {
        "ctx": ctx,
        "bias_vectors": torch.randn(1, 512),
        "meta_net.linear1.weight": torch.randn(512, 512),
        "meta_net.linear1.bias": torch.randn(512),
        "token_prefix": torch.randn(5, 1, D_TEXT),
        "token_suffix": torch.randn(5, 72, D_TEXT),
    }
    torch.save({"state_dict": state, "epoch": epoch, "optimizer": None, "scheduler": None}, path)


def test_an_upstream_checkpoint_loads_with_its_unused_entries_named(data_root, clip_path, tmp_path, capsys):
    ctx = torch.randn(4, D_TEXT)
    write_upstream_checkpoint(tmp_path / "upstream", ctx)
    argv = tiny_clip_argv(
        data_root, tmp_path / "eval", clip_path, "KgCoOp", "TRAINER.COOP.CTX_INIT", "True", extra_flags=["--eval-only"]
    )
    trainer = build_from_argv(argv)
    trainer.load_model(str(tmp_path / "upstream"), epoch=100)
    torch.testing.assert_close(trainer.model.prompt_learner.ctx.detach(), ctx, rtol=0, atol=0)
    lines = [line for line in capsys.readouterr().out.splitlines() if "ignoring" in line]
    assert lines == [
        "Upstream checkpoint: ignoring 3 entries the method does not learn "
        "(bias_vectors, meta_net.linear1.bias, meta_net.linear1.weight)"
    ]


# ------------------------------------------------------------------------------ configs and counts


def shipped_cfg(name, dataset="caltech101"):
    args = train.build_parser().parse_args(
        [
            *("--config-file", osp.join(REPO, f"configs/trainers/KgCoOp/{name}.yaml")),
            *("--dataset-config-file", osp.join(REPO, f"configs/datasets/{dataset}.yaml")),
        ]
    )
    return train.setup_cfg(args)


@pytest.mark.parametrize(
    "name, backbone, weight",
    [
        ("vit_b16_ep100_ctxv1", "ViT-B/16", 1.0),
        ("rn50_ep100", "RN50", 1.0),
        ("vit_b16_ep100_ctxv1_w8", "ViT-B/16", 8.0),
    ],
)
def test_shipped_configs_load_with_upstream_values(name, backbone, weight):
    cfg = shipped_cfg(name)
    node = cfg.TRAINER.COOP
    assert node.CTX_INIT == "True" and node.W == weight and node.PREC == "fp16"  # the YAML's bool True, as text
    assert (cfg.MODEL.BACKBONE.NAME, cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.LR) == (backbone, 100, 0.002)
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TEST.BATCH_SIZE) == (128, 100)
    KgCoOp.check_cfg(cfg)


def test_an_upstream_yaml_loads_as_written(tmp_path):
    path = tmp_path / "upstream.yaml"
    path.write_text('MODEL:\n  BACKBONE:\n    NAME: "ViT-B/16"\nTRAINER:\n  COOP:\n    CTX_INIT: True\n')
    cfg = train.setup_cfg(train.build_parser().parse_args(["--config-file", str(path), "TRAINER.COOP.W", "8.0"]))
    assert (cfg.TRAINER.COOP.CTX_INIT, cfg.TRAINER.COOP.W, cfg.TRAINER.COOP.ALPHA) == ("True", 8.0, 1.0)


def test_the_base_to_new_recipe_learns_2048_numbers_on_vit_b16():
    """vit_b16_ep100_ctxv1_w8 on ViT-B/16's widths: "a photo of a", 4 tokens x 512."""
    vit_b16_widths = CLIP(512, 224, 1, 768, 16, 77, 49408, 512, 8, 1).requires_grad_(False)  # one block a tower
    trainer = object.__new__(KgCoOp)  # the trainer's learner path, without data or a full CLIP
    trainer.cfg, trainer.precision = shipped_cfg("vit_b16_ep100_ctxv1_w8"), resolve_precision("fp32", "cpu")
    learner = trainer.build_learner(vit_b16_widths, ["a", "b", "c"])
    assert learner.prefix == "a photo of a"
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == 2_048


@pytest.mark.parametrize(
    "opts, message",
    [
        (("TRAINER.COOP.W", "-1.0"), r"TRAINER.COOP.W = -1.0 is invalid: expected a weight >= 0"),
        (("DATASET.NAME", "Nowhere"), r"No template for DATASET.NAME = 'Nowhere'.*KGCOOP_TEMPLATES"),
    ],
)
def test_bad_settings_are_named(data_root, clip_path, tmp_path, opts, message):
    with pytest.raises(ConfigError, match=message):
        build_from_argv(tiny_clip_argv(data_root, tmp_path, clip_path, "KgCoOp", *opts))


# ------------------------------------------------------------------------------ the toy world


@pytest.mark.parametrize("protocol, dataset", [("base2new", "caltech101"), ("xd", "imagenet"), ("fewshot", "dtd")])
def test_every_protocol_runs_upstreams_recipe_with_w8(protocol, dataset):
    command = (
        f'source scripts/lib/protocols.sh; load_method scripts/kgcoop; config_file "$(recipe {protocol} {dataset} 4)"'
    )
    environment = {key: value for key, value in os.environ.items() if key not in ("TOY", "CFG")}
    result = subprocess.run(["bash", "-c", command], cwd=REPO, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1_w8.yaml"


def test_reproduce_base_to_new_on_the_toy_world(tmp_path):
    """TOY=1 SHOTS=4 OPTS="OPTIM.MAX_EPOCH 1" reproduce.sh base2new "KgCoOp ProGrad" toy_shapes 1
    (a small tree: 2 training images per class)."""
    env = small_toy_env(tmp_path, train_per_class=2, shots=4, batch_size=32)
    output = run_script("reproduce.sh", "base2new", "KgCoOp ProGrad", "toy_shapes", "1", env=env)
    rows = re.findall(r"^(KgCoOp|ProGrad) +1 +1 +[\d.]+ \+- 0\.00 +[\d.]+ \+- 0\.00 +[\d.]+$", output, re.M)
    assert rows == ["KgCoOp", "ProGrad"]
    for trainer in ("KgCoOp", "ProGrad"):
        log = tmp_path / "output/base2new/train_base/toy_shapes/shots_4" / trainer / "toy_clip/seed1" / "log.txt"
        assert "Trainable parameters (prompt learner): 256" in log.read_text()  # 4 tokens x the toy width 64


def test_kgcoop_keys_join_coops_node_with_upstreams_defaults():
    import train

    cfg = train.get_cfg_default()
    train.extend_cfg(cfg)
    assert (cfg.TRAINER.COOP.W, cfg.TRAINER.COOP.ALPHA) == (1.0, 1.0)
