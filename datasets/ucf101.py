"""UCF101 middle frames: 101 actions; trainlist01/testlist01 when no JSON."""

import os.path as osp
import re

from dassl.data.datasets import DATASET_REGISTRY

from .annotations import read_annotation_lines
from .base import BenchmarkDataset
from .splits import split_trainval


def renamed_action(action):
    """CamelCase action -> its capitalised pieces joined by "_" (ApplyEyeMakeup -> Apply_Eye_Makeup)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(BenchmarkDataset):
    dataset_dir = "ucf101"
    image_dir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    raw_files = (
        "ucfTrainTestlist/classInd.txt",
        "ucfTrainTestlist/trainlist01.txt",
        "ucfTrainTestlist/testlist01.txt",
    )
    LAYOUT = """\
ucf101/
    UCF-101-midframes/<Action_Name>/v_<Action>_gXX_cYY.jpg
                                         e.g. Apply_Eye_Makeup/v_ApplyEyeMakeup_g08_c01.jpg
    split_zhou_UCF101.json               the published split (CoOp's Google Drive)
    ucfTrainTestlist/classInd.txt        "<1-based id> <Action>" per line; the three lists are
    ucfTrainTestlist/trainlist01.txt     only needed without the split JSON
    ucfTrainTestlist/testlist01.txt
    split_fewshot/                       few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 101, "train": 7639, "val": 1898, "test": 3783}

    def read_raw_split(self):
        classes_file, trainval_file, test_file = self.raw_paths()
        cname2lab = {}
        for lineno, line in read_annotation_lines(classes_file, self.context):
            fields = line.split(" ")
            if len(fields) != 2 or not fields[0].isdigit():
                raise self.context.malformed_line(classes_file, lineno, line, "<1-based id> <Action>")
            cname2lab[fields[1]] = int(fields[0]) - 1
        trainval = self.read_data(cname2lab, trainval_file, classes_file)
        test = self.read_data(cname2lab, test_file, classes_file)
        train, val = split_trainval(trainval, context=self.context, source=trainval_file)
        return train, val, test

    def read_data(self, cname2lab, list_file, classes_file):
        """The class comes from the folder part of "<Action>/v_<...>.avi [id]", never the file name."""
        items = []
        for lineno, line in read_annotation_lines(list_file, self.context):
            parts = line.split()[0].split("/")
            if len(parts) != 2:
                raise self.context.malformed_line(list_file, lineno, line, "<Action>/v_<Action>_gXX_cYY.avi [id]")
            action, filename = parts
            where = f"line {lineno} of {list_file}"
            if action not in cname2lab:
                raise self.context.unknown_class(action, classes_file, "the label of " + where)
            classname = renamed_action(action)
            impath = osp.join(self.image_dir, classname, filename.replace(".avi", ".jpg"))
            items.append(self.context.datum(impath, cname2lab[action], classname, where))
        return items
