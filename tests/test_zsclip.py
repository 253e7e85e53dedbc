"""The zero-shot trainers: ZeroshotCLIP2's templates and ensemble against a per-sentence reference,
and both trainers through train.py --eval-only on a small toy world."""

import os.path as osp
import re

import pytest
import torch

import clip
from tests.engine_toys import run_train_py
from tests.tiny_clip import tiny_vit_state_dict
from tools.toy_world import write_toy_world
from trainers.text import IMAGENET_TEMPLATES_SELECT, ensemble_text_features
from trainers.zsclip import ZeroshotCLIP, ZeroshotCLIP2

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SELECTED = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def templates_of(trainer_class, dataset_name):
    return trainer_class.templates(None, dataset_name)


@pytest.mark.parametrize(
    "dataset, extra",
    [
        ("ImageNet", []),
        ("ImageNetV2", ["a photo of a {}."]),
        ("ImageNetSketch", ["a photo of a {}."]),
        ("EuroSAT", ["a centered satellite photo of {}."]),
        ("UCF101", ["a photo of a person doing {}."]),
        ("ToyShapes", ["a photo of a {}."]),
    ],
)
def test_zeroshotclip2_templates(dataset, extra):
    assert templates_of(ZeroshotCLIP2, dataset) == SELECTED + extra


def test_templates_are_built_anew_for_every_trainer():
    """Upstream appends the dataset template to a class-level list: a second trainer in the same
    process got it twice. Ours copies the list."""
    first = templates_of(ZeroshotCLIP2, "EuroSAT")
    first.append("changed {}.")
    assert templates_of(ZeroshotCLIP2, "EuroSAT") == SELECTED + ["a centered satellite photo of {}."]
    assert list(IMAGENET_TEMPLATES_SELECT) == SELECTED
    assert templates_of(ZeroshotCLIP, "DescribableTextures") == ["{} texture."]


def test_an_unknown_dataset_is_named():
    with pytest.raises(ValueError, match=r"No template for DATASET.NAME = 'Birds'"):
        templates_of(ZeroshotCLIP2, "Birds")


def test_ensemble_equals_the_per_sentence_reference():
    model = clip.build_model(tiny_vit_state_dict(seed=2)).eval()
    classnames = ["cat", "fire_truck", "axolotl"]
    templates = SELECTED + ["a photo of a {}."]
    with torch.no_grad():
        features = ensemble_text_features(model, templates, classnames)
        expected = []
        for name in classnames:
            total = 0
            for template in templates:
                feature = model.encode_text(clip.tokenize(template.format(name.replace("_", " "))))[0]
                total = total + feature / feature.norm()
            mean = total / len(templates)
            expected.append(mean / mean.norm())
    torch.testing.assert_close(features, torch.stack(expected), rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("toy_world"))
    write_toy_world(root, 1, {"train": 1, "val": 1, "test": 2})
    return root


@pytest.mark.parametrize("trainer, templates", [("ZeroshotCLIP", None), ("ZeroshotCLIP2", 8)])
def test_eval_only_through_train_py(toy_world, tmp_path, trainer, templates):
    argv = [
        "--root",
        toy_world,
        "--trainer",
        trainer,
        "--dataset-config-file",
        osp.join(REPO, "configs/datasets/toy_shapes.yaml"),
        "--config-file",
        osp.join(REPO, "configs/trainers/CoOp/toy_clip.yaml"),
        "--output-dir",
        str(tmp_path),
        "--eval-only",
        "DATASET.SUBSAMPLE_CLASSES",
        "new",
        "MODEL.BACKBONE.PATH",
        osp.join(REPO, "tools/assets/toy_clip.pt"),
    ]
    assert run_train_py(argv) == 0
    log = (tmp_path / "log.txt").read_text()
    assert ("Prompt ensembling (n=8)" in log) == (templates == 8)
    assert re.search(r"^\* total: 36$", log, flags=re.M)  # 18 new classes x 2 test images
    accuracy = float(re.search(r"^\* accuracy: ([\d.]+)%$", log, flags=re.M).group(1))
    assert accuracy > 100 / 18  # better than chance with the pretrained toy CLIP
