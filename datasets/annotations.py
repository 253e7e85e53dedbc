"""Reading a dataset's folders and annotation files, and the errors that name what is wrong.

``DatasetContext`` holds a dataset's registered name, folders and expected layout, and builds
its ``DatasetLayoutError`` messages (problem, full path, what it was needed for, the fix, the
expected layout), so every loader reports problems alike. The readers here (text lists,
ImageNet's classnames.txt, .mat rows) turn what upstream reports as a bare assertion, KeyError
or traceback into such an error.
"""

import os.path as osp
from collections import OrderedDict

from dassl.data.datasets import DatasetLayoutError, Datum
from dassl.utils import listdir_nohidden

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
