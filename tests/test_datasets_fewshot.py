"""Base/new subsampling and few-shot caches."""

import copy
import json
import math
import os
import os.path as osp
import pickle
import random
import shutil
from collections import defaultdict

import pytest

import datasets  # noqa: F401  (registers the datasets)
from dassl.data.datasets import DATASET_REGISTRY, DatasetLayoutError, Datum, build_dataset
from dassl.utils import set_random_seed
from datasets import caches, splits
from tests.fake_datasets import build_fake, make_cfg


def load(info, seed=1, root=None, **cfg_options):
    random.seed(seed)
    return DATASET_REGISTRY.get(info.name)(make_cfg(root or info.root, info.name, seed=seed, **cfg_options))


def relative(items, dataset_dir):
    return [(osp.relpath(item.impath, dataset_dir), item.label, item.classname) for item in items]


def cache_path(info, shots, seed):
    return osp.join(info.dataset_dir, "split_fewshot", f"shot_{shots}-seed_{seed}.pkl")


# ------------------------------------------------------------------------------------------
# Base / new
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Caltech101", "DescribableTextures", "OxfordPets", "ImageNet"])
def test_base_and_new_halves_are_relabelled_from_zero(name, tmp_path, capsys):
    info = build_fake(name, tmp_path)
    n = len(info.classnames)
    m = math.ceil(n / 2)
    full = load(info)
    for subsample, kept in (("base", range(m)), ("new", range(m, n))):
        dataset = load(info, subsample=subsample)
        assert f"SUBSAMPLE {subsample.upper()} CLASSES!" in capsys.readouterr().out
        assert dataset.classnames == [info.classnames[label] for label in kept]
        assert dataset.num_classes == len(kept)
        for part_full, part in ((full.train_x, dataset.train_x), (full.test, dataset.test)):
            expected = [(item.impath, item.label - kept[0], item.classname) for item in part_full if item.label in kept]
            assert [(item.impath, item.label, item.classname) for item in part] == expected
        if name == "ImageNet":
            assert dataset.val is dataset.test
        else:
            assert {item.label for item in dataset.val} == set(range(len(kept)))


def test_subsample_classes_uses_the_labels_of_the_first_list():
    impath = osp.abspath(__file__)
    train = [Datum(impath, label, classname=str(label)) for label in (7, 2, 5, 2, 9, 11)]
    test = [Datum(impath, label, classname=str(label)) for label in (11, 9, 7, 5, 2, 3)]
    base_train, base_test = splits.subsample_classes(train, test, subsample="base")
    assert [(d.label, d.classname) for d in base_train] == [(2, "7"), (0, "2"), (1, "5"), (0, "2")]
    assert [(d.label, d.classname) for d in base_test] == [(2, "7"), (1, "5"), (0, "2")]
    new_train, new_test = splits.subsample_classes(train, test, subsample="new")
    assert [(d.label, d.classname) for d in new_train] == [(0, "9"), (1, "11")]
    assert [(d.label, d.classname) for d in new_test] == [(1, "11"), (0, "9")]
    assert splits.subsample_classes(train, test, subsample="all") == (train, test)


def test_subsample_rejects_unknown_values(tmp_path):
    info = build_fake("DescribableTextures", tmp_path)
    with pytest.raises(ValueError, match=r"must be one of all, base, new, got 'half'"):
        load(info, subsample="half")


# ------------------------------------------------------------------------------------------
# Few-shot sampling and its cache
# ------------------------------------------------------------------------------------------


def reference_fewshot(split, shots, seed):
    """CoOp's few-shot sampling as a plain loop: per label (first appearance) random.sample K, then val."""
    random.seed(seed)
    sampled = {}
    for key, k in (("train", shots), ("val", min(shots, 4))):
        groups = defaultdict(list)
        for entry in split[key]:
            groups[entry[1]].append(tuple(entry))
        sampled[key] = []
        for group in groups.values():
            sampled[key] += random.sample(group, k) if len(group) >= k else group
    return sampled


def test_fewshot_sampling_follows_the_reference_and_is_deterministic(tmp_path):
    info = build_fake("DescribableTextures", tmp_path / "a", images_per_class=12)
    with open(info.split_file) as f:
        split = json.load(f)
    image_dir = osp.join(info.dataset_dir, "images")

    dataset = load(info, seed=1, num_shots=4)
    expected = reference_fewshot(split, shots=4, seed=1)
    assert relative(dataset.train_x, image_dir) == expected["train"]
    assert relative(dataset.val, image_dir) == expected["val"]
    assert len(dataset.test) == info.counts["test"]  # never reduced

    twin = build_fake("DescribableTextures", tmp_path / "b", images_per_class=12)
    same_seed = load(twin, seed=1, num_shots=4)
    assert relative(same_seed.train_x, osp.join(str(tmp_path / "b"), "dtd", "images")) == expected["train"]
    other_seed = load(info, seed=2, num_shots=4)
    assert relative(other_seed.train_x, image_dir) == reference_fewshot(split, shots=4, seed=2)["train"]
    assert relative(other_seed.train_x, image_dir) != expected["train"]


def test_classes_with_fewer_items_than_shots_keep_all_of_them(tmp_path):
    info = build_fake("FGVCAircraft", tmp_path, images_per_class=3)
    dataset = load(info, num_shots=16)
    assert len(dataset.train_x) == 3 * 4
    assert len(dataset.val) == 2 * 4  # min(16, 4) = 4 > the 2 val items per class


def build_as_train_py(info, seed, num_shots):
    """What train.py does before the dataset exists: set_random_seed(SEED), then build it."""
    cfg = make_cfg(info.root, info.name, num_shots=num_shots, seed=seed)
    cfg.VERBOSE = False
    set_random_seed(cfg.SEED)
    return build_dataset(cfg)


def test_set_random_seed_decides_the_fewshot_sample_whatever_random_held_before(tmp_path):
    info = build_fake("DescribableTextures", tmp_path, images_per_class=12)
    with open(info.split_file) as f:
        split = json.load(f)
    image_dir = osp.join(info.dataset_dir, "images")

    def sample(seed, earlier_state, seeded=True):
        shutil.rmtree(osp.join(info.dataset_dir, "split_fewshot"), ignore_errors=True)  # draw, no cache
        random.seed(earlier_state)  # whatever ran before in the process
        if seeded:
            dataset = build_as_train_py(info, seed, num_shots=4)
        else:
            dataset = DATASET_REGISTRY.get(info.name)(make_cfg(info.root, info.name, num_shots=4, seed=seed))
        return relative(dataset.train_x, image_dir), relative(dataset.val, image_dir)

    # Without the seeding step the sample follows the earlier state: the test can tell.
    assert sample(1, earlier_state=0, seeded=False) != sample(1, earlier_state=99, seeded=False)
    first = sample(1, earlier_state=0)
    assert sample(1, earlier_state=99) == first
    assert sample(1, earlier_state=12345) == first
    assert sample(2, earlier_state=0)[0] != first[0]
    assert sample(2, earlier_state=0) == sample(2, earlier_state=99)
    # set_random_seed(S) seeds the sampler as random.seed(S) does, so caches match upstream's.
    expected = reference_fewshot(split, shots=4, seed=1)
    assert first == (expected["train"], expected["val"])


def with_train_items_of_label_0_cut_to(info, count):
    with open(info.split_file) as f:
        split = json.load(f)
    kept = [entry for entry in split["train"] if entry[1] == 0][:count]
    split["train"] = kept + [entry for entry in split["train"] if entry[1] != 0]
    with open(info.split_file, "w") as f:
        json.dump(split, f)
    return split


def test_num_shots_above_what_a_class_has_is_said_once(tmp_path, capsys):
    info = build_fake("DescribableTextures", tmp_path, images_per_class=12)  # 9 train items per class
    split = with_train_items_of_label_0_cut_to(info, 5)
    expected_line = (
        "Warning: DATASET.NUM_SHOTS is 7, but 1 of 3 classes have fewer training items (smallest: 5); "
        "they keep all of their items"
    )
    dataset = load(info, num_shots=7)
    out = capsys.readouterr().out
    assert out.count("DATASET.NUM_SHOTS") == 1 and expected_line in out.splitlines()
    image_dir = osp.join(info.dataset_dir, "images")
    train = relative(dataset.train_x, image_dir)
    assert sorted(entry for entry in train if entry[1] == 0) == sorted(tuple(e) for e in split["train"] if e[1] == 0)
    assert [sum(entry[1] == label for entry in train) for label in range(3)] == [5, 7, 7]  # no repetition

    load(info, num_shots=7)  # from the cache: the run's log says it too, once
    out = capsys.readouterr().out
    assert "Loading preprocessed few-shot data" in out and out.count("DATASET.NUM_SHOTS") == 1

    load(info, num_shots=5)
    assert "DATASET.NUM_SHOTS" not in capsys.readouterr().out


def test_num_shots_line_counts_every_short_class(tmp_path, capsys):
    info = build_fake("FGVCAircraft", tmp_path, images_per_class=3)
    load(info, num_shots=16)
    out = capsys.readouterr().out
    assert "Warning: DATASET.NUM_SHOTS is 16, but 4 of 4 classes have fewer training items (smallest: 3)" in out


def test_second_construction_reuses_the_cache(tmp_path, capsys):
    info = build_fake("Caltech101", tmp_path)
    path = cache_path(info, 2, 1)
    first = load(info, seed=1, num_shots=2)
    assert f"Saving preprocessed few-shot data to {path}" in capsys.readouterr().out
    assert osp.isfile(path)

    random.seed(12345)  # a fresh draw would differ; the cache must win
    second = DATASET_REGISTRY.get("Caltech101")(make_cfg(info.root, "Caltech101", num_shots=2, seed=1))
    assert f"Loading preprocessed few-shot data from {path}" in capsys.readouterr().out
    assert relative(second.train_x, info.dataset_dir) == relative(first.train_x, info.dataset_dir)
    assert relative(second.val, info.dataset_dir) == relative(first.val, info.dataset_dir)


def test_seed_minus_one_names_the_cache_seed_minus_one(tmp_path):
    info = build_fake("EuroSAT", tmp_path)
    load(info, seed=-1, num_shots=1)
    assert osp.isfile(cache_path(info, 1, -1))


def test_cache_file_is_interchangeable_with_upstream(tmp_path):
    info = build_fake("OxfordPets", tmp_path)
    dataset = load(info, num_shots=2)
    path = cache_path(info, 2, 1)
    with open(path, "rb") as f:
        assert f.read(2) == bytes([0x80, pickle.HIGHEST_PROTOCOL])
    with open(path, "rb") as f:
        data = pickle.load(f)
    assert set(data) == {"train", "val", caches.CACHE_DATASET_DIR_KEY, caches.CACHE_FINGERPRINT_KEY}
    assert data[caches.CACHE_DATASET_DIR_KEY] == info.dataset_dir
    for item in data["train"] + data["val"]:
        assert (type(item).__module__, type(item).__qualname__) == ("dassl.data.datasets.base_dataset", "Datum")
        assert set(vars(item)) == {"_impath", "_label", "_domain", "_classname"}
        assert osp.isabs(item.impath) and item.domain == 0
    assert [item.impath for item in data["train"]] == [item.impath for item in dataset.train_x]


def test_imagenet_cache_holds_only_train(tmp_path):
    info = build_fake("ImageNet", tmp_path)
    dataset = load(info, num_shots=2)
    with open(cache_path(info, 2, 1), "rb") as f:
        data = pickle.load(f)
    assert set(data) == {"train", caches.CACHE_DATASET_DIR_KEY, caches.CACHE_FINGERPRINT_KEY}
    assert len(dataset.train_x) == 2 * 3 and dataset.val is dataset.test
    assert len(dataset.test) == info.counts["test"]


def test_our_cache_follows_a_moved_data_folder(tmp_path, capsys):
    info = build_fake("DescribableTextures", tmp_path / "old")
    first = load(info, num_shots=2)
    new_root = tmp_path / "new"
    new_root.mkdir()
    shutil.move(info.dataset_dir, str(new_root / "dtd"))
    capsys.readouterr()

    moved = load(info, num_shots=2, root=str(new_root))
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out
    assert all(item.impath.startswith(str(new_root / "dtd") + os.sep) for item in moved.train_x + moved.val)
    assert relative(moved.train_x, str(new_root / "dtd")) == relative(first.train_x, info.dataset_dir)


def write_upstream_cache(path, data):
    """An upstream cache: only "train"/"val", Datum objects with absolute paths."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)


def rebased(item, old_prefix, new_prefix):
    """A copy of ``item`` whose path was written on another machine (Datum checks no path here)."""
    clone = copy.copy(item)
    clone._impath = new_prefix + item.impath[len(old_prefix) :]
    return clone


def test_upstream_cache_with_paths_from_another_machine_is_remapped(tmp_path, capsys):
    info = build_fake("DescribableTextures", tmp_path)
    full = load(info)
    train, val = full.train_x[::3], full.val[::2]  # every class in both
    foreign = "/home/someone/DATA/dtd"
    write_upstream_cache(
        cache_path(info, 2, 1),
        {
            "train": [rebased(item, info.dataset_dir, foreign) for item in train],
            "val": [rebased(item, info.dataset_dir, foreign) for item in val],
        },
    )
    dataset = load(info, num_shots=2)
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out
    assert [item.impath for item in dataset.train_x] == [item.impath for item in train]
    assert [item.impath for item in dataset.val] == [item.impath for item in val]


def test_our_cache_from_another_split_is_detected(tmp_path):
    info = build_fake("Caltech101", tmp_path)
    load(info, num_shots=2)
    with open(info.split_file) as f:
        split = json.load(f)
    split["test"].append(split["train"].pop(0))  # same classes, different split
    with open(info.split_file, "w") as f:
        json.dump(split, f)
    with pytest.raises(DatasetLayoutError) as excinfo:
        load(info, num_shots=2)
    message = str(excinfo.value)
    assert "Caltech101" in message and "sampled from a different split" in message
    assert cache_path(info, 2, 1) in message and "delete shot_2-seed_1.pkl" in message


def test_upstream_cache_from_another_split_is_detected(tmp_path):
    info = build_fake("DescribableTextures", tmp_path)
    full = load(info)
    stale_item = full.val[0]  # a val item cached as train: sampled from another split
    stale = {"train": full.train_x[:2] + [stale_item], "val": full.val[:1]}
    write_upstream_cache(cache_path(info, 2, 1), stale)
    with pytest.raises(DatasetLayoutError) as excinfo:
        load(info, num_shots=2)
    message = str(excinfo.value)
    assert "sampled from a different split" in message and 'entry 2 of "train"' in message
    assert osp.relpath(stale_item.impath, info.dataset_dir) in message
    assert cache_path(info, 2, 1) in message and "delete" in message


def test_cache_referring_to_missing_images_names_the_first_one(tmp_path):
    info = build_fake("DescribableTextures", tmp_path)
    full = load(info)
    ghost = copy.copy(full.train_x[1])
    ghost._impath = "/old/machine/DATA/dtd/images/banded/banded_0999.jpg"
    write_upstream_cache(cache_path(info, 2, 1), {"train": [full.train_x[0], ghost], "val": full.val[:1]})
    with pytest.raises(DatasetLayoutError) as excinfo:
        load(info, num_shots=2)
    message = str(excinfo.value)
    assert "missing image" in message
    assert osp.join(info.dataset_dir, "images", "banded", "banded_0999.jpg") in message
    assert ghost.impath in message and cache_path(info, 2, 1) in message
    fewshot_dir = osp.join(info.dataset_dir, "split_fewshot")
    assert f"delete shot_2-seed_1.pkl (or all of {fewshot_dir}/)" in message


def test_unreadable_cache_is_reported(tmp_path):
    info = build_fake("EuroSAT", tmp_path)
    os.makedirs(osp.dirname(cache_path(info, 1, 1)))
    with open(cache_path(info, 1, 1), "wb") as f:
        f.write(b"not a pickle")
    with pytest.raises(DatasetLayoutError, match="cannot read the few-shot cache") as excinfo:
        load(info, num_shots=1)
    assert cache_path(info, 1, 1) in str(excinfo.value)


def test_split_fewshot_that_is_not_a_folder_is_reported(tmp_path):
    info = build_fake("Food101", tmp_path)
    with open(osp.join(info.dataset_dir, "split_fewshot"), "w") as f:
        f.write("")
    with pytest.raises(DatasetLayoutError) as excinfo:
        load(info)
    message = str(excinfo.value)
    assert "Food101" in message and osp.join(info.dataset_dir, "split_fewshot") in message


def test_unwritable_split_fewshot_is_reported(tmp_path, monkeypatch):
    info = build_fake("Food101", tmp_path)
    os_open = os.open

    def refuse_in_split_fewshot(path, *args, **kwargs):  # root ignores folder permissions
        if osp.basename(osp.dirname(path)) == "split_fewshot":
            raise PermissionError(13, "Permission denied")
        return os_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_in_split_fewshot)
    with pytest.raises(DatasetLayoutError) as excinfo:
        load(info, num_shots=1)
    message = str(excinfo.value)
    assert "path: " + osp.join(info.dataset_dir, "split_fewshot") in message
    assert "must be writable" in message and "Permission denied" in message
    assert not os.listdir(osp.join(info.dataset_dir, "split_fewshot"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_dataset_folder_is_reported(tmp_path):
    info = build_fake("Food101", tmp_path)
    os.chmod(info.dataset_dir, 0o555)
    try:
        with pytest.raises(DatasetLayoutError, match="cannot create the few-shot cache folder") as excinfo:
            load(info)
        assert osp.join(info.dataset_dir, "split_fewshot") in str(excinfo.value)
    finally:
        os.chmod(info.dataset_dir, 0o755)
