"""ImageNet-A: 200 wnid folders, labels 0..199 in the 200-class space."""

from dassl.data.datasets import DATASET_REGISTRY

from .base import WnidFolderDataset


@DATASET_REGISTRY.register()
class ImageNetA(WnidFolderDataset):
    dataset_dir = "imagenet-adversarial"
    image_dir = "imagenet-a"
    LAYOUT = """\
imagenet-adversarial/
    imagenet-a/<wnid>/*.jpg          200 wnid folders + the archive's README.txt
    classnames.txt                   a copy of ImageNet's classnames.txt"""
    STANDARD_SIZES = {"classes": 200, "train": 7500, "val": None, "test": 7500}
