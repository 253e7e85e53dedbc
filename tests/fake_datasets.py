"""Miniature fake trees of the 15 benchmark datasets, in their real layouts.

    info = build_fake("Caltech101", tmp_path)               # split JSON + raw folders
    info = build_fake("Caltech101", tmp_path, source="raw")  # raw only: the loader creates the JSON
    ds = DATASET_REGISTRY.get(info.name)(make_cfg(tmp_path, info.name))
    assert ds.classnames == info.classnames and len(ds.train_x) == info.counts["train"]

Every image is a tiny valid JPEG at the exact path and extension the loader expects, and the
annotation files use the real formats (.mat via scipy.io.savemat, .txt, .json). The expected
class names (after the dataset's clean-ups) and counts are written out here by hand, not
computed by the loaders' code, so tests compare the loaders against an independent statement.

With ``source="json"`` the split JSON deliberately differs from what the creation algorithm
would give (per class: 2 val items, and for folder datasets 1 test item; the rest is train), so
a test can tell which path the loader took.
"""

import io
import json
import os
import os.path as osp
from dataclasses import dataclass, field

import numpy as np
import scipy.io
from PIL import Image
from yacs.config import CfgNode

FAKE_NAMES = (
    "ImageNet",
    "Caltech101",
    "OxfordPets",
    "StanfordCars",
    "OxfordFlowers",
    "Food101",
    "FGVCAircraft",
    "SUN397",
    "DescribableTextures",
    "EuroSAT",
    "UCF101",
    "ImageNetV2",
    "ImageNetSketch",
    "ImageNetA",
    "ImageNetR",
)
# Datasets with a published split JSON: both the reading and the creation path exist.
SPLIT_JSON_NAMES = (
    "Caltech101",
    "OxfordPets",
    "StanfordCars",
    "OxfordFlowers",
    "Food101",
    "SUN397",
    "DescribableTextures",
    "EuroSAT",
    "UCF101",
)
TEST_ONLY_NAMES = ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")

# The first twelve ImageNet classes (wnid, CLIP's cleaned name), in sorted-wnid order.
IMAGENET_CLASSES = (
    ("n01440764", "tench"),
    ("n01443537", "goldfish"),
    ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"),
    ("n01494475", "hammerhead shark"),
    ("n01496331", "electric ray"),
    ("n01498041", "stingray"),
    ("n01514668", "rooster"),
    ("n01514859", "hen"),
    ("n01518878", "ostrich"),
    ("n01530575", "brambling"),
    ("n01531178", "goldfinch"),
)
TEST_ITEMS_PER_CLASS = 2  # official test-list items per class (Pets, Cars, SUN397, UCF101, ...)


@dataclass
class FakeInfo:
    """What a fake tree holds, for assertions.

    Attributes:
        name: registered dataset name.
        root: the DATASET.ROOT the tree was built under.
        dataset_dir: ``<root>/<dataset_dir>``.
        classnames: expected class names in label order (after the clean-ups).
        counts: expected sizes {"train", "val", "test"} (val None for the test-only variants).
        split_file: path of the split JSON (exists when source == "json"; the loader writes it
            when source == "raw"); None for datasets without one.
        raw_files: the raw annotation files and folders the split can be created from.
        images: every image path written.
    """

    name: str
    root: str
    dataset_dir: str
    classnames: list
    counts: dict
    split_file: str = None
    raw_files: list = field(default_factory=list)
    images: list = field(default_factory=list)


def make_cfg(root, name, num_shots=-1, subsample="all", seed=1):
    """The config keys the dataset loaders read."""
    cfg = CfgNode()
    cfg.SEED = seed
    cfg.DATASET = CfgNode()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    return cfg


def build_fake(name, root, source=None, images_per_class=None, crlf=False):
    """Write the fake tree of dataset ``name`` under ``root`` and describe it.

    Args:
        name: a registered name from FAKE_NAMES.
        root: the DATASET.ROOT folder (created if needed).
        source: "json" (the split JSON plus the raw files) or "raw" (raw files only). Default:
            "json" for SPLIT_JSON_NAMES, "raw" for the others (which only have raw files).
        images_per_class: images per class for folder datasets, trainval (or train) items per
            class for list datasets; default 6 (>= 4 for the 50/20/30 split, >= 3 for 80/20).
        crlf: write text annotation files with Windows line endings.
    Returns:
        FakeInfo.
    """
    if name not in FAKE_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {FAKE_NAMES}")
    source = source or ("json" if name in SPLIT_JSON_NAMES else "raw")
    if source not in ("json", "raw") or (source == "json" and name not in SPLIT_JSON_NAMES):
        raise ValueError(f"{name} has no source {source!r}")
    builder = _Builder(str(root), crlf)
    return _BUILDERS[name](builder, source, images_per_class or 6)


class _Builder:
    """Writes files under root and records the images."""

    _jpeg = None

    def __init__(self, root, crlf):
        self.root = root
        self.crlf = crlf
        self.images = []

    def path(self, *parts):
        return osp.join(self.root, *parts)

    def image(self, *parts):
        if _Builder._jpeg is None:
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8), (200, 40, 90)).save(buffer, format="JPEG")
            _Builder._jpeg = buffer.getvalue()
        path = self.path(*parts)
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(_Builder._jpeg)
        self.images.append(path)
        return path

    def text(self, lines, *parts):
        path = self.path(*parts)
        os.makedirs(osp.dirname(path), exist_ok=True)
        newline = "\r\n" if self.crlf else "\n"
        with open(path, "w", newline="") as f:
            f.write("".join(line + newline for line in lines))
        return path

    def json(self, obj, *parts):
        path = self.path(*parts)
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(obj, f, indent=4, separators=(",", ": "))
        return path

    def info(self, name, dirname, classnames, counts, split_file=None, raw_files=()):
        return FakeInfo(
            name=name,
            root=self.root,
            dataset_dir=self.path(dirname),
            classnames=list(classnames),
            counts=counts,
            split_file=self.path(dirname, split_file) if split_file else None,
            raw_files=[self.path(dirname, raw) for raw in raw_files],
            images=list(self.images),
        )


def _folder_split_counts(n, num_classes):
    """Expected sizes of the 50/20/30 split (Python's round: halves to even)."""
    n_train, n_val = round(0.5 * n), round(0.2 * n)
    n_test = n - n_train - n_val
    return {"train": n_train * num_classes, "val": n_val * num_classes, "test": n_test * num_classes}


def _trainval_split_counts(n, num_classes):
    """Expected sizes of the 80/20 trainval split plus the official test list."""
    n_val = round(0.2 * n)
    return {
        "train": (n - n_val) * num_classes,
        "val": n_val * num_classes,
        "test": TEST_ITEMS_PER_CLASS * num_classes,
    }


def _json_split(per_class_entries, with_test):
    """The published-style split: per class 2 val items, 1 test item (if ``with_test``), rest train.

    ``per_class_entries``: one list of [relpath, label, classname] per class.
    """
    split = {"train": [], "val": [], "test": []}
    for entries in per_class_entries:
        n_test = 1 if with_test else 0
        split["val"] += entries[:2]
        split["test"] += entries[2 : 2 + n_test]
        split["train"] += entries[2 + n_test :]
    return split


def _counts_of(split):
    return {key: len(split[key]) for key in ("train", "val", "test")}


def _list_dataset_counts(b, source, n, per_class, test_entries, dirname, split_file):
    """Sizes of a trainval-list + test-list dataset; for source "json" also write its split JSON."""
    if source != "json":
        return _trainval_split_counts(n, len(per_class))
    split = _json_split(per_class, with_test=False)
    split["test"] = test_entries
    b.json(split, dirname, split_file)
    return _counts_of(split)


def _folder_dataset(b, source, n, name, dirname, image_dir, split_file, folders, ignored, filename):
    """Caltech101/DTD/Food101/EuroSAT: ``folders`` = [(folder, final classname)] in label order."""
    per_class = []
    for label, (folder, classname) in enumerate(folders):
        rels = [f"{folder}/{filename(folder, i)}" for i in range(1, n + 1)]
        for rel in rels:
            b.image(dirname, image_dir, *rel.split("/"))
        per_class.append([[rel, label, classname] for rel in rels])
    for folder in ignored:
        for i in range(1, 5):
            b.image(dirname, image_dir, folder, filename(folder, i))
    counts = _folder_split_counts(n, len(folders))
    if source == "json":
        split = _json_split(per_class, with_test=True)
        b.json(split, dirname, split_file)
        counts = _counts_of(split)
    classnames = [classname for _, classname in folders]
    return b.info(name, dirname, classnames, counts, split_file, raw_files=[image_dir])


def _caltech101(b, source, n):
    # Sorted case-sensitively: upper-case folders first; the ignored ones come with images too.
    folders = [
        ("Faces", "face"),
        ("Leopards", "leopard"),
        ("Motorbikes", "motorbike"),
        ("accordion", "accordion"),
        ("airplanes", "airplane"),
        ("yin_yang", "yin_yang"),
    ]
    return _folder_dataset(
        b,
        source,
        n,
        "Caltech101",
        "caltech-101",
        "101_ObjectCategories",
        "split_zhou_Caltech101.json",
        folders,
        ("BACKGROUND_Google", "Faces_easy"),
        lambda folder, i: f"image_{i:04d}.jpg",
    )


def _dtd(b, source, n):
    folders = [("banded", "banded"), ("polka-dotted", "polka-dotted"), ("zigzagged", "zigzagged")]
    info = _folder_dataset(
        b,
        source,
        n,
        "DescribableTextures",
        "dtd",
        "images",
        "split_zhou_DescribableTextures.json",
        folders,
        (),
        lambda folder, i: f"{folder}_{i:04d}.jpg",
    )
    # A hidden file (as macOS leaves behind) must be skipped when listing a class folder.
    with open(b.path("dtd", "images", "banded", ".DS_Store"), "wb") as f:
        f.write(b"\0")
    return info


def _food101(b, source, n):
    folders = [("apple_pie", "apple_pie"), ("baby_back_ribs", "baby_back_ribs"), ("beignets", "beignets")]
    return _folder_dataset(
        b,
        source,
        n,
        "Food101",
        "food-101",
        "images",
        "split_zhou_Food101.json",
        folders,
        (),
        lambda folder, i: f"{1005640 + i}.jpg",
    )


def _eurosat(b, source, n):
    folders = [
        ("AnnualCrop", "Annual Crop Land"),
        ("Forest", "Forest"),
        ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
        ("SeaLake", "Sea or Lake"),
    ]
    return _folder_dataset(
        b,
        source,
        n,
        "EuroSAT",
        "eurosat",
        "2750",
        "split_zhou_EuroSAT.json",
        folders,
        (),
        lambda folder, i: f"{folder}_{i}.jpg",
    )


def _oxford_pets(b, source, n):
    # (image stem prefix, class id, species, breed id); the stem decides the class name.
    breeds = [("Abyssinian", 1, 1, 1), ("american_bulldog", 2, 2, 1), ("British_Shorthair", 3, 1, 2)]
    classnames = ["abyssinian", "american_bulldog", "british_shorthair"]
    trainval_lines, test_lines, per_class, test_entries = [], [], [], []
    for (prefix, class_id, species, breed_id), classname in zip(breeds, classnames):
        entries = []
        for i in range(1, n + TEST_ITEMS_PER_CLASS + 1):
            stem = f"{prefix}_{i}"
            b.image("oxford_pets", "images", stem + ".jpg")
            line = f"{stem} {class_id} {species} {breed_id}"
            entry = [stem + ".jpg", class_id - 1, classname]
            if i <= n:
                trainval_lines.append(line)
                entries.append(entry)
            else:
                test_lines.append(line)
                test_entries.append(entry)
        per_class.append(entries)
    raw = ["annotations/trainval.txt", "annotations/test.txt"]
    b.text(trainval_lines, "oxford_pets", raw[0])
    b.text(test_lines, "oxford_pets", raw[1])
    counts = _list_dataset_counts(b, source, n, per_class, test_entries, "oxford_pets", "split_zhou_OxfordPets.json")
    return b.info("OxfordPets", "oxford_pets", classnames, counts, "split_zhou_OxfordPets.json", raw)


def _mat_struct(records):
    """A (1, N) struct array of Stanford Cars annotations: (fname, 1-based class) records."""
    dtype = [(f, "O") for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
    array = np.zeros((1, len(records)), dtype=dtype)
    for i, (fname, class_id) in enumerate(records):
        box = [np.array([[v]], dtype=np.uint16) for v in (1, 1, 8, 8)]
        array[0, i] = (*box, np.array([[class_id]], dtype=np.uint8), np.array([fname]))
    return array


def _stanford_cars(b, source, n):
    meta_names = ["AM General Hummer SUV 2000", "Audi TTS Coupe 2012", "smart fortwo Convertible 2012"]
    classnames = ["2000 AM General Hummer SUV", "2012 Audi TTS Coupe", "2012 smart fortwo Convertible"]
    num_classes = len(meta_names)
    # Images are numbered across classes in interleaved order, as in the real archive.
    train_records = [(f"{k + 1:05d}.jpg", k % num_classes + 1) for k in range(n * num_classes)]
    test_records = [(f"{k + 1:05d}.jpg", k % num_classes + 1) for k in range(TEST_ITEMS_PER_CLASS * num_classes)]
    for fname, _ in train_records:
        b.image("stanford_cars", "cars_train", fname)
    for fname, _ in test_records:
        b.image("stanford_cars", "cars_test", fname)
    raw = ["devkit/cars_train_annos.mat", "cars_test_annos_withlabels.mat", "devkit/cars_meta.mat"]
    os.makedirs(b.path("stanford_cars", "devkit"), exist_ok=True)
    scipy.io.savemat(b.path("stanford_cars", raw[0]), {"annotations": _mat_struct(train_records)})
    scipy.io.savemat(b.path("stanford_cars", raw[1]), {"annotations": _mat_struct(test_records)})
    class_names = np.empty((1, num_classes), dtype=object)
    for i, meta_name in enumerate(meta_names):
        class_names[0, i] = np.array([meta_name])
    scipy.io.savemat(b.path("stanford_cars", raw[2]), {"class_names": class_names})
    per_class = [
        [["cars_train/" + f, c - 1, classnames[c - 1]] for f, c in train_records if c == label + 1]
        for label in range(num_classes)
    ]
    test_entries = [["cars_test/" + f, c - 1, classnames[c - 1]] for f, c in test_records]
    counts = _list_dataset_counts(
        b, source, n, per_class, test_entries, "stanford_cars", "split_zhou_StanfordCars.json"
    )
    return b.info("StanfordCars", "stanford_cars", classnames, counts, "split_zhou_StanfordCars.json", raw)


def _oxford_flowers(b, source, n):
    cat_to_name = {
        "1": "pink primrose",
        "2": "hard-leaved pocket orchid",
        "3": "canterbury bells",
        "4": "sweet pea",  # extra entries are allowed
    }
    classnames = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]
    # Labels interleaved so that label 3 appears first: the creation path groups by appearance.
    mat_labels = [(3, 1, 2)[i % 3] for i in range(3 * n)]
    for i in range(len(mat_labels)):
        b.image("oxford_flowers", "jpg", f"image_{i + 1:05d}.jpg")
    labels = np.array([mat_labels], dtype=np.uint8)
    scipy.io.savemat(b.path("oxford_flowers", "imagelabels.mat"), {"labels": labels})
    b.json(cat_to_name, "oxford_flowers", "cat_to_name.json")
    counts = _folder_split_counts(n, len(classnames))
    if source == "json":
        per_class = [
            [
                [f"image_{i + 1:05d}.jpg", label - 1, classnames[label - 1]]
                for i, y in enumerate(mat_labels)
                if y == label
            ]
            for label in (1, 2, 3)
        ]
        split = _json_split(per_class, with_test=True)
        b.json(split, "oxford_flowers", "split_zhou_OxfordFlowers.json")
        counts = _counts_of(split)
    raw = ["imagelabels.mat", "cat_to_name.json"]
    return b.info("OxfordFlowers", "oxford_flowers", classnames, counts, "split_zhou_OxfordFlowers.json", raw)


def _fgvc_aircraft(b, source, n):
    variants = ["707-320", "A300B4", "Cessna 172", "F-16A/B"]
    sizes = {"train": n, "val": 2, "test": 2}
    lines = {key: [] for key in sizes}
    image_number = 56978  # 7-digit ids with leading zeros: "0056978"
    for variant in variants:
        for key, size in sizes.items():
            for _ in range(size):
                image_id = f"{image_number:07d}"
                image_number += 1
                b.image("fgvc_aircraft", "images", image_id + ".jpg")
                lines[key].append(f"{image_id} {variant}")
    b.text(variants, "fgvc_aircraft", "variants.txt")
    for key in sizes:
        b.text(lines[key], "fgvc_aircraft", f"images_variant_{key}.txt")
    counts = {key: size * len(variants) for key, size in sizes.items()}
    raw = ["variants.txt"] + [f"images_variant_{key}.txt" for key in sizes]
    return b.info("FGVCAircraft", "fgvc_aircraft", variants, counts, None, raw)


def _sun_image_name(label, i):
    return "sun_" + "".join(chr(97 + (label * 7 + i * 3 + k) % 26) for k in range(16)) + ".jpg"


def _sun397(b, source, n):
    classes = [
        ("/a/abbey", "abbey"),
        ("/a/airplane_cabin", "airplane_cabin"),
        ("/c/church/outdoor", "outdoor church"),
    ]
    train_lines, test_lines, per_class, test_entries = [], [], [], []
    for label, (key, classname) in enumerate(classes):
        entries = []
        for i in range(n + TEST_ITEMS_PER_CLASS):
            rel = key[1:] + "/" + _sun_image_name(label, i)
            b.image("sun397", "SUN397", *rel.split("/"))
            (train_lines if i < n else test_lines).append("/" + rel)
            (entries if i < n else test_entries).append([rel, label, classname])
        per_class.append(entries)
    raw = ["ClassName.txt", "Training_01.txt", "Testing_01.txt"]
    b.text([key for key, _ in classes], "sun397", raw[0])
    b.text(train_lines, "sun397", raw[1])
    b.text(test_lines, "sun397", raw[2])
    counts = _list_dataset_counts(b, source, n, per_class, test_entries, "sun397", "split_zhou_SUN397.json")
    return b.info("SUN397", "sun397", [c for _, c in classes], counts, "split_zhou_SUN397.json", raw)


def _ucf101(b, source, n):
    # (action in the lists, image folder = class name, action as spelled in the video names)
    actions = [
        ("ApplyEyeMakeup", "Apply_Eye_Makeup", "ApplyEyeMakeup"),
        ("HandstandPushups", "Handstand_Pushups", "HandStandPushups"),
        ("YoYo", "Yo_Yo", "YoYo"),
    ]
    train_lines, test_lines, per_class, test_entries = [], [], [], []
    for label, (action, folder, video_action) in enumerate(actions):
        entries = []
        for i in range(n + TEST_ITEMS_PER_CLASS):
            stem = f"v_{video_action}_g{8 + i:02d}_c{1 + i % 3:02d}"
            b.image("ucf101", "UCF-101-midframes", folder, stem + ".jpg")
            if i < n:
                train_lines.append(f"{action}/{stem}.avi {label + 1}")
                entries.append([f"{folder}/{stem}.jpg", label, folder])
            else:
                test_lines.append(f"{action}/{stem}.avi")
                test_entries.append([f"{folder}/{stem}.jpg", label, folder])
        per_class.append(entries)
    raw = ["ucfTrainTestlist/" + name for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt")]
    b.text([f"{label + 1} {a[0]}" for label, a in enumerate(actions)], "ucf101", raw[0])
    b.text(train_lines, "ucf101", raw[1])
    b.text(test_lines, "ucf101", raw[2])
    counts = _list_dataset_counts(b, source, n, per_class, test_entries, "ucf101", "split_zhou_UCF101.json")
    return b.info("UCF101", "ucf101", [a[1] for a in actions], counts, "split_zhou_UCF101.json", raw)


def _classnames_lines(count):
    return [f"{wnid} {name}" for wnid, name in IMAGENET_CLASSES[:count]]


def _imagenet(b, source, n):
    classes = IMAGENET_CLASSES[:3]
    for wnid, _ in classes:
        for i in range(n):
            b.image("imagenet", "images", "train", wnid, f"{wnid}_{i + 1}.JPEG")
        for _ in range(TEST_ITEMS_PER_CLASS):
            b.image("imagenet", "images", "val", wnid, f"ILSVRC2012_val_{len(b.images):08d}.JPEG")
    b.text(_classnames_lines(5), "imagenet", "classnames.txt")  # extra lines are allowed
    test = TEST_ITEMS_PER_CLASS * len(classes)
    counts = {"train": n * len(classes), "val": test, "test": test}
    raw = ["images/train", "images/val", "classnames.txt"]
    return b.info("ImageNet", "imagenet", [name for _, name in classes], counts, None, raw)


def _wnid_variant(b, n, name, dirname, image_dir, wnids, extension, stray_file):
    for wnid in wnids:
        for i in range(n):
            b.image(dirname, image_dir, wnid, f"{wnid}_{i + 1}{extension}")
    with open(b.path(dirname, image_dir, stray_file), "w") as f:
        f.write("not a class folder\n")
    b.text(_classnames_lines(12), dirname, "classnames.txt")
    lookup = dict(IMAGENET_CLASSES)
    classnames = [lookup[wnid] for wnid in sorted(wnids)]
    total = n * len(wnids)
    counts = {"train": total, "val": None, "test": total}
    return b.info(name, dirname, classnames, counts, None, [image_dir, "classnames.txt"])


def _imagenet_sketch(b, source, n):
    wnids = ["n01484850", "n01440764", "n01443537"]
    return _wnid_variant(b, n, "ImageNetSketch", "imagenet-sketch", "images", wnids, ".JPEG", "LICENSE")


def _imagenet_a(b, source, n):
    # Not the first wnids of classnames.txt: labels are 0..k-1 in the variant's own class space.
    wnids = ["n01531178", "n01443537", "n01498041"]
    return _wnid_variant(b, n, "ImageNetA", "imagenet-adversarial", "imagenet-a", wnids, ".jpg", "README.txt")


def _imagenet_r(b, source, n):
    wnids = ["n01491361", "n01443537", "n01514859"]
    return _wnid_variant(b, n, "ImageNetR", "imagenet-rendition", "imagenet-r", wnids, ".jpg", "README.txt")


def _imagenetv2(b, source, n, num_folders=11):
    # 11 folders, so that folder "10" sorts before "2" as a string but must get label 10.
    image_dir = "imagenetv2-matched-frequency-format-val"
    for label in range(num_folders):
        for i in range(n):
            b.image("imagenetv2", image_dir, str(label), f"{label * 1000 + i:040x}.jpeg")
    b.text(_classnames_lines(12), "imagenetv2", "classnames.txt")
    total = n * num_folders
    classnames = [name for _, name in IMAGENET_CLASSES[:num_folders]]
    counts = {"train": total, "val": None, "test": total}
    return b.info("ImageNetV2", "imagenetv2", classnames, counts, None, [image_dir, "classnames.txt"])


_BUILDERS = {
    "ImageNet": _imagenet,
    "Caltech101": _caltech101,
    "OxfordPets": _oxford_pets,
    "StanfordCars": _stanford_cars,
    "OxfordFlowers": _oxford_flowers,
    "Food101": _food101,
    "FGVCAircraft": _fgvc_aircraft,
    "SUN397": _sun397,
    "DescribableTextures": _dtd,
    "EuroSAT": _eurosat,
    "UCF101": _ucf101,
    "ImageNetV2": _imagenetv2,
    "ImageNetSketch": _imagenet_sketch,
    "ImageNetA": _imagenet_a,
    "ImageNetR": _imagenet_r,
}
