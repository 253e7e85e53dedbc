"""Writing the pickled caches (umask, atomic writes) and reading ImageNet's preprocessed.pkl after
the data folder moved."""

import copy
import os
import os.path as osp
import pickle
import random
import shutil
import stat

import pytest

import datasets  # noqa: F401  (registers the datasets)
from dassl.data.datasets import DATASET_REGISTRY, DatasetLayoutError
from datasets import caches
from tests.fake_datasets import build_fake, make_cfg


def load(info, root=None, **cfg_options):
    random.seed(1)
    return DATASET_REGISTRY.get(info.name)(make_cfg(root or info.root, info.name, **cfg_options))


def relative(items, dataset_dir):
    return [(osp.relpath(item.impath, dataset_dir), item.label, item.classname) for item in items]


def leftovers(folder):
    return [name for name in os.listdir(folder) if name.startswith(".tmp")]


# ------------------------------------------------------------------------------------------
# Writing: the umask decides the mode, and a failed write leaves nothing behind
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077], ids=oct)
def test_written_files_respect_the_umask(tmp_path, umask):
    imagenet = build_fake("ImageNet", tmp_path)
    dtd = build_fake("DescribableTextures", tmp_path, source="raw")  # the loader writes the split JSON
    previous = os.umask(umask)
    try:
        load(imagenet, num_shots=2)
        load(dtd, num_shots=2)
    finally:
        os.umask(previous)
    written = [
        osp.join(imagenet.dataset_dir, "preprocessed.pkl"),
        osp.join(imagenet.dataset_dir, "split_fewshot", "shot_2-seed_1.pkl"),
        dtd.split_file,
        osp.join(dtd.dataset_dir, "split_fewshot", "shot_2-seed_1.pkl"),
    ]
    for path in written:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask, path
    for folder in (imagenet.dataset_dir, osp.join(imagenet.dataset_dir, "split_fewshot")):
        assert not leftovers(folder)


def test_failed_cache_write_leaves_neither_the_cache_nor_a_temporary_file(tmp_path, monkeypatch):
    info = build_fake("EuroSAT", tmp_path)
    pickle_dump = pickle.dump

    def disk_full_midway(obj, f, *args, **kwargs):
        f.write(pickle.dumps(obj)[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(caches.pickle, "dump", disk_full_midway)
    with pytest.raises(DatasetLayoutError, match="No space left on device") as excinfo:
        load(info, num_shots=1)
    fewshot_dir = osp.join(info.dataset_dir, "split_fewshot")
    assert "path: " + fewshot_dir in str(excinfo.value)
    assert os.listdir(fewshot_dir) == []

    monkeypatch.setattr(caches.pickle, "dump", pickle_dump)
    load(info, num_shots=1)  # the next run writes it
    assert os.listdir(fewshot_dir) == ["shot_1-seed_1.pkl"]


def test_interrupted_cache_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    info = build_fake("EuroSAT", tmp_path)

    def interrupted_midway(obj, f, *args, **kwargs):
        f.write(pickle.dumps(obj)[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(caches.pickle, "dump", interrupted_midway)
    with pytest.raises(KeyboardInterrupt):
        load(info, num_shots=1)
    assert os.listdir(osp.join(info.dataset_dir, "split_fewshot")) == []


def test_a_cache_is_replaced_whole(tmp_path):
    info = build_fake("Food101", tmp_path)
    path = osp.join(info.dataset_dir, "split_fewshot", "shot_1-seed_1.pkl")
    context = load(info).context
    caches.write_pickle_atomically({"train": []}, path, context, "a test")
    caches.write_pickle_atomically({"train": [], "val": []}, path, context, "a test")
    with open(path, "rb") as f:
        assert pickle.load(f) == {"train": [], "val": []}
    assert os.listdir(osp.dirname(path)) == ["shot_1-seed_1.pkl"]


# ------------------------------------------------------------------------------------------
# ImageNet's preprocessed.pkl after the data folder moved
# ------------------------------------------------------------------------------------------


def test_imagenet_preprocessed_pkl_follows_a_moved_data_folder(tmp_path, capsys):
    info = build_fake("ImageNet", tmp_path / "old")
    first = load(info, num_shots=2)
    new_dir = str(tmp_path / "new" / "imagenet")
    os.makedirs(tmp_path / "new")
    shutil.move(info.dataset_dir, new_dir)
    os.remove(osp.join(new_dir, "classnames.txt"))  # the lists must come from preprocessed.pkl
    with open(osp.join(new_dir, "preprocessed.pkl"), "rb") as f:
        stored = f.read()
    capsys.readouterr()

    moved = load(info, root=str(tmp_path / "new"), num_shots=2)
    out = capsys.readouterr().out
    assert f"preprocessed.pkl was written under {info.dataset_dir}: its paths are read under {new_dir}" in out
    assert "Loading preprocessed few-shot data" in out
    assert relative(moved.test, new_dir) == relative(first.test, info.dataset_dir)
    assert relative(moved.train_x, new_dir) == relative(first.train_x, info.dataset_dir)
    assert all(item.impath.startswith(new_dir + os.sep) for item in moved.train_x + moved.test)
    with open(osp.join(new_dir, "preprocessed.pkl"), "rb") as f:
        assert f.read() == stored  # read-only: the file stays as written


def test_imagenet_preprocessed_pkl_from_another_machine_is_remapped(tmp_path, capsys):
    info = build_fake("ImageNet", tmp_path)
    full = load(info)
    # A prefix that holds the folder name twice: the last "imagenet" component is the dataset's.
    foreign = "/mnt/imagenet/DATA/imagenet"

    def from_elsewhere(item):
        clone = copy.copy(item)
        clone._impath = foreign + item.impath[len(info.dataset_dir) :]
        return clone

    with open(osp.join(info.dataset_dir, "preprocessed.pkl"), "wb") as f:
        data = {
            "train": [from_elsewhere(item) for item in full.train_x],
            "test": [from_elsewhere(item) for item in full.test],
        }
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    capsys.readouterr()

    dataset = load(info)
    assert f"preprocessed.pkl was written under {foreign}: its paths are read under" in capsys.readouterr().out
    assert [item.impath for item in dataset.train_x] == [item.impath for item in full.train_x]
    assert [item.impath for item in dataset.test] == [item.impath for item in full.test]


def test_imagenet_preprocessed_pkl_in_place_is_read_as_written(tmp_path, capsys):
    info = build_fake("ImageNet", tmp_path)
    first = load(info)
    capsys.readouterr()
    second = load(info)
    assert "was written under" not in capsys.readouterr().out
    assert [item.impath for item in second.train_x] == [item.impath for item in first.train_x]
