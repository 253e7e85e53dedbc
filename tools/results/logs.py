"""Results from the logs that train.py writes: one log file, and one run folder.

A run folder holds ``log.txt`` (its first start) and a ``log.txt-<time>`` for every later start in
the same folder: the logger never overwrites a log, so a resumed training or a repeated
evaluation writes there. The ``<time>`` suffix (``%Y-%m-%d-%H-%M-%S``) sorts by name in time
order and ``log.txt`` is the oldest. **The folder's result is the one of its newest log that holds
a complete result**; earlier logs are kept and only read when the newer ones hold none.
``scripts/common.sh`` applies the same rule to decide that a run is done.

A log's result section starts at a line equal to an end signal: ``Finish training`` (or the
older wording ``Finished training``) for a training log, ``=> result`` for an eval-only log.
After it the last ``* {keyword}: {value}%`` line wins. A log is complete when every metric has
such a line.
"""

import os
import os.path as osp
import re
from dataclasses import dataclass, field

LOG_NAME = "log.txt"
TRAIN_END_SIGNALS = ("Finish training", "Finished training")  # Dassl >= 0.6.1, and older
TEST_END_SIGNAL = "=> result"

# A run's status: its result was read, or why not. "missing": no log, or no complete result in
# any log; "unreadable": a file or folder could not be read; "malformed": a metric line whose
# number cannot be read. The last two are never replaced by an older log's result: the log that
# could not be read may hold the newest one.
FOUND, MISSING, UNREADABLE, MALFORMED = "found", "missing", "unreadable", "malformed"


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


def quoted(strings):
    return " or ".join(f'"{s}"' for s in strings)


@dataclass(frozen=True)
class LogRead:
    """What was read for one log or one run folder.

    path: the log that gave the result (or the problem); ``<folder>/log.txt`` when there is none.
    values: metric name -> value in %, complete when ``status`` is FOUND, else empty.
    problem: None when FOUND, else the reason.
    """

    path: str
    status: str
    values: dict = field(default_factory=dict)
    problem: str | None = None


def read_log_file(path, metrics, end_signals):
    """Read the metric values of one log file (which exists) as a ``LogRead``.

    Matching starts at the first stripped line equal to one of ``end_signals``; after it every
    matching line overwrites the value, so the last one wins.
    """
    values = {}
    started = False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
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
                        reason = f"{path}:{line_number}: expected a number in {line!r}"
                        return LogRead(path, MALFORMED, problem=reason)
    except OSError as error:
        return LogRead(path, UNREADABLE, problem=f"cannot read it: {error.strerror or error}")
    if not started:
        return LogRead(path, MISSING, problem=f"no {quoted(end_signals)} line")
    absent = [metric["name"] for metric in metrics if metric["name"] not in values]
    if absent:
        lines = quoted(f"* {name}: ...%" for name in absent)
        return LogRead(path, MISSING, problem=f"no {lines} line after {quoted(end_signals)}")
    return LogRead(path, FOUND, values=values)


def run_logs(folder):
    """The logs of a run folder, newest first: the ``log.txt-<time>`` files by name, then
    ``log.txt``. Raises OSError when the folder cannot be listed. (An entry that is not a readable
    file is kept: reading it reports it as unreadable.)"""
    names = os.listdir(folder)
    later = sorted((name for name in names if name.startswith(LOG_NAME + "-")), reverse=True)
    return [osp.join(folder, name) for name in later + ([LOG_NAME] if LOG_NAME in names else [])]


def read_run(folder, metrics, end_signals):
    """The result of a run folder: its newest log with a complete result (a ``LogRead``).

    Without one, the problem of the newest log is reported (saying how many earlier logs lack a
    result too); an unreadable or malformed log stops the search there.
    """
    default_path = osp.join(folder, LOG_NAME)
    if not osp.isdir(folder):
        return LogRead(default_path, MISSING, problem="no run folder")
    try:
        logs = run_logs(folder)
    except OSError as error:
        return LogRead(default_path, UNREADABLE, problem=f"cannot list the run folder: {error.strerror or error}")
    if not logs:
        return LogRead(default_path, MISSING, problem="no log.txt")
    newest = None
    for path in logs:
        read = read_log_file(path, metrics, end_signals)
        if read.status != MISSING:
            return read
        newest = newest or read
    if len(logs) == 1:
        return newest
    earlier = len(logs) - 1
    problem = f"{newest.problem}; none in the {earlier} earlier log{'s' if earlier > 1 else ''} either"
    return LogRead(newest.path, MISSING, problem=problem)


def read_log(log_path, metrics, end_signals):
    """Read one log file (CoOp's view of a run): ``(values, problem)``.

    ``values`` maps each metric name to its value in % and ``problem`` is None, or ``values`` is
    empty and ``problem`` says why (no run folder, no log.txt, run not finished, no metric line,
    a malformed metric line, an unreadable file). Run folders are read with ``read_run``.
    """
    if not osp.isfile(log_path):
        return {}, "no run folder" if not osp.isdir(osp.dirname(log_path)) else "no log.txt"
    read = read_log_file(log_path, metrics, end_signals)
    return read.values, read.problem
