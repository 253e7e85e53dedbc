"""The 15 dataset loaders on miniature fake trees: counts, class names, splits."""

import json
import os
import os.path as osp
import pickle
import random
from collections import defaultdict

import pytest
import scipy.io

import datasets
from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import listdir_nohidden
from datasets import annotations, splits
from tests.fake_datasets import (
    FAKE_NAMES,
    SPLIT_JSON_NAMES,
    TEST_ONLY_NAMES,
    build_fake,
    make_cfg,
)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LOADER_CASES = [(name, "json") for name in SPLIT_JSON_NAMES] + [(name, "raw") for name in FAKE_NAMES]


def load(info, seed=1, **cfg_options):
    """Build the dataset the way train.py does: seed the global random state, then construct."""
    random.seed(seed)
    return DATASET_REGISTRY.get(info.name)(make_cfg(info.root, info.name, seed=seed, **cfg_options))


def tree_listing(root):
    return sorted(osp.join(folder, name) for folder, dirs, files in os.walk(root) for name in dirs + files)


def triples(items, prefix):
    return [(osp.relpath(item.impath, prefix), item.label, item.classname) for item in items]


def test_all_fifteen_registered_with_their_yaml_configs():
    assert set(FAKE_NAMES) <= set(DATASET_REGISTRY.registered_names())
    assert [c.__name__ for c in datasets.BENCHMARKS] == list(FAKE_NAMES)
    config_dir = osp.join(REPO, "configs", "datasets")
    expected = sorted(datasets.yaml_name(c) + ".yaml" for c in datasets.BENCHMARKS)
    assert sorted(os.listdir(config_dir)) == sorted(expected + ["toy_shapes.yaml"])  # + the demo's
    for dataset_class in datasets.BENCHMARKS:
        with open(osp.join(config_dir, datasets.yaml_name(dataset_class) + ".yaml")) as f:
            assert f.read() == f'DATASET:\n  NAME: "{dataset_class.__name__}"\n'
    assert datasets.yaml_name(datasets.DescribableTextures) == "dtd"


def test_shared_helpers_live_where_upstream_has_them():
    assert datasets.OxfordPets.read_split is splits.read_split
    assert datasets.OxfordPets.save_split is splits.save_split
    assert datasets.OxfordPets.split_trainval is splits.split_trainval
    assert datasets.OxfordPets.subsample_classes is splits.subsample_classes
    assert datasets.DescribableTextures.read_and_split_data is splits.read_and_split_data
    assert datasets.ImageNet.read_classnames is annotations.read_imagenet_classnames


@pytest.mark.filterwarnings("ignore:ImageNetV2")
@pytest.mark.parametrize("name,source", LOADER_CASES)
def test_loader_counts_and_classnames(name, source, tmp_path):
    info = build_fake(name, tmp_path, source=source)
    dataset = load(info)

    assert dataset.classnames == info.classnames
    assert dataset.num_classes == len(info.classnames)
    assert len(dataset.train_x) == info.counts["train"]
    assert len(dataset.test) == info.counts["test"]
    assert sorted({item.label for item in dataset.train_x}) == list(range(len(info.classnames)))
    for item in dataset.train_x + dataset.test:
        assert item.classname == info.classnames[item.label]
        assert osp.isabs(item.impath) and item.impath.startswith(info.dataset_dir + os.sep)
    if name in TEST_ONLY_NAMES:
        assert dataset.val is None
        assert dataset.train_x is dataset.test
    elif name == "ImageNet":
        assert dataset.val is dataset.test
    else:
        assert len(dataset.val) == info.counts["val"]
        paths = [item.impath for item in dataset.train_x + dataset.val + dataset.test]
        assert len(set(paths)) == len(paths)


@pytest.mark.parametrize("name", SPLIT_JSON_NAMES)
def test_created_split_json_round_trips(name, tmp_path, capsys):
    info = build_fake(name, tmp_path, source="raw")
    created = load(info, seed=2)
    assert f"Saved split to {info.split_file}" in capsys.readouterr().out

    with open(info.split_file) as f:
        text = f.read()
    split = json.loads(text)
    assert text == json.dumps(split, indent=4, separators=(",", ": "))
    prefix = info.dataset_dir if name == "StanfordCars" else created.image_dir
    for key, items in zip(("train", "val", "test"), (created.train_x, created.val, created.test)):
        assert [tuple(entry) for entry in split[key]] == triples(items, prefix)

    reread = load(info, seed=3)
    assert f"Reading split from {info.split_file}" in capsys.readouterr().out
    assert triples(reread.train_x, prefix) == triples(created.train_x, prefix)
    assert triples(reread.val, prefix) == triples(created.val, prefix)
    assert triples(reread.test, prefix) == triples(created.test, prefix)


def test_caltech_json_entries_keep_folder_names_and_rename_classes(tmp_path):
    info = build_fake("Caltech101", tmp_path, source="raw")
    load(info)
    with open(info.split_file) as f:
        entries = [entry for split in json.load(f).values() for entry in split]
    by_folder = {entry[0].split("/")[0]: (entry[1], entry[2]) for entry in entries}
    assert by_folder == {
        "Faces": (0, "face"),
        "Leopards": (1, "leopard"),
        "Motorbikes": (2, "motorbike"),
        "accordion": (3, "accordion"),
        "airplanes": (4, "airplane"),
        "yin_yang": (5, "yin_yang"),
    }


def test_stanford_cars_json_paths_are_relative_to_the_dataset_folder(tmp_path):
    info = build_fake("StanfordCars", tmp_path, source="raw")
    load(info)
    with open(info.split_file) as f:
        split = json.load(f)
    assert all(entry[0].startswith("cars_train/") for entry in split["train"] + split["val"])
    assert all(entry[0].startswith("cars_test/") for entry in split["test"])
    assert ["cars_train/00002.jpg", 1, "2012 Audi TTS Coupe"] in split["train"] + split["val"]


def test_ucf101_class_comes_from_the_folder_part_of_each_line(tmp_path):
    info = build_fake("UCF101", tmp_path, source="raw")
    dataset = load(info)
    handstand = [item for item in dataset.train_x if item.label == 1]
    assert handstand and all(item.classname == "Handstand_Pushups" for item in handstand)
    assert all(osp.basename(item.impath).startswith("v_HandStandPushups_") for item in handstand)
    assert common_parent(handstand) == osp.join(info.dataset_dir, "UCF-101-midframes", "Handstand_Pushups")


def common_parent(items):
    (parent,) = {osp.dirname(item.impath) for item in items}
    return parent


@pytest.mark.parametrize("name", ["UCF101", "OxfordPets", "SUN397", "FGVCAircraft"])
def test_windows_line_endings_are_stripped(name, tmp_path):
    info = build_fake(name, tmp_path, source="raw", crlf=True)
    dataset = load(info)
    assert dataset.classnames == info.classnames
    assert len(dataset.train_x) == info.counts["train"]


def test_pets_comment_lines_are_skipped(tmp_path):
    info = build_fake("OxfordPets", tmp_path, source="raw")
    path = osp.join(info.dataset_dir, "annotations", "trainval.txt")
    with open(path) as f:
        body = f.read()
    with open(path, "w") as f:
        f.write("#Image CLASS-ID SPECIES BREED ID\n\n" + body)
    dataset = load(info)
    assert len(dataset.train_x) + len(dataset.val) == info.counts["train"] + info.counts["val"]


def test_aircraft_keeps_leading_zeros_and_names_with_spaces(tmp_path):
    info = build_fake("FGVCAircraft", tmp_path)
    dataset = load(info)
    assert dataset.classnames == ["707-320", "A300B4", "Cessna 172", "F-16A/B"]
    assert osp.basename(dataset.train_x[0].impath) == "0056978.jpg"


def test_imagenet_v2_uses_numeric_labels_and_warns_about_missing_folders(tmp_path):
    info = build_fake("ImageNetV2", tmp_path)
    with pytest.warns(UserWarning, match=r"only the class folders 0\.\.10 of 0\.\.999"):
        dataset = load(info)
    tenth = [item for item in dataset.test if item.label == 10]
    assert tenth and all(osp.basename(osp.dirname(item.impath)) == "10" for item in tenth)
    assert dataset.lab2cname[10] == "brambling"


def test_imagenet_a_labels_index_its_own_sorted_wnids(tmp_path):
    info = build_fake("ImageNetA", tmp_path)
    dataset = load(info)
    assert dataset.classnames == ["goldfish", "stingray", "goldfinch"]
    folders_of_label_0 = {osp.basename(osp.dirname(item.impath)) for item in dataset.test if item.label == 0}
    assert folders_of_label_0 == {"n01443537"}


def test_imagenet_caches_its_item_lists_in_preprocessed_pkl(tmp_path):
    info = build_fake("ImageNet", tmp_path)
    first = load(info)
    with open(osp.join(info.dataset_dir, "preprocessed.pkl"), "rb") as f:
        data = pickle.load(f)
    assert set(data) == {"train", "test"}
    assert [item.impath for item in data["train"]] == [item.impath for item in first.train_x]
    os.remove(osp.join(info.dataset_dir, "classnames.txt"))  # no longer needed once cached
    second = load(info)
    assert [item.impath for item in second.test] == [item.impath for item in first.test]


def test_printed_lines_of_the_split_helpers(tmp_path, capsys):
    load(build_fake("OxfordPets", tmp_path, source="raw"))
    assert "Splitting trainval into 80% train and 20% val" in capsys.readouterr().out
    load(build_fake("DescribableTextures", tmp_path, source="raw"))
    assert "Splitting into 50% train, 20% val, and 30% test" in capsys.readouterr().out


def test_read_only_mode_writes_nothing(tmp_path):
    info = build_fake("OxfordPets", tmp_path, source="raw")
    before = tree_listing(tmp_path)
    random.seed(1)
    dataset = datasets.OxfordPets(make_cfg(tmp_path, "OxfordPets"), read_only=True)
    assert len(dataset.test) == info.counts["test"]
    assert not osp.exists(info.split_file)
    assert tree_listing(tmp_path) == before


# ------------------------------------------------------------------------------------------
# The split algorithms against straightforward reference loops of CoOp's split rules: same
# seed, same draws, same items in the same order as CoOp's code.
# ------------------------------------------------------------------------------------------


def test_trainval_split_matches_the_reference_algorithm(tmp_path):
    info = build_fake("OxfordPets", tmp_path, source="raw", images_per_class=7)
    with open(osp.join(info.dataset_dir, "annotations", "trainval.txt")) as f:
        lines = [line.split() for line in f.read().splitlines()]
    random.seed(3)
    indices_by_label = defaultdict(list)
    for index, fields in enumerate(lines):
        indices_by_label[int(fields[1]) - 1].append(index)
    expected_train, expected_val = [], []
    for indices in indices_by_label.values():
        n_val = round(0.2 * len(indices))
        random.shuffle(indices)
        expected_val += [lines[i][0] + ".jpg" for i in indices[:n_val]]
        expected_train += [lines[i][0] + ".jpg" for i in indices[n_val:]]

    dataset = load(info, seed=3)
    assert [osp.basename(item.impath) for item in dataset.train_x] == expected_train
    assert [osp.basename(item.impath) for item in dataset.val] == expected_val


def cut_50_20_30(names, expected):
    """Append round(50%) of ``names`` to expected train, round(20%) to val, the rest to test."""
    n_train, n_val = round(0.5 * len(names)), round(0.2 * len(names))
    expected["train"] += names[:n_train]
    expected["val"] += names[n_train : n_train + n_val]
    expected["test"] += names[n_train + n_val :]


def test_folder_split_matches_the_reference_algorithm(tmp_path):
    info = build_fake("DescribableTextures", tmp_path, source="raw", images_per_class=9)
    image_dir = osp.join(info.dataset_dir, "images")
    random.seed(5)
    expected = {"train": [], "val": [], "test": []}
    for category in sorted(listdir_nohidden(image_dir)):
        images = listdir_nohidden(osp.join(image_dir, category))  # listing order, as upstream
        random.shuffle(images)
        cut_50_20_30(images, expected)

    dataset = load(info, seed=5)
    for key, items in (("train", dataset.train_x), ("val", dataset.val), ("test", dataset.test)):
        assert [osp.basename(item.impath) for item in items] == expected[key]


def test_flowers_split_matches_the_reference_algorithm(tmp_path):
    info = build_fake("OxfordFlowers", tmp_path, source="raw", images_per_class=8)
    labels = scipy.io.loadmat(osp.join(info.dataset_dir, "imagelabels.mat"))["labels"][0]
    random.seed(7)
    by_label = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[int(label)].append(f"image_{index + 1:05d}.jpg")
    expected = {"train": [], "val": [], "test": []}
    for names in by_label.values():  # first-appearance order: label 3 first
        random.shuffle(names)
        cut_50_20_30(names, expected)

    dataset = load(info, seed=7)
    assert dataset.train_x[0].label == 2
    for key, items in (("train", dataset.train_x), ("val", dataset.val), ("test", dataset.test)):
        assert [osp.basename(item.impath) for item in items] == expected[key]


def test_docs_list_every_layout_and_split_file():
    with open(osp.join(REPO, "docs", "datasets.md")) as f:
        docs = f.read()
    for dataset_class in datasets.BENCHMARKS:
        assert dataset_class.LAYOUT in docs, dataset_class.__name__
        if getattr(dataset_class, "split_file", None):
            assert dataset_class.split_file in docs
