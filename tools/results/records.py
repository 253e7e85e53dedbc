"""The report: a flat list of records, each one fact, in the order the renderers print them.

Runs mode (CoOp's view) yields, per experiment folder: one ``RunResult`` or ``RunProblem`` per run,
then an ``ExperimentSummary``; with ``--multi-exp`` a final ``MultiExpAverage`` per metric.

Base-to-new mode yields, per setting (a method at a shot count), for each dataset row its
``SeedPair`` records then its ``DatasetRow``, then the setting's ``SettingAverage`` (the method's
row of the comparison table) and its ``Problem`` records; discovery problems that belong to no
setting come last (``Problem`` with ``setting`` None).

The renderers (``tools.results.render_text``, ``render_data``) format records one by one; they
never rebuild a tree from the folders.
"""

import math
from dataclasses import dataclass, field

import numpy as np


def harmonic_mean(base, new):
    """HM = 2 * B * N / (B + N), 0 when both are 0."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


@dataclass(frozen=True)
class Stats:
    """Mean and spread of one metric over runs (population std, ddof 0, as CoOp)."""

    n: int
    mean: float
    std: float
    ci95: float  # 1.96 * std / sqrt(n)

    @classmethod
    def of(cls, values):
        values = np.asarray(values, dtype=float)
        std = float(np.std(values))
        n = len(values)
        return cls(n=n, mean=float(np.mean(values)), std=std, ci95=1.96 * std / math.sqrt(n))

    def spread(self, kind):
        """``kind`` is "std" or "ci95"."""
        return getattr(self, kind)


# ------------------------------------------------------------------------------------------------
# Runs mode
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """A run folder with every metric: ``values`` maps metric name -> value in %."""

    experiment: str
    run: str
    file: str
    values: dict
    kind: str = "run"


@dataclass(frozen=True)
class RunProblem:
    """A run folder without a result; ``kind`` is "missing", "unreadable" or "malformed"."""

    experiment: str
    run: str
    file: str
    reason: str
    kind: str = "missing"


@dataclass(frozen=True)
class ExperimentSummary:
    """Closes an experiment folder: ``stats`` maps metric name -> Stats over its runs with results
    (empty when there is none)."""

    experiment: str
    metric_names: tuple
    stats: dict
    kind: str = "summary"


@dataclass(frozen=True)
class MultiExpAverage:
    """The multi-exp average of one metric: the mean of the experiments' means."""

    metric: str
    mean: float
    n: int
    left_out: tuple  # experiment folders without any result
    kind: str = "average"


# ------------------------------------------------------------------------------------------------
# Base-to-new mode
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """What a table is about: one method's runs at one shot count, and its row label.

    A method is one row whatever recipe each dataset used (ALIGN's own recipe for SUN397, CoOp's
    for ImageNet): ``cfgs`` are its recipes (the main one first) and ``dataset_cfgs`` says which
    recipe each dataset's runs used, ``((dataset, cfg), ...)``. ``method`` is the registry's name
    (tools/methods.py), None for runs that no method claims (a trainer without a method, such as
    MMP, or a recipe no method of a shared trainer runs).
    """

    shots: str
    trainer: str
    cfgs: tuple
    label: str
    method: str | None = None
    dataset_cfgs: tuple = ()

    @property
    def cfg(self):
        """The recipes as one string: the recipe, or several separated by spaces."""
        return " ".join(self.cfgs)

    def cfg_of(self, dataset):
        """The recipe of ``dataset``'s runs (the main recipe for a dataset without runs)."""
        return dict(self.dataset_cfgs).get(dataset, self.cfgs[0])

    def folder(self, dataset):
        """The folder names below ``<side>/<dataset>/``: (shots, trainer, cfg)."""
        return (self.shots, self.trainer, self.cfg_of(dataset))

    def describe_cfgs(self):
        """The main recipe, and the datasets that used another: "a (sun397: b)"."""
        others = [f"{dataset}: {cfg}" for dataset, cfg in self.dataset_cfgs if cfg != self.cfgs[0]]
        return self.cfgs[0] + (f" ({', '.join(others)})" if others else "")


@dataclass(frozen=True)
class Published:
    """Published Base / New / HM for a row (``--reference``)."""

    base: float
    new: float
    hm: float
    name: str


@dataclass(frozen=True)
class SeedPair:
    """One seed of one dataset with both results."""

    setting: Setting
    dataset: str
    seed: int
    base: float
    new: float
    base_log: str
    new_log: str
    kind: str = "seed"


@dataclass(frozen=True)
class DatasetRow:
    """One dataset over the seeds that have both results; HM of the mean Base and New."""

    setting: Setting
    dataset: str
    seeds: tuple
    base: Stats
    new: Stats
    hm: float
    published: Published | None = None
    kind: str = "dataset"


@dataclass(frozen=True)
class SettingAverage:
    """A setting's average over its datasets: the method's row of the comparison table.

    base, new: means over the datasets of the per-dataset means; hm: their HM (as papers).
    seeds: the seeds every dataset has; base_seeds / new_seeds: Stats over those seeds of the
    per-seed average over the datasets (None when no seed is common to all datasets).
    """

    setting: Setting
    datasets: tuple
    base: float
    new: float
    hm: float
    seeds: tuple
    base_seeds: Stats | None
    new_seeds: Stats | None
    published: Published | None = None
    kind: str = "average"


@dataclass(frozen=True)
class Problem:
    """Something absent from a base-to-new table, or that could not be read.

    kind: "missing", "unreadable", "malformed" or "stale" (a new result of another model than the
    base run's: never paired), all left out of the means; or "unchecked" (a pair that was used,
    but whose new log records no model identity, so that it could not be checked). seed and side
    ("base"/"new") are None for a note about a whole dataset; setting is None for a folder that
    belongs to no known setting.
    """

    setting: Setting | None
    dataset: str
    seed: int | None
    side: str | None
    path: str
    reason: str
    kind: str = "missing"


@dataclass
class Report:
    """A parse result: the records, and how they were asked for.

    mode: "runs" or "base2new". comparison: print the base-to-new comparison table (several
    settings, --per-dataset or --reference) instead of one table per setting.
    """

    mode: str
    directory: str
    keyword: str
    spread: str
    records: list
    metric_names: tuple = ()
    multi_exp: bool = False
    comparison: bool = False
    per_dataset: bool = False
    reference: str | None = None  # where the published numbers come from
    settings: list = field(default_factory=list)  # base2new: the settings, in table order

    def of_kind(self, *kinds):
        return [record for record in self.records if record.kind in kinds]

    @property
    def has_results(self):
        return bool(self.of_kind("run", "dataset"))
