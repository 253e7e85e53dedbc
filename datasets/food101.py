"""Food-101: 101 dishes; folder split when no JSON (meta/ is not used)."""

from dassl.data.datasets import DATASET_REGISTRY

from .base import BenchmarkDataset
from .splits import read_and_split_data


@DATASET_REGISTRY.register()
class Food101(BenchmarkDataset):
    dataset_dir = "food-101"
    image_dir = "images"
    split_file = "split_zhou_Food101.json"
    LAYOUT = """\
food-101/
    images/<class_name>/<id>.jpg     101 class folders (apple_pie, ..., waffles)
    split_zhou_Food101.json          the published split (CoOp's Google Drive)
    split_fewshot/                   few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 101, "train": 50500, "val": 20200, "test": 30300}

    def read_raw_split(self):
        return read_and_split_data(self.image_dir, context=self.context)
