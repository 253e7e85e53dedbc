"""ImageNet: train/val wnid folders, cached in preprocessed.pkl; val = test."""

import os
import os.path as osp

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import listdir_nohidden
from dassl.utils.safe_unpickle import RefusedGlobalError

from .annotations import DOCS, read_imagenet_classnames
from .base import BenchmarkDataset
from .caches import read_item_cache, rebase_item_lists, refused_cache_problem, write_pickle_atomically


@DATASET_REGISTRY.register()
class ImageNet(BenchmarkDataset):
    """ImageNet's val set is the test set and also serves as val (``best_val`` selects on test).

    The few-shot cache holds only "train"; base/new subsamples (train, test).
    """

    dataset_dir = "imagenet"
    image_dir = "images"
    image_folders = ("images/train", "images/val")
    VAL_IS_TEST = True
    LAYOUT = """\
imagenet/
    images/train/<wnid>/*.JPEG       1000 wnid folders (n01440764, ...)
    images/val/<wnid>/*.JPEG         the same 1000 wnid folders: val sorted into class folders
    classnames.txt                   "<wnid> <class name>" per line (CoOp's Google Drive)
    preprocessed.pkl                 written by the loader on first use
    split_fewshot/                   few-shot caches, written by the loader"""
    STANDARD_SIZES = {"classes": 1000, "train": 1281167, "val": 50000, "test": 50000}

    read_classnames = staticmethod(read_imagenet_classnames)

    def load_split(self):
        """(train, None, test) from preprocessed.pkl, or from the folders (then saved there)."""
        self.preprocessed = osp.join(self.dataset_dir, "preprocessed.pkl")
        if osp.exists(self.preprocessed):
            train, test = self.read_preprocessed()
            return (train, None, test), self.preprocessed
        classnames_file = osp.join(self.dataset_dir, "classnames.txt")
        classnames = read_imagenet_classnames(classnames_file, self.context)
        train_folders = self.class_folders("train")
        val_folders = self.class_folders("val")
        self.check_same_wnids(train_folders, val_folders)
        train = self.read_data(classnames, classnames_file, "train", train_folders)
        test = self.read_data(classnames, classnames_file, "val", val_folders)
        if not self.read_only:
            write_pickle_atomically(
                {"train": train, "test": test}, self.preprocessed, self.context, "saving preprocessed.pkl"
            )
        return (train, None, test), [osp.join(self.image_dir, "train"), osp.join(self.image_dir, "val")]

    def read_preprocessed(self):
        """Load preprocessed.pkl (only ``Datum`` records and plain containers are unpickled), its
        paths rebased when the data folder moved.

        Only the first and last entry of each list are checked (speed).
        """
        fix = f"delete {self.preprocessed} (and split_fewshot/) to have it rebuilt from the image folders"
        try:
            data = read_item_cache(self.preprocessed)
            lists = [data["train"], data["test"]]
            old_dir = rebase_item_lists(lists, self.dataset_dir)
            ends = [items[i].impath for items in lists for i in (0, -1)]
        except Exception as e:  # any unpickling or content failure means an unusable file
            problem = (
                refused_cache_problem("preprocessed.pkl", self.preprocessed, e)
                if isinstance(e, RefusedGlobalError)
                else f"cannot use preprocessed.pkl ({e!r})"
            )
            raise self.context.error(problem, self.preprocessed, "the ImageNet item lists", fix) from None
        if old_dir:
            print(f"preprocessed.pkl was written under {old_dir}: its paths are read under {self.dataset_dir}")
        missing = next((path for path in ends if not osp.isfile(path)), None)
        if missing:
            raise self.context.error(
                f"preprocessed.pkl refers to a missing image: {missing}",
                self.preprocessed,
                "the ImageNet item lists",
                fix,
            )
        return lists

    def class_folders(self, split):
        """Sorted wnid folders of images/<split>; loose files there mean an unsorted val set."""
        split_dir = osp.join(self.image_dir, split)
        entries = listdir_nohidden(split_dir, sort=True)
        folders = [name for name in entries if osp.isdir(osp.join(split_dir, name))]
        files = [name for name in entries if name not in folders]
        if files or not folders:
            raise self.context.error(
                "images/{} holds {} files and {} folders (e.g. {}); it must hold only wnid class folders".format(
                    split, len(files), len(folders), (files or ["nothing"])[0]
                ),
                split_dir,
                f"the ImageNet {split} images",
                fix=f"sort the validation images into one folder per wnid (see {DOCS})"
                if split == "val"
                else "extract the train archive and its per-class tar files there",
            )
        return folders

    def check_same_wnids(self, train_folders, val_folders):
        """Labels are folder indices per split, so train and val must hold the same wnids."""
        only_train = sorted(set(train_folders) - set(val_folders))
        only_val = sorted(set(val_folders) - set(train_folders))
        if only_train or only_val:
            raise self.context.error(
                "images/train and images/val hold different wnid folders: only in train "
                f"{only_train[:10]} ({len(only_train)} in "
                f"all), only in val {only_val[:10]} ({len(only_val)} in all)",
                [osp.join(self.image_dir, "train"), osp.join(self.image_dir, "val")],
                "the labels (the index of a wnid among the sorted folders)",
                fix="both folders must hold the same 1000 wnid folders",
            )

    def read_data(self, classnames, classnames_file, split, folders):
        """label = index among the sorted wnid folders; the files of each in listing order."""
        split_dir = osp.join(self.image_dir, split)
        items = []
        for label, folder in enumerate(folders):
            class_dir = osp.join(split_dir, folder)
            if folder not in classnames:
                raise self.context.unknown_class(folder, classnames_file, "the class name of " + class_dir)
            imnames = listdir_nohidden(class_dir)
            if not imnames:
                raise self.context.error("empty class folder", class_dir, f"the ImageNet {split} images")
            where = f"class folder {class_dir}"
            items += [
                self.context.datum(os.path.join(class_dir, name), label, classnames[folder], where) for name in imnames
            ]
        return items
