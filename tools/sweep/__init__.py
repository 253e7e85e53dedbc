"""The runs of a sweep (``scripts/reproduce.sh``) on more than one process: the GPUs of one machine,
local processes, or a SLURM cluster, dispatched through submitit; and the sweep's status table.

reproduce.sh plans the sweep (methods x datasets x seeds x steps, each step a call of a method's
protocol script) and writes it to ``OUTPUT/sweeps/<protocol>-<id>/plan.tsv``; this package reads
that plan and

- ``plan``: groups its steps into chains (a training step and the test steps that need it: one job);
- ``status``: says where every step is (done, running, queued, failed, ...) from the run folders
  (the result rule of ``tools/results``) and the jobs;
- ``jobs``: the job that runs a chain (requeued and resumed after a preemption or a time-out);
- ``launchers``: ``local`` (submitit's local executor, JOBS at a time), ``gpus`` (the same, one job
  per GPU, CUDA_VISIBLE_DEVICES set per job) and ``slurm`` (submitit's SLURM executor, one job
  array).

``python -m tools.sweep launch|status ...`` is what reproduce.sh calls (docs/scripts.md).
"""
