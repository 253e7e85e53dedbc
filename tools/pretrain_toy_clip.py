"""Pretrain the toy world's tiny CLIP: symmetric InfoNCE on clean renders of all 36 classes.

The model is our clip.model.CLIP in OpenAI's state-dict layout (ViT image tower, 77-token text
tower, OpenAI's 49,408-token vocabulary), small enough to pretrain in a few minutes on one CPU
core. Like real CLIP it sees every colour-shape combination during pretraining, the "new"
classes included, with several caption templates; it never sees the cluttered dataset images.

Rebuild the committed checkpoint (single-threaded, deterministic for a given machine and torch
build; 3.5 minutes on a busy 2-core machine):
    python -m tools.pretrain_toy_clip --out tools/assets/toy_clip.pt --seed 1
Evaluate a checkpoint (zero-shot on base and new test classes, and a linear probe on the 16-shot
base training images as a check that adaptation can help):
    python -m tools.pretrain_toy_clip --evaluate tools/assets/toy_clip.pt
"""

import argparse
import os.path as osp
import time

import numpy as np
import torch
import torch.nn.functional as F

import clip
from clip.clip import IMAGE_MEAN, IMAGE_STD
from clip.model import CLIP
from dassl.utils import mkdir_if_missing
from datasets.toy_shapes import CLASSNAMES, NUM_BASE
from tools import toy_world

ARCHITECTURE = dict(
    embed_dim=64,
    image_resolution=toy_world.IMAGE_SIZE,
    vision_layers=3,
    vision_width=64,
    vision_patch_size=8,
    context_length=77,
    vocab_size=49408,
    transformer_width=64,
    transformer_heads=1,
    transformer_layers=2,
)

# Caption templates seen in pretraining. The zero-shot template is one of them, as CLIP's
# ImageNet template "a photo of a {}." is a common caption shape of its training data.
TEMPLATES = (
    "a photo of a {}.",
    "a {}.",
    "a drawing of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a rendering of the {}.",
    "a {} on a grey background.",
    "this is a {}.",
)
ZERO_SHOT_TEMPLATE = "a photo of a {}."

# Prompt learners add learned vectors to both towers: in the text, at positions 1..n of the
# caption ("X X {}." and, with CTX_INIT "a photo of a", "X X of a {}."), overwriting the hidden
# states there in deeper blocks; in the image, as n extra tokens after the patches, overwritten
# likewise. Big CLIPs shrug off such tokens while they are still random; these 2-3 block,
# one-head towers trained on plain inputs do not (the end-of-text and class tokens attend to
# them directly), so prompt tuning would start from broken features. Half of every step's pairs
# therefore carry random vectors in those places.
PROMPTED_TEMPLATES = ("X X {}.", "X X of a {}.") + tuple("X X " + template for template in TEMPLATES)
N_PROMPT_TOKENS = 2

DEFAULT_STEPS = 2500
RENDERS_PER_CLASS = 320  # size of the pool of clean renders sampled from
LEARNING_RATE = 2e-3
WARMUP_STEPS = 100


def build_toy_clip():
    """A freshly initialised tiny CLIP (OpenAI's initialisation; draws from the torch RNG)."""
    return CLIP(**ARCHITECTURE)


def to_pixels(images):
    """uint8 images (N, H, W, 3) -> float32 (N, 3, H, W) normalised as CLIP's preprocessing
    (and the project's configs) do."""
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def caption_tokens(templates):
    """Token ids (36, len(templates), L) of every class under every template.

    L is the longest caption's length, not 77: the text tower is causal, so the end-of-text
    feature does not depend on the padding after it, and 77-token sequences would cost ~6x more.
    """
    captions = [template.format(name) for name in CLASSNAMES for template in templates]
    tokens = clip.tokenize(captions)
    length = int(tokens.argmax(dim=-1).max()) + 1  # end-of-text has the largest token id
    return tokens[:, :length].reshape(len(CLASSNAMES), len(templates), length).contiguous()


def random_prompt_tokens(shape, generator):
    """Stand-ins for learned prompt vectors, (N, n, width): N(0, s^2), s log-uniform in [0.02, 0.2]
    per row (0.02 is the prompt learners' initial std; trained prompts grow)."""
    scale = 0.02 * 10 ** torch.rand(shape[0], 1, 1, generator=generator)
    return scale * torch.randn(shape, generator=generator)


def dihedral(images, codes):
    """Rotate images (N, C, H, W) by codes % 4 quarter turns, mirrored where codes >= 4.

    A rotated or mirrored clean render is another clean render of the same class (the shapes'
    names do not depend on orientation), so this multiplies the pool eightfold for free.
    """
    output = images.clone()
    for code in range(8):
        selected = codes == code
        turned = torch.rot90(images[selected], k=code % 4, dims=(2, 3))
        output[selected] = turned.flip(3) if code >= 4 else turned
    return output


def contrastive_loss(image_features, text_features, logit_scale):
    """Symmetric InfoNCE over G groups of C matching pairs (pair i of a group = class i).

    image_features, text_features: (G, C, D), L2-normalised; logit_scale: scalar (log scale).
    """
    logits = logit_scale.exp() * torch.einsum("gid,gjd->gij", image_features, text_features)
    groups, classes, _ = logits.shape
    targets = torch.arange(classes, device=logits.device).expand(groups, classes)
    image_to_text = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    text_to_image = F.cross_entropy(logits.transpose(1, 2).flatten(0, 1), targets.flatten())
    return (image_to_text + text_to_image) / 2


def learning_rate(step, steps):
    """Linear warm-up, then cosine decay to zero."""
    if step < WARMUP_STEPS:
        return LEARNING_RATE * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, steps - WARMUP_STEPS)
    return LEARNING_RATE * 0.5 * (1 + np.cos(np.pi * progress))


class CaptionEmbeddings(torch.nn.Module):
    """Trainable copies of the token-embedding rows that the captions use.

    The captions use a few dozen of the 49,408 tokens; updating the whole table with Adam took
    half of every step. The other rows keep their initial values, as they would anyway (their
    gradient is zero), and ``write_back`` copies the trained rows into the model.
    """

    def __init__(self, token_embedding, *token_sets):
        super().__init__()
        self.vocabulary = torch.unique(torch.cat([tokens.flatten() for tokens in token_sets]))
        self.rows = torch.nn.Parameter(token_embedding.weight.detach()[self.vocabulary].clone())

    def forward(self, tokens):
        """tokens: (N, L) ids -> input embeddings (N, L, width), as token_embedding(tokens)."""
        return self.rows[torch.searchsorted(self.vocabulary, tokens)]

    @torch.no_grad()
    def write_back(self, token_embedding):
        token_embedding.weight[self.vocabulary] = self.rows


def encode_prompted_images(model, images, generator):
    """Image features (N, D) with N_PROMPT_TOKENS random prompt tokens in every block.

    images: (N, 3, R, R) normalised pixels.
    """
    prompt_shape = (images.shape[0], N_PROMPT_TOKENS, model.visual.width)
    deep_prompts = [random_prompt_tokens(prompt_shape, generator) for _ in range(model.visual.transformer.layers - 1)]
    return model.encode_image(
        images, shallow_prompts=random_prompt_tokens(prompt_shape, generator), deep_prompts=deep_prompts
    )


def encode_prompted_captions(model, caption_embeddings, tokens, generator):
    """Text features (N, D) of PROMPTED_TEMPLATES captions with random prompt vectors in every block.

    tokens: (N, L) ids whose positions 1..N_PROMPT_TOKENS are the "X X" placeholders.
    """
    batch, width = tokens.shape[0], model.transformer.width
    prompt_shape = (batch, N_PROMPT_TOKENS, width)
    inputs = caption_embeddings(tokens)
    inputs = torch.cat(
        [inputs[:, :1], random_prompt_tokens(prompt_shape, generator), inputs[:, 1 + N_PROMPT_TOKENS :]], dim=1
    )
    deep_prompts = [random_prompt_tokens(prompt_shape, generator) for _ in range(model.transformer.layers - 1)]
    return model.encode_text(tokens, prompt_embeddings=inputs, deep_prompts=deep_prompts)


def pretrain(seed, steps=DEFAULT_STEPS, renders_per_class=RENDERS_PER_CLASS, log_every=250):
    """Train a tiny CLIP from scratch; every random draw follows from ``seed``.

    Each step has two groups of 36 pairs, one per class (so no group pairs two images of one
    class) of a clean render from the pool (randomly rotated/mirrored) and a caption: plain in
    the first group; in the second, a PROMPTED_TEMPLATES caption, and random prompt vectors in
    both towers. Loss: the mean of the groups' symmetric InfoNCE. Returns the model (float32, in
    eval mode).
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_toy_clip()
    pixels = to_pixels(toy_world.render_clean(seed, renders_per_class)[0])
    pixels = pixels.view(len(CLASSNAMES), renders_per_class, *pixels.shape[1:])
    plain_tokens = caption_tokens(TEMPLATES)
    prompted_tokens = caption_tokens(PROMPTED_TEMPLATES)
    caption_embeddings = CaptionEmbeddings(model.token_embedding, plain_tokens, prompted_tokens)
    model.token_embedding.weight.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad] + [caption_embeddings.rows]
    optimizer = torch.optim.Adam(parameters, lr=LEARNING_RATE, foreach=True)
    num_classes = len(CLASSNAMES)
    classes = torch.arange(num_classes)

    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps)
        render_index = torch.randint(renders_per_class, (2, num_classes), generator=generator)
        images = dihedral(
            pixels[classes, render_index].flatten(0, 1),
            torch.randint(8, (2 * num_classes,), generator=generator),
        )
        plain = plain_tokens[classes, torch.randint(len(TEMPLATES), (num_classes,), generator=generator)]
        prompted = prompted_tokens[classes, torch.randint(len(PROMPTED_TEMPLATES), (num_classes,), generator=generator)]

        image_features = torch.stack(
            [
                model.encode_image(images[:num_classes]),
                encode_prompted_images(model, images[num_classes:], generator),
            ]
        )
        text_features = torch.stack(
            [
                model.encode_text(plain, prompt_embeddings=caption_embeddings(plain)),
                encode_prompted_captions(model, caption_embeddings, prompted, generator),
            ]
        )
        loss = contrastive_loss(
            F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1), model.logit_scale
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # CLIP clips its temperature at 100
            model.logit_scale.clamp_(0, np.log(100))
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps}  loss {loss.item():.4f}  logit scale {model.logit_scale.exp().item():.1f}")
    caption_embeddings.write_back(model.token_embedding)
    model.token_embedding.weight.requires_grad_(True)
    model.eval()
    return model


def save_fp16(model, path):
    """Save the state dict in fp16 (what clip.load / clip.build_model read)."""
    mkdir_if_missing(osp.dirname(osp.abspath(path)))
    torch.save({key: value.half() for key, value in model.state_dict().items()}, path)


@torch.no_grad()
def image_features(model, images, batch_size=256):
    """L2-normalised image features (N, D), float32 on the CPU, of uint8 images (N, H, W, 3)."""
    dtype = model.visual.conv1.weight.dtype
    device = model.visual.conv1.weight.device
    features = [
        model.encode_image(to_pixels(images[i : i + batch_size]).to(device, dtype)).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return F.normalize(torch.cat(features), dim=-1)


@torch.no_grad()
def text_features(model, classnames, template=ZERO_SHOT_TEMPLATE):
    """L2-normalised text features (C, D), float32 on the CPU, of ``template`` filled with each
    class name."""
    device = model.token_embedding.weight.device
    tokens = clip.tokenize([template.format(name) for name in classnames]).to(device)
    return F.normalize(model.encode_text(tokens).float().cpu(), dim=-1)


def zero_shot_accuracy(model, images, labels, template=ZERO_SHOT_TEMPLATE):
    """Zero-shot accuracy (%) on the base and on the new classes, each among its own half.

    As in the base-to-new protocol, base items are classified among the 18 base classes only and
    new items among the 18 new classes only. images: uint8 (N, H, W, 3); labels: (N,) full labels.
    Returns {"base": acc, "new": acc}.
    """
    features = image_features(model, images)
    labels = torch.as_tensor(labels)
    class_features = text_features(model, CLASSNAMES, template)
    halves = {"base": torch.arange(NUM_BASE), "new": torch.arange(NUM_BASE, len(CLASSNAMES))}
    accuracy = {}
    for half, classes in halves.items():
        mask = torch.isin(labels, classes)
        predictions = classes[(features[mask] @ class_features[classes].T).argmax(dim=1)]
        accuracy[half] = 100.0 * (predictions == labels[mask]).float().mean().item()
    return accuracy


def first_base_shots(labels, shots):
    """Mask (N,) of the first ``shots`` items of every base class in ``labels`` (N,)."""
    mask = np.zeros(len(labels), dtype=bool)
    for label in range(NUM_BASE):
        mask[np.flatnonzero(labels == label)[:shots]] = True
    return mask


def linear_probe_accuracy(model, train_images, train_labels, test_images, test_labels, epochs=300):
    """Base-class test accuracy (%) of a linear probe fitted on base-class training images.

    A check that adaptation can help: logistic regression on the frozen image features
    (full-batch Adam, weights initialised from the zero-shot text features, so that it starts at
    the zero-shot accuracy). images: uint8 (N, H, W, 3); labels: (N,), full labels; items of new
    classes are ignored.
    """
    train_keep, test_keep = train_labels < NUM_BASE, test_labels < NUM_BASE
    train_x = image_features(model, train_images[train_keep])
    test_x = image_features(model, test_images[test_keep])
    train_y = torch.as_tensor(train_labels[train_keep])
    test_y = torch.as_tensor(test_labels[test_keep])

    weight = text_features(model, CLASSNAMES[:NUM_BASE]).clone().requires_grad_(True)
    scale = model.logit_scale.exp().float().item()
    optimizer = torch.optim.Adam([weight], lr=1e-3)
    for _ in range(epochs):
        loss = F.cross_entropy(scale * train_x @ weight.T, train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predictions = (test_x @ weight.T).argmax(dim=1)
    return 100.0 * (predictions == test_y).float().mean().item()


def evaluate(model, data_seed=toy_world.DEFAULT_SEED, shots=16):
    """Print and return zero-shot base/new accuracy and the linear-probe base accuracy."""
    images, labels = toy_world.render_split("test", data_seed)
    results = zero_shot_accuracy(model, images, labels)
    train_images, train_labels = toy_world.render_split("train", data_seed)
    keep = first_base_shots(train_labels, shots)
    results["probe_base"] = linear_probe_accuracy(model, train_images[keep], train_labels[keep], images, labels)
    print(
        "zero-shot ({!r}) on the toy test set (seed {}): base {:.1f}%  new {:.1f}%".format(
            ZERO_SHOT_TEMPLATE, data_seed, results["base"], results["new"]
        )
    )
    print("linear probe, {} shots per base class: base {:.1f}%".format(shots, results["probe_base"]))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", help="where to write the fp16 state dict")
    action.add_argument("--evaluate", metavar="PATH", help="evaluate this checkpoint instead")
    parser.add_argument("--seed", type=int, default=1, help="pretraining seed")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (fixed, so that reruns give identical weights)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.evaluate:
        model = clip.load(args.evaluate, device="cpu")[0].float()
    else:
        start = time.time()
        model = pretrain(args.seed, args.steps)
        print(f"Pretrained in {time.time() - start:.0f} s")
        save_fp16(model, args.out)
        print(f"Saved {args.out}")
        model = clip.load(args.out, device="cpu")[0].float()
    evaluate(model)


if __name__ == "__main__":
    main()
