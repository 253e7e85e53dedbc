"""EuroSAT RGB: 10 land-use classes; folder split when no JSON."""

from dassl.data.datasets import DATASET_REGISTRY

from .base import BenchmarkDataset
from .splits import read_and_split_data

NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(BenchmarkDataset):
    dataset_dir = "eurosat"
    image_dir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    LAYOUT = """\
eurosat/
    2750/<ClassName>/<ClassName>_<n>.jpg    10 class folders (AnnualCrop, ..., SeaLake)
    split_zhou_EuroSAT.json                 the published split (CoOp's Google Drive)
    split_fewshot/                          few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 10, "train": 13500, "val": 5400, "test": 8100}

    def read_raw_split(self):
        return read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES, context=self.context)
