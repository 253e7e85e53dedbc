"""ImageNet-R: 200 wnid folders, labels 0..199 in the 200-class space."""

from dassl.data.datasets import DATASET_REGISTRY

from .base import WnidFolderDataset


@DATASET_REGISTRY.register()
class ImageNetR(WnidFolderDataset):
    dataset_dir = "imagenet-rendition"
    image_dir = "imagenet-r"
    LAYOUT = """\
imagenet-rendition/
    imagenet-r/<wnid>/*.jpg          200 wnid folders + the archive's README.txt
    classnames.txt                   a copy of ImageNet's classnames.txt"""
    STANDARD_SIZES = {"classes": 200, "train": 30000, "val": None, "test": 30000}
