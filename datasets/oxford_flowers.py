"""Oxford Flowers-102: labels from imagelabels.mat, names from cat_to_name.json."""

import os.path as osp
from collections import defaultdict

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import read_json

from .annotations import load_mat_row
from .base import BenchmarkDataset
from .splits import shuffle_and_cut

LABELS_SHAPE = "shape (1, N): the 1-based label of image_{i+1:05d}.jpg at index i"


@DATASET_REGISTRY.register()
class OxfordFlowers(BenchmarkDataset):
    dataset_dir = "oxford_flowers"
    image_dir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    raw_files = ("imagelabels.mat", "cat_to_name.json")
    LAYOUT = """\
oxford_flowers/
    jpg/image_NNNNN.jpg                  image_00001.jpg ... image_08189.jpg
    imagelabels.mat                      key "labels", shape (1, 8189), values 1..102
    cat_to_name.json                     {"1": "pink primrose", ...} (CoOp's Google Drive)
    split_zhou_OxfordFlowers.json        the published split (CoOp's Google Drive)
    split_fewshot/                       few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 102, "train": 4093, "val": 1633, "test": 2463}

    def read_raw_split(self):
        """Algorithm C: per label (first-appearance order) shuffle and cut 50/20/30."""
        label_file, names_file = self.raw_paths()
        labels = load_mat_row(label_file, "labels", self.context, LABELS_SHAPE)
        cat_to_name = self.read_cat_to_name(names_file)
        impaths_by_label = defaultdict(list)
        for index, label in enumerate(labels):
            impaths_by_label[int(label)].append(osp.join(self.image_dir, f"image_{index + 1:05d}.jpg"))

        print("Splitting data into 50% train, 20% val, and 30% test")
        train, val, test = [], [], []
        for label, impaths in impaths_by_label.items():
            if str(label) not in cat_to_name:
                raise self.context.unknown_class(
                    str(label), names_file, f"the class name of label {label} in {label_file}"
                )
            classname = cat_to_name[str(label)]
            parts = shuffle_and_cut(impaths, 0.5, 0.2, self.context, f"label {label} ({classname!r})", label_file)
            where = f"label {label} in {label_file}"
            for items, part in zip((train, val, test), parts):
                items.extend(self.context.datum(impath, label - 1, classname, where) for impath in part)
        return train, val, test

    def read_cat_to_name(self, names_file):
        try:
            cat_to_name = read_json(names_file)
        except (OSError, ValueError) as e:
            raise self.context.error(f"cannot read cat_to_name.json ({e})", names_file, "the class names") from None
        if not isinstance(cat_to_name, dict):
            raise self.context.error(
                "cat_to_name.json must hold an object mapping labels to names", names_file, "the class names"
            )
        return cat_to_name
