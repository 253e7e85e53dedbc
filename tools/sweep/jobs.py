"""The job that runs one chain of a sweep: its steps in order, each a method script in a subprocess.

A ``ChainJob`` is submitit's ``Checkpointable``: after a preemption or a time-out submitit requeues
the same chain, whose scripts skip the steps that finished and resume an interrupted training from
its last epoch checkpoint (the engine saves one every epoch). Before a step, a requeued job waits a
little for the lock of the run folder (the previous attempt's train.py may still be ending on a
shared file system). A step that fails stops the chain (a test needs its training).

Each job appends what it does to its chain's events file (``status.events_path``): one JSON object
per line, ``{"chain", "step", "event": "start"|"end", "rc", "time", "host", "pid", "job",
"devices"}`` (``devices``: CUDA_VISIBLE_DEVICES as the step saw it).
"""

import json
import os
import socket
import subprocess
import time

import submitit

from tools.results.status import lock_holder

from .status import events_path

LOCK_WAIT_S = 120  # how long a step waits for a held lock of its run folder (a previous attempt ending)
LOCK_POLL_S = 2


class ChainFailed(RuntimeError):
    """A step of the chain exited with a non-zero status; the message names it."""


def _job_id():
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID", "SUBMITIT_LOCAL_JOB_ID"):
        if os.environ.get(name):
            task = os.environ.get("SLURM_ARRAY_TASK_ID") if name == "SLURM_ARRAY_JOB_ID" else None
            return f"{os.environ[name]}_{task}" if task else os.environ[name]
    return ""


def wait_for_lock(run_dir, wait_s=LOCK_WAIT_S):
    """Wait up to ``wait_s`` seconds while a live process holds the lock of ``run_dir``."""
    deadline = time.monotonic() + wait_s
    while run_dir and lock_holder(run_dir) is not None and time.monotonic() < deadline:
        time.sleep(LOCK_POLL_S)


class ChainJob(submitit.helpers.Checkpointable):
    """Runs the steps of one chain (see the module docstring)."""

    def __call__(self, repo_root, sweep_dir, chain_index, steps, env):
        """Run ``steps``, a list of (step index, argv, run folder), in ``repo_root`` with ``env``
        added to the environment. Returns the number of steps run; raises ChainFailed."""
        environment = {**os.environ, **env}
        for index, argv, run_dir in steps:
            wait_for_lock(run_dir)
            self._record(sweep_dir, chain_index, index, "start")
            rc = subprocess.run(argv, cwd=repo_root, env=environment, check=False).returncode
            self._record(sweep_dir, chain_index, index, "end", rc)
            if rc != 0:
                raise ChainFailed(f"{' '.join(argv)} exited with status {rc}")
        return len(steps)

    @staticmethod
    def _record(sweep_dir, chain_index, step_index, event, rc=None):
        path = events_path(sweep_dir, chain_index)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        record = {
            "chain": chain_index,
            "step": step_index,
            "event": event,
            "rc": rc,
            "time": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "job": _job_id(),
            "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
