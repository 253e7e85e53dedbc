"""The dataset base classes: the constructor steps of the 11 main datasets, and the test-only
ImageNet variants.

Labels, class names and item order are those of CoOp's loaders for the same files on disk.
"""

import os.path as osp
from collections import Counter

from dassl.data.datasets import DatasetBase
from dassl.utils import listdir_nohidden, mkdir_if_missing

from .annotations import DOCS, open_dataset_dir, read_imagenet_classnames, require_folder, subfolders
from .caches import FEWSHOT_DIRNAME, load_fewshot_cache, save_fewshot_cache
from .splits import check_split_classes, read_split, save_split, subsample_classes


class BenchmarkDataset(DatasetBase):
    """The constructor steps shared by the 11 main datasets, in upstream's order of random draws.

    1. resolve ``<ROOT>/<dataset_dir>`` and create ``split_fewshot/``;
    2. read ``split_file`` or build the split from ``raw_files`` (``read_raw_split``) and save
       it; check its classes;
    3. load the few-shot cache or sample K shots (min(K, 4) for val) and save the cache;
    4. ``subsample_classes`` (base/new);
    5. ``DatasetBase.__init__``.

    Subclasses set the class attributes below and implement ``read_raw_split``. As upstream,
    instances hold ``dataset_dir``, ``image_dir``, ``split_path`` and ``split_fewshot_dir`` as
    absolute paths.

    Args:
        cfg: reads DATASET.ROOT, DATASET.NUM_SHOTS, DATASET.SUBSAMPLE_CLASSES and SEED.
        read_only (bool): write nothing (no split_fewshot/, no split JSON, no cache): a missing
            split is built in memory. Used by ``tools.check_datasets``.
    """

    dataset_dir = ""  # folder under DATASET.ROOT
    image_dir = ""  # folder the split file's paths are relative to ("" = the dataset folder)
    image_folders = None  # image folders that must exist (None: just image_dir)
    split_file = None  # "split_zhou_<Name>.json"; None: the raw files are the split
    raw_files = ()  # files the split is built from when split_file is absent
    IMAGE_DIR_FIX = f"extract the image archive there (see {DOCS})"
    VAL_IS_TEST = False  # ImageNet: val = test, and few-shot caches hold only "train"
    LAYOUT = ""  # expected layout listing (errors and docs)
    STANDARD_SIZES = {}  # classes/train/val/test of the standard split (the table in docs/datasets.md)

    def __init__(self, cfg, read_only=False):
        self.read_only = read_only
        cls = type(self)
        self.context = open_dataset_dir(cfg, cls.dataset_dir, cls.__name__, cls.LAYOUT)
        self.dataset_dir = self.context.dataset_dir
        self.image_dir = osp.join(self.dataset_dir, cls.image_dir) if cls.image_dir else self.dataset_dir
        for folder in cls.image_folders or (cls.image_dir,):
            require_folder(osp.join(self.dataset_dir, folder), self.context, "the images", cls.IMAGE_DIR_FIX)
        self.split_path = osp.join(self.dataset_dir, cls.split_file) if cls.split_file else None
        self.split_fewshot_dir = osp.join(self.dataset_dir, FEWSHOT_DIRNAME)
        if not read_only:
            self._make_fewshot_dir()

        (train, val, test), source = self.load_split()
        splits = {"train": train, "val": val, "test": test}
        check_split_classes({k: v for k, v in splits.items() if v is not None}, source, self.context)

        sources = {"train": train} if self.VAL_IS_TEST else {"train": train, "val": val}
        sampled = self.sample_few_shots(cfg, sources)
        subsample = cfg.DATASET.SUBSAMPLE_CLASSES
        if self.VAL_IS_TEST:
            train, test = subsample_classes(sampled["train"], test, subsample=subsample)
            val = test
        else:
            train, val, test = subsample_classes(sampled["train"], sampled["val"], test, subsample=subsample)
        super().__init__(train_x=train, val=val, test=test)

    def _make_fewshot_dir(self):
        try:
            mkdir_if_missing(self.split_fewshot_dir)
        except OSError as e:
            raise self.context.error(
                f"cannot create the few-shot cache folder ({e})",
                self.split_fewshot_dir,
                "few-shot caches",
                fix="the dataset folder must be writable",
            ) from None
        if not osp.isdir(self.split_fewshot_dir):
            raise self.context.error(
                "the few-shot cache folder is not a folder",
                self.split_fewshot_dir,
                "few-shot caches",
                fix="remove the file of that name",
            )

    def split_prefix(self):
        """The folder the split file's relative paths start from."""
        return self.image_dir

    def raw_paths(self):
        return [osp.join(self.dataset_dir, name) for name in self.raw_files]

    def read_raw_split(self):
        """Build (train, val, test) from the raw annotation files or class folders."""
        raise NotImplementedError

    def load_split(self):
        """Return ((train, val, test), source): the split, and the path(s) it was read from."""
        missing = [path for path in self.raw_paths() if not osp.exists(path)]
        if self.split_path is None:
            if missing:
                raise self.context.error(
                    "annotation files not found",
                    missing,
                    "the train/val/test split",
                    fix=f"extract the complete archive (see {DOCS})",
                )
            return self.read_raw_split(), self.raw_paths()
        if osp.exists(self.split_path):
            return read_split(self.split_path, self.split_prefix(), self.context), self.split_path
        if missing:
            raise self.context.error(
                f"neither {type(self).split_file} nor the raw files to create it were found (either is required)",
                [self.split_path] + missing,
                "the train/val/test split",
                fix=f"download {type(self).split_file} (CoOp's Google Drive, see {DOCS}) into "
                f"{self.dataset_dir}, or add the missing raw "
                "files listed above",
            )
        splits = self.read_raw_split()
        if not self.read_only:
            save_split(*splits, self.split_path, self.split_prefix(), self.context)
        return splits, self.raw_paths() or self.image_dir

    def sample_few_shots(self, cfg, sources):
        """Few-shot train (K per class) and val (min(K, 4)), from the cache when it exists."""
        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots < 1:
            return sources
        report_short_classes(sources["train"], num_shots)
        path = osp.join(self.split_fewshot_dir, f"shot_{num_shots}-seed_{cfg.SEED}.pkl")
        if osp.exists(path):
            print(f"Loading preprocessed few-shot data from {path}")
            return load_fewshot_cache(path, sources, self.dataset_dir, self.context)
        shots = {"train": num_shots, "val": min(num_shots, 4)}
        sampled = {key: self.generate_fewshot_dataset(items, num_shots=shots[key]) for key, items in sources.items()}
        if not self.read_only:
            print(f"Saving preprocessed few-shot data to {path}")
            save_fewshot_cache(path, sampled, sources, self.dataset_dir, self.context)
        return sampled


def report_short_classes(train, num_shots):
    """Say once (one line) when classes have fewer training items than ``num_shots``.

    Such a class keeps all of its items (as upstream: no repetition), so the run trains on
    fewer than ``num_shots`` per class there.
    """
    counts = Counter(item.label for item in train)
    short = [count for count in counts.values() if count < num_shots]
    if short:
        print(
            f"Warning: DATASET.NUM_SHOTS is {num_shots}, but {len(short)} of {len(counts)} classes have fewer "
            f"training items (smallest: {min(short)}); they keep all of their items"
        )


class ImageNetVariant(DatasetBase):
    """A test-only ImageNet variant: train_x = test = every image, no val, nothing written.

    Subclasses set ``dataset_dir``, ``image_dir``, ``LAYOUT``, ``STANDARD_SIZES`` and implement
    ``read_data(classnames)``. ``read_only`` is accepted for the interface that
    ``tools.check_datasets`` uses; the variants never write.
    """

    dataset_dir = ""
    image_dir = ""
    IMAGE_DIR_FIX = f"extract the archive there (see {DOCS})"
    LAYOUT = ""
    STANDARD_SIZES = {}

    def __init__(self, cfg, read_only=False):
        self.read_only = read_only
        cls = type(self)
        self.context = open_dataset_dir(cfg, cls.dataset_dir, cls.__name__, cls.LAYOUT)
        self.dataset_dir = self.context.dataset_dir
        self.image_dir = osp.join(self.dataset_dir, cls.image_dir)
        require_folder(
            self.image_dir,
            self.context,
            f"the images (expected folder name: {cls.image_dir}/)",
            cls.IMAGE_DIR_FIX,
        )
        classnames = read_imagenet_classnames(osp.join(self.dataset_dir, "classnames.txt"), self.context)
        data = self.read_data(classnames)
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames):
        raise NotImplementedError

    def read_class_folder(self, folder, label, classname):
        """Datum for every non-hidden file of one class folder, which must not be empty."""
        names = listdir_nohidden(folder)
        if not names:
            raise self.context.error(
                "empty class folder",
                folder,
                f"the images of class {classname!r}",
                fix=f"extract the archive again (see {DOCS})",
            )
        where = f"class folder {folder}"
        return [self.context.datum(osp.join(folder, name), label, classname, where) for name in names]


class WnidFolderDataset(ImageNetVariant):
    """ImageNet-Sketch/-A/-R: label = index of the sorted wnid folders, name from classnames.txt.

    Only folders count as classes (so the A/R archives' README.txt is left out); a folder
    absent from classnames.txt is an error.
    """

    def read_data(self, classnames):
        folders = subfolders(self.image_dir)
        items = []
        for label, folder in enumerate(folders):
            if folder not in classnames:
                raise self.context.unknown_class(
                    folder,
                    osp.join(self.dataset_dir, "classnames.txt"),
                    f"the class name of folder {osp.join(self.image_dir, folder)}",
                )
            items += self.read_class_folder(osp.join(self.image_dir, folder), label, classnames[folder])
        return items
