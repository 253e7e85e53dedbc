"""Caltech101: 100 object classes; folder split when no JSON."""

from dassl.data.datasets import DATASET_REGISTRY

from .base import BenchmarkDataset
from .splits import read_and_split_data

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


@DATASET_REGISTRY.register()
class Caltech101(BenchmarkDataset):
    dataset_dir = "caltech-101"
    image_dir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    LAYOUT = """\
caltech-101/
    101_ObjectCategories/<Category>/image_NNNN.jpg   101 categories + BACKGROUND_Google (ignored)
    split_zhou_Caltech101.json                       the published split (CoOp's Google Drive)
    split_fewshot/                                   few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 100, "train": 4128, "val": 1649, "test": 2465}

    def read_raw_split(self):
        return read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES, context=self.context)
