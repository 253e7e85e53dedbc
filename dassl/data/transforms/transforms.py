"""``build_transform``: the train and test image pipelines.

Implemented choices: see ``SUPPORTED_CHOICES``. Dassl.pytorch's AutoAugment policies and
RandAugment variants are recognised names but are rejected with an error listing the supported
choices.
"""
import random

import torch
from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    InterpolationMode,
    Normalize,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)

from dassl.config import ConfigError

__all__ = ["AVAI_CHOICES", "SUPPORTED_CHOICES", "INTERPOLATION_MODES", "build_transform", "check_transform_choices"]

AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",  # always applied at test time; a no-op choice
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
]

_NOT_IMPLEMENTED = {
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
}
SUPPORTED_CHOICES = [choice for choice in AVAI_CHOICES if choice not in _NOT_IMPLEMENTED]

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


class Random2DTranslation:
    """With probability ``p``: resize to 1.125x the target size, then crop a random target-size
    window; otherwise a plain resize to the target size.

    Args:
        height, width (int): target size.
    """

    def __init__(self, height, width, p=0.5, interpolation=InterpolationMode.BILINEAR):
        self.p = p
        self.resize = Resize((height, width), interpolation=interpolation)
        self.enlarge = Resize((round(height * 1.125), round(width * 1.125)), interpolation=interpolation)
        self.crop = RandomCrop((height, width))

    def __call__(self, img):
        if random.uniform(0, 1) > self.p:
            return self.resize(img)
        return self.crop(self.enlarge(img))


class Cutout:
    """Zero ``n_holes`` square patches of side ``length`` (clipped at the border).

    Args:
        img: (C, H, W) tensor.
    """

    def __init__(self, n_holes=1, length=16):
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img):
        h, w = img.shape[1:]
        mask = torch.ones((h, w), dtype=img.dtype)
        for _ in range(self.n_holes):
            y = random.randrange(h)
            x = random.randrange(w)
            y1, y2 = max(y - self.length // 2, 0), min(y + self.length // 2, h)
            x1, x2 = max(x - self.length // 2, 0), min(x + self.length // 2, w)
            mask[y1:y2, x1:x2] = 0
        return img * mask


class GaussianNoise:
    """With probability ``p``, add N(mean, std) noise to a (C, H, W) tensor."""

    def __init__(self, mean=0, std=0.15, p=0.5):
        self.mean = mean
        self.std = std
        self.p = p

    def __call__(self, img):
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn_like(img) * self.std + self.mean


class InstanceNormalization:
    """Normalise each channel of a (C, H, W) tensor to zero mean and unit std over H, W."""

    def __init__(self, eps=1e-8):
        self.eps = eps

    def __call__(self, img):
        mean = img.mean(dim=(1, 2), keepdim=True)
        std = img.std(dim=(1, 2), keepdim=True)
        return (img - mean) / (std + self.eps)


def check_transform_choices(choices):
    """Refuse a name of ``INPUT.TRANSFORMS`` that is unknown or not implemented.

    Raises:
        ConfigError: naming INPUT.TRANSFORMS, the transform and the supported choices.
    """
    for choice in choices:
        if choice not in AVAI_CHOICES:
            raise ConfigError(
                "Unknown transform {!r} in INPUT.TRANSFORMS; supported: {}".format(
                    choice, ", ".join(SUPPORTED_CHOICES)
                )
            )
        if choice in _NOT_IMPLEMENTED:
            raise ConfigError(
                "Transform {!r} in INPUT.TRANSFORMS (a Dassl.pytorch augmentation policy) is not implemented by "
                "this engine; supported: {}".format(choice, ", ".join(SUPPORTED_CHOICES))
            )


def build_transform(cfg, is_train=True, choices=None):
    """Build the train or test pipeline from ``cfg.INPUT`` (None if ``INPUT.NO_TRANSFORM``).

    Args:
        choices (list, optional): transform names; default ``cfg.INPUT.TRANSFORMS``.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None

    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    check_transform_choices(choices)

    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise ValueError(
            "INPUT.INTERPOLATION must be one of {}, but got {!r}".format(
                list(INTERPOLATION_MODES), cfg.INPUT.INTERPOLATION
            )
        )

    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    if is_train:
        return _build_transform_train(cfg, choices, normalize)
    return _build_transform_test(cfg, choices, normalize)


def _build_transform_train(cfg, choices, normalize):
    """The train pipeline, steps in Dassl's fixed order, one printed line each."""
    print("Building transform_train")
    inp = cfg.INPUT
    interpolation = INTERPOLATION_MODES[inp.INTERPOLATION]
    height, width = inp.SIZE
    steps = []

    def add(line, tfm):
        print(line)
        steps.append(tfm)

    if "random_crop" not in choices and "random_resized_crop" not in choices:
        add(f"+ resize to {height}x{width}", Resize(inp.SIZE, interpolation=interpolation))
    if "random_translation" in choices:
        add("+ random translation", Random2DTranslation(height, width, interpolation=interpolation))
    if "random_crop" in choices:
        add(
            f"+ random crop (padding = {inp.CROP_PADDING})",
            RandomCrop(inp.SIZE, padding=inp.CROP_PADDING),
        )
    if "random_resized_crop" in choices:
        add(
            f"+ random resized crop (size={inp.SIZE}, scale={inp.RRCROP_SCALE})",
            RandomResizedCrop(inp.SIZE, scale=inp.RRCROP_SCALE, interpolation=interpolation),
        )
    if "random_flip" in choices:
        add("+ random flip", RandomHorizontalFlip())
    if "colorjitter" in choices:
        jitter = dict(
            brightness=inp.COLORJITTER_B,
            contrast=inp.COLORJITTER_C,
            saturation=inp.COLORJITTER_S,
            hue=inp.COLORJITTER_H,
        )
        add(
            "+ color jitter ({})".format(", ".join(f"{k}={v}" for k, v in jitter.items())),
            ColorJitter(**jitter),
        )
    if "randomgrayscale" in choices:
        add("+ random gray scale", RandomGrayscale(p=inp.RGS_P))
    if "gaussian_blur" in choices:
        add(f"+ gaussian blur (kernel={inp.GB_K})", RandomApply([GaussianBlur(inp.GB_K)], p=inp.GB_P))
    add("+ to torch tensor of range [0, 1]", ToTensor())
    if "cutout" in choices:
        add(
            f"+ cutout (n_holes={inp.CUTOUT_N}, length={inp.CUTOUT_LEN})",
            Cutout(inp.CUTOUT_N, inp.CUTOUT_LEN),
        )
    if "normalize" in choices:
        add(f"+ normalization (mean={inp.PIXEL_MEAN}, std={inp.PIXEL_STD})", normalize)
    if "gaussian_noise" in choices:
        add(
            f"+ gaussian noise (mean={inp.GN_MEAN}, std={inp.GN_STD})",
            GaussianNoise(inp.GN_MEAN, inp.GN_STD),
        )
    if "instance_norm" in choices:
        add("+ instance normalization", InstanceNormalization())
    return Compose(steps)


def _build_transform_test(cfg, choices, normalize):
    """Resize the smaller edge, center crop, to tensor (+ normalize, instance norm if chosen)."""
    print("Building transform_test")
    inp = cfg.INPUT
    height, width = inp.SIZE
    print(f"+ resize the smaller edge to {max(inp.SIZE)}")
    print(f"+ {height}x{width} center crop")
    print("+ to torch tensor of range [0, 1]")
    steps = [
        Resize(max(inp.SIZE), interpolation=INTERPOLATION_MODES[inp.INTERPOLATION]),
        CenterCrop(inp.SIZE),
        ToTensor(),
    ]
    if "normalize" in choices:
        print(f"+ normalization (mean={inp.PIXEL_MEAN}, std={inp.PIXEL_STD})")
        steps.append(normalize)
    if "instance_norm" in choices:
        print("+ instance normalization")
        steps.append(InstanceNormalization())
    return Compose(steps)
