"""Aggregate the test results that train.py writes to ``log.txt``.

Two modes (docs/results.md has the layouts, the formats and examples):

* Runs mode, the CoOp CLI and output (default)::

      python parse_test_res.py DIR [--test-log] [--ci95] [--multi-exp] [--keyword accuracy]

  ``DIR`` holds one folder per run (``seed1``, ``seed2``, ...), each with a ``log.txt``; with
  ``--multi-exp`` it holds several such experiment folders. Prints each run's value, then the mean
  and the population std (or ``1.96 * std / sqrt(n)`` with ``--ci95``) over the runs.

* Base-to-new mode::

      python parse_test_res.py OUTPUT/base2new --base2new [--datasets a,b] [--seeds 1,2,3]

  Reads ``train_base/<dataset>/<shots>/<trainer>/<cfg>/seed<S>/log.txt`` (base accuracy, the test
  at the end of training; for methods without training, ``test_base/...``, an eval-only log) and
  ``test_new/...`` (new accuracy, an eval-only log) and prints one
  Base / New / HM table per (shots, trainer, cfg) setting, with the average row papers report.

Both modes take ``--format text|csv|json`` (default text) and ``--seeds``.

A log's result section starts at a line equal to an end signal (``Finish training`` or
``Finished training`` for training logs, ``=> result`` for eval-only logs); after it, the last
``* {keyword}: {value}%`` line wins. Only ``log.txt`` is read, never the timestamped
``log.txt-YYYY-...`` files that re-runs into the same folder write. A run without a result is
listed as missing; having no result at all is an error (exit status 1).

Layout of this file: the parse layer returns plain dataclasses (``Run``, ``Experiment``,
``RunsReport``, ``Base2NewReport``); the render layer turns a report into text, CSV or JSON.
``parse_function`` and ``main`` keep their CoOp meaning.
"""

import argparse
import csv
import io
import json
import math
import os.path as osp
import re
import sys
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from dassl.utils import check_isfile, listdir_nohidden

LOG_NAME = "log.txt"
TRAIN_END_SIGNALS = ("Finish training", "Finished training")  # Dassl >= 0.6.1, and older
TEST_END_SIGNAL = "=> result"
BASE_FOLDER = "train_base"
BASE_EVAL_FOLDER = "test_base"
NEW_FOLDER = "test_new"
SEED_FOLDER = re.compile(r"seed(\d+)")
FORMATS = ("text", "csv", "json")
SPREAD_LABELS = {"std": "std", "ci95": "95% CI"}


class NoResultsError(RuntimeError):
    """No run has a result; the command line turns it into a message and exit status 1."""


# ------------------------------------------------------------------------------------------------
# Parse layer: logs -> plain data
# ------------------------------------------------------------------------------------------------


def keyword_metric(keyword):
    """The metric dict that ``parse_function`` takes: ``{"name": keyword, "regex": pattern}``.

    The pattern matches the evaluator's ``* {keyword}: {value}%`` line (``accuracy``, ``error``,
    ``macro_f1``, ...) and captures the value.
    """
    return {"name": keyword, "regex": re.compile(r"\* " + re.escape(keyword) + r": ([\.\deE+-]+)%")}


def resolve_end_signals(end_signal, test_log):
    """The lines that open a log's result section, as a tuple of strings.

    ``end_signal`` may be a string, a sequence of strings, or None: then the training signals
    (both wordings) or, with ``test_log``, ``=> result``.
    """
    if end_signal is None:
        return (TEST_END_SIGNAL,) if test_log else TRAIN_END_SIGNALS
    if isinstance(end_signal, str):
        return (end_signal,)
    return tuple(end_signal)


def _quoted(strings):
    return " or ".join(f'"{s}"' for s in strings)


def _missing_log_reason(log_path):
    """Why ``log_path`` cannot be read: no run folder, or no log.txt (naming timestamped logs)."""
    folder = osp.dirname(log_path)
    if not osp.isdir(folder):
        return "no run folder"
    later_logs = sorted(n for n in listdir_nohidden(folder) if n.startswith(LOG_NAME + "-"))
    if later_logs:
        return "no log.txt (only {}: timestamped logs of later runs are not read)".format(", ".join(later_logs))
    return "no log.txt"


def read_log(log_path, metrics, end_signals):
    """Read the metric values of one run.

    Matching starts at the first stripped line equal to one of ``end_signals``; after it every
    matching line overwrites the value, so the last one wins.

    Returns ``(values, problem)``: ``values`` maps each metric name to its value in % and
    ``problem`` is None, or ``values`` is empty and ``problem`` says why (missing log, run not
    finished, no metric line). A metric line whose number cannot be read raises ValueError.
    """
    with warnings.catch_warnings():
        # check_isfile warns for a missing file; the report's missing list already says so.
        warnings.simplefilter("ignore")
        is_file = check_isfile(log_path)
    if not is_file:
        return {}, _missing_log_reason(log_path)
    values = {}
    started = False
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line_number, line in enumerate(f, start=1):
            line = line.strip()
            if not started:
                started = line in end_signals
                continue
            for metric in metrics:
                match = metric["regex"].search(line)
                if match is None:
                    continue
                try:
                    values[metric["name"]] = float(match.group(1))
                except ValueError:
                    raise ValueError(f"{log_path}:{line_number}: expected a number in {line!r}") from None
    if not started:
        return {}, f"no {_quoted(end_signals)} line"
    absent = [metric["name"] for metric in metrics if metric["name"] not in values]
    if absent:
        lines = _quoted(f"* {name}: ...%" for name in absent)
        return {}, f"no {lines} line after {_quoted(end_signals)}"
    return values, None


@dataclass
class Stats:
    """Mean and spread of one metric over runs (population std, ddof 0)."""

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


@dataclass
class Run:
    """One run folder: its log and either its metric values or the reason it has none."""

    name: str
    log_path: str
    values: dict[str, float]
    problem: str | None = None


@dataclass
class Experiment:
    """A folder of runs (CoOp's ``directory``) and what was read from each run."""

    directory: str
    metric_names: list[str]
    runs: list[Run]

    @property
    def found(self):
        """The runs that have every metric."""
        return [run for run in self.runs if run.problem is None]

    def stats(self, name):
        return Stats.of([run.values[name] for run in self.found])


@dataclass
class RunsReport:
    """Runs mode: one experiment, or several with ``multi_exp``; ``spread`` is std or ci95."""

    experiments: list[Experiment]
    multi_exp: bool
    spread: str

    @property
    def with_results(self):
        return [experiment for experiment in self.experiments if experiment.found]

    @property
    def without_results(self):
        return [experiment for experiment in self.experiments if not experiment.found]

    def average(self, name):
        """The multi-exp average: (mean of the experiments' means, number of experiments)."""
        means = [experiment.stats(name).mean for experiment in self.with_results]
        return float(np.mean(means)), len(means)


def _subfolders(path):
    """Sorted non-hidden folders of ``path`` (plain files are not runs and are passed over)."""
    return [name for name in listdir_nohidden(path, sort=True) if osp.isdir(osp.join(path, name))]


def _require_folder(path):
    if not osp.isdir(path):
        raise NoResultsError(f"Nothing found: {path} is not a folder")


def parse_experiment(directory, metrics, end_signals, seeds=None):
    """Read every run folder of ``directory`` (sorted), or exactly ``seed{S}`` for S in ``seeds``.

    metrics: dicts from ``keyword_metric``. Returns an ``Experiment``; runs without a result are
    kept with their problem.
    """
    _require_folder(directory)
    names = _subfolders(directory) if seeds is None else [f"seed{s}" for s in seeds]
    runs = []
    for name in names:
        log_path = osp.join(directory, name, LOG_NAME)
        values, problem = read_log(log_path, metrics, end_signals)
        runs.append(Run(name, log_path, values, problem))
    return Experiment(directory, [metric["name"] for metric in metrics], runs)


def parse_runs(directory, keyword, end_signals, spread, multi_exp=False, seeds=None):
    """Runs mode: ``directory`` is one experiment, or with ``multi_exp`` a folder of them."""
    _require_folder(directory)
    folders = [directory]
    if multi_exp:
        folders = [osp.join(directory, name) for name in _subfolders(directory)]
    metric = keyword_metric(keyword)
    experiments = [parse_experiment(folder, [metric], end_signals, seeds) for folder in folders]
    return RunsReport(experiments, multi_exp, spread)


def harmonic_mean(base, new):
    """HM = 2 * B * N / (B + N), 0 when both are 0."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


@dataclass
class SeedPair:
    """One seed with both results."""

    seed: int
    base: float
    new: float
    base_log: str
    new_log: str


@dataclass
class DatasetRow:
    """One dataset of a base-to-new table, over the seeds that have both results."""

    dataset: str
    pairs: list[SeedPair]

    @property
    def seeds(self):
        return [pair.seed for pair in self.pairs]

    @property
    def base(self):
        return Stats.of([pair.base for pair in self.pairs])

    @property
    def new(self):
        return Stats.of([pair.new for pair in self.pairs])

    @property
    def hm(self):
        """HM of the mean Base and the mean New."""
        return harmonic_mean(self.base.mean, self.new.mean)


@dataclass
class Missing:
    """Something absent from a base-to-new table.

    ``seed`` and ``side`` ("base" or "new") are None for a note about a whole dataset.
    """

    dataset: str
    seed: int | None
    side: str | None
    path: str
    reason: str


@dataclass
class Average:
    """The average row: Base and New are means of the per-dataset means, HM is their HM."""

    datasets: list[str]
    base: float
    new: float
    hm: float


@dataclass
class Setting:
    """One (shots, trainer, cfg) combination: its table rows and what is missing from it."""

    shots: str
    trainer: str
    cfg: str
    rows: list[DatasetRow]
    missing: list[Missing]

    @property
    def average(self):
        if not self.rows:
            return None
        base = float(np.mean([row.base.mean for row in self.rows]))
        new = float(np.mean([row.new.mean for row in self.rows]))
        return Average([row.dataset for row in self.rows], base, new, harmonic_mean(base, new))


@dataclass
class Base2NewReport:
    directory: str
    keyword: str
    spread: str
    settings: list[Setting]


# The two halves of a base-to-new run: (side, its sources), a source being (folder under the
# base2new directory, end signals). A run's first source whose folder exists is read: the base
# accuracy is the test at the end of training (train_base/) or, for methods without training such
# as zero-shot CLIP, an eval-only run on the base classes (test_base/).
BASE2NEW_SIDES = (
    ("base", ((BASE_FOLDER, TRAIN_END_SIGNALS), (BASE_EVAL_FOLDER, (TEST_END_SIGNAL,)))),
    ("new", ((NEW_FOLDER, (TEST_END_SIGNAL,)),)),
)


def _side_log(directory, sources, dataset, setting, seed):
    """(log path, end signals) of one side of one run: its first source whose run folder exists."""
    candidates = [
        (osp.join(directory, folder, dataset, *setting, f"seed{seed}", LOG_NAME), end_signals)
        for folder, end_signals in sources
    ]
    for log_path, end_signals in candidates:
        if osp.isdir(osp.dirname(log_path)):
            return log_path, end_signals
    return candidates[0]


def _find_side(directory, sources):
    """find_seed_folders over all sources of a side, merged."""
    merged = {}
    for folder, _ in sources:
        for setting, by_dataset in find_seed_folders(osp.join(directory, folder)).items():
            for dataset, seeds in by_dataset.items():
                merged.setdefault(setting, {}).setdefault(dataset, set()).update(seeds)
    return merged


def _walk(root, depth):
    """Yield the name tuple of every folder exactly ``depth`` levels below ``root``."""
    if depth == 0:
        yield ()
        return
    for name in _subfolders(root):
        for names in _walk(osp.join(root, name), depth - 1):
            yield (name,) + names


def find_seed_folders(side_root):
    """``{(shots, trainer, cfg): {dataset: set of seeds}}`` found under one side's folder.

    The layout is ``side_root/<dataset>/<shots>/<trainer>/<cfg>/seed<S>``; folders at the last
    level that are not named ``seed<int>`` are not runs.
    """
    found = {}
    if not osp.isdir(side_root):
        return found
    for dataset, shots, trainer, cfg, seed_folder in _walk(side_root, 5):
        match = SEED_FOLDER.fullmatch(seed_folder)
        if match:
            datasets = found.setdefault((shots, trainer, cfg), {})
            datasets.setdefault(dataset, set()).add(int(match.group(1)))
    return found


def _parse_dataset(directory, setting, dataset, seeds, metric, found):
    """Read both sides of every expected seed of one dataset.

    setting: (shots, trainer, cfg); found: {side: {dataset: seeds}} of this setting.
    Returns (DatasetRow, or None when no seed has both results; list of Missing).
    """
    missing = []
    pairs = []
    for seed in seeds:
        results = {}
        for side, sources in BASE2NEW_SIDES:
            log_path, end_signals = _side_log(directory, sources, dataset, setting, seed)
            values, problem = read_log(log_path, [metric], end_signals)
            if problem is None:
                results[side] = (values[metric["name"]], log_path)
            else:
                missing.append(Missing(dataset, seed, side, log_path, problem))
        if len(results) == len(BASE2NEW_SIDES):
            (base, base_log), (new, new_log) = results["base"], results["new"]
            pairs.append(SeedPair(seed, base, new, base_log, new_log))
    if pairs:
        return DatasetRow(dataset, pairs), missing
    sides = [side for side, _ in BASE2NEW_SIDES if dataset in found[side]]
    reason = f"only {sides[0]} runs" if len(sides) == 1 else "no seed has both results"
    missing.append(Missing(dataset, None, None, "", reason + "; left out of the average"))
    return None, missing


def _parse_setting(directory, setting, found_by_side, metric, datasets, seeds):
    """One table: ``found_by_side`` is {side: find_seed_folders(...)} over all settings."""
    found = {side: found_by_side[side].get(setting, {}) for side in found_by_side}
    names = datasets or sorted(set().union(*found.values()))
    if seeds is None:
        seeds = sorted(set().union(*(s for side in found.values() for s in side.values())))
    rows, missing = [], []
    for dataset in names:
        if not any(dataset in by_dataset for by_dataset in found.values()):
            places = " or ".join(
                osp.join(directory, folder, dataset, *setting) for _, sources in BASE2NEW_SIDES for folder, _ in sources
            )
            missing.append(Missing(dataset, None, None, places, "no runs; left out of the average"))
            continue
        row, notes = _parse_dataset(directory, setting, dataset, seeds, metric, found)
        missing += notes
        if row is not None:
            rows.append(row)
    return Setting(*setting, rows=rows, missing=missing)


def parse_base2new(directory, keyword, spread, datasets=None, seeds=None):
    """Base-to-new mode: one ``Setting`` per (shots, trainer, cfg) found under ``directory``.

    datasets: row order and selection (default: every dataset found, sorted). seeds: the
    expected seeds (default: every seed found for the setting). Only seeds with both a base and
    a new result enter a dataset's means; only datasets with such a seed enter the average.
    """
    _require_folder(directory)
    found_by_side = {side: _find_side(directory, sources) for side, sources in BASE2NEW_SIDES}
    settings = sorted(set().union(*found_by_side.values()))
    metric = keyword_metric(keyword)
    tables = [_parse_setting(directory, setting, found_by_side, metric, datasets, seeds) for setting in settings]
    return Base2NewReport(directory, keyword, spread, tables)


def nothing_found_message(report):
    """The error message for a report without a single result."""
    if isinstance(report, Base2NewReport):
        return (
            f"Nothing found in {report.directory}: no dataset has a seed with both a base result "
            f"({report.directory}/{BASE_FOLDER}/<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>/log.txt, a "
            "training log, or "
            f"{report.directory}/{BASE_EVAL_FOLDER}/..., an eval-only log) and a new result "
            f"({report.directory}/{NEW_FOLDER}/..., an eval-only log); the "
            "output lists what is missing"
        )
    directories = ", ".join(experiment.directory for experiment in report.experiments)
    return (
        "Nothing found in {}: no run folder has a log.txt with a result; the output lists what "
        "is missing (eval-only logs need --test-log)".format(directories or "(no folders)")
    )


# ------------------------------------------------------------------------------------------------
# Render layer: report -> text, CSV or JSON
# ------------------------------------------------------------------------------------------------


def experiment_text_lines(experiment, spread):
    """CoOp's printout of one experiment, plus ``missing:`` lines for runs without a result."""
    lines = [f"Parsing files in {experiment.directory}"]
    for run in experiment.runs:
        if run.problem is None:
            values = "".join(f"{name}: {run.values[name]:.2f}%. " for name in experiment.metric_names)
            lines.append(f"file: {run.log_path}. {values}")
        else:
            lines.append(f"missing: {run.log_path} ({run.problem})")
    lines += ["===", f"Summary of directory: {experiment.directory}"]
    if experiment.found:
        for name in experiment.metric_names:
            stats = experiment.stats(name)
            lines.append(f"* {name}: {stats.mean:.2f}% +- {stats.spread(spread):.2f}%")
    else:
        lines.append("* no run with a result")
    lines.append("===")
    return lines


def _metric_names(report):
    return report.experiments[0].metric_names if report.experiments else []


def render_runs_text(report):
    lines = []
    for experiment in report.experiments:
        lines += experiment_text_lines(experiment, report.spread)
    if report.multi_exp and report.with_results:
        lines.append("Average performance")
        for name in _metric_names(report):
            lines.append(f"* {name}: {report.average(name)[0]:.2f}%")
        if report.without_results:
            left_out = ", ".join(experiment.directory for experiment in report.without_results)
            lines.append(f"Left out of the average (no results): {left_out}")
    return "\n".join(lines)


def _csv_text(columns, rows):
    """rows: dicts keyed by ``columns``; absent keys are written as empty cells."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")


def render_runs_csv(report):
    """One row per value; column kind is run, missing, summary or (multi-exp) average."""
    spread = report.spread
    columns = ["kind", "experiment", "run", "file", "metric", "value", spread, "n", "note"]
    rows = []
    for experiment in report.experiments:
        where = {"experiment": experiment.directory}
        for run in experiment.runs:
            here = dict(where, run=run.name, file=run.log_path)
            if run.problem is not None:
                rows.append(dict(here, kind="missing", note=run.problem))
                continue
            for name in experiment.metric_names:
                rows.append(dict(here, kind="run", metric=name, value=run.values[name]))
        for name in experiment.metric_names if experiment.found else []:
            stats = experiment.stats(name)
            rows.append(
                dict(where, kind="summary", metric=name, value=stats.mean, n=stats.n, **{spread: stats.spread(spread)})
            )
    if report.multi_exp and report.with_results:
        left_out = " ".join(experiment.directory for experiment in report.without_results)
        note = "left out (no results): " + left_out if left_out else ""
        for name in _metric_names(report):
            mean, n = report.average(name)
            rows.append({"kind": "average", "metric": name, "value": mean, "n": n, "note": note})
    return _csv_text(columns, rows)


def render_runs_json(report):
    spread = report.spread
    experiments = []
    for experiment in report.experiments:
        summary = {}
        for name in experiment.metric_names if experiment.found else []:
            stats = experiment.stats(name)
            summary[name] = {"mean": stats.mean, spread: stats.spread(spread), "n": stats.n}
        runs = [{"run": r.name, "file": r.log_path, "values": r.values} for r in experiment.found]
        missing = [
            {"run": r.name, "file": r.log_path, "reason": r.problem} for r in experiment.runs if r.problem is not None
        ]
        experiments.append(
            {
                "directory": experiment.directory,
                "runs": runs,
                "missing": missing,
                "summary": summary,
            }
        )
    document = {"metrics": _metric_names(report), "spread": spread, "experiments": experiments}
    if report.multi_exp:
        document["average"] = {}
        for name in _metric_names(report) if report.with_results else []:
            mean, n = report.average(name)
            document["average"][name] = {"mean": mean, "n": n}
        document["left_out_of_average"] = [e.directory for e in report.without_results]
    return json.dumps(document, indent=2)


def _aligned(header, rows, footer, left=2):
    """Text table: the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(cells[i]) for cells in [header, footer] + rows) for i in range(len(header))]
    rule = "  ".join("-" * width for width in widths)

    def line(cells):
        padded = [
            cell.ljust(width) if i < left else cell.rjust(width) for i, (cell, width) in enumerate(zip(cells, widths))
        ]
        return "  ".join(padded).rstrip()

    return [line(header), rule] + [line(row) for row in rows] + [rule, line(footer)]


def _describe(missing):
    if missing.seed is None:
        where = f" ({missing.path})" if missing.path else ""
        return f"{missing.dataset}: {missing.reason}{where}"
    return f"{missing.dataset} seed{missing.seed} {missing.side}: {missing.reason} ({missing.path})"


def _mean_spread(stats, spread):
    return f"{stats.mean:.2f} +- {stats.spread(spread):.2f}"


def render_base2new_text(report):
    spread = report.spread
    lines = [f"Base-to-new results in {report.directory}"]
    for setting in report.settings:
        lines += [
            "",
            f"{setting.shots} / {setting.trainer} / {setting.cfg} ({report.keyword} %, mean +- "
            f"{SPREAD_LABELS[spread]} over seeds; HM of the mean Base and New)",
        ]
        average = setting.average
        if average is None:
            lines.append("No dataset has a seed with both a base and a new result.")
        else:
            header = ["Dataset", "Seeds", "Base", "New", "HM"]
            rows = [
                [
                    row.dataset,
                    ",".join(map(str, row.seeds)),
                    _mean_spread(row.base, spread),
                    _mean_spread(row.new, spread),
                    f"{row.hm:.2f}",
                ]
                for row in setting.rows
            ]
            count = len(average.datasets)
            footer = ["Average ({} dataset{})".format(count, "" if count == 1 else "s"), ""] + [
                f"{value:.2f}" for value in (average.base, average.new, average.hm)
            ]
            lines += _aligned(header, rows, footer)
        if setting.missing:
            lines.append("Missing (a seed without both results is left out of the means):")
            lines += ["  " + _describe(missing) for missing in setting.missing]
    return "\n".join(lines)


def render_base2new_csv(report):
    """One row per seed, dataset, average and missing item (column kind); spread as chosen."""
    spread = report.spread
    base_spread, new_spread = "base_" + spread, "new_" + spread
    columns = [
        "kind",
        "shots",
        "trainer",
        "cfg",
        "dataset",
        "seeds",
        "n",
        "base",
        base_spread,
        "new",
        new_spread,
        "hm",
        "side",
        "path",
        "note",
    ]
    rows = []
    for setting in report.settings:
        where = {"shots": setting.shots, "trainer": setting.trainer, "cfg": setting.cfg}
        for row in setting.rows:
            for pair in row.pairs:
                rows.append(
                    dict(where, kind="seed", dataset=row.dataset, seeds=pair.seed, n=1, base=pair.base, new=pair.new)
                )
            rows.append(
                dict(
                    where,
                    kind="dataset",
                    dataset=row.dataset,
                    n=len(row.pairs),
                    seeds=" ".join(map(str, row.seeds)),
                    base=row.base.mean,
                    new=row.new.mean,
                    hm=row.hm,
                    **{base_spread: row.base.spread(spread), new_spread: row.new.spread(spread)},
                )
            )
        average = setting.average
        if average is not None:
            rows.append(
                dict(
                    where,
                    kind="average",
                    dataset="Average",
                    n=len(average.datasets),
                    base=average.base,
                    new=average.new,
                    hm=average.hm,
                    note=" ".join(average.datasets),
                )
            )
        for missing in setting.missing:
            rows.append(
                dict(
                    where,
                    kind="missing",
                    dataset=missing.dataset,
                    seeds=missing.seed,
                    side=missing.side,
                    path=missing.path,
                    note=missing.reason,
                )
            )
    return _csv_text(columns, rows)


def render_base2new_json(report):
    spread = report.spread
    settings = []
    for setting in report.settings:
        rows = [
            {
                "dataset": row.dataset,
                "seeds": row.seeds,
                "n": len(row.pairs),
                "base": {"mean": row.base.mean, spread: row.base.spread(spread)},
                "new": {"mean": row.new.mean, spread: row.new.spread(spread)},
                "hm": row.hm,
                "per_seed": [asdict(pair) for pair in row.pairs],
            }
            for row in setting.rows
        ]
        average = setting.average
        settings.append(
            {
                "shots": setting.shots,
                "trainer": setting.trainer,
                "cfg": setting.cfg,
                "rows": rows,
                "average": None if average is None else asdict(average),
                "missing": [asdict(missing) for missing in setting.missing],
            }
        )
    document = {
        "directory": report.directory,
        "keyword": report.keyword,
        "spread": spread,
        "settings": settings,
    }
    return json.dumps(document, indent=2)


RENDERERS = {
    RunsReport: {"text": render_runs_text, "csv": render_runs_csv, "json": render_runs_json},
    Base2NewReport: {
        "text": render_base2new_text,
        "csv": render_base2new_csv,
        "json": render_base2new_json,
    },
}


# ------------------------------------------------------------------------------------------------
# CoOp entry points and command line
# ------------------------------------------------------------------------------------------------


def _spread(args):
    return "ci95" if getattr(args, "ci95", False) else "std"


def parse_function(*metrics, directory="", args=None, end_signal=None):
    """CoOp's ``parse_function``: print the runs of ``directory`` and their summary.

    metrics: dicts ``{"name": keyword, "regex": compiled pattern}`` (see ``keyword_metric``).
    args: a namespace read for ``ci95``, ``test_log`` and ``seeds`` (each optional).
    end_signal: as in ``resolve_end_signals`` (None: chosen by ``args.test_log``).
    Returns ``{name: mean}``; raises NoResultsError when no run has a result.
    """
    end_signals = resolve_end_signals(end_signal, getattr(args, "test_log", False))
    seeds = getattr(args, "seeds", None)
    experiment = parse_experiment(directory, list(metrics), end_signals, seeds)
    print("\n".join(experiment_text_lines(experiment, _spread(args))))
    if not experiment.found:
        report = RunsReport([experiment], multi_exp=False, spread=_spread(args))
        raise NoResultsError(nothing_found_message(report))
    return {name: experiment.stats(name).mean for name in experiment.metric_names}


def main(args, end_signal=None):
    """Parse what ``args`` describes, print it in ``args.format`` and return the report.

    args: the namespace of ``build_parser()``; CoOp's namespace (directory, ci95, test_log,
    multi_exp, keyword) also works, the newer options then take their defaults.
    end_signal: as in ``resolve_end_signals``; not used with ``base2new``.
    Raises NoResultsError when there is not a single result.
    """
    seeds = getattr(args, "seeds", None)
    if getattr(args, "base2new", False):
        datasets = getattr(args, "datasets", None)
        report = parse_base2new(args.directory, args.keyword, _spread(args), datasets, seeds)
        has_results = any(setting.rows for setting in report.settings)
    else:
        end_signals = resolve_end_signals(end_signal, args.test_log)
        report = parse_runs(args.directory, args.keyword, end_signals, _spread(args), args.multi_exp, seeds)
        has_results = bool(report.with_results)
    print(RENDERERS[type(report)][getattr(args, "format", "text")](report))
    if not has_results:
        raise NoResultsError(nothing_found_message(report))
    return report


def _names(text):
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _seeds(text):
    try:
        return [int(seed) for seed in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser():
    parser = argparse.ArgumentParser(
        prog=osp.basename(__file__),
        description="Aggregate the results in the log.txt files that train.py writes (see docs/results.md).",
    )
    add = parser.add_argument
    add("directory", type=str, help="folder of run folders (seed1, seed2, ...)")
    add("--ci95", action="store_true", help="report 1.96*std/sqrt(n) instead of the std")
    add("--test-log", action="store_true", help="eval-only logs: results follow '=> result'")
    add("--multi-exp", action="store_true", help="directory holds several experiment folders")
    add("--keyword", default="accuracy", type=str, help="metric: accuracy, error, macro_f1")
    add("--format", choices=FORMATS, default="text", help="output format (default: text)")
    add(
        "--base2new",
        action="store_true",
        help="directory holds train_base/ (or test_base/) and test_new/: print the Base / New / HM table",
    )
    add("--datasets", type=_names, default=None, help="base2new rows, in this order: a,b,c")
    add("--seeds", type=_seeds, default=None, help="expected seeds, e.g. 1,2,3 (folders seed<S>)")
    return parser


def cli(argv=None):
    """Command line entry point; returns the exit status (1 when nothing was found)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.base2new and (args.multi_exp or args.test_log):
        parser.error(
            "--base2new reads train_base/ as training logs and test_new/ as eval-only logs; "
            "it cannot be combined with --multi-exp or --test-log"
        )
    if args.datasets is not None and not args.base2new:
        parser.error("--datasets needs --base2new")
    try:
        main(args)
    except NoResultsError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
