"""scripts/reproduce.sh's launchers (tools/sweep) on the toy world: local jobs through submitit, one
job per GPU, a SLURM cluster (stand-in sbatch/srun/sacct on PATH), the status table, and a sweep
killed and started again.

The grid is small (zero-shot CLIP and CoOp, 4 shots, 1 epoch); the events each job records
(start and end of every step, its CUDA_VISIBLE_DEVICES) show what ran where and when.
"""

import os
import os.path as osp
import re
import signal
import subprocess
import time

import pytest

from tests.script_runs import REPO, small_toy_env
from tools.sweep import launchers, plan
from tools.sweep.status import FAILED, RUNNING, read_events, step_state

FAKE_SLURM = osp.join(REPO, "tests", "fake_slurm")
METHODS = "ZeroshotCLIP CoOp"
TABLE_ROW = re.compile(r"^(ZeroshotCLIP|CoOp) +([\d,]+) +1 +[\d.]+ \+- [\d.]+ +[\d.]+ \+- [\d.]+ +[\d.]+$", re.M)


@pytest.fixture(scope="module")
def base_env(tmp_path_factory):
    env = small_toy_env(tmp_path_factory.mktemp("toy"), train_per_class=4, shots=4, batch_size=32)
    return dict(env, SWEEP_POLL_S="0.5", SWEEP_REPORT_S="0")


def reproduce(env, *args, expect=0, **extra):
    result = subprocess.run(
        ["bash", "scripts/reproduce.sh", *args], cwd=REPO, env={**env, **extra}, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    assert result.returncode == expect, output[-4000:]
    return output


def table(output):
    """The comparison table's rows: {method: the row's text after the method name}."""
    return {m.group(1): m.group(0)[len(m.group(1)) :] for m in TABLE_ROW.finditer(output)}


def sweep_dir(output_root):
    (folder,) = [osp.join(output_root, "sweeps", name) for name in os.listdir(osp.join(output_root, "sweeps"))]
    return folder


def step_spans(folder):
    """{(chain, step): (start, end, devices)} from the jobs' events."""
    spans = {}
    for event in read_events(folder):
        key = (event["chain"], event["step"])
        start, end, devices = spans.get(key, (None, None, None))
        if event["event"] == "start":
            start, devices = event["time"], event["devices"]
        else:
            end = event["time"]
        spans[key] = (start, end, devices)
    return spans


def overlapping(spans):
    """Whether two chains had steps running at the same time."""
    items = list(spans.items())
    return any(
        a_chain != b_chain and a[0] < b[1] and b[0] < a[1]
        for i, ((a_chain, _), a) in enumerate(items)
        for (b_chain, _), b in items[i + 1 :]
    )


def assert_tests_after_training(spans):
    """In every chain (one job), the test step started after the training step ended."""
    for chain in {chain for chain, _ in spans}:
        train, test = (spans[(chain, step)] for step in sorted(step for c, step in spans if c == chain))
        assert train[1] <= test[0]


@pytest.fixture(scope="module")
def sequential(base_env, tmp_path_factory):
    env = dict(base_env, OUTPUT=str(tmp_path_factory.mktemp("sequential")))
    return reproduce(env, "base2new", METHODS, "toy_shapes", "1 2")


def test_local_jobs_give_the_sequential_table_two_at_a_time(sequential, base_env, tmp_path):
    env = dict(base_env, OUTPUT=str(tmp_path / "out"))
    output = reproduce(env, "base2new", METHODS, "toy_shapes", "1 2", LAUNCHER="local", JOBS="2")
    assert table(output) == table(sequential) and set(table(output)) == {"ZeroshotCLIP", "CoOp"}
    assert "Status at the end of the sweep:" in output and "Steps: 8 done" in output
    folder = sweep_dir(env["OUTPUT"])
    spans = step_spans(folder)
    assert len(spans) == 8 and overlapping(spans)  # two jobs ran at once
    assert_tests_after_training(spans)
    again = reproduce(env, "base2new", METHODS, "toy_shapes", "1 2", LAUNCHER="local", JOBS="2")
    assert "0 of 4 job(s) not finished" in again and table(again) == table(output)
    assert len(read_events(folder)) == 16  # nothing ran again


def test_one_job_per_gpu_each_seeing_its_own(base_env, tmp_path):
    # DATA without the toy world (a fresh clone): the sweep writes it first
    env = dict(base_env, OUTPUT=str(tmp_path / "out"), DATA=str(tmp_path / "data"))
    output = reproduce(env, "base2new", METHODS, "toy_shapes", "1", LAUNCHER="gpus", GPUS="0 1")
    assert f"The toy world is not in {tmp_path / 'data'}: writing it" in output
    assert set(table(output)) == {"ZeroshotCLIP", "CoOp"}
    spans = step_spans(sweep_dir(env["OUTPUT"]))
    devices = {chain: {span[2] for (c, _), span in spans.items() if c == chain} for chain, _ in spans}
    assert sorted(value for values in devices.values() for value in values) == ["0", "1"]  # one GPU per job
    assert overlapping(spans)


def test_slurm_through_submitit_with_the_settings_as_sbatch_flags(base_env, tmp_path):
    state = tmp_path / "slurm"
    state.mkdir()
    env = dict(
        base_env,
        OUTPUT=str(tmp_path / "out"),
        PATH=f"{FAKE_SLURM}:{base_env['PATH']}",
        FAKE_SLURM_DIR=str(state),
    )
    settings = dict(
        LAUNCHER="slurm",
        SLURM_PARTITION="gpu",
        SLURM_TIME="1-02:30:00",
        SLURM_GPUS_PER_JOB="1",
        SLURM_CPUS_PER_JOB="4",
        SLURM_MEM="16G",
        SLURM_ACCOUNT="lab",
        SLURM_QOS="normal",
        SLURM_EXTRA="--constraint=a100 --exclude node7 --exclusive",
        SLURM_MAX_PARALLEL="2",
    )
    output = reproduce(env, "base2new", METHODS, "toy_shapes", "1", **settings)
    assert set(table(output)) == {"ZeroshotCLIP", "CoOp"}
    flags = set((state / "sbatch.log").read_text().splitlines())
    expected = {
        "--partition=gpu",
        "--time=1590",
        "--gpus-per-node=1",
        "--cpus-per-task=4",
        "--mem=16G",
        "--account=lab",
        "--qos=normal",
        "--constraint=a100",
        "--exclude=node7",
        "--exclusive",
        "--array=0-1%2",
        "--job-name=reproduce-base2new",
    }
    assert {f"#SBATCH {flag}" for flag in expected} <= flags
    assert_tests_after_training(step_spans(sweep_dir(env["OUTPUT"])))
    again = reproduce(env, "base2new", METHODS, "toy_shapes", "1", **settings)
    assert "0 of 2 job(s) not finished" in again
    assert len((state / "sbatch.log").read_text().split("sbatch ")) == 2  # submitted once


def test_status_shows_recorded_slurm_jobs_still_waiting_as_queued(base_env, tmp_path):
    state = tmp_path / "slurm"
    state.mkdir()
    env = dict(
        base_env, OUTPUT=str(tmp_path / "out"), PATH=f"{FAKE_SLURM}:{base_env['PATH']}", FAKE_SLURM_DIR=str(state)
    )
    reproduce(env, "--status", "base2new", METHODS, "toy_shapes", "1")  # plans the sweep, runs nothing
    folder = sweep_dir(env["OUTPUT"])
    coop = [chain for chain in plan.chains(plan.read_plan(plan.plan_path(folder))) if chain[0].method == "CoOp"]
    with open(osp.join(folder, launchers.JOBS_RECORD), "w") as f:  # a job of an earlier call, still waiting
        f.write(f"777_0\t{plan.chain_name(coop[0])}\n")
    (state / "777_0.state").write_text("PENDING\n")
    status = reproduce(env, "--status", "base2new", METHODS, "toy_shapes", "1")
    assert len(re.findall(r"^CoOp +toy_shapes .* queued", status, flags=re.M)) == 2
    assert "Steps: 2 queued, 2 not started" in status
    (state / "777_0.state").write_text("FAILED\n")
    assert "Steps: 4 not started" in reproduce(env, "--status", "base2new", METHODS, "toy_shapes", "1")


def test_status_names_a_failed_runs_error_line(base_env, tmp_path):
    env = dict(
        base_env, OUTPUT=str(tmp_path / "out"), OPTS=base_env["OPTS"] + " TRAINER.COOP.CLASS_TOKEN_POSITION start"
    )
    output = reproduce(env, "base2new", METHODS, "toy_shapes", "1", expect=1)
    failed = [line for line in output.splitlines() if re.match(r"^CoOp +toy_shapes .* base2new_train +failed ", line)]
    assert failed and "Error: TRAINER.COOP.CLASS_TOKEN_POSITION = 'start' is invalid" in failed[0]
    assert re.search(r"\(log: .*/train_base/toy_shapes/shots_4/CoOp/toy_clip/seed1/log\.txt\)", failed[0])
    status = reproduce(env, "--status", "base2new", METHODS, "toy_shapes", "1")
    assert "Steps: 1 failed, 1 not started, 2 done" in status and "Error: TRAINER.COOP.CLASS_TOKEN_POSITION" in status
    assert "Base-to-new comparison" not in status  # nothing ran, no table
    assert status.count("Loading trainer") == 0


def test_a_killed_sweep_resumes_when_started_again(base_env, tmp_path):
    env = dict(base_env, OUTPUT=str(tmp_path / "out"), OPTS="OPTIM.MAX_EPOCH 40 DATALOADER.TRAIN_X.BATCH_SIZE 16")
    args = ["bash", "scripts/reproduce.sh", "base2new", "CoOp", "toy_shapes", "1"]
    sweep = subprocess.Popen(
        args, cwd=REPO, env={**env, "LAUNCHER": "local", "JOBS": "2"}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    run = osp.join(env["OUTPUT"], "base2new", "train_base", "toy_shapes", "shots_4", "CoOp", "toy_clip", "seed1")
    log = osp.join(run, "log.txt")
    while sweep.poll() is None and not (osp.exists(log) and "epoch [2/40]" in open(log).read()):
        time.sleep(0.1)  # epoch 1 is saved once epoch 2 starts
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep, its jobs and their train.py
    sweep.wait()
    with open(log) as f:
        assert "Finish training" not in f.read()  # killed mid-training
    assert any(name.startswith("model.pth.tar-") for name in os.listdir(osp.join(run, "prompt_learner")))
    output = reproduce(env, "base2new", "CoOp", "toy_shapes", "1", LAUNCHER="local", JOBS="2")
    assert "Steps: 2 done" in output  # one method: a row per dataset
    assert re.search(r"^toy_shapes +1 +[\d.]+ \+- 0\.00 +[\d.]+ \+- 0\.00 +[\d.]+$", output, flags=re.M)
    logs = sorted(name for name in os.listdir(run) if name.startswith("log.txt"))
    with open(osp.join(run, logs[-1])) as f:
        resumed = f.read()
    assert len(logs) == 2 and "Finish training" in resumed and "(will resume training)" in resumed


def test_a_running_step_is_named_and_a_failure_recorded_by_a_job_too(tmp_path):
    from dassl.utils import lock_output_dir

    folder = str(tmp_path / "run")
    step = plan.Step(0, -1, "CoOp", "dtd", "16", "1", "base2new_train", "train", folder, "run", "scripts/coop/x.sh", ())
    with lock_output_dir(folder):
        state, detail = step_state(step)
        assert state == RUNNING and f"pid {os.getpid()}" in detail
    state, detail = step_state(step, exit_status=1)
    assert state == FAILED and detail.startswith("exit status 1 before its log")


@pytest.mark.parametrize(
    "value, minutes",
    [("90", 90), ("4:00:00", 240), ("1-12:00:00", 2160), ("2-3", 2 * 1440 + 180), ("30:30", 31), ("1-0:01", 1441)],
)
def test_slurm_times(value, minutes):
    assert launchers.slurm_minutes(value) == minutes


def test_bad_launcher_settings_are_named(base_env):
    with pytest.raises(launchers.LauncherError, match="SLURM_TIME = 'soon'"):
        launchers.slurm_minutes("soon")
    with pytest.raises(launchers.LauncherError, match="SLURM_EXTRA: expected --flag"):
        launchers.extra_sbatch_flags("exclusive")
    output = reproduce(base_env, "base2new", METHODS, "toy_shapes", "1", expect=2, LAUNCHER="cluster")
    assert "Error: LAUNCHER=cluster is unknown" in output


def test_a_preempted_job_is_requeued_with_its_chain_and_waits_for_the_old_lock(tmp_path):
    import threading

    from dassl.utils import lock_output_dir
    from tools.sweep.jobs import ChainJob, wait_for_lock

    job = ChainJob()
    arguments = ("/repo", "/sweep", 3, [(6, ["bash", "scripts/coop/base2new_train.sh", "dtd", "1"], "run")], {})
    requeued = job.checkpoint(*arguments)  # submitit calls this on a preemption or a time-out
    assert requeued.function is job and requeued.args == arguments  # the same chain: its scripts skip and resume

    folder = str(tmp_path / "run")
    released = threading.Event()

    def hold_then_release():
        with lock_output_dir(folder):  # the previous attempt's train.py, still ending
            held.set()
            released.wait(5)

    held = threading.Event()
    holder = threading.Thread(target=hold_then_release)
    holder.start()
    held.wait(5)
    threading.Timer(0.5, released.set).start()
    started = time.monotonic()
    wait_for_lock(folder, wait_s=30)
    holder.join()
    assert released.is_set() and time.monotonic() - started < 30  # waited for the release, not the limit
