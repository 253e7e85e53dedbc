"""Check prepared benchmark datasets without writing anything into them.

    python -m tools.check_datasets --root DATA                  # all 15
    python -m tools.check_datasets --root DATA caltech101 ImageNet --verify-images

For each dataset (registered names and yaml names are both accepted) it reports:
- ``[ok]``: found, loads, and the class/train/val/test counts equal the standard split's;
- ``[missing]``: ``DATA/<dataset_dir>`` does not exist, with the expected layout;
- ``[problem]``: the loader's error (missing or malformed file, with the expected layout), a
  missing published split JSON, counts that differ from the standard ones, few-shot caches
  that are stale or refer to missing images, or (``--verify-images``) images that cannot be
  decoded.
Every problem comes with what to fix. The exit status is 0 when every dataset is ok, 1 otherwise.

Read-only: the loaders run with ``read_only=True`` (no split_fewshot/, no split JSON, no
preprocessed.pkl, no few-shot cache is written); a missing split JSON is built in memory only
to count it.
"""

import argparse
import contextlib
import glob
import io
import os.path as osp
import sys
import warnings

from yacs.config import CfgNode

from dassl.data.datasets import DatasetLayoutError
from dassl.utils import read_image
from datasets import BENCHMARKS, yaml_name
from datasets.annotations import DOCS
from datasets.base import BenchmarkDataset
from datasets.caches import FEWSHOT_DIRNAME, load_fewshot_cache

COUNT_KEYS = ("classes", "train", "val", "test")
MAX_LISTED = 20


def loader_cfg(root):
    """The keys the loaders read: full split, no few-shot sampling, all classes."""
    cfg = CfgNode()
    cfg.SEED = -1
    cfg.DATASET = CfgNode()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NUM_SHOTS = -1
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    return cfg


def resolve_names(names):
    """Dataset classes for registered or yaml names (case-insensitive); all 15 when empty."""
    lookup = {}
    for dataset_class in BENCHMARKS:
        lookup[dataset_class.__name__.lower()] = dataset_class
        lookup[yaml_name(dataset_class)] = dataset_class
    unknown = [name for name in names if name.lower() not in lookup]
    if unknown:
        raise ValueError(
            "unknown dataset(s) {}; use registered names ({}) or yaml names ({})".format(
                ", ".join(unknown),
                ", ".join(c.__name__ for c in BENCHMARKS),
                ", ".join(yaml_name(c) for c in BENCHMARKS),
            )
        )
    return [lookup[name.lower()] for name in names] or list(BENCHMARKS)


class Report:
    """Outcome for one dataset: "missing", "problem" (any problem listed) or "ok"."""

    def __init__(self, dataset_class, missing=False):
        self.dataset_class = dataset_class
        self.missing = missing
        self.summary = ""
        self.problems = []
        self.notes = []

    @property
    def status(self):
        if self.missing:
            return "missing"
        return "problem" if self.problems else "ok"


def dataset_counts(dataset):
    return {
        "classes": dataset.num_classes,
        "train": len(dataset.train_x),
        "val": None if dataset.val is None else len(dataset.val),
        "test": len(dataset.test),
    }


def format_counts(counts):
    return ", ".join("{} {}".format(key, "-" if counts[key] is None else counts[key]) for key in COUNT_KEYS)


def load_read_only(dataset_class, root, report):
    """Build the dataset without writing; loader warnings become notes. None on error."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = dataset_class(loader_cfg(root), read_only=True)
    except DatasetLayoutError as e:
        report.problems.append(str(e))
        return None
    report.notes += [str(w.message) for w in caught]
    return dataset


def check_counts(dataset_class, counts, report):
    standard = dataset_class.STANDARD_SIZES
    differing = [
        f"{key} {counts[key]} (standard: {standard[key]})" for key in COUNT_KEYS if counts[key] != standard[key]
    ]
    if differing:
        fix = (
            f"the copy is incomplete or another release: compare it with the {dataset_class.__name__} section of {DOCS}"
        )
        if getattr(dataset_class, "split_file", None):
            fix += "; if the split file is not the published one, replace it and delete split_fewshot/"
        report.problems.append("counts differ from the standard split: {}\n  fix: {}".format("; ".join(differing), fix))


def check_fewshot_caches(dataset, report):
    """Every split_fewshot/shot_*-seed_*.pkl must load against the current split."""
    sources = {"train": dataset.train_x}
    if not dataset.VAL_IS_TEST:
        sources["val"] = dataset.val
    for path in sorted(glob.glob(osp.join(dataset.dataset_dir, FEWSHOT_DIRNAME, "shot_*-seed_*.pkl"))):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                load_fewshot_cache(path, sources, dataset.dataset_dir, dataset.context)
        except DatasetLayoutError as e:
            report.problems.append(str(e))


def verify_images(dataset, report):
    """Decode every image of train/val/test once; list the ones that fail."""
    impaths = dict.fromkeys(
        item.impath for items in (dataset.train_x, dataset.val or [], dataset.test) for item in items
    )
    failures = []
    for impath in impaths:
        try:
            read_image(impath)
        except OSError as e:
            failures.append(str(e))
    if failures:
        listed = "\n".join("  " + failure for failure in failures[:MAX_LISTED])
        more = f"\n  ... and {len(failures) - MAX_LISTED} more" if len(failures) > MAX_LISTED else ""
        report.problems.append(
            f"{len(failures)} of {len(impaths)} images cannot be decoded:\n{listed}{more}\n  fix: "
            "download and extract these files "
            "again"
        )


def check_dataset(dataset_class, root, verify=False):
    """Check one dataset under ``root`` (read-only) and return its Report."""
    dataset_dir = osp.join(root, dataset_class.dataset_dir)
    if not osp.isdir(dataset_dir):
        report = Report(dataset_class, missing=True)
        report.summary = f"{dataset_dir} not found"
        layout = "\n".join("    " + line for line in dataset_class.LAYOUT.splitlines())
        report.notes.append(
            f"fix: prepare it as described in the {dataset_class.__name__} section of {DOCS}; expected "
            f"layout:\n{layout}"
        )
        return report

    report = Report(dataset_class)
    report.summary = f"({dataset_class.dataset_dir}/)"
    split_file = getattr(dataset_class, "split_file", None)
    if split_file and not osp.exists(osp.join(dataset_dir, split_file)):
        report.problems.append(
            f"{split_file} is missing: training would create a new random split instead of the published "
            f"one\n  fix: download {split_file} (CoOp's Google Drive, see {DOCS}) into {dataset_dir}"
        )
    dataset = load_read_only(dataset_class, root, report)
    if dataset is None:
        return report
    counts = dataset_counts(dataset)
    report.summary += " " + format_counts(counts)
    check_counts(dataset_class, counts, report)
    if isinstance(dataset, BenchmarkDataset) and osp.isdir(osp.join(dataset_dir, FEWSHOT_DIRNAME)):
        check_fewshot_caches(dataset, report)
    if verify:
        verify_images(dataset, report)
    return report


def print_report(report):
    tag = f"[{report.status}]"
    print(f"{tag:<10} {report.dataset_class.__name__} {report.summary}")
    for text in report.problems + report.notes:
        for line in text.splitlines():
            print(" " * 11 + line)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tools.check_datasets",
        description="Check the benchmark datasets under DATA (read-only). Exit status 1 when a "
        "dataset is missing or wrong.",
    )
    parser.add_argument("--root", required=True, help="the DATASET.ROOT folder (DATA)")
    parser.add_argument("names", nargs="*", help="registered or yaml names (default: all 15)")
    parser.add_argument("--verify-images", action="store_true", help="decode every image and list the failures (slow)")
    args = parser.parse_args(argv)
    try:
        dataset_classes = resolve_names(args.names)
    except ValueError as e:
        parser.error(str(e))

    root = osp.abspath(osp.expanduser(args.root))
    if not osp.isdir(root):
        print(f"DATA folder not found: {root} (--root must point at the folder holding the datasets)")
        return 1
    print(f"Checking {len(dataset_classes)} dataset(s) under {root} (read-only)")
    reports = [check_dataset(dataset_class, root, args.verify_images) for dataset_class in dataset_classes]
    for report in reports:
        print_report(report)
    statuses = [report.status for report in reports]
    print(
        "Summary: {} ok, {} missing, {} with problems".format(
            statuses.count("ok"), statuses.count("missing"), statuses.count("problem")
        )
    )
    return 0 if all(status == "ok" for status in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
