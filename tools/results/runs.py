"""Runs mode, CoOp's ``parse_test_res.py``: a folder of run folders (``seed1``, ``seed2``, ...), or
with ``multi_exp`` a folder of such folders, into a flat ``Report`` (see ``records``)."""

import os.path as osp

import numpy as np

from dassl.utils import listdir_nohidden

from .logs import FOUND, UNREADABLE, keyword_metric, read_run
from .records import ExperimentSummary, MultiExpAverage, Report, RunProblem, RunResult, Stats


class NoResultsError(RuntimeError):
    """No run has a result; the command line turns it into a message and exit status 1."""


def subfolders(path):
    """Sorted non-hidden folders of ``path`` (plain files are not runs and are passed over).
    Raises OSError when ``path`` cannot be listed."""
    return [name for name in listdir_nohidden(path, sort=True) if osp.isdir(osp.join(path, name))]


def require_folder(path):
    if not osp.isdir(path):
        raise NoResultsError(f"Nothing found: {path} is not a folder")


def experiment_records(directory, metrics, end_signals, seeds=None):
    """The records of one experiment folder: a RunResult or RunProblem per run folder (sorted, or
    exactly ``seed{S}`` for S in ``seeds``), then its ExperimentSummary.

    metrics: dicts from ``keyword_metric``.
    """
    names = [metric["name"] for metric in metrics]
    records = []
    try:
        runs = subfolders(directory) if seeds is None else [f"seed{s}" for s in seeds]
    except OSError as error:
        reason = f"cannot list the folder: {error.strerror or error}"
        records.append(RunProblem(directory, "", directory, reason, kind=UNREADABLE))
        runs = []
    found = []
    for run in runs:
        read = read_run(osp.join(directory, run), metrics, end_signals)
        if read.status == FOUND:
            found.append(read.values)
            records.append(RunResult(directory, run, read.path, read.values))
        else:
            records.append(RunProblem(directory, run, read.path, read.problem, kind=read.status))
    stats = {name: Stats.of([values[name] for values in found]) for name in names} if found else {}
    records.append(ExperimentSummary(directory, tuple(names), stats))
    return records


def runs_report(directory, metrics, end_signals, spread, multi_exp=False, seeds=None):
    """Runs mode: ``directory`` is one experiment, or with ``multi_exp`` a folder of them."""
    require_folder(directory)
    folders = [directory]
    if multi_exp:
        try:
            folders = [osp.join(directory, name) for name in subfolders(directory)]
        except OSError as error:
            raise NoResultsError(f"Nothing found: cannot list {directory}: {error.strerror or error}") from None
    records = []
    for folder in folders:
        records += experiment_records(folder, metrics, end_signals, seeds)
    names = tuple(metric["name"] for metric in metrics)
    summaries = [record for record in records if record.kind == "summary"]
    with_results = [summary for summary in summaries if summary.stats]
    if multi_exp and with_results:
        left_out = tuple(summary.experiment for summary in summaries if not summary.stats)
        for name in names:
            means = [summary.stats[name].mean for summary in with_results]
            records.append(MultiExpAverage(name, float(np.mean(means)), len(means), left_out))
    keyword = names[0] if names else ""
    return Report("runs", directory, keyword, spread, records, metric_names=names, multi_exp=multi_exp)


def parse_runs(directory, keyword, end_signals, spread, multi_exp=False, seeds=None):
    """Runs mode for one metric ``keyword`` (accuracy, error, macro_f1)."""
    return runs_report(directory, [keyword_metric(keyword)], end_signals, spread, multi_exp, seeds)


def nothing_found_message(report):
    """The error message for a runs report without a single result."""
    directories = ", ".join(record.experiment for record in report.of_kind("summary"))
    return (
        "Nothing found in {}: no run folder has a log with a result; the output lists what "
        "is missing (eval-only logs need --test-log)".format(directories or "(no folders)")
    )
