"""tools.check_datasets on good and broken fake trees: exit status, output, and no writes."""

import json
import os
import os.path as osp
import random
import subprocess
import sys

import pytest

import datasets
from dassl.data.datasets import DATASET_REGISTRY
from datasets.toy_shapes import CLASSNAMES
from tests.fake_datasets import build_fake, make_cfg
from tools import check_datasets, toy_world

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def tree_listing(root):
    return sorted(osp.join(folder, name) for folder, dirs, files in os.walk(root) for name in dirs + files)


def accept_fake_counts(monkeypatch, *infos):
    """Make each fake's counts the 'standard' ones, so that a complete fake checks as ok."""
    for info in infos:
        counts = dict(info.counts, classes=len(info.classnames))
        monkeypatch.setattr(DATASET_REGISTRY.get(info.name), "STANDARD_SIZES", counts)


def run_main(capsys, *argv):
    status = check_datasets.main(list(argv))
    return status, capsys.readouterr().out


def test_good_tree_is_ok_and_left_untouched(tmp_path, monkeypatch, capsys):
    infos = [build_fake(name, tmp_path) for name in ("Caltech101", "FGVCAircraft", "ImageNet", "ImageNetA")]
    accept_fake_counts(monkeypatch, *infos)
    before = tree_listing(tmp_path)

    names = ["caltech101", "FGVCAircraft", "imagenet", "ImageNetA"]  # yaml and registered names
    status, out = run_main(capsys, "--root", str(tmp_path), *names)
    assert status == 0
    assert "[ok]       Caltech101 (caltech-101/) classes 6, train 18, val 12, test 6" in out
    assert "[ok]       ImageNetA (imagenet-adversarial/) classes 3, train 18, val -, test 18" in out
    assert "Summary: 4 ok, 0 missing, 0 with problems" in out
    assert tree_listing(tmp_path) == before  # no split_fewshot/, no preprocessed.pkl


def test_broken_tree_reports_each_problem(tmp_path, monkeypatch, capsys):
    caltech = build_fake("Caltech101", tmp_path)
    dtd = build_fake("DescribableTextures", tmp_path, source="raw")
    accept_fake_counts(monkeypatch, caltech, dtd)
    with open(caltech.split_file) as f:
        relpath = json.load(f)["val"][0][0]
    missing_image = osp.join(caltech.dataset_dir, "101_ObjectCategories", relpath)
    os.remove(missing_image)
    before = tree_listing(tmp_path)

    status, out = run_main(capsys, "--root", str(tmp_path), "caltech101", "dtd", "oxford_pets")
    assert status == 1
    assert "[problem]  Caltech101" in out and "image file not found" in out and missing_image in out
    assert "[problem]  DescribableTextures (dtd/) classes 3, train 9, val 3, test 6" in out
    assert "split_zhou_DescribableTextures.json is missing" in out
    assert "[missing]  OxfordPets {} not found".format(osp.join(str(tmp_path), "oxford_pets")) in out
    assert "annotations/trainval.txt" in out  # the expected layout
    assert "Summary: 0 ok, 1 missing, 2 with problems" in out
    assert tree_listing(tmp_path) == before  # the DTD split was built in memory only


def test_counts_differing_from_the_standard_split(tmp_path, capsys):
    build_fake("EuroSAT", tmp_path)
    status, out = run_main(capsys, "--root", str(tmp_path), "EuroSAT")
    assert status == 1
    assert "counts differ from the standard split: classes 4 (standard: 10); " in out
    assert "train 12 (standard: 13500); val 8 (standard: 5400); test 4 (standard: 8100)" in out


def test_stale_fewshot_cache_is_reported(tmp_path, monkeypatch, capsys):
    info = build_fake("Food101", tmp_path)
    random.seed(1)
    datasets.Food101(make_cfg(tmp_path, "Food101", num_shots=1))
    with open(info.split_file) as f:
        split = json.load(f)
    split["test"].append(split["train"].pop())
    with open(info.split_file, "w") as f:
        json.dump(split, f)
    counts = {key: len(entries) for key, entries in split.items()}
    monkeypatch.setattr(datasets.Food101, "STANDARD_SIZES", dict(counts, classes=3))

    status, out = run_main(capsys, "--root", str(tmp_path), "food101")
    assert status == 1
    assert "[problem]  Food101" in out and "counts differ" not in out
    assert "sampled from a different split" in out and "shot_1-seed_1.pkl" in out


def test_verify_images_lists_undecodable_files(tmp_path, monkeypatch, capsys):
    info = build_fake("ImageNetR", tmp_path)
    accept_fake_counts(monkeypatch, info)
    broken = info.images[4]
    with open(broken, "wb") as f:
        f.write(b"\xff\xd8 truncated jpeg")

    assert run_main(capsys, "--root", str(tmp_path), "imagenet_r")[0] == 0  # loaders do not decode
    status, out = run_main(capsys, "--root", str(tmp_path), "imagenet_r", "--verify-images")
    assert status == 1
    assert "1 of 18 images cannot be decoded" in out and broken in out


def test_missing_root(tmp_path, capsys):
    status, out = run_main(capsys, "--root", str(tmp_path / "nowhere"))
    assert status == 1 and "DATA folder not found" in out


def test_unknown_name_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as excinfo:
        check_datasets.main(["--root", str(tmp_path), "cifar10"])
    assert excinfo.value.code == 2
    assert "unknown dataset(s) cifar10" in capsys.readouterr().err


def test_all_fifteen_checked_by_default(tmp_path, capsys):
    status, out = run_main(capsys, "--root", str(tmp_path))
    assert status == 1
    assert "Summary: 0 ok, 15 missing, 0 with problems" in out
    for dataset_class in datasets.BENCHMARKS:
        assert f"[missing]  {dataset_class.__name__} " in out


def test_toy_shapes_is_checked_when_named(tmp_path, monkeypatch, capsys):
    toy_world.write_toy_world(str(tmp_path), 1, {"train": 2, "val": 1, "test": 1})
    before = tree_listing(tmp_path)
    status, out = run_main(capsys, "--root", str(tmp_path), "toy_shapes")
    assert status == 1
    assert "[problem]  ToyShapes (toy_shapes/) classes 36, train 72, val 36, test 36" in out
    assert "train 72 (standard: 864); val 36 (standard: 288); test 36 (standard: 864)" in out
    assert "fix: the toy world is incomplete or was generated with other sizes: generate it with " in out
    assert "python -m tools.toy_world --root <DATASET.ROOT>" in out

    small = {"classes": 36, "train": 72, "val": 36, "test": 36}
    monkeypatch.setattr(datasets.ToyShapes, "STANDARD_SIZES", small)
    status, out = run_main(capsys, "--root", str(tmp_path), "ToyShapes")
    assert status == 0 and "[ok]       ToyShapes (toy_shapes/) classes 36" in out
    assert tree_listing(tmp_path) == before


def test_toy_shapes_standard_sizes_are_the_generators_defaults():
    sizes = {key: len(CLASSNAMES) * n for key, n in toy_world.SPLIT_SIZES.items()}
    assert datasets.ToyShapes.STANDARD_SIZES == dict(sizes, classes=len(CLASSNAMES))


def test_missing_toy_shapes_names_the_generator(tmp_path, capsys):
    status, out = run_main(capsys, "--root", str(tmp_path), "toy_shapes")
    assert status == 1
    assert "[missing]  ToyShapes {} not found".format(osp.join(str(tmp_path), "toy_shapes")) in out
    assert "fix: generate it with python -m tools.toy_world --root <DATASET.ROOT> (see docs/toy_world.md)" in out


def test_toy_shapes_without_its_split_file_is_the_loaders_error_only(tmp_path, capsys):
    dataset_dir = toy_world.write_toy_world(str(tmp_path), 1, {"train": 1, "val": 1, "test": 1})
    os.remove(osp.join(dataset_dir, "split_zhou_ToyShapes.json"))
    status, out = run_main(capsys, "--root", str(tmp_path), "toy_shapes")
    assert status == 1
    assert "split_zhou_ToyShapes.json not found" in out and "generate the toy world again" in out
    assert "published" not in out and "Google Drive" not in out


def test_command_line_entry_point(tmp_path):
    build_fake("DescribableTextures", tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "tools.check_datasets", "--root", str(tmp_path), "dtd"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "[problem]  DescribableTextures" in result.stdout
    assert "classes 3 (standard: 47)" in result.stdout
