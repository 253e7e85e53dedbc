"""A CoOp-style trainer file, run through train.py on the toy world.

`CoOpStyle` below is written the way CoOp's trainer file uses OpenAI's clip package: the backbone
from `clip.build_model`, a text encoder assembled from `transformer` (fed (L, N, D)),
`positional_embedding`, `ln_final`, `text_projection`, the image encoder `clip_model.visual`, and
a prompt learner whose context is initialised from the token embeddings of "a photo of a".
Untrained, its prompt IS the zero-shot template "a photo of a {class}.", so it must give exactly
ZeroshotCLIP's accuracy (the same modules on the same inputs); with a batch-first
`Transformer.forward` it silently gave another number.
"""

import os.path as osp
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import clip
from clip.simple_tokenizer import SimpleTokenizer
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.optim import build_lr_scheduler, build_optimizer
from tests.engine_toys import run_train_py
from tools import toy_world

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_CLIP = osp.join(REPO, "tools", "assets", "toy_clip.pt")
SPLIT_SIZES = {"train": 2, "val": 1, "test": 8}  # images per class: a small test split
_tokenizer = SimpleTokenizer()


# --- The trainer file -------------------------------------------------------------------------
def load_clip_to_cpu(cfg):
    """As CoOp's: a state dict through clip.build_model (OpenAI's architecture: the toy CLIP's)."""
    state_dict = torch.load(cfg.MODEL.BACKBONE.PATH, map_location="cpu", weights_only=True)
    return clip.build_model(state_dict)


class TextEncoder(nn.Module):
    def __init__(self, clip_model):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(self, prompts, tokenized_prompts):
        x = prompts + self.positional_embedding.type(self.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        x = self.transformer(x)
        x = x.permute(1, 0, 2)  # LND -> NLD
        x = self.ln_final(x).type(self.dtype)
        # features of the end-of-text token (the largest id in each sequence)
        return x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection


class PromptLearner(nn.Module):
    """Learned context vectors shared by all classes: [SOS] ctx_1..ctx_n class-name . [EOS]."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        n_ctx, ctx_init = cfg.TRAINER.COOP.N_CTX, cfg.TRAINER.COOP.CTX_INIT
        dtype = clip_model.dtype
        ctx_dim = clip_model.ln_final.weight.shape[0]
        assert clip_model.visual.input_resolution == cfg.INPUT.SIZE[0]
        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = len(ctx_init.split(" "))
            with torch.no_grad():
                embedding = clip_model.token_embedding(clip.tokenize(ctx_init)).type(dtype)
            ctx_vectors = embedding[0, 1 : 1 + n_ctx, :]
            prompt_prefix = ctx_init
        else:
            ctx_vectors = nn.init.normal_(torch.empty(n_ctx, ctx_dim, dtype=dtype), std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        print(f'Initial context: "{prompt_prefix}"; number of context words (tokens): {n_ctx}')
        self.ctx = nn.Parameter(ctx_vectors)

        classnames = [name.replace("_", " ") for name in classnames]
        self.name_lens = [len(_tokenizer.encode(name)) for name in classnames]
        prompts = [f"{prompt_prefix} {name}." for name in classnames]
        tokenized_prompts = torch.cat([clip.tokenize(p) for p in prompts])
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized_prompts).type(dtype)
        self.register_buffer("token_prefix", embedding[:, :1, :])  # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :])  # class tokens, ".", EOS
        self.n_cls, self.n_ctx = len(classnames), n_ctx
        self.tokenized_prompts = tokenized_prompts

    def forward(self):
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


class CustomCLIP(nn.Module):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        self.prompt_learner = PromptLearner(cfg, classnames, clip_model)
        self.tokenized_prompts = self.prompt_learner.tokenized_prompts
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype

    def forward(self, image):
        image_features = self.image_encoder(image.type(self.dtype))
        text_features = self.text_encoder(self.prompt_learner(), self.tokenized_prompts)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image_features @ text_features.t()


@TRAINER_REGISTRY.register()
class CoOpStyle(TrainerX):
    """CoOp's trainer structure on the project's engine (fp32; the toy CLIP runs on the CPU)."""

    def build_model(self):
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        clip_model = load_clip_to_cpu(cfg)
        if cfg.TRAINER.COOP.PREC in ("fp32", "amp"):
            clip_model.float()
        self.model = CustomCLIP(cfg, classnames, clip_model)
        for name, param in self.model.named_parameters():
            param.requires_grad_("prompt_learner" in name)
        self.model.to(self.device)
        self.optim = build_optimizer(self.model.prompt_learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("prompt_learner", self.model.prompt_learner, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(image), label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)


# --- Runs ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data"))
    toy_world.write_toy_world(root, toy_world.DEFAULT_SEED, SPLIT_SIZES)
    return root


def toy_argv(root, output_dir, trainer, *opts, extra_flags=()):
    """train.py on ToyShapes base classes with the committed toy CLIP (CPU, fp32)."""
    return [
        "--root",
        root,
        "--output-dir",
        str(output_dir),
        "--trainer",
        trainer,
        "--dataset-config-file",
        osp.join(REPO, "configs", "datasets", "toy_shapes.yaml"),
        "--config-file",
        osp.join(REPO, "configs", "trainers", "CoOp", "toy_clip.yaml"),
        *extra_flags,
        "MODEL.BACKBONE.PATH",
        TOY_CLIP,
        "USE_CUDA",
        "False",
        "DATASET.SUBSAMPLE_CLASSES",
        "base",
        "TRAINER.COOP.CTX_INIT",
        "a photo of a",
        *opts,
    ]


def accuracies(output_dir):
    with open(osp.join(output_dir, "log.txt")) as log:
        return [float(value) for value in re.findall(r"^\* accuracy: ([\d.]+)%$", log.read(), flags=re.M)]


@pytest.fixture(scope="module")
def zero_shot_accuracy(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("zsclip")
    assert run_train_py(toy_argv(data_root, out, "ZeroshotCLIP", extra_flags=["--eval-only"])) == 0
    (accuracy,) = accuracies(out)
    return accuracy


def test_untrained_prompt_gives_exactly_zero_shot_accuracy(data_root, zero_shot_accuracy, tmp_path):
    assert run_train_py(toy_argv(data_root, tmp_path, "CoOpStyle", extra_flags=["--eval-only"])) == 0
    assert accuracies(tmp_path) == [zero_shot_accuracy]
    # Chance is 1/18 = 5.6%: the toy CLIP's zero-shot accuracy is far above it, so an encoder that
    # mixes up the token and batch axes (as the issue found: 7.9% vs 33.8%) cannot pass by luck.
    assert zero_shot_accuracy > 15


def test_prompt_learner_trains_through_train_py(data_root, tmp_path):
    opts = ("DATASET.NUM_SHOTS", "2", "OPTIM.NAME", "sgd", "OPTIM.LR", "0.002", "OPTIM.MAX_EPOCH", "1")
    opts += ("DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.WARMUP_EPOCH", "-1")
    assert run_train_py(toy_argv(data_root, tmp_path, "CoOpStyle", *opts, extra_flags=["--seed", "1"])) == 0
    (accuracy,) = accuracies(tmp_path)
    checkpoint = torch.load(osp.join(tmp_path, "prompt_learner", "model.pth.tar-1"), weights_only=False)
    initial = clip.build_model(torch.load(TOY_CLIP, weights_only=True)).token_embedding(clip.tokenize("a photo of a"))
    moved = (checkpoint["state_dict"]["ctx"] - initial[0, 1:5].float()).abs().max()
    assert moved > 1e-4  # nine SGD steps changed the context
    assert accuracy > 15  # and the trained prompt still classifies far above chance (5.6%)
