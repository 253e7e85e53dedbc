"""What the 15 benchmark datasets share (spec: datasets.md §0, dassl-api.md §6).

- ``DatasetContext``: a dataset's registered name, folders and expected layout; it builds the
  ``DatasetLayoutError`` messages of datasets.md §0.11, so every loader reports problems alike.
- The split helpers with CoOp's semantics, printed lines and order of random draws
  (``read_split``, ``save_split``, ``split_trainval``, ``read_and_split_data``,
  ``subsample_classes``). ``OxfordPets`` and ``DescribableTextures`` expose them as static
  methods under the upstream names.
- Few-shot caches (``split_fewshot/shot_K-seed_S.pkl``): read ours and upstream's, remap paths
  that moved with the data folder, detect caches sampled from another split, write atomically.
- ``BenchmarkDataset``: the constructor steps of dassl-api §6.1 shared by the 11 main datasets;
  ``ImageNetVariant``: the test-only ImageNet variants.

Labels, class names and item order are those of CoOp's loaders for the same files on disk. The
checks added on top only turn what upstream reports as a bare assertion, KeyError or traceback
into a ``DatasetLayoutError`` naming the file and the expected layout.
"""

import hashlib
import math
import os
import os.path as osp
import pickle
import random
import tempfile
from collections import OrderedDict, defaultdict

from dassl.data.datasets import DatasetBase, DatasetLayoutError, Datum
from dassl.utils import listdir_nohidden, mkdir_if_missing, read_json, write_json

SPLIT_KEYS = ("train", "val", "test")
SUBSAMPLE_CHOICES = ("all", "base", "new")
FEWSHOT_DIRNAME = "split_fewshot"
# Keys our few-shot caches add next to upstream's "train"/"val"; upstream code ignores them.
CACHE_DATASET_DIR_KEY = "dataset_dir"
CACHE_FINGERPRINT_KEY = "split_fingerprint"
DOCS = "docs/datasets.md"


class DatasetContext:
    """Identity of the dataset being loaded, used to build its ``DatasetLayoutError`` messages.

    Args:
        name (str): registered dataset name.
        root (str): the resolved ``DATASET.ROOT``.
        dataset_dir (str): ``<root>/<dataset_dir>``.
        layout (str): the loader's expected-layout listing (its ``LAYOUT`` constant).
    """

    def __init__(self, name, root, dataset_dir, layout):
        self.name = name
        self.root = root
        self.dataset_dir = dataset_dir
        self.layout = layout

    def error(self, problem, paths, needed_for=None, fix=None):
        """A ``DatasetLayoutError``: problem, full path(s), purpose, fix, expected layout."""
        lines = [f"{self.name}: {problem}"]
        lines += [f"  path: {path}" for path in ([paths] if isinstance(paths, str) else paths)]
        if needed_for:
            lines.append(f"  needed for: {needed_for}")
        if fix:
            lines.append(f"  fix: {fix}")
        if self.layout:
            lines.append(f"Expected layout under DATASET.ROOT ({self.root}):")
            lines += ["    " + line for line in self.layout.splitlines()]
        return DatasetLayoutError("\n".join(lines))

    def missing_image(self, impath, needed_for):
        return self.error(
            "image file not found",
            impath,
            needed_for,
            fix=f"the image folder is incomplete or from another release: extract the archive again (see {DOCS})",
        )

    def malformed_line(self, path, lineno, line, expected):
        return self.error(
            f"malformed line {lineno}: {line!r}",
            path,
            needed_for="reading the annotations",
            fix=f"each line must read: {expected}",
        )

    def unknown_class(self, name, lookup_file, needed_for):
        return self.error(
            f"class {name!r} has no entry in {osp.basename(lookup_file)}",
            lookup_file,
            needed_for,
            fix=f"use the {osp.basename(lookup_file)} that belongs to this copy of the data",
        )

    def datum(self, impath, label, classname, needed_for):
        """``Datum(impath, label, classname)``; a missing image names ``needed_for``."""
        try:
            return Datum(impath=impath, label=label, classname=classname)
        except FileNotFoundError:
            raise self.missing_image(impath, needed_for) from None


# Used when a helper is called without a dataset (upstream-style calls of the static methods).
UNNAMED = DatasetContext("dataset", root="", dataset_dir="", layout="")


def open_dataset_dir(cfg, dirname, name, layout):
    """Resolve ``<DATASET.ROOT>/<dirname>`` and check both folders exist.

    An empty ROOT resolves to the current folder, as upstream.
    Returns the ``DatasetContext`` of the dataset.
    """
    root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
    context = DatasetContext(name, root, osp.join(root, dirname), layout)
    if not osp.isdir(root):
        raise context.error(
            "DATASET.ROOT does not exist or is not a folder",
            root,
            needed_for=f"locating the dataset folder {dirname}/",
            fix=f"--root / DATASET.ROOT must point at the folder that contains {dirname}/",
        )
    if not osp.isdir(context.dataset_dir):
        raise context.error(
            "dataset folder not found",
            context.dataset_dir,
            needed_for=f"loading {name}",
            fix=f"prepare it as listed below (see {DOCS}), or point --root / DATASET.ROOT at the "
            f"folder that contains {dirname}/",
        )
    return context


def require_folder(path, context, needed_for, fix):
    if not osp.isdir(path):
        raise context.error("folder not found", path, needed_for, fix)


def subfolders(folder):
    """Sorted names of the non-hidden folders in ``folder``."""
    return [name for name in listdir_nohidden(folder, sort=True) if osp.isdir(osp.join(folder, name))]


def read_annotation_lines(path, context, comment_prefix=None):
    """Stripped non-blank lines of a text file as ``(line number, line)`` pairs (1-based).

    Stripping also removes Windows line endings. Lines starting with ``comment_prefix`` are
    skipped. Upstream fails on blank lines, so skipping them changes nothing on valid files.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as e:
        raise context.error(f"cannot read the annotation file ({e})", path, "reading the annotations") from None
    numbered = []
    for lineno, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or (comment_prefix and line.startswith(comment_prefix)):
            continue
        numbered.append((lineno, line))
    return numbered


def read_imagenet_classnames(path, context):
    """``classnames.txt`` as an OrderedDict wnid -> class name, in file order.

    Each line is ``<wnid><space><class name, may contain spaces>``.
    """
    if not osp.isfile(path):
        raise context.error(
            "classnames.txt not found",
            path,
            needed_for="the class names",
            fix=f"copy ImageNet's classnames.txt (CoOp's Google Drive, see {DOCS}) there",
        )
    classnames = OrderedDict()
    for lineno, line in read_annotation_lines(path, context):
        folder, _, name = line.partition(" ")
        if not name:
            raise context.malformed_line(path, lineno, line, "<wnid> <class name>")
        classnames[folder] = name
    return classnames


def load_mat_row(path, key, context, expected):
    """``scipy.io.loadmat(path)[key][0]`` of a (1, N) variable; ``expected`` describes it."""
    try:
        import scipy.io  # here: only Cars and Flowers read .mat files, and scipy is slow to import

        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError, NotImplementedError) as e:
        raise context.error(f"cannot read the .mat file ({e})", path, "reading the annotations") from None
    if key not in mat:
        raise context.error(
            f'the .mat file has no key "{key}"; expected {expected}',
            path,
            "reading the annotations",
        )
    value = mat[key]
    if value.ndim != 2 or value.shape[0] != 1:
        raise context.error(
            f'key "{key}" has shape {value.shape}; expected {expected}',
            path,
            "reading the annotations",
        )
    return value[0]


# --------------------------------------------------------------------------------------------
# Split files and split algorithms (datasets.md §0.2-0.4, §0.6)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Few-shot caches (datasets.md §0.5, dassl-api.md §9.13)
# --------------------------------------------------------------------------------------------


def _relpath_in(impath, folder):
    """``impath`` relative to ``folder`` if it lies inside it, else None."""
    prefix = folder.rstrip(os.sep) + os.sep
    return impath[len(prefix) :] if impath.startswith(prefix) else None


def split_fingerprint(sources, dataset_dir):
    """SHA-256 of the sorted (relative path, label, classname) triples of each source list.

    ``sources`` maps "train"/"val" to the full lists a cache is sampled from. Paths are taken
    relative to ``dataset_dir``, so the fingerprint survives moving the data folder.
    """
    digest = hashlib.sha256()
    for key in sorted(sources):
        triples = sorted(
            f"{_relpath_in(item.impath, dataset_dir) or item.impath}\t{item.label}\t{item.classname}"
            for item in sources[key]
        )
        for triple in triples:
            digest.update(f"{key}\t{triple}\n".encode())
    return digest.hexdigest()


def _locate_cached_image(impath, stored_dir, dataset_dir):
    """Where a cached image is now, and its path relative to the dataset folder (or None).

    Our caches record the dataset folder they were written under, so their paths are rebased
    onto the current one. Upstream caches hold bare absolute paths: a path that still exists is
    used as is; otherwise the part after the last ``<dataset_dir name>`` component whose
    rebased path exists (or just the last one) is rebased.
    """
    for folder in (stored_dir, dataset_dir):
        rel = _relpath_in(impath, folder) if folder else None
        if rel is not None:
            return osp.join(dataset_dir, rel), rel
    parts = impath.replace("\\", "/").split("/")
    starts = [i + 1 for i, part in enumerate(parts) if part == osp.basename(dataset_dir)]
    candidates = ["/".join(parts[start:]) for start in reversed(starts) if start < len(parts)]
    rel = next((c for c in candidates if osp.isfile(osp.join(dataset_dir, c))), None)
    rel = rel or (candidates[0] if candidates else None)
    if osp.isfile(impath) or rel is None:
        return impath, rel
    return osp.join(dataset_dir, rel), rel


def _cache_error(context, problem, path):
    return context.error(
        problem,
        path,
        f"few-shot cache {path}",
        fix=f"delete {osp.basename(path)} (or all of {osp.dirname(path)}/) to have it sampled again",
    )


def load_fewshot_cache(path, sources, dataset_dir, context):
    """Load a few-shot cache and check it against the split it must have been sampled from.

    Args:
        path (str): ``.../split_fewshot/shot_K-seed_S.pkl``.
        sources (dict): "train" (and "val") -> the full lists of the current split.
        dataset_dir (str): the current dataset folder.

    Returns a dict with the same keys as ``sources``: lists of Datum whose paths point into
    ``dataset_dir``. Raises ``DatasetLayoutError`` for an unreadable cache, a missing image or
    a cache sampled from another split.
    """
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except Exception as e:  # any unpickling failure means the same thing: an unusable file
        raise _cache_error(context, f"cannot read the few-shot cache ({e!r})", path) from None
    if not isinstance(data, dict) or any(not isinstance(data.get(key), list) for key in sources):
        raise _cache_error(context, f"not a few-shot cache: expected a dict with the lists {list(sources)}", path)
    fingerprint = data.get(CACHE_FINGERPRINT_KEY)
    if fingerprint is not None and fingerprint != split_fingerprint(sources, dataset_dir):
        raise _cache_error(context, "the few-shot cache was sampled from a different split", path)

    loaded = {}
    for key in sources:
        items, relpaths = [], []
        for index, item in enumerate(data[key]):
            try:
                impath, label, domain, classname = item.impath, item.label, item.domain, item.classname
            except AttributeError:
                raise _cache_error(context, f'entry {index} of "{key}" is not a Datum', path) from None
            new_path, rel = _locate_cached_image(impath, data.get(CACHE_DATASET_DIR_KEY), dataset_dir)
            if not osp.isfile(new_path):
                raise _cache_error(
                    context,
                    f"the few-shot cache refers to a missing image: {new_path} (stored as {impath})",
                    path,
                )
            items.append(Datum(impath=new_path, label=label, domain=domain, classname=classname))
            relpaths.append(rel)
        if fingerprint is None:
            _check_sampled_from(items, relpaths, sources[key], key, dataset_dir, path, context)
        loaded[key] = items
    return loaded


def _check_sampled_from(items, relpaths, source, key, dataset_dir, path, context):
    """Upstream caches carry no fingerprint: every item must belong to the current split."""
    current = {(_relpath_in(item.impath, dataset_dir), item.label, item.classname) for item in source}
    for index, (item, rel) in enumerate(zip(items, relpaths)):
        if (rel, item.label, item.classname) not in current:
            raise _cache_error(
                context,
                f'the few-shot cache was sampled from a different split: entry {index} of "{key}" '
                f"({rel or item.impath}, "
                f"label {item.label}, {item.classname!r}) is not in the current split's {key}",
                path,
            )


def write_pickle_atomically(obj, path, context, needed_for):
    """Pickle ``obj`` (HIGHEST_PROTOCOL) to ``path`` through a temporary file in its folder."""
    folder = osp.dirname(path)
    tmp_path = None
    try:
        fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pkl")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp_path, path)
    except OSError as e:
        if tmp_path and osp.exists(tmp_path):
            os.remove(tmp_path)
        raise context.error(
            f"cannot write into the folder ({e})",
            folder,
            needed_for,
            fix="the dataset folder must be writable",
        ) from None


def save_fewshot_cache(path, data, sources, dataset_dir, context):
    """Write ``data`` ("train"/"val" lists) in upstream's format plus our two extra keys."""
    payload = dict(data)
    payload[CACHE_DATASET_DIR_KEY] = dataset_dir
    payload[CACHE_FINGERPRINT_KEY] = split_fingerprint(sources, dataset_dir)
    write_pickle_atomically(payload, path, context, f"saving the few-shot cache {path}")


# --------------------------------------------------------------------------------------------
# Dataset base classes
# --------------------------------------------------------------------------------------------


class BenchmarkDataset(DatasetBase):
    """The constructor steps of dassl-api §6.1, shared by the 11 main datasets.

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
    STANDARD_SIZES = {}  # classes/train/val/test of the standard split (datasets.md §1)

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
