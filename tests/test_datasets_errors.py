"""Broken trees give a DatasetLayoutError that says what is wrong and where.

Each message must name the registered dataset, the full path, what it was needed for and the
expected layout; the few-shot cache cases are in test_datasets_fewshot.py.
"""

import json
import os
import os.path as osp
import random
import shutil

import numpy as np
import pytest
import scipy.io

import datasets  # noqa: F401  (registers the datasets)
from dassl.data.datasets import DATASET_REGISTRY, DatasetLayoutError
from tests.fake_datasets import FAKE_NAMES, TEST_ONLY_NAMES, build_fake, make_cfg


def layout_error(info, *fragments, root=None):
    """Load ``info``'s dataset, expecting a DatasetLayoutError that contains every fragment."""
    dataset_class = DATASET_REGISTRY.get(info.name)
    random.seed(1)
    with pytest.raises(DatasetLayoutError) as excinfo:
        dataset_class(make_cfg(root or info.root, info.name))
    message = str(excinfo.value)
    assert message.startswith(info.name + ": ")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert "Expected layout under DATASET.ROOT" in message
    for line in dataset_class.LAYOUT.splitlines():
        assert line in message
    return message


def without_key(mapping, key):
    return {k: v for k, v in mapping.items() if k != key}


def rewrite(path, transform):
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(transform(text))


def test_missing_root_says_what_root_must_point_at(tmp_path):
    info = build_fake("Caltech101", tmp_path)
    missing_root = str(tmp_path / "nowhere")
    layout_error(
        info, "DATASET.ROOT does not exist", "path: " + missing_root, "contains caltech-101/", root=missing_root
    )


@pytest.mark.parametrize("name", FAKE_NAMES)
def test_missing_dataset_folder(name, tmp_path):
    info = build_fake(name, tmp_path)
    shutil.rmtree(info.dataset_dir)
    layout_error(info, "dataset folder not found", "path: " + info.dataset_dir)


@pytest.mark.parametrize("name", TEST_ONLY_NAMES)
def test_missing_image_folder_of_a_variant_names_the_expected_folder(name, tmp_path):
    info = build_fake(name, tmp_path)
    image_dir = info.raw_files[0]
    shutil.rmtree(image_dir)
    expected_name = f"expected folder name: {osp.basename(image_dir)}/"
    layout_error(info, "folder not found", "path: " + image_dir, expected_name)


def test_sketch_missing_images_folder_suggests_renaming_sketch(tmp_path):
    info = build_fake("ImageNetSketch", tmp_path)
    os.rename(osp.join(info.dataset_dir, "images"), osp.join(info.dataset_dir, "sketch"))
    layout_error(info, "rename it to images/")


def test_missing_split_json_and_raw_files_lists_both_options(tmp_path):
    info = build_fake("OxfordPets", tmp_path)
    os.remove(info.split_file)
    shutil.rmtree(osp.join(info.dataset_dir, "annotations"))
    layout_error(
        info,
        "neither split_zhou_OxfordPets.json nor the raw files",
        "path: " + info.split_file,
        *("path: " + path for path in info.raw_files),
    )


def test_ucf101_missing_split_names_the_json_and_the_lists(tmp_path):
    info = build_fake("UCF101", tmp_path)
    os.remove(info.split_file)
    os.remove(info.raw_files[1])
    message = layout_error(info, "path: " + info.split_file, "path: " + info.raw_files[1], "CoOp's Google Drive")
    assert "path: " + info.raw_files[0] not in message  # only the missing ones are listed


def test_aircraft_missing_list_file(tmp_path):
    info = build_fake("FGVCAircraft", tmp_path)
    os.remove(info.raw_files[2])
    layout_error(info, "annotation files not found", "path: " + info.raw_files[2])


def test_unreadable_split_json(tmp_path):
    info = build_fake("EuroSAT", tmp_path)
    rewrite(info.split_file, lambda text: text[:-20])
    layout_error(info, "cannot read the split file", "path: " + info.split_file)


def test_split_json_without_a_key(tmp_path):
    info = build_fake("Food101", tmp_path)
    rewrite(info.split_file, lambda text: json.dumps(without_key(json.loads(text), "val")))
    layout_error(info, 'no list under the key "val"', "path: " + info.split_file)


def test_malformed_split_entry(tmp_path):
    info = build_fake("Caltech101", tmp_path)
    with open(info.split_file) as f:
        split = json.load(f)
    split["train"][1] = ["accordion/image_0001.jpg", 3]
    with open(info.split_file, "w") as f:
        json.dump(split, f)
    layout_error(info, "malformed split entry", 'entry 1 of "train" in ' + info.split_file)


def test_image_listed_in_the_split_json_missing(tmp_path):
    info = build_fake("DescribableTextures", tmp_path)
    with open(info.split_file) as f:
        relpath = json.load(f)["test"][2][0]
    missing = osp.join(info.dataset_dir, "images", relpath)
    os.remove(missing)
    layout_error(info, "image file not found", "path: " + missing, 'entry 2 of "test" in ' + info.split_file)


def test_image_listed_in_an_annotation_file_missing(tmp_path):
    info = build_fake("OxfordPets", tmp_path, source="raw")
    missing = osp.join(info.dataset_dir, "images", "Abyssinian_2.jpg")
    os.remove(missing)
    layout_error(info, "image file not found", "path: " + missing, "line 2 of " + info.raw_files[0])


def test_malformed_pets_line(tmp_path):
    info = build_fake("OxfordPets", tmp_path, source="raw")
    rewrite(info.raw_files[1], lambda text: text.replace("Abyssinian_8 1 1 1", "Abyssinian_8 1 1"))
    layout_error(
        info,
        "malformed line 2: 'Abyssinian_8 1 1'",
        "path: " + info.raw_files[1],
        "<image_stem> <class_id 1..37> <species 1=cat,2=dog> <breed_id>",
    )


def test_unknown_aircraft_variant(tmp_path):
    info = build_fake("FGVCAircraft", tmp_path)
    rewrite(info.raw_files[3], lambda text: text.replace("Cessna 172", "Cessna 999", 1))
    layout_error(
        info,
        "class 'Cessna 999' has no entry in variants.txt",
        "path: " + info.raw_files[0],
        "line 5 of " + info.raw_files[3],
    )


def test_unknown_ucf101_action(tmp_path):
    info = build_fake("UCF101", tmp_path, source="raw")
    rewrite(info.raw_files[0], lambda text: text.replace("3 YoYo", "3 Yoyo"))
    layout_error(
        info,
        "class 'YoYo' has no entry in classInd.txt",
        "path: " + info.raw_files[0],
        "line 13 of " + info.raw_files[1],
    )


def test_malformed_ucf101_class_index(tmp_path):
    info = build_fake("UCF101", tmp_path, source="raw")
    rewrite(info.raw_files[0], lambda text: text.replace("2 HandstandPushups", "2HandstandPushups"))
    layout_error(info, "malformed line 2: '2HandstandPushups'", "<1-based id> <Action>")


def test_unknown_sun397_class(tmp_path):
    info = build_fake("SUN397", tmp_path, source="raw")
    rewrite(info.raw_files[0], lambda text: text.replace("/c/church/outdoor\n", "/c/church/indoor\n"))
    layout_error(info, "class 'c/church/outdoor' has no entry in ClassName.txt", "path: " + info.raw_files[0])


def test_flowers_label_without_a_name(tmp_path):
    info = build_fake("OxfordFlowers", tmp_path, source="raw")
    rewrite(info.raw_files[1], lambda text: json.dumps(without_key(json.loads(text), "2")))
    layout_error(info, "class '2' has no entry in cat_to_name.json", "path: " + info.raw_files[1])


def test_imagenet_wnid_without_a_name(tmp_path):
    info = build_fake("ImageNet", tmp_path)
    classnames_file = osp.join(info.dataset_dir, "classnames.txt")
    rewrite(classnames_file, lambda text: text.replace("n01443537 goldfish\n", ""))
    layout_error(info, "class 'n01443537' has no entry in classnames.txt", "path: " + classnames_file)


def test_sketch_wnid_without_a_name(tmp_path):
    info = build_fake("ImageNetSketch", tmp_path)
    image_dir = osp.join(info.dataset_dir, "images")
    os.rename(osp.join(image_dir, "n01440764"), osp.join(image_dir, "n99999999"))
    layout_error(info, "class 'n99999999' has no entry in classnames.txt")


def test_imagenet_train_and_val_with_different_wnids(tmp_path):
    info = build_fake("ImageNet", tmp_path)
    shutil.rmtree(osp.join(info.dataset_dir, "images", "val", "n01484850"))
    layout_error(info, "only in train ['n01484850'] (1 in all), only in val [] (0 in all)")


def test_imagenet_unsorted_val_folder(tmp_path):
    info = build_fake("ImageNet", tmp_path)
    val_dir = osp.join(info.dataset_dir, "images", "val")
    for wnid in os.listdir(val_dir):
        for name in os.listdir(osp.join(val_dir, wnid)):
            os.rename(osp.join(val_dir, wnid, name), osp.join(val_dir, name))
        os.rmdir(osp.join(val_dir, wnid))
    layout_error(info, "images/val holds 6 files and 0 folders", "sort the validation images into one folder per wnid")


def test_imagenet_stale_preprocessed_pkl(tmp_path):
    info = build_fake("ImageNet", tmp_path)
    random.seed(1)
    dataset = DATASET_REGISTRY.get("ImageNet")(make_cfg(info.root, "ImageNet"))
    os.remove(dataset.test[-1].impath)  # deleted after preprocessed.pkl was written
    message = layout_error(info, "preprocessed.pkl refers to a missing image", dataset.test[-1].impath)
    assert "delete " + osp.join(info.dataset_dir, "preprocessed.pkl") in message


def test_imagenet_v2_gap_in_numeric_folders(tmp_path):
    info = build_fake("ImageNetV2", tmp_path)
    shutil.rmtree(osp.join(info.raw_files[0], "3"))
    layout_error(info, "folder 3 is missing")


def test_imagenet_v2_more_folders_than_classnames(tmp_path):
    info = build_fake("ImageNetV2", tmp_path)
    classnames_file = osp.join(info.dataset_dir, "classnames.txt")
    rewrite(classnames_file, lambda text: "\n".join(text.splitlines()[:10]) + "\n")
    layout_error(info, "class 'folder 10' has no entry in classnames.txt")


def test_empty_class_folder_of_a_variant(tmp_path):
    info = build_fake("ImageNetA", tmp_path)
    os.makedirs(osp.join(info.dataset_dir, "imagenet-a", "n01514668"))
    layout_error(info, "empty class folder", osp.join(info.dataset_dir, "imagenet-a", "n01514668"))


@pytest.mark.parametrize(
    "name,per_class,count,minimum",
    [
        ("DescribableTextures", 3, "has 3 images", "at least 4 per class"),
        ("OxfordFlowers", 3, "has 3 images", "at least 4 per class"),
        ("OxfordPets", 2, "has 2 trainval items", "at least 3"),
        ("UCF101", 2, "has 2 trainval items", "at least 3"),
    ],
)
def test_too_few_items_to_create_the_split(name, per_class, count, minimum, tmp_path):
    info = build_fake(name, tmp_path, source="raw", images_per_class=per_class)
    layout_error(info, count, minimum)


def test_empty_class_folder_when_creating_the_split(tmp_path):
    info = build_fake("Caltech101", tmp_path, source="raw")
    empty = osp.join(info.dataset_dir, "101_ObjectCategories", "wrench")
    os.makedirs(empty)
    layout_error(info, "class folder 'wrench' has 0 images", "path: " + empty)


def test_file_among_the_class_folders(tmp_path):
    info = build_fake("Food101", tmp_path, source="raw")
    stray = osp.join(info.dataset_dir, "images", "notes.txt")
    with open(stray, "w") as f:
        f.write("x")
    layout_error(info, "holds a file where only class folders are expected", "path: " + stray)


def test_flowers_mat_without_the_labels_key(tmp_path):
    info = build_fake("OxfordFlowers", tmp_path, source="raw")
    scipy.io.savemat(info.raw_files[0], {"lbl": np.array([[1, 2, 3]])})
    layout_error(info, 'no key "labels"', "shape (1, N)", "path: " + info.raw_files[0])


def test_cars_mat_with_the_wrong_shape(tmp_path):
    info = build_fake("StanfordCars", tmp_path, source="raw")
    class_names = np.empty((2, 1), dtype=object)
    class_names[0, 0], class_names[1, 0] = np.array(["A B 2000"]), np.array(["C D 2001"])
    scipy.io.savemat(info.raw_files[2], {"class_names": class_names})
    layout_error(info, 'key "class_names" has shape (2, 1)', "1xC cell array", "path: " + info.raw_files[2])


def test_split_with_a_class_missing_from_test(tmp_path):
    info = build_fake("Caltech101", tmp_path)
    rewrite(
        info.split_file,
        lambda text: json.dumps({k: [e for e in v if k != "test" or e[1] != 4] for k, v in json.loads(text).items()}),
    )
    layout_error(info, '"test" has 5 classes but "train" has 6', "only in train: [4]", "path: " + info.split_file)


def test_split_with_a_label_missing_from_train(tmp_path):
    info = build_fake("SUN397", tmp_path)
    with open(info.split_file) as f:
        split = json.load(f)
    with open(info.split_file, "w") as f:
        json.dump({key: [e for e in entries if e[1] != 1] for key, entries in split.items()}, f)
    layout_error(info, "the train split has no item of label(s) [1]", "path: " + info.split_file)


def test_split_with_two_names_for_one_label(tmp_path):
    info = build_fake("EuroSAT", tmp_path)
    with open(info.split_file) as f:
        split = json.load(f)
    next(entry for entry in split["test"] if entry[1] == 1)[2] = "Woods"
    with open(info.split_file, "w") as f:
        json.dump(split, f)
    layout_error(info, "label 1 has two class names: 'Forest' and 'Woods' (in \"test\")")
