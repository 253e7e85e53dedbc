"""``python -m tools.sweep launch|status``: what scripts/reproduce.sh calls (docs/scripts.md).

    python -m tools.sweep status SWEEP_DIR
    python -m tools.sweep launch SWEEP_DIR --launcher local|gpus|slurm [--jobs N] [--gpus "0 1"]

SWEEP_DIR holds the sweep's ``plan.tsv`` (written by reproduce.sh). ``status`` prints the status
table; ``launch`` runs the chains that are not finished (and not already running) through the
launcher, printing the table while they run and at the end. Exit status: 0 when every step is
done (or has nothing to do), 1 when some failed or did not finish, 130 / 143 after Ctrl-C /
SIGTERM (local jobs are stopped and resume when the sweep runs again; SLURM jobs keep running).
"""

import argparse
import os
import os.path as osp
import signal
import sys

from .launchers import (
    LauncherError,
    LocalLauncher,
    Reporter,
    SlurmLauncher,
    Stopped,
    queued_slurm_chains,
    raise_stopped,
)
from .plan import chains, plan_path, read_plan
from .status import DONE, NOTHING, RUNNING, render

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LAUNCHERS = ("local", "gpus", "slurm")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="print the status table")
    status.add_argument("sweep_dir")
    launch = sub.add_parser("launch", help="run the unfinished chains through a launcher")
    launch.add_argument("sweep_dir")
    launch.add_argument("--launcher", choices=LAUNCHERS, required=True)
    launch.add_argument("--jobs", type=int, default=1, help="local: jobs at a time")
    launch.add_argument("--gpus", default="", help='gpus: the GPU indices, e.g. "0 1 2 3"')
    launch.add_argument("--name", default="reproduce", help="slurm: the job name")
    return parser.parse_args(argv)


def _poll_s():
    return float(os.environ.get("SWEEP_POLL_S") or 5)


def _report_s():
    return float(os.environ.get("SWEEP_REPORT_S") or 60)


def build_launcher(args, chain_list, reporter):
    common = dict(chains=chain_list, sweep_dir=args.sweep_dir, repo_root=REPO_ROOT, reporter=reporter, poll_s=_poll_s())
    if args.launcher == "local":
        if args.jobs < 1:
            raise LauncherError(f"JOBS = {args.jobs} is invalid: expected a whole number >= 1")
        return LocalLauncher(**common, slots=list(range(args.jobs)))
    if args.launcher == "gpus":
        gpus = args.gpus.split()
        if not gpus or not all(g.isdigit() for g in gpus) or len(set(gpus)) != len(gpus):
            raise LauncherError(f'GPUS = "{args.gpus}" is invalid: expected distinct GPU indices, e.g. GPUS="0 1 2 3"')
        return LocalLauncher(**common, slots=gpus, gpus=True)
    return SlurmLauncher(**common, job_name=args.name)


def launch(args, steps):
    chain_list = chains(steps)
    reporter = Reporter(steps, args.sweep_dir, osp.getmtime(plan_path(args.sweep_dir)), _report_s())
    launcher = build_launcher(args, chain_list, reporter)
    rows = {step.index: state for step, state, _ in reporter.rows(())}
    # The chains not finished; of those, the ones with a step that a live run holds (another call).
    to_run = [i for i, chain in enumerate(chain_list) if any(rows[s.index] not in (DONE, NOTHING) for s in chain)]
    running = {i for i in to_run if any(rows[s.index] == RUNNING for s in chain_list[i])}
    print(
        f"{len(to_run)} of {len(chain_list)} job(s) not finished ({args.launcher}); jobs' files: {launcher.folder}",
        flush=True,
    )
    try:
        launcher.run(to_run, running)
    except Stopped as stop:
        reporter.report((), final=True)
        print(
            f"Stopped by {stop}: finished steps are kept; interrupted ones resume when the same command runs again"
            + (" (the SLURM jobs keep running)" if args.launcher == "slurm" else ""),
            file=sys.stderr,
        )
        return 128 + stop.signum
    final = reporter.report((), final=True)
    return 0 if all(state in (DONE, NOTHING) for _, state, _ in final) else 1


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    steps = read_plan(plan_path(args.sweep_dir))
    if args.command == "status":
        reporter = Reporter(steps, args.sweep_dir, osp.getmtime(plan_path(args.sweep_dir)), 0)
        chain_list = chains(steps)
        queued = {step.index for i in queued_slurm_chains(args.sweep_dir, chain_list) for step in chain_list[i]}
        print(f"Status of the sweep's steps ({args.sweep_dir}):")
        print(render(reporter.rows(queued)))
        return 0
    signal.signal(signal.SIGTERM, raise_stopped)
    signal.signal(signal.SIGINT, raise_stopped)
    try:
        return launch(args, steps)
    except LauncherError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
