"""The toy world: coloured shapes rendered with numpy and PIL, and the ToyShapes dataset tree.

Two kinds of scene share one renderer; in both the shape has a random size, position and
rotation:
- CLEAN: one shape in its exact palette colour on a plain background (a random grey, tinted).
  The tiny CLIP is pretrained on these (tools/pretrain_toy_clip.py).
- CLUTTERED: the dataset's train/val/test images (all three alike). The shape is a little
  smaller, its colour jittered, on a background with strokes and blobs, next to one or two
  smaller distractor shapes of any colour, under uneven lighting and pixel noise. This shift is
  what keeps the pretrained CLIP's zero-shot accuracy well below 100% and leaves prompt tuning
  something to learn.

Every image is drawn from its own numpy generator seeded with (seed, stream, label, index), so
an image does not depend on which other images are rendered, or in which order: the same seed
gives byte-identical PNGs and JSON.

Usage:
    python -m tools.toy_world --root DATA [--seed 1]
writes DATA/toy_shapes/ (layout: datasets.toy_shapes.ToyShapes.LAYOUT; docs/toy_world.md).
"""

import argparse
import os.path as osp
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from dassl.utils import mkdir_if_missing, write_json
from datasets.toy_shapes import CLASSNAMES, COLOURS, SHAPES, class_folder, class_pairs

IMAGE_SIZE = 32  # pixels; the tiny CLIP's input resolution
SUPERSAMPLE = 4  # shapes are drawn at 4x and box-filtered down, for anti-aliased edges
DEFAULT_SEED = 1

# Images per class, in file order: indices 0..23 are train, 24..31 val, 32..55 test.
SPLIT_SIZES = {"train": 24, "val": 8, "test": 24}

COLOUR_RGB = {
    "red": (0.85, 0.12, 0.12),
    "orange": (0.97, 0.55, 0.08),
    "yellow": (0.95, 0.88, 0.15),
    "green": (0.15, 0.68, 0.22),
    "blue": (0.15, 0.30, 0.88),
    "purple": (0.56, 0.20, 0.76),
}

# Random-number streams: dataset images and pretraining renders never share a generator.
STREAM_DATASET = 0
STREAM_PRETRAIN = 1


@dataclass(frozen=True)
class SceneStyle:
    """How a scene is drawn. Sizes are shape radii as fractions of the image side."""

    radius: tuple  # (low, high) of the target's radius
    centre_jitter: float  # max offset of the target centre from the image centre (fraction)
    colour_jitter: float  # max per-channel offset of the target colour
    brightness: tuple  # (low, high) factor on the target colour
    background_tint: float  # max per-channel offset of the background from its grey level
    gradient: float  # max brightness change across the image (uneven lighting)
    clutter_strokes: tuple  # (low, high) number of background strokes and blobs
    distractors: tuple  # (low, high) number of distractor shapes
    distractor_scale: tuple  # (low, high) distractor radius relative to the target's
    noise_std: float  # std of the Gaussian pixel noise (intensities in [0, 1])


CLEAN = SceneStyle(
    radius=(0.20, 0.40),
    centre_jitter=0.22,
    colour_jitter=0.0,
    brightness=(1.0, 1.0),
    background_tint=0.25,
    gradient=0.0,
    clutter_strokes=(0, 0),
    distractors=(0, 0),
    distractor_scale=(0.0, 0.0),
    noise_std=0.0,
)

CLUTTERED = SceneStyle(
    radius=(0.20, 0.34),
    centre_jitter=0.22,
    colour_jitter=0.10,
    brightness=(0.75, 1.1),
    background_tint=0.12,
    gradient=0.25,
    clutter_strokes=(2, 5),
    distractors=(1, 2),
    distractor_scale=(0.40, 0.60),
    noise_std=0.08,
)


def image_rng(seed, stream, label, index):
    """The generator that draws image ``index`` of class ``label`` in ``stream``."""
    return np.random.default_rng([seed, stream, label, index])


def _polygon(shape, radius, angle):
    """Vertices (K, 2) of ``shape`` around the origin, rotated by ``angle`` radians.

    ``radius`` is the circumradius; circle and ring are not polygons (see ``_draw_shape``).
    """
    if shape == "square":
        angles, radii = np.arange(4) * np.pi / 2 + np.pi / 4, np.full(4, radius * 0.92)
    elif shape == "triangle":
        angles, radii = np.arange(3) * 2 * np.pi / 3 - np.pi / 2, np.full(3, radius * 1.05)
    elif shape == "star":
        angles = np.arange(10) * np.pi / 5 - np.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, radius * 1.05, radius * 0.45)
    elif shape == "cross":
        # A plus sign: arms of half-width w reaching out to the circumradius.
        w, r = radius * 0.32, radius * 0.95
        corners = np.array(
            [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w), (-r, -w), (-r, w), (-w, w), (-w, r)]
        )
        angles = np.arctan2(corners[:, 1], corners[:, 0])
        radii = np.hypot(corners[:, 0], corners[:, 1])
    else:
        raise ValueError(f"unknown polygon shape {shape!r}")
    angles = angles + angle
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _draw_shape(mask, shape, centre, radius, angle):
    """Draw ``shape`` (filled, value 255) onto the PIL "L" image ``mask``, in its pixel units."""
    draw = ImageDraw.Draw(mask)
    cx, cy = centre
    if shape in ("circle", "ring"):
        r = radius * 0.85
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        if shape == "ring":
            r_in = radius * 0.48
            draw.ellipse([cx - r_in, cy - r_in, cx + r_in, cy + r_in], fill=0)
        return
    vertices = _polygon(shape, radius, angle) + np.array([cx, cy])
    draw.polygon([tuple(v) for v in vertices], fill=255)


def _shape_mask(shape, centre, radius, angle, side):
    """PIL "L" mask (side x side) of ``shape``; geometry in supersampled pixels."""
    mask = Image.new("L", (side, side), 0)
    _draw_shape(mask, shape, centre, radius, angle)
    return mask


def _paint(canvas, mask, rgb):
    """Alpha-blend the colour ``rgb`` (3,) onto ``canvas`` (S, S, 3) through the PIL ``mask``.

    Only the mask's bounding box is touched (painting whole canvases dominated the run time).
    """
    box = mask.getbbox()
    if box is None:
        return
    left, top, right, bottom = box
    alpha = np.asarray(mask.crop(box), dtype=np.float32)[:, :, None] / 255.0
    region = canvas[top:bottom, left:right]
    region += alpha * (np.asarray(rgb, dtype=np.float32) - region)


def _background(style, rng, side):
    """A grey level, tinted per channel: (S, S, 3) float32."""
    grey = rng.uniform(0.25, 0.8)
    tint = rng.uniform(-style.background_tint, style.background_tint, size=3)
    return np.tile(np.clip(grey + tint, 0.0, 1.0).astype(np.float32), (side, side, 1))


def _lighting(style, rng):
    """A linear brightness ramp across the image in a random direction: (IMAGE_SIZE, IMAGE_SIZE)."""
    direction = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-0.5, 0.5, IMAGE_SIZE, dtype=np.float32)
    along = np.cos(direction) * ramp[None, :] + np.sin(direction) * ramp[:, None]
    return rng.uniform(-style.gradient, style.gradient) * along


def _clutter(canvas, style, rng):
    """Background strokes (thin lines) and blobs in muted random colours."""
    side = canvas.shape[0]
    count = rng.integers(style.clutter_strokes[0], style.clutter_strokes[1] + 1)
    for _ in range(count):
        mask = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(mask)
        grey = rng.uniform(0.1, 0.9)
        colour = np.clip(grey + rng.uniform(-0.2, 0.2, size=3), 0.0, 1.0)
        if rng.random() < 0.5:
            points = rng.uniform(0, side, size=(2, 2))
            width = int(rng.integers(SUPERSAMPLE, 2 * SUPERSAMPLE + 1))
            draw.line([tuple(p) for p in points], fill=255, width=width)
        else:
            cx, cy = rng.uniform(0, side, size=2)
            rx, ry = rng.uniform(0.04, 0.12, size=2) * side
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        _paint(canvas, mask, colour)


def render(colour, shape, style, rng):
    """One scene with a ``colour`` ``shape`` as its subject: uint8 (IMAGE_SIZE, IMAGE_SIZE, 3)."""
    side = IMAGE_SIZE * SUPERSAMPLE
    canvas = _background(style, rng, side)
    _clutter(canvas, style, rng)

    radius = rng.uniform(*style.radius) * side
    # Keep the whole target inside the frame whatever the jitter.
    max_offset = min(style.centre_jitter * side, side / 2 - radius)
    centre = side / 2 + rng.uniform(-max_offset, max_offset, size=2)

    n_distractors = rng.integers(style.distractors[0], style.distractors[1] + 1)
    for _ in range(n_distractors):
        d_shape = SHAPES[rng.integers(len(SHAPES))]
        d_colour = COLOUR_RGB[COLOURS[rng.integers(len(COLOURS))]]
        d_radius = radius * rng.uniform(*style.distractor_scale)
        d_centre = rng.uniform(d_radius, side - d_radius, size=2)
        mask = _shape_mask(d_shape, d_centre, d_radius, rng.uniform(0, 2 * np.pi), side)
        _paint(canvas, mask, d_colour)

    rgb = np.asarray(COLOUR_RGB[colour], dtype=np.float32) * rng.uniform(*style.brightness)
    rgb = rgb + rng.uniform(-style.colour_jitter, style.colour_jitter, size=3)
    mask = _shape_mask(shape, centre, radius, rng.uniform(0, 2 * np.pi), side)
    _paint(canvas, mask, np.clip(rgb, 0.0, 1.0))

    # Box filter down to the output size, then lighting and noise at the output resolution.
    rows = sum(canvas[i::SUPERSAMPLE] for i in range(SUPERSAMPLE))
    image = sum(rows[:, j::SUPERSAMPLE] for j in range(SUPERSAMPLE)) / SUPERSAMPLE**2
    image = image + _lighting(style, rng)[:, :, None]
    image = image + rng.normal(0.0, style.noise_std, size=image.shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def split_indices(split, split_sizes=SPLIT_SIZES):
    """Image indices (within each class) that make up ``split``; splits follow in dict order."""
    if split not in split_sizes:
        raise ValueError(f"unknown split {split!r}; expected one of {list(split_sizes)}")
    start = 0
    for name, size in split_sizes.items():
        if name == split:
            return range(start, start + size)
        start += size


def render_split(split, seed=DEFAULT_SEED, split_sizes=SPLIT_SIZES):
    """The images of one dataset split, exactly as ``write_toy_world`` saves them.

    Returns images uint8 (N, IMAGE_SIZE, IMAGE_SIZE, 3) and labels int64 (N,), class-major.
    """
    images, labels = [], []
    for label, (colour, shape) in enumerate(class_pairs()):
        for index in split_indices(split, split_sizes):
            rng = image_rng(seed, STREAM_DATASET, label, index)
            images.append(render(colour, shape, CLUTTERED, rng))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64)


def render_clean(seed, per_class):
    """``per_class`` CLEAN renders of every class, for pretraining.

    Returns images uint8 (36 * per_class, IMAGE_SIZE, IMAGE_SIZE, 3) and labels int64, class-major.
    """
    images, labels = [], []
    for label, (colour, shape) in enumerate(class_pairs()):
        for index in range(per_class):
            images.append(render(colour, shape, CLEAN, image_rng(seed, STREAM_PRETRAIN, label, index)))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64)


def write_toy_world(root, seed=DEFAULT_SEED, split_sizes=SPLIT_SIZES):
    """Render the ToyShapes tree under ``root``/toy_shapes and write its split file.

    ``split_sizes`` (images per class per split, in file order) can be lowered for quick tests;
    image ``index`` of a class is the same whatever the sizes. Returns the dataset folder.
    Existing files are overwritten; nothing else is removed.
    """
    dataset_dir = osp.join(osp.abspath(osp.expanduser(root)), "toy_shapes")
    split = {name: [] for name in split_sizes}
    for label, (colour, shape) in enumerate(class_pairs()):
        folder = class_folder(colour, shape)
        mkdir_if_missing(osp.join(dataset_dir, "images", folder))
        for name in split_sizes:
            for index in split_indices(name, split_sizes):
                rng = image_rng(seed, STREAM_DATASET, label, index)
                rel_path = f"{folder}/{index:04d}.png"
                image = Image.fromarray(render(colour, shape, CLUTTERED, rng))
                image.save(osp.join(dataset_dir, "images", rel_path))
                split[name].append([rel_path, label, CLASSNAMES[label]])
    write_json(split, osp.join(dataset_dir, "split_zhou_ToyShapes.json"))
    return dataset_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="folder that will contain toy_shapes/")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generation seed")
    args = parser.parse_args(argv)
    start = time.time()
    dataset_dir = write_toy_world(args.root, args.seed)
    print(f"Wrote {dataset_dir} ({time.time() - start:.1f} s)")


if __name__ == "__main__":
    main()
