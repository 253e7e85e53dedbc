"""ImageNet-Sketch: 1000 wnid folders of sketches, test only."""

from dassl.data.datasets import DATASET_REGISTRY

from .annotations import DOCS
from .base import WnidFolderDataset


@DATASET_REGISTRY.register()
class ImageNetSketch(WnidFolderDataset):
    dataset_dir = "imagenet-sketch"
    image_dir = "images"
    IMAGE_DIR_FIX = f"the ImageNet-Sketch archive unpacks to a folder named sketch/: rename it to images/ (see {DOCS})"
    LAYOUT = """\
imagenet-sketch/
    images/<wnid>/*.JPEG             1000 wnid folders (the archive's sketch/ folder, renamed)
    classnames.txt                   a copy of ImageNet's classnames.txt"""
    STANDARD_SIZES = {"classes": 1000, "train": 50889, "val": None, "test": 50889}
