"""ImageNet-R (datasets.md §2.15): 200 wnid folders, labels 0..199 in the 200-class space."""

from dassl.data.datasets import DATASET_REGISTRY

from . import common


@DATASET_REGISTRY.register()
class ImageNetR(common.WnidFolderDataset):
    dataset_dir = "imagenet-rendition"
    image_dir = "imagenet-r"
    LAYOUT = """\
imagenet-rendition/
    imagenet-r/<wnid>/*.jpg          200 wnid folders + the archive's README.txt
    classnames.txt                   a copy of ImageNet's classnames.txt"""
    STANDARD_SIZES = {"classes": 200, "train": 30000, "val": None, "test": 30000}
