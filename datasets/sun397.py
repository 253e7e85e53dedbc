"""SUN397: 397 scene classes; fold 01 of Partitions.zip when no JSON."""

import os.path as osp
import posixpath

from dassl.data.datasets import DATASET_REGISTRY

from .annotations import read_annotation_lines
from .base import BenchmarkDataset
from .splits import split_trainval


@DATASET_REGISTRY.register()
class SUN397(BenchmarkDataset):
    dataset_dir = "sun397"
    image_dir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    raw_files = ("ClassName.txt", "Training_01.txt", "Testing_01.txt")
    LAYOUT = """\
sun397/
    SUN397/<letter>/<category>[/<subcategory>]/sun_<hash>.jpg
    ClassName.txt                    "/a/abbey" per line (397 lines, from Partitions.zip)
    Training_01.txt                  "/a/abbey/sun_<hash>.jpg" per line (from Partitions.zip)
    Testing_01.txt                   same format
    split_zhou_SUN397.json           the published split (CoOp's Google Drive)
    split_fewshot/                   few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 397, "train": 15880, "val": 3970, "test": 19850}

    def read_raw_split(self):
        classes_file, trainval_file, test_file = self.raw_paths()
        cname2lab = {}
        for lineno, line in read_annotation_lines(classes_file, self.context):
            key = line[1:] if line.startswith("/") else line
            if len(key.split("/")) < 2:
                raise self.context.malformed_line(classes_file, lineno, line, "/<letter>/<category>[/<subcategory>]")
            cname2lab[key] = len(cname2lab)
        trainval = self.read_data(cname2lab, trainval_file, classes_file)
        test = self.read_data(cname2lab, test_file, classes_file)
        train, val = split_trainval(trainval, context=self.context, source=trainval_file)
        return train, val, test

    def read_data(self, cname2lab, text_file, classes_file):
        """Class key = folder of the image path; name = its parts after the letter, reversed."""
        items = []
        for lineno, line in read_annotation_lines(text_file, self.context):
            relpath = line[1:] if line.startswith("/") else line
            class_key = posixpath.dirname(relpath)
            where = f"line {lineno} of {text_file}"
            if class_key not in cname2lab:
                raise self.context.unknown_class(class_key, classes_file, "the label of " + where)
            classname = " ".join(class_key.split("/")[1:][::-1])
            impath = osp.join(self.image_dir, relpath)
            items.append(self.context.datum(impath, cname2lab[class_key], classname, where))
        return items
