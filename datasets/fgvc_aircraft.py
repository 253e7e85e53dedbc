"""FGVC-Aircraft 2013b: 100 variants; the official lists are the split."""

import os.path as osp

from dassl.data.datasets import DATASET_REGISTRY

from .annotations import read_annotation_lines
from .base import BenchmarkDataset


@DATASET_REGISTRY.register()
class FGVCAircraft(BenchmarkDataset):
    dataset_dir = "fgvc_aircraft"
    image_dir = "images"
    raw_files = (
        "variants.txt",
        "images_variant_train.txt",
        "images_variant_val.txt",
        "images_variant_test.txt",
    )
    LAYOUT = """\
fgvc_aircraft/                       the data/ folder of fgvc-aircraft-2013b, renamed
    images/<7-digit id>.jpg
    variants.txt                     one variant name per line (100 lines)
    images_variant_train.txt         "<image id> <variant name>" per line
    images_variant_val.txt           same format
    images_variant_test.txt          same format
    split_fewshot/                   few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 100, "train": 3334, "val": 3333, "test": 3333}

    def read_raw_split(self):
        variants_file, *split_files = self.raw_paths()
        variants = [line for _, line in read_annotation_lines(variants_file, self.context)]
        cname2lab = {name: label for label, name in enumerate(variants)}
        return tuple(self.read_data(cname2lab, split_file, variants_file) for split_file in split_files)

    def read_data(self, cname2lab, split_file, variants_file):
        """Lines "<id> <variant>", split at the first space; ids keep their leading zeros."""
        items = []
        for lineno, line in read_annotation_lines(split_file, self.context):
            image_id, _, classname = line.partition(" ")
            if not classname:
                raise self.context.malformed_line(split_file, lineno, line, "<image id> <variant name>")
            where = f"line {lineno} of {split_file}"
            if classname not in cname2lab:
                raise self.context.unknown_class(classname, variants_file, "the label of " + where)
            impath = osp.join(self.image_dir, image_id + ".jpg")
            items.append(self.context.datum(impath, cname2lab[classname], classname, where))
        return items
