"""ALIGN's learned tensors under each precision, as the official learner stores them.

The official learner, built on the half-precision CLIP that PREC fp16 uses, keeps ``ctx`` and
``proj`` in float16 and the deep prompts and their projections in float32. These tests build the
learner on a half-precision tiny CLIP on the CPU (float16 tensors work there) and check the
dtypes, a warmup-sized SGD step, the identical start of the deep projections, and that
checkpoints move between precisions.
"""

import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

import clip
from clip.model import convert_weights
from dassl.config import get_cfg_default
from dassl.optim import build_optimizer
from tests.test_align_model import CLASSNAMES, DEPTH, make_settings
from tests.tiny_clip import tiny_vit_state_dict
from trainers.align import ALIGNCLIP
from trainers.checkpoints import load_learned_state

HALF_PRECISION_TENSORS = {"ctx", "proj.weight", "proj.bias"}


def tiny_clip(dtype):
    """A frozen tiny CLIP stored as the trainers store it: OpenAI's mixed storage for float16."""
    model = clip.build_model(tiny_vit_state_dict(seed=3, vision_layers=DEPTH, transformer_layers=DEPTH))
    if dtype != torch.float32:
        convert_weights(model, dtype)
    return model.requires_grad_(False)


def build(dtype, seed=0):
    torch.manual_seed(seed)
    return ALIGNCLIP(make_settings(), CLASSNAMES, tiny_clip(dtype))


def warmup_optimizer(learner):
    """The recipe's optimizer at the warmup learning rate: SGD, momentum 0.9, weight decay 5e-4."""
    cfg = get_cfg_default()
    cfg.OPTIM.NAME, cfg.OPTIM.LR = "sgd", 1e-5
    return build_optimizer(learner, cfg.OPTIM)


def test_fp16_learner_stores_the_official_dtypes():
    model = build(torch.float16)
    dtypes = {name: param.dtype for name, param in model.prompt_learner.named_parameters()}
    assert len(dtypes) == 3 + 3 * (DEPTH - 1)
    for name, dtype in dtypes.items():
        assert dtype == (torch.float16 if name in HALF_PRECISION_TENSORS else torch.float32), name
    # The backbone in OpenAI's mixed storage: matmul weights half, embeddings and norms float32.
    assert model.clip.dtype == torch.float16 and model.clip.visual.proj.dtype == torch.float16
    assert model.clip.token_embedding.weight.dtype == model.clip.ln_final.weight.dtype == torch.float32
    # The frozen sentence pieces follow the CLIP's dtype, as the context they surround.
    assert model.prompt_learner.token_suffix.dtype == torch.float16


def test_fp32_learner_stores_everything_in_float32():
    model = build(torch.float32)
    assert {param.dtype for param in model.prompt_learner.parameters()} == {torch.float32}


def test_a_warmup_step_moves_the_deep_prompts_and_projections_under_fp16():
    """At the warmup LR 1e-5 a float16 tensor of magnitude ~0.02 cannot move (its spacing is
    ~1.5e-5); the float32 deep prompts and projections must, and their momentum is float32."""
    model = build(torch.float16)
    learner = model.prompt_learner
    optimizer = warmup_optimizer(learner)
    before = {name: param.detach().clone() for name, param in learner.named_parameters()}
    logits = model(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    changed = {
        name: (param.detach() != before[name]).float().mean().item() for name, param in learner.named_parameters()
    }
    for name, fraction in changed.items():
        if name.startswith("compound_prompts_text"):
            assert fraction > 0.5, (name, fraction)
        elif name.startswith("compound_prompt_projections"):
            assert fraction > 0.0, (name, fraction)
    for param in learner.parameters():
        momentum = optimizer.state[param]["momentum_buffer"]
        assert momentum.dtype == param.dtype


def test_deep_projections_start_identical_and_proj_has_its_own_init():
    learner = build(torch.float32).prompt_learner
    first = learner.compound_prompt_projections[0]
    for layer in learner.compound_prompt_projections[1:]:
        assert torch.equal(layer.weight, first.weight) and torch.equal(layer.bias, first.bias)
        assert layer.weight.data_ptr() != first.weight.data_ptr()  # copies, trained independently
    assert not torch.equal(learner.proj.weight, first.weight)


@pytest.mark.parametrize("source, target", [(torch.float32, torch.float16), (torch.float16, torch.float32)])
def test_a_checkpoint_moves_between_precisions(source, target):
    """Each tensor keeps its dtype in the file; loading copies into the target learner's dtypes."""
    saved = build(source, seed=1).prompt_learner.state_dict()
    learner = build(target, seed=2).prompt_learner
    load_learned_state(learner, saved, "a checkpoint", ["TRAINER.ALIGN.N_CTX"])
    for name, param in learner.named_parameters():
        assert param.dtype == (
            torch.float16 if target == torch.float16 and name in HALF_PRECISION_TENSORS else torch.float32
        )
        torch.testing.assert_close(param.detach().float(), saved[name].float(), rtol=1e-3, atol=1e-4)


def test_node_defaults_are_the_recipe():
    node = CN()
    node.TRAINER = CN()
    from trainers.align import add_config

    add_config(node)
    assert node.TRAINER.ALIGN.PREC == "fp16" and node.TRAINER.MMP == node.TRAINER.ALIGN
