"""Base-to-new mode: the Base / New / HM tables of one or several methods, as a flat ``Report``.

Layout (the CoOp/MaPLe convention that the scripts write)::

    DIR/train_base/<dataset>/<shots>/<trainer>/<cfg>/seed<S>/   base: a training run
    DIR/test_base/...same tail.../                               base: an eval-only run (no training)
    DIR/test_new/...same tail.../                                new: an eval-only run

One table (a "setting") per method and shot count: the method of a run folder comes from its
trainer and recipe through the method registry (tools/methods.py), so that a method whose
datasets use their own recipes (ALIGN on SUN397, CoOp on ImageNet) is one row over all its
datasets, while two methods of one trainer (IVLP and language prompting) stay apart. Runs that no
method claims keep a row per trainer (a trainer without a method, such as MMP) or per trainer and
recipe (a recipe that no method of a shared trainer runs). A dataset's Base and New are means
over the seeds with both results; a setting's average takes the mean over its datasets of those
means and the HM of the two averages, as papers do.
"""

import os.path as osp
import re

import numpy as np

from . import provenance
from .logs import FOUND, MISSING, TEST_END_SIGNAL, TRAIN_END_SIGNALS, UNREADABLE, keyword_metric, read_run
from .records import DatasetRow, Problem, Report, SeedPair, Setting, SettingAverage, Stats, harmonic_mean
from .runs import require_folder, subfolders

STALE = "stale"
UNCHECKED = "unchecked"

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
    """(run folder, end signals) of one side of one run: its first source whose folder exists.
    key: (shots, trainer, cfg)."""
    candidates = [(osp.join(directory, folder, dataset, *key, f"seed{seed}"), signals) for folder, signals in sources]
    for folder, signals in candidates:
        if osp.isdir(folder):
            return folder, signals
    return candidates[0]


def pairing_problem(base_folder, base_log, new_log):
    """Whether the new result ``new_log`` may be paired with the training run's base result
    ``base_log``: (why not, or None; and whether it could not be checked).

    The new log names each model file it evaluated with its sha256 (``Model file of`` lines); the
    base run's model is the one its log names the same way, or, in a log of an older version, the
    file its training deployed (tools.results.provenance.deployed_model). A new log without those
    lines (an older version's), or a base run whose model cannot be found, cannot be checked: the
    pair is used, with a note.
    """
    try:
        evaluated = provenance.read_log_facts(new_log).models
        base_models = provenance.read_log_facts(base_log).models
    except OSError:
        return None, True
    if not evaluated:
        return None, True
    for name, (sha, path) in sorted(evaluated.items()):
        base_sha = base_models.get(name, (None, None))[0]
        if base_sha is None:
            try:
                base_sha = provenance.file_sha256(provenance.deployed_model(base_folder, name, base_log)[0])
            except (provenance.ModelNotFound, OSError):
                return None, True
        if base_sha != sha:
            return (
                f"evaluated another model than the base run's ({name}: {path}, sha256 {sha[:12]}; the base "
                f"run's model: sha256 {base_sha[:12]}); left out: run the base-to-new test step again"
            ), False
    return None, False


def _dataset_records(directory, setting, dataset, seeds, metric, found):
    """SeedPair records then the DatasetRow (None when no seed has both results of one model) of one
    dataset, and its Problem records. found: {side: {dataset: seeds}} of this setting."""
    records, problems = [], []
    for seed in seeds:
        results = {}
        for side, sources in SIDES:
            folder, signals = _side_folder(directory, sources, dataset, setting.folder(dataset), seed)
            read = read_run(folder, [metric], signals)
            if read.status == FOUND:
                results[side] = (read.values[metric["name"]], read.path, folder, signals == TRAIN_END_SIGNALS)
            else:
                problems.append(Problem(setting, dataset, seed, side, read.path, read.problem, read.status))
        if len(results) < len(SIDES):
            continue
        (base, base_log, base_folder, trained), (new, new_log, _, _) = results["base"], results["new"]
        if trained:
            stale, unchecked = pairing_problem(base_folder, base_log, new_log)
            if stale:
                problems.append(Problem(setting, dataset, seed, "new", new_log, stale, STALE))
                continue
            if unchecked:
                reason = "records no model file (a log of an older version): not checked against the base run's model"
                problems.append(Problem(setting, dataset, seed, "new", new_log, reason, UNCHECKED))
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
    found = {side: _setting_found(found_by_side[side], setting) for side in found_by_side}
    names = datasets or sorted(set().union(*found.values()))
    if seeds is None:
        seeds = sorted(set().union(*(s for side in found.values() for s in side.values())))
    records, rows, pairs, problems = [], [], [], []
    for dataset in names:
        if not any(dataset in by_dataset for by_dataset in found.values()):
            places = " or ".join(
                osp.join(directory, folder, dataset, *setting.folder(dataset))
                for _, sources in SIDES
                for folder, _ in sources
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


def _setting_found(found, setting):
    """{dataset: seeds} of one side (``found``: find_seed_folders' result) for a setting: each
    dataset's runs under the recipe the setting uses for it."""
    by_dataset = {}
    for dataset, cfg in setting.dataset_cfgs:
        seeds = found.get((setting.shots, setting.trainer, cfg), {}).get(dataset)
        if seeds:
            by_dataset[dataset] = seeds
    return by_dataset


def _group_of(trainer, cfg, methods):
    """(group name, its method or None) of a run folder's trainer and recipe: the method that
    claims them (tools.methods.method_of_run); for runs no method claims, the trainer (a trainer
    without methods, e.g. MMP: all its recipes together) or "trainer (cfg)" (a recipe that no method
    of a shared trainer runs: a row of its own). Without a registry (methods None): trainer and cfg
    as in the folders."""
    if methods is None:
        return f"{trainer} ({cfg})", None
    from tools.methods import method_of_run

    method = method_of_run(trainer, cfg, methods)
    if method is not None:
        return method.name, method
    if not any(m.trainer == trainer for m in methods):
        return trainer, None
    return f"{trainer} ({cfg})", None


def _recipe_rank(method):
    """Sort key of a recipe within a method: its own base-to-new recipes first, then its toy recipe,
    then others (recipes given by CFG)."""
    shipped = {cfg for key, cfg in method.recipes.items() if key.startswith("BASE2NEW_CFG")} if method else set()
    toy = method.toy_cfg if method else None
    return lambda cfg: 0 if cfg in shipped else 1 if cfg == toy else 2


def group_settings(keys, methods):
    """The settings of the runs found, in table order (shots, trainer, label).

    keys: {(shots, trainer, cfg): set of datasets with runs}. methods: the registry
    (tools.methods.load_methods()), or None to keep a setting per (shots, trainer, cfg).

    A method's recipes form one setting as long as no dataset has runs under two of them; when one
    has (a dataset run again with another CFG), the recipes are split greedily: the method's own
    base-to-new recipes first, then its toy recipe, then the others (more datasets first), each
    joining the first part that has none of its datasets. The part that comes first is labelled by
    the method's name, the others by the name and their recipes; a shot count is added where a
    label would otherwise repeat.
    """
    groups = {}
    for (shots, trainer, cfg), datasets in keys.items():
        name, method = _group_of(trainer, cfg, methods)
        group = groups.setdefault((shots, trainer, name), {"method": method, "cfgs": {}})
        group["cfgs"][cfg] = set(datasets)
    settings = []
    for (shots, trainer, name), group in groups.items():
        rank, cfgs = _recipe_rank(group["method"]), group["cfgs"]
        parts = []  # [(cfgs, datasets)]
        for cfg in sorted(cfgs, key=lambda c: (rank(c), -len(cfgs[c]), c)):
            part = next((p for p in parts if not p[1] & cfgs[cfg]), None)
            if part is None:
                parts.append(([cfg], set(cfgs[cfg])))
            else:
                part[0].append(cfg)
                part[1].update(cfgs[cfg])
        for index, (part_cfgs, _) in enumerate(parts):
            label = name if index == 0 else f"{name} ({', '.join(part_cfgs)})"
            dataset_cfgs = tuple(sorted((d, cfg) for cfg in part_cfgs for d in cfgs[cfg]))
            method_name = group["method"].name if group["method"] else None
            settings.append(Setting(shots, trainer, tuple(part_cfgs), label, method_name, dataset_cfgs))
    labels = [s.label for s in settings]
    settings = [
        s
        if labels.count(s.label) == 1
        else Setting(s.shots, s.trainer, s.cfgs, f"{s.label} [{s.shots}]", s.method, s.dataset_cfgs)
        for s in settings
    ]
    return sorted(settings, key=lambda s: (s.shots, s.trainer, s.label))


def select_settings(settings, names, methods):
    """The settings that ``names`` (method names, or trainer names) pick, in the names' order, each
    once; and the names that pick nothing. A method's name picks its settings (and, when it is also
    its trainer's name, the settings of that trainer that no method claims); another name picks
    every setting of that trainer."""
    known = {m.name.lower() for m in methods or ()}
    chosen, unmatched = [], []
    for name in dict.fromkeys(names):
        if name.lower() in known:
            picked = [
                s
                for s in settings
                if (s.method or "").lower() == name.lower() or (s.method is None and s.trainer == name)
            ]
        else:
            picked = [s for s in settings if s.trainer == name]
        if not picked:
            unmatched.append(name)
        chosen += [s for s in picked if s not in chosen]
    return chosen, unmatched


def load_registry():
    """The method registry, or None when it cannot be read (then a setting per trainer and cfg)."""
    from tools.methods import RegistryError, load_methods

    try:
        return load_methods()
    except (RegistryError, OSError):
        return None


def parse_base2new(
    directory, keyword, spread, datasets=None, seeds=None, methods=None, per_dataset=False, registry="load"
):
    """Base-to-new mode: a ``Report`` over every setting (method and shot count) under ``directory``.

    datasets: row order and selection (default: every dataset found, sorted). seeds: the expected
    seeds (default: every seed found for the setting). methods: method names (or trainer names),
    the selection and order of the settings (default: all, sorted). registry: the methods
    (tools.methods.load_methods(); "load": this repository's; None: a setting per trainer and
    cfg). Only seeds with both a base and a new result of the same model enter a dataset's means;
    only datasets with such a seed enter the average. The report is a comparison (one row per
    method) when it holds or asks for several settings, or with ``per_dataset``.
    """
    require_folder(directory)
    if registry == "load":
        registry = load_registry()
    problems = []
    found_by_side = {side: _find_side(directory, sources, problems) for side, sources in SIDES}
    keys = {}
    for side in found_by_side.values():
        for key, by_dataset in side.items():
            keys.setdefault(key, set()).update(by_dataset)
    settings = group_settings(keys, registry)
    if methods is not None:
        settings, unmatched = select_settings(settings, methods, registry)
        trainers = {m.name.lower(): m.trainer for m in registry or ()}
        for method in unmatched:
            trainer = trainers.get(method.lower(), method)
            places = " or ".join(osp.join(directory, folder, "*", "*", trainer) for _, s in SIDES for folder, _ in s)
            problems.append(Problem(None, "", None, None, places, f"no runs of {method}", MISSING))
    metric = keyword_metric(keyword)
    records = []
    for setting in settings:
        records += _setting_records(directory, setting, found_by_side, metric, datasets, seeds)
    comparison = len(settings) > 1 or len(set(methods or ())) > 1 or per_dataset
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
