"""dassl.data (transforms, samplers and loaders, DatasetWrapper, DataManager), Datum pickles in
the upstream layout and the evaluator."""

import io
import pickle
import pickletools
import re
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from dassl.config import get_cfg_default
from dassl.data import DataManager, DatasetWrapper, build_data_loader, build_sampler
from dassl.data.datasets import Datum
from dassl.data.transforms import SUPPORTED_CHOICES, build_transform
from dassl.evaluation import Classification, build_evaluator
from tests.engine_toys import CLASSNAMES, SPLIT_SIZES, make_toy_images  # also registers ToyColors


def make_cfg(**opts):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (8, 8)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.USE_CUDA = False
    for dotted, value in opts.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return cfg


def write_images(tmp_path, n, size=(12, 10)):
    paths = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((size[1], size[0], 3), 10 * i, np.uint8)).save(path)
        paths.append(str(path))
    return [Datum(impath=p, label=i % 2, domain=0, classname=f"c{i % 2}") for i, p in enumerate(paths)]


# ---------------------------------------------------------------------------- transforms


def test_standard_pipelines_print_the_dassl_lines(capsys):
    cfg = make_cfg(
        INPUT__TRANSFORMS=("random_resized_crop", "random_flip", "normalize"), INPUT__INTERPOLATION="bicubic"
    )
    cfg.INPUT.PIXEL_MEAN = [0.48145466, 0.4578275, 0.40821073]
    cfg.INPUT.PIXEL_STD = [0.26862954, 0.26130258, 0.27577711]
    train = build_transform(cfg, is_train=True)
    test = build_transform(cfg, is_train=False)
    assert capsys.readouterr().out == (
        "Building transform_train\n"
        "+ random resized crop (size=(8, 8), scale=(0.08, 1.0))\n"
        "+ random flip\n"
        "+ to torch tensor of range [0, 1]\n"
        "+ normalization (mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711])\n"
        "Building transform_test\n"
        "+ resize the smaller edge to 8\n"
        "+ 8x8 center crop\n"
        "+ to torch tensor of range [0, 1]\n"
        "+ normalization (mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711])\n"
    )
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3)).astype(np.uint8))
    assert train(image).shape == (3, 8, 8)
    assert test(image).shape == (3, 8, 8)


def test_test_pipeline_resizes_the_short_edge_then_center_crops():
    cfg = make_cfg(INPUT__TRANSFORMS=(), INPUT__INTERPOLATION="nearest")
    pixels = np.zeros((16, 32, 3), np.uint8)  # H=16, W=32
    pixels[:, 12:20] = 255  # a bright stripe in the middle 8 columns
    out = build_transform(cfg, is_train=False)(Image.fromarray(pixels))
    # Resize to 8x16 (stripe -> columns 6..9), center crop 8x8 (columns 4..11) -> stripe at 2..5.
    expected = torch.zeros(3, 8, 8)
    expected[:, :, 2:6] = 1.0
    torch.testing.assert_close(out, expected)


def test_every_supported_choice_builds_and_runs(capsys):
    choices = tuple(c for c in SUPPORTED_CHOICES if c != "random_crop")
    cfg = make_cfg(INPUT__TRANSFORMS=choices, INPUT__GB_K=3, INPUT__CUTOUT_LEN=2)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3)).astype(np.uint8))
    assert build_transform(cfg, is_train=True)(image).shape == (3, 8, 8)
    out = capsys.readouterr().out
    for line in [
        "+ random translation",
        "+ color jitter (brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)",
        "+ random gray scale",
        "+ gaussian blur (kernel=3)",
        "+ cutout (n_holes=1, length=2)",
        "+ gaussian noise (mean=0.0, std=0.15)",
        "+ instance normalization",
    ]:
        assert line in out
    cfg = make_cfg(INPUT__TRANSFORMS=("random_crop",))
    assert build_transform(cfg, is_train=True)(image).shape == (3, 8, 8)
    assert "+ random crop (padding = 4)" in capsys.readouterr().out


def test_instance_norm_normalises_each_channel():
    cfg = make_cfg(INPUT__TRANSFORMS=("instance_norm",))
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (8, 8, 3)).astype(np.uint8))
    out = build_transform(cfg, is_train=False)(image)
    torch.testing.assert_close(out.mean(dim=(1, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(1, 2)), torch.ones(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "choice, message",
    [("random_rotate", "Unknown transform 'random_rotate'"), ("randaugment", "is not implemented by this engine")],
)
def test_rejected_choices_list_the_supported_ones(choice, message):
    with pytest.raises(ValueError) as err:
        build_transform(make_cfg(INPUT__TRANSFORMS=("normalize", choice)))
    assert message in str(err.value)
    assert "supported: " + ", ".join(SUPPORTED_CHOICES) in str(err.value)


def test_no_transform(capsys):
    assert build_transform(make_cfg(INPUT__NO_TRANSFORM=True)) is None
    assert capsys.readouterr().out == "Note: no transform is applied!\n"


# ---------------------------------------------------------------------------- wrapper and loaders


def test_dataset_wrapper_items_and_collated_batch(tmp_path):
    items = write_images(tmp_path, 3)
    cfg = make_cfg(INPUT__TRANSFORMS=("normalize",))
    tfm = build_transform(cfg, is_train=False)
    loader = build_data_loader(cfg, data_source=items, batch_size=2, tfm=tfm, is_train=False)
    batch = next(iter(loader))
    assert set(batch) == {"img", "label", "domain", "impath", "index"}
    assert batch["img"].shape == (2, 3, 8, 8) and batch["img"].dtype == torch.float32
    for key in ("label", "domain", "index"):
        assert batch[key].dtype == torch.int64
    assert batch["impath"] == [items[0].impath, items[1].impath]
    assert batch["index"].tolist() == [0, 1]
    assert batch["label"].tolist() == [0, 1]


def test_dataset_wrapper_variants(tmp_path):
    items = write_images(tmp_path, 1)
    cfg = make_cfg(INPUT__TRANSFORMS=("random_flip",), DATALOADER__K_TRANSFORMS=3, DATALOADER__RETURN_IMG0=True)
    tfm = build_transform(cfg, is_train=True)
    sample = DatasetWrapper(cfg, items, transform=[tfm, tfm], is_train=True)[0]
    assert set(sample) == {"img", "img2", "img0", "label", "domain", "impath", "index"}
    assert len(sample["img"]) == 3 and len(sample["img2"]) == 3
    assert sample["img0"].shape == (3, 8, 8)
    assert not isinstance(DatasetWrapper(cfg, items, transform=tfm, is_train=False)[0]["img"], list)
    assert isinstance(DatasetWrapper(make_cfg(), items)[0]["img"], Image.Image)
    with pytest.raises(ValueError, match="K_TRANSFORMS = 3 needs a transform"):
        DatasetWrapper(cfg, items, transform=None, is_train=True)


def test_undecodable_image_fails_loudly_naming_the_file(tmp_path):
    items = write_images(tmp_path, 2)
    with open(items[1].impath, "wb") as f:
        f.write(b"broken")
    cfg = make_cfg()
    wrapper = DatasetWrapper(cfg, items, transform=build_transform(cfg, is_train=False))
    wrapper[0]
    with pytest.raises(OSError, match=re.escape(items[1].impath)):
        wrapper[1]


def test_drop_last_rule(tmp_path):
    items = write_images(tmp_path, 5)
    cfg = make_cfg()
    tfm = build_transform(cfg, is_train=False)
    # Smaller than one batch: one short batch, not an empty loader.
    assert len(build_data_loader(cfg, "RandomSampler", items, batch_size=8, tfm=tfm, is_train=True)) == 1
    # At least one full batch: the partial one is dropped at training time only.
    assert len(build_data_loader(cfg, "RandomSampler", items, batch_size=2, tfm=tfm, is_train=True)) == 2
    assert len(build_data_loader(cfg, "SequentialSampler", items, batch_size=2, tfm=tfm, is_train=False)) == 3


def test_empty_loader_names_split_size_and_batch_size():
    with pytest.raises(ValueError) as err:
        build_data_loader(make_cfg(), data_source=[], batch_size=4, split="test")
    assert str(err.value) == "The test loader has no batch: the test split has 0 items and the batch size is 4"


def test_samplers():
    data = list(range(5))
    assert list(build_sampler("SequentialSampler", data_source=data)) == data
    torch.manual_seed(0)
    drawn = list(build_sampler("RandomSampler", data_source=data))
    assert sorted(drawn) == data
    with pytest.raises(ValueError, match="Unknown sampler type: Foo"):
        build_sampler("Foo", data_source=data)
    with pytest.raises(ValueError, match="RandomClassSampler .* is not implemented"):
        build_sampler("RandomClassSampler", data_source=data)


def test_data_manager_summary_and_loaders(tmp_path, capsys):
    make_toy_images(str(tmp_path))
    cfg = make_cfg(DATASET__NAME="ToyColors", DATASET__ROOT=str(tmp_path), INPUT__TRANSFORMS=("normalize",))
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 5
    dm = DataManager(cfg)
    out = capsys.readouterr().out
    n_train, n_val, n_test = (SPLIT_SIZES[s] * len(CLASSNAMES) for s in ("train", "val", "test"))
    assert out.startswith("Loading dataset: ToyColors\nBuilding transform_train\n")
    assert out.endswith(
        "---------  ---------\n"
        "Dataset    ToyColors\n"
        f"# classes  {len(CLASSNAMES)}\n"
        f"# train_x  {n_train}\n"
        f"# val      {n_val}\n"
        f"# test     {n_test}\n"
        "---------  ---------\n"
    )
    assert dm.num_classes == 3 and dm.lab2cname == dict(enumerate(CLASSNAMES)) and dm.num_source_domains == 0
    assert len(dm.train_loader_x) == n_train // 5 and dm.train_loader_u is None
    assert len(dm.val_loader.dataset) == n_val and len(dm.test_loader.dataset) == n_test


# ---------------------------------------------------------------------------- Datum pickles


def upstream_fewshot_pickle(records):
    """Pickle bytes of {"train": [Datum...], "val": []} written opcode by opcode, the way
    Dassl.pytorch's Datum (plain class, default pickling) comes out of pickle protocol 4, without
    using our Datum class: GLOBAL class reference, NEWOBJ, then BUILD with the instance __dict__."""

    def text(s):
        data = s.encode("utf-8")
        return b"\x8c" + bytes([len(data)]) + data if len(data) < 256 else b"X" + struct.pack("<I", len(data)) + data

    def integer(i):
        return b"J" + struct.pack("<i", i)

    out = b"\x80\x04" + b"}" + b"("  # PROTO 4, EMPTY_DICT, MARK
    out += text("train") + b"]" + b"("  # key, EMPTY_LIST, MARK
    for impath, label, domain, classname in records:
        out += text("dassl.data.datasets.base_dataset") + text("Datum") + b"\x93"  # STACK_GLOBAL
        out += b")" + b"\x81"  # EMPTY_TUPLE, NEWOBJ
        out += b"}" + b"("
        out += text("_impath") + text(impath) + text("_label") + integer(label)
        out += text("_domain") + integer(domain) + text("_classname") + text(classname)
        out += b"u" + b"b"  # SETITEMS, BUILD
    out += b"e"  # APPENDS
    out += text("val") + b"]"
    out += b"u" + b"."  # SETITEMS, STOP
    return out


def test_upstream_fewshot_cache_of_datum_objects_loads(tmp_path):
    records = [("/data/oxford_pets/images/Abyssinian_1.jpg", 0, 0, "abyssinian"), ("/elsewhere/b.jpg", 7, 1, "beagle")]
    raw = upstream_fewshot_pickle(records)
    pickletools.dis(raw, out=io.StringIO())  # a well-formed pickle
    path = tmp_path / "shot_1-seed_1.pkl"
    path.write_bytes(raw)
    with open(path, "rb") as f:
        data = pickle.load(f)  # paths that do not exist here: unpickling does not check them
    assert data["val"] == []
    for datum, (impath, label, domain, classname) in zip(data["train"], records):
        assert type(datum) is Datum
        assert (datum.impath, datum.label, datum.domain, datum.classname) == (impath, label, domain, classname)
        assert vars(datum) == {"_impath": impath, "_label": label, "_domain": domain, "_classname": classname}


def test_our_datum_pickles_in_the_upstream_layout(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (2, 2)).save(image)
    ours = pickle.dumps({"train": [Datum(str(image), 3, 0, "cat")], "val": []}, protocol=4)
    theirs = upstream_fewshot_pickle([(str(image), 3, 0, "cat")])
    assert pickle.loads(ours)["train"][0].__dict__ == pickle.loads(theirs)["train"][0].__dict__
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(ours)]
    assert ("SHORT_BINUNICODE", "dassl.data.datasets.base_dataset") in ops
    assert ("SHORT_BINUNICODE", "Datum") in ops
    assert [arg for name, arg in ops if name == "SHORT_BINUNICODE" and arg.startswith("_")] == [
        "_impath",
        "_label",
        "_domain",
        "_classname",
    ]


# ---------------------------------------------------------------------------- evaluator


def test_evaluator_block_matches_a_loop_computation(capsys):
    cfg = make_cfg()
    evaluator = build_evaluator(cfg, lab2cname={0: "a", 1: "b", 2: "c"})
    assert isinstance(evaluator, Classification)
    torch.manual_seed(0)
    outputs = [torch.randn(4, 3) for _ in range(3)]
    labels = [torch.randint(0, 3, (4,)) for _ in range(3)]
    for output, label in zip(outputs, labels):
        evaluator.process(output, label)
    results = evaluator.evaluate()

    y_pred = [int(row.argmax()) for output in outputs for row in output]
    y_true = [int(x) for label in labels for x in label]
    correct = sum(p == t for p, t in zip(y_pred, y_true))
    f1s = []
    for c in sorted(set(y_true)):
        tp = sum(p == c and t == c for p, t in zip(y_pred, y_true))
        fp = sum(p == c and t != c for p, t in zip(y_pred, y_true))
        fn = sum(p != c and t == c for p, t in zip(y_pred, y_true))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    acc, macro_f1 = 100 * correct / 12, 100 * sum(f1s) / len(f1s)

    assert list(results) == ["accuracy", "error_rate", "macro_f1"]
    assert results["accuracy"] == pytest.approx(acc)
    assert results["error_rate"] == pytest.approx(100 - acc)
    assert results["macro_f1"] == pytest.approx(macro_f1)
    assert capsys.readouterr().out == (
        "Loading evaluator: Classification\n"
        "=> result\n"
        "* total: 12\n"
        f"* correct: {correct}\n"
        f"* accuracy: {acc:.1f}%\n"
        f"* error: {100 - acc:.1f}%\n"
        f"* macro_f1: {macro_f1:.1f}%\n"
    )
    evaluator.reset()
    evaluator.process(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    assert evaluator.evaluate()["accuracy"] == 100.0


def test_thousands_separator_and_per_class_block(tmp_path, capsys):
    cfg = make_cfg(TEST__PER_CLASS_RESULT=True, TEST__COMPUTE_CMAT=True, OUTPUT_DIR=str(tmp_path))
    evaluator = Classification(cfg, lab2cname={0: "cat", 1: "dog"})
    labels = torch.tensor([0] * 1500 + [1] * 500)
    scores = torch.zeros(2000, 2)
    scores[:1200, 0] = 1.0  # 1200 of the 1500 cats right
    scores[1200:1500, 1] = 1.0
    scores[1500:, 1] = 1.0  # every dog right
    evaluator.process(scores, labels)
    results = evaluator.evaluate()
    out = capsys.readouterr().out
    assert "* total: 2,000\n* correct: 1,700\n* accuracy: 85.0%\n* error: 15.0%\n" in out
    assert (
        "=> per-class result\n"
        "* class: 0 (cat)\ttotal: 1,500\tcorrect: 1,200\tacc: 80.0%\n"
        "* class: 1 (dog)\ttotal: 500\tcorrect: 500\tacc: 100.0%\n"
        "* average: 90.0%\n"
    ) in out
    assert results["perclass_accuracy"] == pytest.approx(90.0)
    cmat = torch.load(tmp_path / "cmat.pt", weights_only=True)
    torch.testing.assert_close(cmat, torch.tensor([[0.8, 0.2], [0.0, 1.0]], dtype=torch.float64))
    assert f"Confusion matrix is saved to {tmp_path / 'cmat.pt'}" in out


def test_unknown_evaluator_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"Unknown evaluator \(TEST.EVALUATOR\): .*\['Classification'\]"):
        build_evaluator(make_cfg(TEST__EVALUATOR="Detection"))


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_equals_sklearn(seed):
    """The numpy macro F1 against scikit-learn's, including labels that are never predicted and
    predictions of labels absent from y_true (which sklearn's labels=unique(y_true) ignores)."""
    from sklearn.metrics import f1_score

    from dassl.evaluation.evaluator import macro_f1_score

    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 6, size=40)
    y_pred = np.where(rng.random(40) < 0.5, y_true, rng.integers(0, 8, size=40))
    expected = f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true))
    assert macro_f1_score(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
