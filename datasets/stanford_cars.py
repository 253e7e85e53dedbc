"""Stanford Cars: 196 models; split paths are relative to the dataset folder."""

import os.path as osp

from dassl.data.datasets import DATASET_REGISTRY

from .annotations import load_mat_row
from .base import BenchmarkDataset
from .splits import split_trainval

ANNOTATIONS_SHAPE = '1xN struct array with the fields "fname" and "class"'
CLASS_NAMES_SHAPE = "1xC cell array of class names"


@DATASET_REGISTRY.register()
class StanfordCars(BenchmarkDataset):
    dataset_dir = "stanford_cars"
    image_folders = ("cars_train", "cars_test")
    split_file = "split_zhou_StanfordCars.json"
    raw_files = ("devkit/cars_train_annos.mat", "cars_test_annos_withlabels.mat", "devkit/cars_meta.mat")
    LAYOUT = """\
stanford_cars/
    cars_train/NNNNN.jpg
    cars_test/NNNNN.jpg
    devkit/cars_train_annos.mat          train annotations (from car_devkit.tgz)
    devkit/cars_meta.mat                 class names
    cars_test_annos_withlabels.mat       test annotations, at the top level (not in devkit/)
    split_zhou_StanfordCars.json         the published split (CoOp's Google Drive)
    split_fewshot/                       few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 196, "train": 6509, "val": 1635, "test": 8041}

    def read_raw_split(self):
        train_file, test_file, meta_file = self.raw_paths()
        class_names = load_mat_row(meta_file, "class_names", self.context, CLASS_NAMES_SHAPE)
        trainval = self.read_data("cars_train", train_file, class_names, meta_file)
        test = self.read_data("cars_test", test_file, class_names, meta_file)
        train, val = split_trainval(trainval, context=self.context, source=train_file)
        return train, val, test

    def read_data(self, image_folder, anno_file, class_names, meta_file):
        """Items of one annotation .mat: label = class - 1, year moved to the front of the name."""
        annotations = load_mat_row(anno_file, "annotations", self.context, ANNOTATIONS_SHAPE)
        if not {"fname", "class"} <= set(annotations.dtype.names or ()):
            raise self.context.error(
                f'key "annotations" lacks the fields "fname"/"class"; expected {ANNOTATIONS_SHAPE}',
                anno_file,
                "reading the annotations",
            )
        items = []
        for index, annotation in enumerate(annotations):
            where = f"annotations[0][{index}] of {anno_file}"
            try:
                imname = str(annotation["fname"][0])
                label = int(annotation["class"][0, 0]) - 1
            except (IndexError, TypeError, ValueError):
                raise self.context.error(
                    f"malformed annotation: {annotation!r}",
                    anno_file,
                    where,
                    fix=f"expected {ANNOTATIONS_SHAPE}",
                ) from None
            if not 0 <= label < len(class_names):
                raise self.context.unknown_class(f"class id {label + 1}", meta_file, f"the class name of {where}")
            *name, year = str(class_names[label][0]).split(" ")
            classname = " ".join([year] + name)
            impath = osp.join(self.dataset_dir, image_folder, imname)
            items.append(self.context.datum(impath, label, classname, where))
        return items

    def split_prefix(self):
        return self.dataset_dir
