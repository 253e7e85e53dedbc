"""Oxford-IIIT Pets: 37 breeds; trainval/test lists in annotations/."""

import os.path as osp

from dassl.data.datasets import DATASET_REGISTRY

from .annotations import read_annotation_lines
from .base import BenchmarkDataset
from .splits import read_split, save_split, split_trainval, subsample_classes

LINE_FORMAT = "<image_stem> <class_id 1..37> <species 1=cat,2=dog> <breed_id>"


@DATASET_REGISTRY.register()
class OxfordPets(BenchmarkDataset):
    """Also the home of the shared split helpers, as upstream (other code calls them here)."""

    dataset_dir = "oxford_pets"
    image_dir = "images"
    split_file = "split_zhou_OxfordPets.json"
    raw_files = ("annotations/trainval.txt", "annotations/test.txt")
    LAYOUT = """\
oxford_pets/
    images/<Breed>_<n>.jpg           e.g. Abyssinian_100.jpg, american_bulldog_100.jpg
    annotations/trainval.txt         "<image_stem> <class_id> <species> <breed_id>" per line
    annotations/test.txt             same format
    split_zhou_OxfordPets.json       the published split (CoOp's Google Drive)
    split_fewshot/                   few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 37, "train": 2944, "val": 736, "test": 3669}

    read_split = staticmethod(read_split)
    save_split = staticmethod(save_split)
    split_trainval = staticmethod(split_trainval)
    subsample_classes = staticmethod(subsample_classes)

    def read_raw_split(self):
        trainval_file, test_file = self.raw_paths()
        trainval = self.read_data(trainval_file)
        test = self.read_data(test_file)
        train, val = split_trainval(trainval, context=self.context, source=trainval_file)
        return train, val, test

    def read_data(self, annotation_file):
        """Items of one annotation list: label = class_id - 1, classname = lower-case breed."""
        items = []
        for lineno, line in read_annotation_lines(annotation_file, self.context, comment_prefix="#"):
            fields = line.split(" ")
            if len(fields) != 4 or not fields[1].isdigit() or int(fields[1]) < 1 or "_" not in fields[0]:
                raise self.context.malformed_line(annotation_file, lineno, line, LINE_FORMAT)
            stem, class_id = fields[0], int(fields[1])
            breed = stem.rsplit("_", 1)[0].lower()
            impath = osp.join(self.image_dir, stem + ".jpg")
            where = f"line {lineno} of {annotation_file}"
            items.append(self.context.datum(impath, class_id - 1, breed, where))
        return items
