"""Split files and the split algorithms, with CoOp's semantics, printed lines and random draws.

- ``read_split`` / ``save_split``: ``split_zhou_<Name>.json``, entries
  ``[path relative to the image folder, label, classname]``.
- ``split_trainval``: 80/20 train/val per class (Pets, Cars, SUN397, UCF101).
- ``read_and_split_data``: 50/20/30 train/val/test per class folder (DTD, Food101, Caltech,
  EuroSAT); ``shuffle_and_cut`` is its per-class step, also used by Flowers.
- ``subsample_classes``: the base (first ceil(n/2) labels) or new half, relabelled from 0.
- ``check_split_classes``: labels and class names consistent across the splits.

The algorithms draw from the global ``random`` module, in upstream's order, so that a seed gives
the split CoOp's code gives. ``OxfordPets`` and ``DescribableTextures`` expose the first five as
static methods under the upstream names.
"""

import math
import os.path as osp
import random
from collections import defaultdict

from dassl.data.datasets import Datum
from dassl.utils import listdir_nohidden, read_json, write_json

from .annotations import DOCS, UNNAMED

SPLIT_KEYS = ("train", "val", "test")
SUBSAMPLE_CHOICES = ("all", "base", "new")


def read_split(filepath, path_prefix, context=None):
    """Read ``split_zhou_<Name>.json``: (train, val, test) lists of Datum, in file order.

    Each entry ``[relative_path, label, classname]`` becomes
    ``Datum(join(path_prefix, relative_path), int(label), classname)``; other keys are ignored.
    """
    context = context or UNNAMED
    print(f"Reading split from {filepath}")
    try:
        split = read_json(filepath)
    except (OSError, ValueError) as e:
        raise context.error(f"cannot read the split file ({e})", filepath, "the train/val/test split") from None
    if not isinstance(split, dict):
        raise context.error(
            f"the split file holds a {type(split).__name__}, expected an object",
            filepath,
            "the train/val/test split",
            fix='it must be {"train": [...], "val": [...], "test": [...]}',
        )
    return tuple(_split_entries(split, key, filepath, path_prefix, context) for key in SPLIT_KEYS)


def _split_entries(split, key, filepath, path_prefix, context):
    if not isinstance(split.get(key), list):
        raise context.error(
            f'the split file has no list under the key "{key}"',
            filepath,
            "the train/val/test split",
            fix=f"delete it to have it created again, or download the published file (see {DOCS})",
        )
    items = []
    for index, entry in enumerate(split[key]):
        where = f'entry {index} of "{key}" in {filepath}'
        try:
            relpath, label, classname = entry
            label = int(label)
            impath = osp.join(path_prefix, relpath)
        except (TypeError, ValueError):
            raise context.error(
                f"malformed split entry {entry!r}",
                filepath,
                where,
                fix="entries must read [relative_image_path, integer label, class name]",
            ) from None
        items.append(context.datum(impath, label, classname, where))
    return items


def save_split(train, val, test, filepath, path_prefix, context=None):
    """Write the split JSON: ``[impath without path_prefix, label, classname]`` per item."""

    def to_entry(item):
        impath = item.impath
        if impath.startswith(path_prefix):
            impath = impath[len(path_prefix) :]
        if impath.startswith("/"):
            impath = impath[1:]
        return [impath, item.label, item.classname]

    split = {key: [to_entry(item) for item in items] for key, items in zip(SPLIT_KEYS, (train, val, test))}
    try:
        write_json(split, filepath)
    except OSError as e:
        raise (context or UNNAMED).error(
            f"cannot write the split file ({e})",
            filepath,
            "saving the split created from the raw files",
            fix="the dataset folder must be writable",
        ) from None
    print(f"Saved split to {filepath}")


def _smallest_valid_count(is_valid):
    """The smallest class size accepted by ``is_valid(n)`` (None if none up to 1000)."""
    return next((n for n in range(1, 1001) if is_valid(n)), None)


def split_trainval(trainval, p_val=0.2, context=None, source=None):
    """Per label (first-appearance order): shuffle, first round(p_val * n) to val, rest to train.

    Uses the global ``random`` state. Every class needs round(p_val * n) >= 1 items in val.
    """
    p_trn = 1 - p_val
    print(f"Splitting trainval into {p_trn:.0%} train and {p_val:.0%} val")
    indices_by_label = defaultdict(list)
    for index, item in enumerate(trainval):
        indices_by_label[item.label].append(index)

    for label, indices in indices_by_label.items():
        if round(len(indices) * p_val) < 1:
            minimum = _smallest_valid_count(lambda n: round(n * p_val) >= 1)
            raise (context or UNNAMED).error(
                f"class {label} ({trainval[indices[0]].classname!r}) has {len(indices)} trainval items; "
                f"splitting off {p_val:.0%} for val needs at "
                f"least {minimum}",
                source or "the trainval list",
                "creating the train/val split",
                fix="use the complete annotation files, or the published split JSON",
            )

    train, val = [], []
    for indices in indices_by_label.values():
        n_val = round(len(indices) * p_val)
        random.shuffle(indices)
        for rank, index in enumerate(indices):
            (val if rank < n_val else train).append(trainval[index])
    return train, val


def _three_way_sizes(n, p_trn, p_val):
    n_train = round(n * p_trn)
    n_val = round(n * p_val)
    return n_train, n_val, n - n_train - n_val


def shuffle_and_cut(impaths, p_trn, p_val, context, what, source):
    """Shuffle one class's images (global ``random``) and cut them into train/val/test parts.

    Sizes: round(p_trn * n), round(p_val * n) and the rest; all three must be > 0.
    ``what`` names the class and ``source`` the file or folder it comes from (for errors).
    """
    sizes = _three_way_sizes(len(impaths), p_trn, p_val)
    if min(sizes) < 1:
        minimum = _smallest_valid_count(lambda n: min(_three_way_sizes(n, p_trn, p_val)) >= 1)
        raise context.error(
            f"{what} has {len(impaths)} images; the {p_trn:.0%}/{p_val:.0%}/{1 - p_trn - p_val:.0%} "
            f"train/val/test split needs at least {minimum} "
            "per class",
            source,
            "creating the train/val/test split",
            fix="use the complete image archive, or the published split JSON",
        )
    random.shuffle(impaths)
    n_train, n_val, _ = sizes
    return impaths[:n_train], impaths[n_train : n_train + n_val], impaths[n_train + n_val :]


def read_and_split_data(image_dir, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None, context=None):
    """Folder split (algorithm A): one class per sub-folder of ``image_dir``.

    Classes are the sorted (case-sensitive) non-hidden folder names minus ``ignored``; the label
    is the index in that order and ``new_cnames`` renames afterwards. Each class's files, in
    listing order, are shuffled with the global ``random`` and cut 50/20/30.
    Returns (train, val, test), grouped by class in label order.
    """
    context = context or UNNAMED
    categories = sorted(c for c in listdir_nohidden(image_dir) if c not in ignored)
    p_tst = 1 - p_trn - p_val
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {p_tst:.0%} test")

    train, val, test = [], [], []
    for label, category in enumerate(categories):
        category_dir = osp.join(image_dir, category)
        if not osp.isdir(category_dir):
            raise context.error(
                "the image folder holds a file where only class folders are expected",
                category_dir,
                "creating the split from the class folders",
                fix=f"move the file out of {image_dir}",
            )
        images = [osp.join(category_dir, name) for name in listdir_nohidden(category_dir)]
        parts = shuffle_and_cut(images, p_trn, p_val, context, f"class folder {category!r}", category_dir)
        classname = new_cnames.get(category, category) if new_cnames else category
        for items, impaths in zip((train, val, test), parts):
            where = f"class folder {category_dir}"
            items.extend(context.datum(impath, label, classname, where) for impath in impaths)
    return train, val, test


def subsample_classes(*args, subsample="all"):
    """Keep the base (first ceil(n/2)) or new (other) labels of ``args[0]``, relabelled 0..k-1.

    ``"all"`` returns ``args`` unchanged (a tuple); otherwise a list of rebuilt lists.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(
            "DATASET.SUBSAMPLE_CLASSES must be one of {}, got {!r}".format(", ".join(SUBSAMPLE_CHOICES), subsample)
        )
    if subsample == "all":
        return args

    labels = sorted({item.label for item in args[0]})
    m = math.ceil(len(labels) / 2)
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabeler = {label: new_label for new_label, label in enumerate(selected)}
    return [
        [
            Datum(impath=item.impath, label=relabeler[item.label], classname=item.classname)
            for item in items
            if item.label in relabeler
        ]
        for items in args
    ]


def check_split_classes(splits, source, context):
    """Check the split is consistent before anything is sampled from it.

    ``splits`` maps split keys ("train" first) to lists of Datum. Each label must have one class
    name, train must hold every label 0..max, and every split the same labels as train;
    otherwise class names and prompts no longer line up with the labels.
    """
    names = {}
    for key, items in splits.items():
        for item in items:
            known = names.setdefault(item.label, item.classname)
            if known != item.classname:
                raise context.error(
                    f'label {item.label} has two class names: {known!r} and {item.classname!r} (in "{key}")',
                    source,
                    "mapping labels to class names",
                )
    train_labels = {item.label for item in splits["train"]}
    absent = sorted(set(range(max(train_labels, default=-1) + 1)) - train_labels)
    negative = sorted(label for label in train_labels if label < 0)
    if not train_labels:
        problem = "the train split is empty"
    elif absent:
        problem = f"the train split has no item of label(s) {absent[:10]}"
    elif negative:
        problem = f"the train split has negative labels {negative[:10]}"
    else:
        problem = None
    if problem:
        raise context.error(problem, source, "the class list (labels must run 0..n-1, every class in train)")
    for key, items in splits.items():
        labels = {item.label for item in items}
        if labels != train_labels:
            raise context.error(
                f'"{key}" has {len(labels)} classes but "train" has {len(train_labels)} (labels only in '
                f"train: {sorted(train_labels - labels)[:10]}; only in {key}: "
                f"{sorted(labels - train_labels)[:10]})",
                source,
                "the class list (every split must hold the same classes)",
            )
