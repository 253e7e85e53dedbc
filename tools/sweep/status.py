"""Where every step of a sweep is: a table per (method, dataset, shots, seed, step).

A step's state comes from its run folder, read with the scripts' own rule (``tools/results``), and
from the jobs of the launcher:

==============  =========================================================================
done            the folder has a result (the newest complete log)
running         a live train.py holds the folder's lock
queued          not finished, and a job that will run it is waiting or running
failed          its last attempt failed: the newest log's last ``Error:`` line, or the
                step's exit status when it stopped before its log (events of the jobs)
interrupted     the newest log ends with the interrupt line (Ctrl-C, SIGTERM): it resumes
stopped         the newest log has no result, no error and no interrupt line (killed)
other settings  finished with other settings than those asked for now (the sweep refuses)
not started     no log yet
nothing to do   the step has no run folder (a training step of a method without training)
==============  =========================================================================
"""

import json
import os
import os.path as osp
from collections import Counter

from tabulate import tabulate

from tools.results.logs import FOUND, TEST_END_SIGNAL, TRAIN_END_SIGNALS, keyword_metric, read_run, run_logs
from tools.results.status import INTERRUPT_LINE, lock_holder

DONE, RUNNING, QUEUED, FAILED = "done", "running", "queued", "failed"
INTERRUPTED, STOPPED, MIXED, NOT_STARTED, NOTHING = (
    "interrupted",
    "stopped",
    "other settings",
    "not started",
    "nothing to do",
)
ORDER = (FAILED, RUNNING, QUEUED, INTERRUPTED, STOPPED, MIXED, NOT_STARTED, DONE, NOTHING)
EVENTS_FOLDER = "events"
ACCURACY = keyword_metric("accuracy")


def events_path(sweep_dir, chain_index):
    """The events file of the job that runs chain ``chain_index`` (one JSON object per line)."""
    return osp.join(sweep_dir, EVENTS_FOLDER, f"chain{chain_index}.jsonl")


def read_events(sweep_dir):
    """Every event the jobs of the sweep recorded, in file order per chain (a list of dicts)."""
    folder = osp.join(sweep_dir, EVENTS_FOLDER)
    events = []
    for name in sorted(os.listdir(folder)) if osp.isdir(folder) else []:
        with open(osp.join(folder, name), encoding="utf-8") as f:
            events += [json.loads(line) for line in f if line.strip()]
    return events


def last_exits(events):
    """{step index: exit status} of the last end event of each step."""
    return {event["step"]: event["rc"] for event in events if event["event"] == "end"}


def _newest_log_facts(folder):
    """(newest log, its last ``Error:`` line or None, whether it ends interrupted)."""
    logs = run_logs(folder)
    if not logs:
        return None, None, False
    error, interrupted = None, False
    try:
        with open(logs[0], encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith("Error:"):
                    error = line
                elif INTERRUPT_LINE.match(line):
                    interrupted = True
    except OSError as e:
        error = f"Error: cannot read the log: {e.strerror or e}"
    return logs[0], error, interrupted


def _older_than(log, since, step):
    """Whether the result in ``log`` predates the sweep's plan although the sweep's check found the
    step to run again (so it does not count as this sweep's result)."""
    if step.check != "run" or since is None:
        return False
    try:
        return osp.getmtime(log) < since
    except OSError:  # removed meanwhile: read again at the next report
        return True


def step_state(step, active=False, exit_status=None, since=None):
    """(state, detail) of ``step`` (a plan.Step).

    active: a job that will run the step is waiting or running.
    exit_status: the step's last exit status recorded by a job (None: not recorded).
    since: the time the sweep was planned; a result older than it does not count for a step the
        sweep's check found to run again (a test of a model trained again, a malformed newest log).
    """
    if not step.run_dir:
        return NOTHING, ""
    folder = step.run_dir
    if osp.isdir(folder):
        signals = TRAIN_END_SIGNALS if step.kind == "train" else (TEST_END_SIGNAL,)
        read = read_run(folder, [ACCURACY], signals)
        if read.status == FOUND and not _older_than(read.path, since, step):
            return (MIXED, "finished with other settings: refused") if step.check == "mixed" else (DONE, "")
        holder = lock_holder(folder)
        if holder is not None:
            return RUNNING, holder
    log, error, interrupted = _newest_log_facts(folder) if osp.isdir(folder) else (None, None, False)
    if active:
        return QUEUED, ""
    if error is not None:
        return FAILED, f"{error} (log: {log})"
    if exit_status not in (None, 0):
        return FAILED, f"exit status {exit_status} before its log; rerun: {step.command()}"
    if interrupted:
        return INTERRUPTED, f"resumes when the sweep runs again (log: {log})"
    if log is not None:
        return STOPPED, f"no result, no error (killed?); it resumes (log: {log})"
    return NOT_STARTED, ""


def status_rows(steps, active_steps=(), exits=None, since=None):
    """[(step, state, detail)] of every step."""
    exits = exits or {}
    return [(step, *step_state(step, step.index in active_steps, exits.get(step.index), since)) for step in steps]


def render(rows):
    """The status table and a summary line (text)."""
    table = tabulate(
        [(s.method, s.dataset, s.shots, s.seed, s.step, state, detail) for s, state, detail in rows],
        headers=("Method", "Dataset", "Shots", "Seed", "Step", "State", "Detail"),
    )
    counts = Counter(state for _, state, _ in rows)
    summary = ", ".join(f"{counts[state]} {state}" for state in ORDER if counts[state])
    return f"{table}\n\nSteps: {summary}"
