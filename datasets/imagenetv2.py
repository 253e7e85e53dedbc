"""ImageNetV2 matched-frequency: folder "i" holds label i, test only."""

import os.path as osp
import warnings

from dassl.data.datasets import DATASET_REGISTRY

from .annotations import DOCS, subfolders
from .base import ImageNetVariant

NUM_IMAGENET_CLASSES = 1000


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    """Reads the numeric folders that exist, which must be exactly 0..N-1 (N <= lines of
    classnames.txt); upstream's loop over 1000 hard-coded folders fails on partial copies.
    """

    dataset_dir = "imagenetv2"
    image_dir = "imagenetv2-matched-frequency-format-val"
    LAYOUT = """\
imagenetv2/
    imagenetv2-matched-frequency-format-val/<0..999>/<hash>.jpeg    folder name = label
    classnames.txt                   a copy of ImageNet's classnames.txt"""
    STANDARD_SIZES = {"classes": 1000, "train": 10000, "val": None, "test": 10000}

    def read_data(self, classnames):
        """label i <-> folder "i" <-> line i of classnames.txt (file order)."""
        classnames_file = osp.join(self.dataset_dir, "classnames.txt")
        folders = subfolders(self.image_dir)
        for name in folders:
            if not name.isdigit() or str(int(name)) != name:
                raise self.context.error(
                    f"class folder {name!r} is not a label number",
                    osp.join(self.image_dir, name),
                    "the labels (folder name = label)",
                    fix="the image folder must hold only the folders 0..999 of the archive",
                )
        numbers = set(map(int, folders))
        num_classes = max(numbers, default=-1) + 1
        missing = next((i for i in range(num_classes) if i not in numbers), None)
        if not numbers or missing is not None:
            raise self.context.error(
                f"the numeric class folders are not 0..N-1: folder {0 if missing is None else missing} is missing",
                osp.join(self.image_dir, str(0 if missing is None else missing)),
                "the labels (folder name = label)",
                fix=f"extract the complete archive (see {DOCS})",
            )
        names = list(classnames.values())
        if num_classes > len(names):
            raise self.context.unknown_class(
                f"folder {len(names)}",
                classnames_file,
                f"the class name of label {len(names)}",
            )
        if num_classes < NUM_IMAGENET_CLASSES:
            warnings.warn(
                f"ImageNetV2: only the class folders 0..{num_classes - 1} of "
                f"0..{NUM_IMAGENET_CLASSES - 1} exist under {self.image_dir}: loading {num_classes} "
                "classes",
                stacklevel=2,
            )
        items = []
        for label in range(num_classes):
            items += self.read_class_folder(osp.join(self.image_dir, str(label)), label, names[label])
        return items
