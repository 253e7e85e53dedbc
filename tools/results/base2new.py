"""Base-to-new mode: the Base / New / HM tables of one or several methods, as a flat ``Report``.

Layout (the CoOp/MaPLe convention that the scripts write)::

    DIR/train_base/<dataset>/<shots>/<trainer>/<cfg>/seed<S>/   base: a training run
    DIR/test_base/...same tail.../                               base: an eval-only run (no training)
    DIR/test_new/...same tail.../                                new: an eval-only run

One table (a "setting") per (shots, trainer, cfg). A dataset's Base and New are means over the
seeds with both results; a setting's average takes the mean over its datasets of those means and
the HM of the two averages, as papers do.
"""

import os.path as osp
import re

import numpy as np

from .logs import FOUND, MISSING, TEST_END_SIGNAL, TRAIN_END_SIGNALS, UNREADABLE, keyword_metric, read_run
from .records import DatasetRow, Problem, Report, SeedPair, Setting, SettingAverage, Stats, harmonic_mean
from .runs import require_folder, subfolders

BASE_FOLDER = "train_base"
BASE_EVAL_FOLDER = "test_base"
NEW_FOLDER = "test_new"
SEED_FOLDER = re.compile(r"seed(\d+)")

# The two halves of a base-to-new run: (side, its sources), a source being (folder under the
# base2new directory, end signals). A run's first source whose folder exists is read: the base
# accuracy is the test at the end of training (train_base/) or, for methods without training such
# as zero-shot CLIP, an eval-only run on the base classes (test_base/).
SIDES = (
    ("base", ((BASE_FOLDER, TRAIN_END_SIGNALS), (BASE_EVAL_FOLDER, (TEST_END_SIGNAL,)))),
    ("new", ((NEW_FOLDER, (TEST_END_SIGNAL,)),)),
)


def _walk(root, depth, problems):
    """Yield the name tuple of every folder exactly ``depth`` levels below ``root``; a folder that
    cannot be listed is added to ``problems`` (as a Problem without setting) and passed over."""
    if depth == 0:
        yield ()
        return
    try:
        names = subfolders(root)
    except OSError as error:
        problems.append(Problem(None, "", None, None, root, f"cannot list it: {error.strerror or error}", UNREADABLE))
        return
    for name in names:
        for names_below in _walk(osp.join(root, name), depth - 1, problems):
            yield (name,) + names_below


def find_seed_folders(side_root, problems):
    """``{(shots, trainer, cfg): {dataset: set of seeds}}`` under one side's folder
    (``side_root/<dataset>/<shots>/<trainer>/<cfg>/seed<S>``; other names at the last level are
    not runs)."""
    found = {}
    if not osp.isdir(side_root):
        return found
    for dataset, shots, trainer, cfg, seed_folder in _walk(side_root, 5, problems):
        match = SEED_FOLDER.fullmatch(seed_folder)
        if match:
            found.setdefault((shots, trainer, cfg), {}).setdefault(dataset, set()).add(int(match.group(1)))
    return found


def _find_side(directory, sources, problems):
    """find_seed_folders over all sources of a side, merged."""
    merged = {}
    for folder, _ in sources:
        for key, by_dataset in find_seed_folders(osp.join(directory, folder), problems).items():
            for dataset, seeds in by_dataset.items():
                merged.setdefault(key, {}).setdefault(dataset, set()).update(seeds)
    return merged


def _side_folder(directory, sources, dataset, key, seed):
    """(run folder, end signals) of one side of one run: its first source whose folder exists."""
    candidates = [(osp.join(directory, folder, dataset, *key, f"seed{seed}"), signals) for folder, signals in sources]
    for folder, signals in candidates:
        if osp.isdir(folder):
            return folder, signals
    return candidates[0]


def _dataset_records(directory, setting, dataset, seeds, metric, found):
    """SeedPair records then the DatasetRow (None when no seed has both results) of one dataset,
    and its Problem records. found: {side: {dataset: seeds}} of this setting."""
    records, problems = [], []
    for seed in seeds:
        results = {}
        for side, sources in SIDES:
            folder, signals = _side_folder(directory, sources, dataset, setting.key, seed)
            read = read_run(folder, [metric], signals)
            if read.status == FOUND:
                results[side] = (read.values[metric["name"]], read.path)
            else:
                problems.append(Problem(setting, dataset, seed, side, read.path, read.problem, read.status))
        if len(results) == len(SIDES):
            (base, base_log), (new, new_log) = results["base"], results["new"]
            records.append(SeedPair(setting, dataset, seed, base, new, base_log, new_log))
    if not records:
        sides = [side for side, _ in SIDES if dataset in found[side]]
        reason = f"only {sides[0]} runs" if len(sides) == 1 else "no seed has both results"
        problems.append(Problem(setting, dataset, None, None, "", reason + "; left out of the average"))
        return records, None, problems
    base = Stats.of([pair.base for pair in records])
    new = Stats.of([pair.new for pair in records])
    seeds_used = tuple(pair.seed for pair in records)
    return records, DatasetRow(setting, dataset, seeds_used, base, new, harmonic_mean(base.mean, new.mean)), problems


def setting_average(setting, rows, pairs):
    """The SettingAverage of a setting's DatasetRows (and their SeedPairs)."""
    base = float(np.mean([row.base.mean for row in rows]))
    new = float(np.mean([row.new.mean for row in rows]))
    common = sorted(set.intersection(*(set(row.seeds) for row in rows)))
    per_seed = {seed: ([], []) for seed in common}
    for pair in pairs:
        if pair.seed in per_seed:
            per_seed[pair.seed][0].append(pair.base)
            per_seed[pair.seed][1].append(pair.new)
    base_seeds = Stats.of([np.mean(b) for b, _ in per_seed.values()]) if common else None
    new_seeds = Stats.of([np.mean(n) for _, n in per_seed.values()]) if common else None
    datasets = tuple(row.dataset for row in rows)
    return SettingAverage(setting, datasets, base, new, harmonic_mean(base, new), tuple(common), base_seeds, new_seeds)


def _setting_records(directory, setting, found_by_side, metric, datasets, seeds):
    """Every record of one setting: per dataset its SeedPairs and DatasetRow, then the average,
    then the problems."""
    found = {side: found_by_side[side].get(setting.key, {}) for side in found_by_side}
    names = datasets or sorted(set().union(*found.values()))
    if seeds is None:
        seeds = sorted(set().union(*(s for side in found.values() for s in side.values())))
    records, rows, pairs, problems = [], [], [], []
    for dataset in names:
        if not any(dataset in by_dataset for by_dataset in found.values()):
            places = " or ".join(
                osp.join(directory, folder, dataset, *setting.key) for _, sources in SIDES for folder, _ in sources
            )
            problems.append(Problem(setting, dataset, None, None, places, "no runs; left out of the average"))
            continue
        seed_pairs, row, notes = _dataset_records(directory, setting, dataset, seeds, metric, found)
        records += seed_pairs
        pairs += seed_pairs
        problems += notes
        if row is not None:
            records.append(row)
            rows.append(row)
    if rows:
        records.append(setting_average(setting, rows, pairs))
    return records + problems


def label_settings(keys):
    """Setting objects for (shots, trainer, cfg) keys, labelled by trainer, with the cfg (and the
    shots) added only where two settings would otherwise share a label."""
    settings = []
    for shots, trainer, cfg in keys:
        same_trainer = [key for key in keys if key[1] == trainer]
        label = trainer
        if len({key[2] for key in same_trainer}) > 1:
            label += f" ({cfg})"
        if len({key[0] for key in same_trainer if key[2] == cfg}) > 1:
            label += f" [{shots}]"
        settings.append(Setting(shots, trainer, cfg, label))
    return settings


def parse_base2new(directory, keyword, spread, datasets=None, seeds=None, methods=None, per_dataset=False):
    """Base-to-new mode: a ``Report`` over every (shots, trainer, cfg) found under ``directory``.

    datasets: row order and selection (default: every dataset found, sorted). seeds: the expected
    seeds (default: every seed found for the setting). methods: trainer names, the selection and
    order of the settings (default: all, sorted). Only seeds with both a base and a new result
    enter a dataset's means; only datasets with such a seed enter the average. The report is a
    comparison (one row per method) when it holds or asks for several settings, or with
    ``per_dataset``.
    """
    require_folder(directory)
    problems = []
    found_by_side = {side: _find_side(directory, sources, problems) for side, sources in SIDES}
    all_keys = sorted(set().union(*found_by_side.values()))
    keys = all_keys
    if methods is not None:
        methods = list(dict.fromkeys(methods))  # two methods may share a trainer (IVLP, language prompting)
        keys = [key for method in methods for key in all_keys if key[1] == method]
        for method in methods:
            if not any(key[1] == method for key in keys):
                places = " or ".join(osp.join(directory, folder, "*", "*", method) for _, s in SIDES for folder, _ in s)
                problems.append(Problem(None, "", None, None, places, f"no runs of {method}", MISSING))
    settings = label_settings(keys)
    metric = keyword_metric(keyword)
    records = []
    for setting in settings:
        records += _setting_records(directory, setting, found_by_side, metric, datasets, seeds)
    comparison = len(settings) > 1 or len(methods or ()) > 1 or per_dataset
    return Report(
        "base2new",
        directory,
        keyword,
        spread,
        records + problems,
        comparison=comparison,
        per_dataset=per_dataset,
        settings=settings,
    )


def nothing_found_message(report):
    """The error message for a base-to-new report without a single result."""
    directory = report.directory
    return (
        f"Nothing found in {directory}: no dataset has a seed with both a base result "
        f"({directory}/{BASE_FOLDER}/<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>/, a training log, or "
        f"{directory}/{BASE_EVAL_FOLDER}/..., an eval-only log) and a new result "
        f"({directory}/{NEW_FOLDER}/..., an eval-only log); the output lists what is missing"
    )
