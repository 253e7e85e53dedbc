"""Describable Textures: 47 texture folders, folder split when no JSON."""

from dassl.data.datasets import DATASET_REGISTRY

from .base import BenchmarkDataset
from .splits import read_and_split_data


@DATASET_REGISTRY.register()
class DescribableTextures(BenchmarkDataset):
    """Also the home of ``read_and_split_data`` (the folder split), as upstream."""

    dataset_dir = "dtd"
    image_dir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    LAYOUT = """\
dtd/
    images/<category>/<category>_NNNN.jpg    47 category folders (banded, ..., zigzagged)
    split_zhou_DescribableTextures.json      the published split (CoOp's Google Drive)
    split_fewshot/                           few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 47, "train": 2820, "val": 1128, "test": 1692}

    read_and_split_data = staticmethod(read_and_split_data)

    def read_raw_split(self):
        return read_and_split_data(self.image_dir, context=self.context)
