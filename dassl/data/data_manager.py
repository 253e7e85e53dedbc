"""DataManager, DatasetWrapper and ``build_data_loader``."""
import torch
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset
from torchvision.transforms import Compose, Normalize, Resize, ToTensor

from dassl.utils import read_image

from .datasets import build_dataset
from .samplers import build_sampler
from .transforms import INTERPOLATION_MODES, build_transform

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader"]


def build_data_loader(
    cfg,
    sampler_type="SequentialSampler",
    data_source=None,
    batch_size=64,
    n_domain=0,
    n_ins=2,
    tfm=None,
    is_train=True,
    dataset_wrapper=None,
    split="data",
):
    """A DataLoader over ``(dataset_wrapper or DatasetWrapper)(cfg, data_source, tfm, is_train)``.

    ``drop_last`` is on for training only when there is at least one full batch, so a few-shot set
    smaller than the batch gives one short batch rather than an empty loader. In a distributed run
    ``batch_size`` is per process and the rule applies to this process's part of the data.

    Args:
        split (str): name used in the error for an empty loader (e.g. "train_x", "test").

    Raises:
        ValueError: the loader would have no batch (an empty ``data_source``).
    """
    sampler = build_sampler(
        sampler_type,
        cfg=cfg,
        data_source=data_source,
        batch_size=batch_size,
        n_domain=n_domain,
        n_ins=n_ins,
        is_train=is_train,
    )

    if dataset_wrapper is None:
        dataset_wrapper = DatasetWrapper

    data_loader = torch.utils.data.DataLoader(
        dataset_wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(sampler) >= batch_size,
        pin_memory=(torch.cuda.is_available() and cfg.USE_CUDA),
    )
    # Not len(data_loader): in a distributed run an evaluation part may be empty on some processes.
    if len(data_source) == 0:
        raise ValueError(
            "The {} loader has no batch: the {} split has {} items and the batch size is {}".format(
                split, split, len(data_source), batch_size
            )
        )
    return data_loader


class DataManager:
    """Builds the dataset, the transforms and the train/val/test loaders from ``cfg``.

    Attributes:
        dataset: the DatasetBase instance.
        train_loader_x, train_loader_u (None here), val_loader (None without a val set),
        test_loader: the loaders.
    """

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None):
        dataset = build_dataset(cfg)

        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train

        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        train_loader_x = build_data_loader(
            cfg,
            sampler_type=cfg.DATALOADER.TRAIN_X.SAMPLER,
            data_source=dataset.train_x,
            batch_size=cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
            n_domain=cfg.DATALOADER.TRAIN_X.N_DOMAIN,
            n_ins=cfg.DATALOADER.TRAIN_X.N_INS,
            tfm=tfm_train,
            is_train=True,
            dataset_wrapper=dataset_wrapper,
            split="train_x",
        )

        train_loader_u = None
        if dataset.train_u:
            loader_cfg = cfg.DATALOADER.TRAIN_X if cfg.DATALOADER.TRAIN_U.SAME_AS_X else cfg.DATALOADER.TRAIN_U
            train_loader_u = build_data_loader(
                cfg,
                sampler_type=loader_cfg.SAMPLER,
                data_source=dataset.train_u,
                batch_size=loader_cfg.BATCH_SIZE,
                n_domain=loader_cfg.N_DOMAIN,
                n_ins=loader_cfg.N_INS,
                tfm=tfm_train,
                is_train=True,
                dataset_wrapper=dataset_wrapper,
                split="train_u",
            )

        val_loader = None
        if dataset.val:
            val_loader = self._build_test_loader(cfg, dataset.val, tfm_test, dataset_wrapper, "val")

        test_loader = self._build_test_loader(cfg, dataset.test, tfm_test, dataset_wrapper, "test")

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname

        self.dataset = dataset
        self.train_loader_x = train_loader_x
        self.train_loader_u = train_loader_u
        self.val_loader = val_loader
        self.test_loader = test_loader

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @staticmethod
    def _build_test_loader(cfg, data_source, tfm, dataset_wrapper, split):
        return build_data_loader(
            cfg,
            sampler_type=cfg.DATALOADER.TEST.SAMPLER,
            data_source=data_source,
            batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
            tfm=tfm,
            is_train=False,
            dataset_wrapper=dataset_wrapper,
            split=split,
        )

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def num_source_domains(self):
        return self._num_source_domains

    @property
    def lab2cname(self):
        return self._lab2cname

    def show_dataset_summary(self, cfg):
        """Print the dataset name, domains, class count and split sizes as a table."""
        table = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            table.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])

        print(tabulate(table))


class DatasetWrapper(TorchDataset):
    """A torch Dataset over a list of Datum; items are dicts, as Dassl's.

    ``__getitem__`` returns ``img`` (the transformed image, or the PIL image without a
    transform; ``img2``, ``img3`` ... for a list of transforms; a list of K tensors per key with
    ``DATALOADER.K_TRANSFORMS`` = K > 1 at training time), ``label``, ``domain``, ``impath``,
    ``index`` and, with ``DATALOADER.RETURN_IMG0``, ``img0`` (resize, to tensor, normalize).
    Images are opened with ``read_image``: a missing or undecodable file raises an error naming it.
    """

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1  # several views: training only
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0

        if self.k_tfm > 1 and transform is None:
            raise ValueError(
                "DATALOADER.K_TRANSFORMS = {} needs a transform, but transform is None".format(self.k_tfm)
            )

        # img0: the image only resized to INPUT.SIZE (and normalised), without augmentation.
        plain = [Resize(cfg.INPUT.SIZE, interpolation=INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]), ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            plain.append(Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = Compose(plain)

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        image = read_image(item.impath)
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}

        if self.transform is None:
            output["img"] = image
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else "img{}".format(i + 1)] = self._views(tfm, image)
        else:
            output["img"] = self._views(self.transform, image)

        if self.return_img0:
            output["img0"] = self.to_tensor(image)
        return output

    def _views(self, tfm, image):
        """One transformed image, or a list of ``k_tfm`` independently transformed ones."""
        if self.k_tfm == 1:
            return tfm(image)
        return [tfm(image) for _ in range(self.k_tfm)]
