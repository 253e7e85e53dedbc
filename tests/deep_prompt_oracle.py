"""Independent references for the deep-prompt baselines (MaPLe, IVLP, VPT) and shared test fixtures.

The reference towers are CLIP's, written out block by block from the method descriptions, one
sentence or one image at a time: the prompts are written into the hidden states here (not by
``Transformer.forward``), the sentences are tokenised at the full 77 positions (the trainers cut
them after the longest one), and the logits are a plain loop over (image, class) pairs. They
share no helper with trainers/.
"""

import functools

import torch
import torch.nn.functional as F
from torch import nn

import clip
from clip.model import CLIP
from tests.tiny_clip import tiny_vit_state_dict

CLASSNAMES = ["cat", "dog_house", "big red fire truck"]
DEPTH = 3  # blocks of each tower of the tiny CLIP: deep prompts can enter blocks 1 and 2
TEXT_WIDTH, VISION_WIDTH = 64, 128  # different widths, so that a text/vision mix-up cannot pass


def tiny_clip(seed=3):
    """A float32 tiny ViT CLIP (3 blocks per tower, d_t 64, d_v 128, 32 px images), frozen."""
    state = tiny_vit_state_dict(seed=seed, vision_layers=DEPTH, transformer_layers=DEPTH, vision_width=VISION_WIDTH)
    return clip.build_model(state).requires_grad_(False)


@functools.lru_cache(maxsize=1)
def vit_b16_clip():
    """A CLIP with ViT-B/16's dimensions for counting prompt parameters: the towers on the meta
    device (no memory, no compute), the token embedding real (the prompts start from words)."""
    with torch.device("meta"):
        model = CLIP(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)
    model.token_embedding = nn.Embedding(49408, 512)
    return model


def reference_text_feature(clip_model, sentence, ctx=None, deep=()):
    """(D,) feature of one sentence: its token embeddings with positions 1..n replaced by ``ctx``
    (n, d_t), + positional embedding, the text blocks with deep[k-1] (n, d_t) written over
    positions 1..n at the input of block k, ln_final, the EOT row, text_projection."""
    ids = clip.tokenize(sentence)  # (1, 77)
    x = clip_model.token_embedding(ids)
    if ctx is not None:
        x = x.clone()
        x[0, 1 : 1 + ctx.shape[0]] = ctx
    x = x + clip_model.positional_embedding
    for k, block in enumerate(clip_model.transformer.resblocks):
        if 1 <= k <= len(deep):
            x = x.clone()
            x[0, 1 : 1 + deep[k - 1].shape[0]] = deep[k - 1]
        x = block(x)
    x = clip_model.ln_final(x)
    return x[0, int(ids.argmax())] @ clip_model.text_projection


def reference_image_feature(clip_model, image, shallow=None, deep=()):
    """(D,) feature of one image (3, R, R): patch embedding, class token, positional embedding,
    ``shallow`` (n, d_v) appended, ln_pre, the vision blocks with deep[k-1] (n, d_v) written over
    the last n tokens at the input of block k, ln_post of the class token, proj."""
    visual = clip_model.visual
    x = visual.conv1(image[None])  # (1, d_v, G, G)
    x = x.flatten(2).transpose(1, 2)  # (1, G*G, d_v)
    x = torch.cat([visual.class_embedding[None, None], x], dim=1) + visual.positional_embedding
    if shallow is not None:
        x = torch.cat([x, shallow[None]], dim=1)
    x = visual.ln_pre(x)
    for k, block in enumerate(visual.transformer.resblocks):
        if 1 <= k <= len(deep):
            x = x.clone()
            x[0, -deep[k - 1].shape[0] :] = deep[k - 1]
        x = block(x)
    return visual.ln_post(x[0, 0]) @ visual.proj


def reference_logits(clip_model, image_features, text_features):
    """(B, C): exp(logit_scale) * cosine of every (image, class) pair, one pair at a time."""
    scale = clip_model.logit_scale.exp()
    rows = []
    for f in image_features:
        rows.append(torch.stack([scale * F.cosine_similarity(f, g, dim=0) for g in text_features]))
    return torch.stack(rows)


def check_logits_and_gradients(model, reference, images, labels):
    """The model's logits equal ``reference()``'s (to 1e-5 of their largest magnitude), and so do
    the cross-entropy gradients of every learned tensor (to 1e-4 of their largest magnitude)."""
    params = dict(model.prompt_learner.named_parameters())
    logits = model(images)
    expected = reference()
    scale = expected.abs().max().item()
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5 * scale)
    grads = torch.autograd.grad(F.cross_entropy(logits, labels), list(params.values()))
    expected_grads = torch.autograd.grad(F.cross_entropy(expected, labels), list(params.values()))
    for name, grad, want in zip(params, grads, expected_grads):
        assert want.abs().max() > 0, name  # every learned tensor matters
        torch.testing.assert_close(grad, want, rtol=0, atol=1e-4 * want.abs().max().item(), msg=name)


def perturb(learner, seed=0, std=0.5):
    """Move every learned tensor by a random amount, so that each one changes the features."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in learner.parameters():
            param.add_(std * torch.randn(param.shape, generator=generator).to(param.dtype))
