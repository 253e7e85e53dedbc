"""Running the chains of a sweep through submitit: on local processes, on the GPUs of one machine,
or as a SLURM job array.

- ``local`` (``JOBS=N``): submitit's local executor, N jobs at a time (the next starts when one
  ends), the same job code as on SLURM.
- ``gpus`` (``GPUS="0 1 2 3"``): the local executor with one job per GPU at a time, each job seeing
  its GPU alone (CUDA_VISIBLE_DEVICES).
- ``slurm``: submitit's SLURM executor, one job per chain in one job array, the ``SLURM_*``
  settings of the environment (``slurm_parameters``). Jobs keep running on the cluster when the
  launcher stops watching them; a later call of the same sweep watches the jobs it recorded
  (``jobs.tsv``) instead of submitting them again.

The launcher prints the status table while the jobs run (when something changed, at most every
``SWEEP_REPORT_S`` seconds, default 60) and at the end.
"""

import os
import os.path as osp
import shlex
import shutil
import signal
import time
from collections import deque

import submitit

from .jobs import ChainJob
from .plan import chain_name
from .status import last_exits, read_events, render, status_rows

# The scripts' environment that a job gets (scripts/common.sh, scripts/lib/protocols.sh).
SWEEP_VARIABLES = ("DATA", "OUTPUT", "PYTHON", "OPTS", "SHOTS", "CFG", "TOY", "SOURCE", "SUB", "ALLOW_MIXED")
SUBMITIT_FOLDER = "submitit"
JOBS_RECORD = "jobs.tsv"
LOCAL_TIMEOUT_MIN = 60 * 24 * 365  # local jobs run as long as they need (submitit's default: 2 minutes)
DEFAULT_SLURM_TIME = "24:00:00"


class LauncherError(ValueError):
    """A launcher setting is invalid; the message names the variable and what is expected."""


class Stopped(Exception):
    """The launcher was stopped by a signal (``signum``)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_stopped(signum, frame):
    """A signal handler: Ctrl-C and SIGTERM end the launcher's loop through ``Stopped``."""
    raise Stopped(signum)


def job_environment(gpus_per_job=1):
    """The variables of SWEEP_VARIABLES that are set, and NPROC_PER_NODE for a multi-GPU job."""
    env = {name: os.environ[name] for name in SWEEP_VARIABLES if name in os.environ}
    if gpus_per_job > 1:
        env["NPROC_PER_NODE"] = str(gpus_per_job)
    return env


def job_steps(chain):
    """The ChainJob argument of a chain: [(step index, argv, run folder)]."""
    return [(step.index, ["bash", step.script, *step.args], step.run_dir) for step in chain]


def slurm_minutes(value):
    """SLURM's time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in whole minutes (at least 1)."""
    try:
        days, _, clock = value.rpartition("-") if "-" in value else ("0", "", value)
        parts = [int(p) for p in clock.split(":")]
        if "-" in value:  # D-H, D-H:M, D-H:M:S
            hours, minutes, seconds = (parts + [0, 0])[:3]
        elif len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts
        total = int(days) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    except ValueError:
        raise LauncherError(f"SLURM_TIME = {value!r} is not a SLURM time (e.g. 90, 4:00:00, 1-12:00:00)") from None
    return max(total, 1)


def extra_sbatch_flags(text):
    """``SLURM_EXTRA`` ("--constraint=a100 --exclude node1 --exclusive") as {name: value or True}."""
    flags, words = {}, shlex.split(text or "")
    while words:
        word = words.pop(0)
        if not word.startswith("--"):
            raise LauncherError(f"SLURM_EXTRA: expected --flag[=value] items, got {word!r} in {text!r}")
        name, has_value, value = word[2:].partition("=")
        if not has_value and words and not words[0].startswith("--"):
            value, has_value = words.pop(0), True
        flags[name] = value if has_value else True
    return flags


def _positive_int(name, default):
    value = os.environ.get(name) or str(default)
    if not value.isdigit() or int(value) < 1:
        raise LauncherError(f"{name} = {value!r} is invalid: expected a whole number >= 1")
    return int(value)


def slurm_parameters(job_name):
    """submitit's SLURM parameters from the environment's SLURM_* settings (docs/scripts.md)."""
    parameters = {
        "job_name": job_name,
        "time": slurm_minutes(os.environ.get("SLURM_TIME") or DEFAULT_SLURM_TIME),
        "gpus_per_node": _positive_int("SLURM_GPUS_PER_JOB", 1),
        "array_parallelism": _positive_int("SLURM_MAX_PARALLEL", 256),
    }
    optional = {"partition": "SLURM_PARTITION", "account": "SLURM_ACCOUNT", "qos": "SLURM_QOS"}
    parameters.update({key: os.environ[name] for key, name in optional.items() if os.environ.get(name)})
    if os.environ.get("SLURM_CPUS_PER_JOB"):
        parameters["cpus_per_task"] = _positive_int("SLURM_CPUS_PER_JOB", 1)
    additional = extra_sbatch_flags(os.environ.get("SLURM_EXTRA", ""))
    if os.environ.get("SLURM_MEM"):
        additional["mem"] = os.environ["SLURM_MEM"]  # as SLURM writes it (32G, 64000M), not submitit's GB
    if additional:
        parameters["additional_parameters"] = additional
    return parameters


def recorded_jobs(sweep_dir):
    """{chain name: SLURM job id} of the jobs that the slurm launcher submitted for this sweep (the
    latest of each chain)."""
    path = osp.join(sweep_dir, JOBS_RECORD)
    if not osp.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return dict(line.rstrip("\n").split("\t")[::-1] for line in f if "\t" in line)


def queued_slurm_chains(sweep_dir, chains):
    """The chains whose recorded SLURM job is still waiting or running (sacct), for the status
    table of a sweep that no launcher is watching; empty without a record or without sacct."""
    recorded = recorded_jobs(sweep_dir)
    if not recorded or shutil.which("sacct") is None:
        return []
    folder = osp.join(sweep_dir, SUBMITIT_FOLDER)
    jobs = {i: submitit.SlurmJob(folder=folder, job_id=recorded[chain_name(c)]) for i, c in enumerate(chains)
            if chain_name(c) in recorded}  # fmt: skip
    submitit.SlurmJob.watcher.update()
    return [i for i, job in jobs.items() if not submitit.SlurmJob.watcher.is_done(job.job_id, mode="cache")]


class Reporter:
    """Prints the status table when a step's state changed (at most every ``every_s`` seconds)."""

    def __init__(self, steps, sweep_dir, since, every_s):
        self.steps, self.sweep_dir, self.since, self.every_s = steps, sweep_dir, since, every_s
        self.last_states, self.last_time = None, 0.0

    def rows(self, active_steps):
        return status_rows(self.steps, active_steps, last_exits(read_events(self.sweep_dir)), self.since)

    def report(self, active_steps, final=False):
        rows = self.rows(active_steps)
        states = [state for _, state, _ in rows]
        due = time.monotonic() - self.last_time >= self.every_s
        if final or (states != self.last_states and due):
            print(("\nStatus at the end of the sweep:\n" if final else "\n") + render(rows), flush=True)
            self.last_states, self.last_time = states, time.monotonic()
        return rows


class Launcher:
    """What every launcher shares: the chains to run, the job's arguments, the reporting loop."""

    def __init__(self, chains, sweep_dir, repo_root, reporter, poll_s):
        self.chains, self.sweep_dir, self.repo_root = chains, sweep_dir, repo_root
        self.reporter, self.poll_s = reporter, poll_s
        self.folder = osp.join(sweep_dir, SUBMITIT_FOLDER)

    def job_arguments(self, chain_index, env):
        chain = self.chains[chain_index]
        return (self.repo_root, self.sweep_dir, chain_index, job_steps(chain), env)

    def active_steps(self, chain_indices):
        """The indices of the steps of the chains ``chain_indices`` (jobs waiting or running)."""
        return {step.index for i in chain_indices for step in self.chains[i]}


class LocalLauncher(Launcher):
    """``local`` and ``gpus``: submitit's local executor, one job per slot at a time."""

    def __init__(self, *args, slots, gpus=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.slots, self.gpus = slots, gpus

    def run(self, to_run, running_elsewhere):
        """Run the chains ``to_run`` but those with a step another process is running; returns the
        chains whose job failed."""
        executor = submitit.LocalExecutor(folder=self.folder)
        executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
        pending, running, failed = deque(i for i in to_run if i not in running_elsewhere), {}, []
        try:
            while pending or running:
                for slot in self.slots:
                    if slot in running or not pending:
                        continue
                    chain_index = pending.popleft()
                    if self.gpus:  # the job sees this GPU alone, as CUDA_VISIBLE_DEVICES
                        executor.update_parameters(visible_gpus=(int(slot),), gpus_per_node=1)
                    job = executor.submit(ChainJob(), *self.job_arguments(chain_index, job_environment()))
                    running[slot] = (chain_index, job)
                for slot, (chain_index, job) in list(running.items()):
                    if job.done():
                        del running[slot]
                        if job.exception() is not None:
                            failed.append(chain_index)
                if pending or running:
                    waiting = [i for i, _ in running.values()] + list(pending)
                    self.reporter.report(self.active_steps(waiting))
                    time.sleep(self.poll_s)
        except Stopped:
            for _, job in running.values():
                job.cancel(check=False)  # SIGINT: train.py says where it stopped; the sweep resumes it
            raise
        return failed


class SlurmLauncher(Launcher):
    """``slurm``: one job array through submitit's SLURM executor; watches it until it ends."""

    def __init__(self, *args, job_name, **kwargs):
        super().__init__(*args, **kwargs)
        self.job_name = job_name

    def _record(self, submitted):
        with open(osp.join(self.sweep_dir, JOBS_RECORD), "a", encoding="utf-8") as f:
            for chain_index, job in submitted.items():
                f.write(f"{job.job_id}\t{chain_name(self.chains[chain_index])}\n")

    def run(self, to_run, running_elsewhere):
        """Watch the chains of ``to_run`` whose job (recorded by an earlier call) is still waiting or
        running, submit the others but those another process is running, and watch them all until
        they end; returns the chains whose job did not complete."""
        parameters = slurm_parameters(self.job_name)
        executor = submitit.SlurmExecutor(folder=self.folder)
        executor.update_parameters(**parameters)
        watcher = submitit.SlurmJob.watcher
        recorded = recorded_jobs(self.sweep_dir)
        jobs, new = {}, []
        for chain_index in to_run:  # the jobs of an earlier call that are still waiting or running
            job_id = recorded.get(chain_name(self.chains[chain_index]))
            job = submitit.SlurmJob(folder=self.folder, job_id=job_id) if job_id else None
            if job is not None and not watcher.is_done(job_id, mode="force"):
                jobs[chain_index] = job
            elif chain_index not in running_elsewhere:
                new.append(chain_index)
        if new:
            env = job_environment(parameters["gpus_per_node"])
            with executor.batch():
                submitted = {i: executor.submit(ChainJob(), *self.job_arguments(i, env)) for i in new}
            self._record(submitted)
            jobs.update(submitted)
            arrays = ", ".join(sorted({job.job_id.split("_")[0] for job in submitted.values()}))
            earlier = len(jobs) - len(new)
            print(
                f"Submitted {len(new)} job(s) to SLURM (job array {arrays}); "
                f"{earlier} of an earlier call still queued or running"
            )
        while True:
            watcher.update()
            active = [i for i, job in jobs.items() if not watcher.is_done(job.job_id, mode="cache")]
            if not active:
                break
            self.reporter.report(self.active_steps(active))
            time.sleep(self.poll_s)
        return [i for i, job in jobs.items() if watcher.get_state(job.job_id, mode="cache") != "COMPLETED"]
