"""What a protocol script does with a run folder: skip it, run it (new, resumed, started again,
evaluated again) or refuse it. scripts/common.sh asks this module (one call per run step), so the
scripts and parse_test_res.py apply one rule, in one code path (tools/results/logs.py).

    python -m tools.results.status train DIR --learner L [--allow-mixed] -- TRAIN_PY_ARGS...
    python -m tools.results.status eval DIR [--model-dir M --learner L] [--allow-mixed] -- TRAIN_PY_ARGS...
    python -m tools.results.status model DIR --learner L

``model`` prints the model file whose test gave the finished training run in DIR its result (what
an evaluation of it loads; e.g. PLOT++'s second stage starts from its first stage's), or fails
with the reason on stderr.

TRAIN_PY_ARGS are the arguments the script gives train.py (the request now; without them the
settings are not checked). It prints lines
``KEY VALUE`` for the script: ``verdict`` (``done``, ``run``, ``mixed``, ``refuse``, ``nomodel``),
``say`` (a line for stdout), ``error`` (a line for stderr), ``load_epoch`` (an evaluation's epoch
to load; absent: model-best.pth.tar).

The rules (docs/scripts.md):

- **result**: a folder's result is the one of its newest log with a complete result. A newest log
  that is malformed or unreadable is never counted (parse_test_res.py lists it): the step runs
  again, into a new log.
- **done**: a folder with a result is skipped when the run was made with the settings asked for
  now (its ``Run request`` fingerprint, or else its config dump, against the request; keys that do
  not change a result are not compared). Otherwise it is ``mixed``: refused unless
  ``--allow-mixed``, and never run again over the old result.
- **an evaluation** is also tied to the model it evaluated (its ``Model file of`` line): when the
  training folder's model is another one now (trained again), it is evaluated again. A log
  without the line (an older version's) is accepted as it is, with a note.
- **a training folder without a result** resumes from its checkpoint; without a checkpoint, it
  starts again when its logs explain it (interrupted, stopped before training, killed before the
  first checkpoint), the old logs kept; it is refused while a live train.py holds its lock, or
  when it holds files that train.py does not write.
"""

import argparse
import contextlib
import fcntl
import os
import os.path as osp
import re
import sys

from . import provenance
from .logs import (
    FOUND,
    LOG_NAME,
    MALFORMED,
    TEST_END_SIGNAL,
    TRAIN_END_SIGNALS,
    UNREADABLE,
    keyword_metric,
    read_run,
    run_logs,
)

DONE, RUN, MIXED, REFUSE, NO_MODEL = "done", "run", "mixed", "refuse", "nomodel"
LOCK_FILE_NAME = ".lock"  # dassl.utils.lock's
TENSORBOARD_FOLDER = "tensorboard"
INTERRUPT_LINE = re.compile(r"^Interrupted .*\((SIGINT|SIGTERM)\)")
EPOCH_LINE = re.compile(r"^epoch \[")
ACCURACY = keyword_metric("accuracy")


class Status:
    """A verdict and the lines that explain it."""

    def __init__(self):
        self.verdict = RUN
        self.say, self.errors = [], []
        self.load_epoch = None

    def lines(self):
        out = [f"verdict {self.verdict}"]
        out += [f"say {line}" for text in self.say for line in text.splitlines()]
        out += [f"error {line}" for text in self.errors for line in text.splitlines()]
        if self.load_epoch is not None:
            out.append(f"load_epoch {self.load_epoch}")
        return out


def lock_holder(folder):
    """What the lock file of a live train.py in ``folder`` says ("pid P on host H, started T"), or
    None when no live process holds it (dassl.utils.lock: the kernel drops the lock of a dead one)."""
    try:
        fd = os.open(osp.join(folder, LOCK_FILE_NAME), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 4096).decode(errors="replace").strip() or "holder not recorded yet"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def foreign_entries(folder, learner):
    """The entries of a training folder without a checkpoint that train.py does not write there
    (it writes its logs, the lock file, tensorboard/ and, in the learner's folder, model-best.pth.tar
    and the *.tmp files of a save in progress)."""
    foreign = []
    for name in sorted(os.listdir(folder)):
        path = osp.join(folder, name)
        if name == LOG_NAME or name.startswith(LOG_NAME + "-") or name == LOCK_FILE_NAME:
            continue
        if name == TENSORBOARD_FOLDER and osp.isdir(path):
            continue
        if learner and name == learner and osp.isdir(path):
            inner = sorted(os.listdir(path))
            foreign += [f"{name}/{n}" for n in inner if n != provenance.BEST_MODEL_NAME and not n.endswith(".tmp")]
            continue
        foreign.append(name)
    return foreign


def _log_lines(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.strip() for line in f]
    except OSError:
        return []


def why_stopped(folder):
    """What the logs of a training folder without result and checkpoint say: a sentence for the
    line that starts it again."""
    logs = run_logs(folder)
    if not logs:
        return f"Found an empty run folder {folder} (a start that stopped before its log): running"
    newest = _log_lines(logs[0])
    interrupts = [line for line in newest if INTERRUPT_LINE.match(line)]
    if interrupts:
        return (
            f"Found a run in {folder} that was interrupted before its first checkpoint ({interrupts[-1]}): "
            "starting again (the old logs are kept)"
        )
    if not any(EPOCH_LINE.match(line) for log in logs for line in _log_lines(log)):
        return f"Found only the logs of runs that stopped before training in {folder}: running again"
    return (
        f"Found a run in {folder} that stopped before its first checkpoint without a result (killed or "
        f"crashed: see {osp.basename(logs[0])}): starting again (the old logs are kept)"
    )


def _current_config(argv):
    """({key: value as printed}, the trainer's node) of the config ``train.py argv`` would run.
    Imports train.py (and torch): only when the request differs from the finished run's."""
    with contextlib.redirect_stdout(sys.stderr):
        import train

        cfg = train.effective_config(argv)
        return provenance.flat_config(str(cfg).splitlines()), train.trainer_config_node(cfg.TRAINER.NAME)


def settings_check(log, argv, eval_only):
    """(differences, note) between the run of ``log`` and the request ``argv``: [(key, there, now)],
    and a note when it cannot be checked. Raises the config error of an invalid request."""
    if not argv:  # no request to compare with
        return [], None
    facts = provenance.read_log_facts(log)
    if facts.request is not None and facts.request == provenance.request_fingerprint(argv):
        return [], None
    if facts.config is None:
        return [], f"Note: {log} holds no config dump: its settings cannot be checked against those asked for now"
    current, node = _current_config(argv)
    return provenance.settings_differences(facts.config, current, eval_only, node), None


def _finished(status, folder, log, argv, eval_only, allow_mixed):
    """A folder with a result: done, unless made with other settings (mixed)."""
    skip = (
        f"Results are available in {folder}: skipping (delete the folder to run it again; "
        f"result in {osp.basename(log)})"
    )
    try:
        differences, note = settings_check(log, argv, eval_only)
    except Exception as error:  # the request is invalid (a bad key in OPTS...)
        status.verdict = REFUSE
        status.errors.append(f"Error: cannot build the settings asked for now, to compare them with {log}: {error}")
        return status
    listing = [f"  {key}: {there} there, {now} now" for key, there, now in differences]
    if not differences:
        status.verdict = DONE
        status.say += [skip] + ([note] if note else [])
    elif allow_mixed:
        status.verdict = DONE
        status.say += [skip, "Warning: that run was made with other settings than those asked for now:", *listing]
        status.say.append("  kept as it is (ALLOW_MIXED=1): its result is mixed with runs made now")
    else:
        status.verdict = MIXED
        status.errors += [
            f"Error: {folder} holds a finished run ({osp.basename(log)}) made with other settings than those "
            "asked for now:",
            *listing,
            "Its result would be mixed with runs made now. Run the new settings into another OUTPUT, delete "
            f"the folder to run it again (rm -r {folder}), or set ALLOW_MIXED=1 to keep it as it is.",
        ]
    return status


def _unlistable(status, folder):
    try:
        os.listdir(folder)
        return False
    except OSError as error:
        status.verdict = REFUSE
        status.errors.append(f"Error: cannot read {folder}: {error.strerror or error}")
        return True


def _not_counted(read, folder):
    return (
        f"The newest log of {folder} with a result line, {osp.basename(read.path)}, cannot be counted "
        f"({read.status}: {read.problem}); it never counts as a result"
    )


def train_status(folder, learner, argv, allow_mixed=False):
    """The Status of a training step into ``folder`` (module docstring)."""
    status = Status()
    if not osp.isdir(folder):
        return status
    if _unlistable(status, folder):
        return status
    read = read_run(folder, [ACCURACY], TRAIN_END_SIGNALS)
    if read.status == FOUND:
        return _finished(status, folder, read.path, argv, False, allow_mixed)
    if read.status in (MALFORMED, UNREADABLE):
        status.say.append(_not_counted(read, folder))
    if learner and provenance.has_checkpoint(osp.join(folder, learner)):
        status.say.append(f"Found an unfinished run with a checkpoint in {folder}: resuming")
        return status
    holder = lock_holder(folder)
    if holder is not None:
        status.verdict = REFUSE
        status.errors.append(f"Error: {folder} is in use by a running train.py ({holder}): wait until it ends")
        return status
    foreign = foreign_entries(folder, learner)
    if foreign:
        status.verdict = REFUSE
        status.errors += [
            f"Error: {folder} holds no result and no checkpoint, and what train.py does not write there "
            f"({', '.join(foreign)}): it is not trained over.",
            f"Delete it to train again: rm -r {folder}",
        ]
        return status
    status.say.append(why_stopped(folder))
    return status


def _model_now(model_dir, learner):
    """(path, epoch) of the model a training folder deployed, or raises ModelNotFound."""
    read = read_run(model_dir, [ACCURACY], TRAIN_END_SIGNALS)
    if read.status != FOUND:
        raise provenance.ModelNotFound(
            f"no trained model in {model_dir}: no log there shows a finished training; "
            "run the training script first (it resumes an interrupted run)"
        )
    return provenance.deployed_model(model_dir, learner, read.path)


def _other_model(log, learner, model, model_error):
    """Why the evaluation of ``log`` is not one of the current model (None when it is, or cannot be
    told), and a note when it cannot be told."""
    recorded = provenance.read_log_facts(log).models.get(learner)
    if recorded is None and model is not None:
        note = (
            f"Note: {osp.basename(log)} records no model file (an older version's log): "
            "taken as the test of the current model"
        )
        return None, note
    if model is None:
        what = f"it evaluated {recorded[1]}" if recorded else "it evaluated a model"
        return f"{what}, and the training folder holds no model now ({model_error})", None
    sha, path = recorded
    now = provenance.file_sha256(model[0])
    if now != sha:
        reason = f"it evaluated {path} (sha256 {sha[:12]}), the training folder's model is now {model[0]}"
        return f"{reason} (sha256 {now[:12]})", None
    return None, None


def eval_status(folder, argv, model_dir=None, learner=None, allow_mixed=False):
    """The Status of an evaluation step into ``folder`` of the model that ``model_dir``'s training
    deployed (no model_dir: a method without training)."""
    status = Status()
    model, model_error = None, None
    if learner:
        try:
            model = _model_now(model_dir, learner)
        except provenance.ModelNotFound as error:
            model_error = str(error)
    if osp.isdir(folder):
        if _unlistable(status, folder):
            return status
        read = read_run(folder, [ACCURACY], (TEST_END_SIGNAL,))
        if read.status == FOUND:
            other, note = _other_model(read.path, learner, model, model_error) if learner else (None, None)
            if other is None:
                _finished(status, folder, read.path, argv, True, allow_mixed)
                if note and status.verdict == DONE:
                    status.say.append(note)
                return status
            status.say.append(
                f"The result in {folder} ({osp.basename(read.path)}) is of another model: {other}; "
                "evaluating again (the old logs are kept)"
            )
        elif read.status in (MALFORMED, UNREADABLE):
            status.say.append(_not_counted(read, folder) + ": evaluating again (the old logs are kept)")
    if model_error is not None:
        status.verdict = NO_MODEL
        status.errors.append(f"Error: {model_error}")
    elif model is not None:
        status.load_epoch = model[1]
    return status


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=("train", "eval", "model"))
    parser.add_argument("folder")
    parser.add_argument("--learner", default="")
    parser.add_argument("--model-dir", default="")
    parser.add_argument("--allow-mixed", action="store_true")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    request = argv[split + 1 :]  # train.py's arguments
    if args.kind == "model":
        try:
            print(_model_now(args.folder, args.learner)[0])
        except provenance.ModelNotFound as error:
            print(f"Error: {error}", file=sys.stderr)
            return 1
        return 0
    try:
        if args.kind == "train":
            status = train_status(args.folder, args.learner, request, args.allow_mixed)
        else:
            status = eval_status(args.folder, request, args.model_dir or None, args.learner or None, args.allow_mixed)
    except KeyboardInterrupt:
        return 130
    print("\n".join(status.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
