"""A dataset module written against Dassl and CoOp keeps working: it uses only the names those
codebases offer (``dassl.data.datasets``, ``dassl.utils`` and the split helpers as static methods
of ``OxfordPets`` and ``DescribableTextures``)."""

import os.path as osp
import random

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.utils import mkdir_if_missing, read_json
from datasets.dtd import DescribableTextures as DTD
from datasets.oxford_pets import OxfordPets
from tests.fake_datasets import build_fake, make_cfg


@DATASET_REGISTRY.register()
class UpstreamStyleTextures(DatasetBase):
    """The usual constructor of a CoOp dataset module, on DTD's folders with its own split file."""

    dataset_dir = "dtd"

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = osp.join(root, self.dataset_dir)
        self.image_dir = osp.join(self.dataset_dir, "images")
        self.split_path = osp.join(self.dataset_dir, "split_UpstreamStyle.json")
        mkdir_if_missing(osp.join(self.dataset_dir, "split_fewshot"))

        if osp.exists(self.split_path):
            train, val, test = OxfordPets.read_split(self.split_path, self.image_dir)
        else:
            train, val, test = DTD.read_and_split_data(self.image_dir)
            OxfordPets.save_split(train, val, test, self.split_path, self.image_dir)
        trainval = OxfordPets.split_trainval(train + val)
        assert sum(map(len, trainval)) == len(train) + len(val)

        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots >= 1:
            train = self.generate_fewshot_dataset(train, num_shots=num_shots)
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        train, val, test = OxfordPets.subsample_classes(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=val, test=test)


def build(root, name="UpstreamStyleTextures", **cfg_options):
    random.seed(1)
    return DATASET_REGISTRY.get(name)(make_cfg(root, name, **cfg_options))


def triples(items, prefix):
    return [(osp.relpath(item.impath, prefix), item.label, item.classname) for item in items]


def test_an_upstream_style_module_builds_reads_and_subsamples_its_split(tmp_path):
    info = build_fake("DescribableTextures", tmp_path, source="raw")
    image_dir = osp.join(info.dataset_dir, "images")
    created = build(tmp_path)
    ours = build(tmp_path, name="DescribableTextures")  # same draws, same folders: same split
    for split in ("train_x", "val", "test"):
        assert triples(getattr(created, split), image_dir) == triples(getattr(ours, split), image_dir)
    assert all(isinstance(item, Datum) for item in created.train_x)

    saved = read_json(osp.join(info.dataset_dir, "split_UpstreamStyle.json"))
    assert [tuple(entry) for entry in saved["test"]] == triples(created.test, image_dir)
    again = build(tmp_path)  # now read from the saved file
    assert triples(again.train_x, image_dir) == triples(created.train_x, image_dir)

    base = build(tmp_path, num_shots=1, subsample="base")
    assert base.classnames == info.classnames[:2] and len(base.train_x) == 2
    new = build(tmp_path, subsample="new")
    assert new.classnames == info.classnames[2:] and {item.label for item in new.test} == {0}
