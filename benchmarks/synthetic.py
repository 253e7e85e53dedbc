"""Synthetic inputs of the benchmarks: class names with controlled token counts, and OT features
with a CLIP-like similarity structure.

Features: isotropic random unit vectors in D = 512 dimensions have cosine similarities of about
0 +- 0.04; then exp(-cost / eps) is nearly constant, every Sinkhorn stops after one or two
iterations, and an OT benchmark measures nothing. CLIP's features instead share a common
direction (their similarities sit well above 0) and agree more where content matches. So each
feature here is a blend of unit vectors,

    x = normalize(sqrt(s) * shared + sqrt(m) * topic + sqrt(1 - s - m) * noise),

with ``shared`` one direction common to all features of a kind, ``topic`` one of a few directions
that a subset of features share, ``noise`` a random unit vector. Two such features have a cosine
similarity of about sqrt(s_x * s_y) + m * [same topic] (+- about 0.03 for D = 512):
- tokens: s drawn per token uniformly in TOKEN_SHARED_RANGE, m = TOKEN_TOPIC_WEIGHT, topics drawn
  among TOKEN_TOPICS per token: image-text token similarities spread over about 0.1 .. 0.45;
- global features: s = GLOBAL_SHARED_WEIGHT, m = GLOBAL_CLASS_WEIGHT, the topic of text feature
  (c, t) is class c and that of image b its label b mod C: similarities about 0.25, and about 0.3
  with the image's own class, as CLIP's image-text cosines.
"""

import torch
import torch.nn.functional as F

TOKEN_SHARED_RANGE = (0.10, 0.35)
TOKEN_TOPIC_WEIGHT = 0.10
TOKEN_TOPICS = 64
GLOBAL_SHARED_WEIGHT = 0.25
GLOBAL_CLASS_WEIGHT = 0.05

# Class-name words, each one BPE token. A name of k words gives L_c = 5 + k kept text tokens with
# the shipped CTX_INIT "a photo of a" (SOS, 4 prompt tokens, k name tokens; "." and EOT dropped).
NAME_WORDS = (
    "red",
    "blue",
    "green",
    "small",
    "large",
    "wild",
    "old",
    "young",
    "dark",
    "bright",
    "dog",
    "cat",
    "bird",
    "car",
    "tree",
    "house",
    "boat",
    "fish",
    "flower",
    "stone",
)
NAME_LENGTHS = range(1, 8)  # words per name, cycling: L_c = 6 .. 12


def class_names(classes):
    """``classes`` synthetic class names; name c has NAME_LENGTHS[c % 7] words (not all names are
    distinct, which nothing here needs)."""
    names = []
    for c in range(classes):
        length = NAME_LENGTHS[c % len(NAME_LENGTHS)]
        names.append(" ".join(NAME_WORDS[(c + 3 * i) % len(NAME_WORDS)] for i in range(length)))
    return names


def _unit(generator, *shape):
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


def _blend(generator, shared, shared_weight, topic, topic_weight):
    """normalize(sqrt(s) shared + sqrt(m) topic + sqrt(1 - s - m) noise); shapes broadcast to topic's.

    shared: (D,); shared_weight: float or (..., 1); topic: (..., D) unit rows; topic_weight: float.
    """
    shared_weight = torch.as_tensor(shared_weight)
    noise = _unit(generator, *topic.shape)
    mixed = (
        shared_weight.sqrt() * shared + topic_weight**0.5 * topic + (1.0 - shared_weight - topic_weight).sqrt() * noise
    )
    return F.normalize(mixed, dim=-1)


def _token_features(generator, shared, topics, *shape):
    """(*shape, D) token features: shared weight per token in TOKEN_SHARED_RANGE, a random topic."""
    shared_weight = torch.empty(*shape, 1).uniform_(*TOKEN_SHARED_RANGE, generator=generator)
    topic = topics[torch.randint(len(topics), shape, generator=generator)]
    return _blend(generator, shared, shared_weight, topic, TOKEN_TOPIC_WEIGHT)


def synthetic_ot_inputs(batch, classes, prompts, img_len, dim, kept_lengths, *, seed=0, device="cpu"):
    """Features for the OT stage, float32 on ``device`` (see the module docstring).

    batch B, classes C, prompts V = T, img_len P, dim D; kept_lengths: C ints L_c.
    Returns a dict: img_global (B, V, D), img_tokens (B, V, P, D), txt_global (C, T, D),
    txt_tokens (C, T, L, D) zero-padded to L = max L_c, txt_token_mask (C, T, L) bool (True on the
    first L_c positions), txt_token_list (C tensors (T, L_c, D), views of txt_tokens), all
    L2-normalised.
    """
    if len(kept_lengths) != classes:
        raise ValueError(f"kept_lengths has {len(kept_lengths)} entries for {classes} classes")
    generator = torch.Generator().manual_seed(seed)
    txt_len = max(kept_lengths)
    token_topics = _unit(generator, TOKEN_TOPICS, dim)
    class_topics = _unit(generator, classes, dim)
    shared_token, shared_global = _unit(generator, dim), _unit(generator, dim)
    img_tokens = _token_features(generator, shared_token, token_topics, batch, prompts, img_len)
    txt_tokens = _token_features(generator, shared_token, token_topics, classes, prompts, txt_len)
    labels = torch.arange(batch) % classes
    img_global = _blend(
        generator,
        shared_global,
        GLOBAL_SHARED_WEIGHT,
        class_topics[labels][:, None].expand(batch, prompts, dim),
        GLOBAL_CLASS_WEIGHT,
    )
    txt_global = _blend(
        generator,
        shared_global,
        GLOBAL_SHARED_WEIGHT,
        class_topics[:, None].expand(classes, prompts, dim),
        GLOBAL_CLASS_WEIGHT,
    )
    real = torch.arange(txt_len) < torch.tensor(kept_lengths)[:, None]  # (C, L)
    txt_token_mask = real[:, None].expand(classes, prompts, txt_len).contiguous()
    txt_tokens = txt_tokens * txt_token_mask[..., None]
    inputs = dict(
        img_global=img_global,
        img_tokens=img_tokens,
        txt_global=txt_global,
        txt_tokens=txt_tokens,
        txt_token_mask=txt_token_mask,
    )
    inputs = {name: tensor.to(device) for name, tensor in inputs.items()}
    inputs["txt_token_list"] = [inputs["txt_tokens"][c, :, :length] for c, length in enumerate(kept_lengths)]
    return inputs
