"""Dataset records and the dataset base class (Dassl's ``dassl.data.datasets.base_dataset``).

``Datum`` must stay at this module path with these attribute names and default pickling: few-shot
caches (``split_fewshot/*.pkl``) and ImageNet's ``preprocessed.pkl`` written by the original code
hold pickled ``Datum`` objects, and the caches we write must load there too.
"""
import os.path as osp
import random
import warnings
from collections import defaultdict

__all__ = ["Datum", "DatasetBase", "DatasetLayoutError"]


class DatasetLayoutError(RuntimeError):
    """A dataset folder, split file, annotation file, cache or image is missing or malformed.

    The message names the dataset, the full path of what is missing or bad, what it was needed
    for, and the expected layout. ``train.py`` prints it and exits with status 1.
    """


class Datum:
    """One data instance: image path, label, domain label and class name.

    Args:
        impath (str): image path; the file must exist (FileNotFoundError naming it otherwise).
        label (int): class label.
        domain (int): domain label.
        classname (str): class name.
    """

    def __init__(self, impath="", label=0, domain=0, classname=""):
        if not isinstance(impath, str):
            raise TypeError("Datum impath must be a str, got {!r}".format(impath))
        if not osp.isfile(impath):
            raise FileNotFoundError('Image file not found: "{}"'.format(impath))

        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self):
        return self._impath

    @property
    def label(self):
        return self._label

    @property
    def domain(self):
        return self._domain

    @property
    def classname(self):
        return self._classname

    def __repr__(self):
        return "Datum(impath={!r}, label={}, domain={}, classname={!r})".format(
            self._impath, self._label, self._domain, self._classname
        )


class DatasetBase:
    """A unified dataset: lists of ``Datum`` for train_x, train_u, val and test.

    ``num_classes`` (= max label + 1) and ``classnames`` are derived from ``train_x`` only, as
    upstream; a warning is printed when that loses a class.
    """

    dataset_dir = ""  # the directory where the dataset is stored
    domains = []  # string names of all domains

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x  # labeled training data
        self._train_u = train_u  # unlabeled training data (optional)
        self._val = val  # validation data (optional)
        self._test = test  # test data
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)
        self._warn_on_missing_classes()

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self):
        return self._lab2cname

    @property
    def classnames(self):
        return self._classnames

    @property
    def num_classes(self):
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source):
        """Number of classes = max label + 1 (not the count of distinct labels, as upstream)."""
        label_set = set()
        for item in data_source:
            label_set.add(item.label)
        return max(label_set) + 1

    @staticmethod
    def get_lab2cname(data_source):
        """Label -> class name mapping, and the class names ordered by label."""
        container = set()
        for item in data_source:
            container.add((item.label, item.classname))
        mapping = {label: classname for label, classname in container}
        labels = list(mapping.keys())
        labels.sort()
        classnames = [mapping[label] for label in labels]
        return mapping, classnames

    def _warn_on_missing_classes(self):
        if len(self._classnames) != self._num_classes:
            missing = sorted(set(range(self._num_classes)) - set(self._lab2cname))
            warnings.warn(
                "train_x has {} class names but num_classes = max(label) + 1 = {}: labels {} have no "
                "training item, so their class names are missing and the prompts no longer line up "
                "with the labels".format(len(self._classnames), self._num_classes, missing[:10])
            )
        train_labels = set(self._lab2cname)
        for name, split in (("val", self._val), ("test", self._test)):
            if not split:
                continue
            extra = sorted({item.label for item in split} - train_labels)
            if extra:
                warnings.warn(
                    "{} contains labels absent from train_x: {}{}".format(
                        name, extra[:10], " ..." if len(extra) > 10 else ""
                    )
                )

    def check_input_domains(self, source_domains, target_domains):
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains):
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(
                    "Input domain must belong to {}, but got [{}]".format(self.domains, domain)
                )

    def generate_fewshot_dataset(self, *data_sources, num_shots=-1, repeat=False):
        """Sample ``num_shots`` items per class from each data source (global ``random`` state).

        Groups follow the order in which labels first appear. A class with fewer items keeps all
        of them (or, with ``repeat``, draws with replacement). Returns a list for one source and
        a list of lists for several; with ``num_shots < 1`` the input is returned unchanged.
        """
        if num_shots < 1:
            if len(data_sources) == 1:
                return data_sources[0]
            return data_sources

        print(f"Creating a {num_shots}-shot dataset")

        output = []
        for data_source in data_sources:
            tracker = self.split_dataset_by_label(data_source)
            dataset = []
            for label, items in tracker.items():
                if len(items) >= num_shots:
                    sampled_items = random.sample(items, num_shots)
                else:
                    if repeat:
                        sampled_items = random.choices(items, k=num_shots)
                    else:
                        sampled_items = items
                dataset.extend(sampled_items)
            output.append(dataset)

        if len(output) == 1:
            return output[0]
        return output

    def split_dataset_by_label(self, data_source):
        """Group items by label (a defaultdict(list), labels in order of first appearance)."""
        output = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    def split_dataset_by_domain(self, data_source):
        """Group items by domain label (a defaultdict(list))."""
        output = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output
