"""Aggregate the test results that train.py writes to its logs.

Two modes (docs/results.md has the layouts, the formats and examples):

* Runs mode, the CoOp CLI and output (default)::

      python parse_test_res.py DIR [--test-log] [--ci95] [--multi-exp] [--keyword accuracy]

  ``DIR`` holds one folder per run (``seed1``, ``seed2``, ...); with ``--multi-exp`` it holds
  several such experiment folders. Prints each run's value, then the mean and the population std
  (or ``1.96 * std / sqrt(n)`` with ``--ci95``) over the runs.

* Base-to-new mode::

      python parse_test_res.py OUTPUT/base2new --base2new [--datasets a,b] [--seeds 1,2,3]
          [--methods ALIGN,CoOp] [--per-dataset] [--reference docs/published_base2new.csv]

  Reads ``train_base/<dataset>/<shots>/<trainer>/<cfg>/seed<S>`` (base accuracy, the test at the
  end of training; for methods without training, ``test_base/...``, an eval-only run) and
  ``test_new/...`` (new accuracy) and prints the Base / New / HM table of one method, or for
  several methods one table with a row per method (its average over datasets, mean +- std over
  seeds, HM of the averages), as papers report it. A run's method comes from its trainer and
  recipe through the method registry (tools/methods.py): a method whose datasets use their own
  recipes is one row.

Both modes take ``--format text|csv|json`` (default text) and ``--seeds``.

A run folder's result is the one of its newest log with a complete result (``log.txt``, then the
``log.txt-<time>`` files that later starts in the same folder write); a run without one is listed
as missing, and one whose log cannot be read or holds a malformed metric line as unreadable or
malformed, and the rest is aggregated. Having no result at all is an error (exit status 1).

The aggregation lives in ``tools.results`` (a flat list of records, formatted by each renderer);
``parse_function`` and ``main`` keep their CoOp meaning.
"""

import argparse
import os.path as osp
import sys

from tools.results import base2new, reference, render_data, render_text, runs
from tools.results.base2new import BASE_EVAL_FOLDER, BASE_FOLDER, NEW_FOLDER, parse_base2new
from tools.results.logs import (
    LOG_NAME,
    TEST_END_SIGNAL,
    TRAIN_END_SIGNALS,
    keyword_metric,
    read_log,
    read_run,
    resolve_end_signals,
)
from tools.results.runs import NoResultsError, parse_runs

__all__ = [
    "BASE_EVAL_FOLDER",
    "BASE_FOLDER",
    "LOG_NAME",
    "NEW_FOLDER",
    "TEST_END_SIGNAL",
    "TRAIN_END_SIGNALS",
    "NoResultsError",
    "build_parser",
    "cli",
    "keyword_metric",
    "main",
    "parse_base2new",
    "parse_function",
    "parse_runs",
    "read_log",
    "read_run",
    "render",
    "resolve_end_signals",
]

FORMATS = ("text", "csv", "json")
RENDERERS = {"text": render_text.render, "csv": render_data.render_csv, "json": render_data.render_json}


def render(report, fmt="text"):
    """The report (from ``parse_runs``, ``parse_base2new`` or ``main``) as text, CSV or JSON."""
    return RENDERERS[fmt](report)


def nothing_found_message(report):
    if report.mode == "base2new":
        return base2new.nothing_found_message(report)
    return runs.nothing_found_message(report)


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
    report = runs.runs_report(directory, list(metrics), end_signals, _spread(args), seeds=getattr(args, "seeds", None))
    print(render(report))
    if not report.has_results:
        raise NoResultsError(nothing_found_message(report))
    (summary,) = report.of_kind("summary")
    return {name: stats.mean for name, stats in summary.stats.items()}


def main(args, end_signal=None):
    """Parse what ``args`` describes, print it in ``args.format`` and return the report.

    args: the namespace of ``build_parser()``; CoOp's namespace (directory, ci95, test_log,
    multi_exp, keyword) also works, the newer options then take their defaults.
    end_signal: as in ``resolve_end_signals``; not used with ``base2new``.
    Raises NoResultsError when there is not a single result, and
    ``tools.results.reference.ReferenceFileError`` for an unusable ``--reference`` file.
    """
    seeds = getattr(args, "seeds", None)
    if getattr(args, "base2new", False):
        options = {name: getattr(args, name, None) for name in ("datasets", "methods")}
        per_dataset = getattr(args, "per_dataset", False)
        report = parse_base2new(
            args.directory, args.keyword, _spread(args), seeds=seeds, **options, per_dataset=per_dataset
        )
        if getattr(args, "reference", None):
            report = reference.attach(report, reference.load_reference(args.reference))
    else:
        end_signals = resolve_end_signals(end_signal, args.test_log)
        report = parse_runs(args.directory, args.keyword, end_signals, _spread(args), args.multi_exp, seeds)
    print(render(report, getattr(args, "format", "text")))
    if not report.has_results:
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
        description="Aggregate the results in the logs that train.py writes (see docs/results.md).",
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
    add(
        "--methods",
        type=_names,
        default=None,
        help="base2new methods (method names as scripts/reproduce.sh takes them, or trainer names), in order: a,b",
    )
    add("--per-dataset", action="store_true", help="base2new comparison: a row per method and dataset")
    add("--reference", metavar="FILE", default=None, help="base2new: published numbers beside (CSV, docs/results.md)")
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
    for option in ("datasets", "methods", "per_dataset", "reference"):
        if getattr(args, option) and not args.base2new:
            parser.error(f"--{option.replace('_', '-')} needs --base2new")
    try:
        main(args)
    except reference.ReferenceFileError as error:
        parser.error(f"--reference: {error}")
    except NoResultsError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
