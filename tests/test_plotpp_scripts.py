"""The PLOT and PLOT++ scripts on a small toy world, continued: PLOT++'s fewshot.sh killed in
either stage resumes through the shared rules, and the upstream entry points (plot-coop's main.sh,
plot-pp's main_visiononly.sh, main_joint.sh, evaluation.sh) take upstream's arguments and write
upstream's layouts."""

import os
import os.path as osp
import signal
import subprocess

import pytest

from tests.script_runs import REPO, run_script, small_toy_env
from tests.script_runs import read_log as read

LEARNER = "prompt_learner"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return small_toy_env(tmp_path_factory.mktemp("scripts"), train_per_class=2, shots=2, batch_size=36)


SCRIPT, ARGS = "plotpp/fewshot.sh", ("toy_shapes", "2", "3")


def run_until(env, *markers):
    """Run SCRIPT ARGS and SIGKILL it (bash and train.py) at the first output line that starts with
    the last of ``markers`` once lines starting with the others have appeared, in order; returns
    the output."""
    process = subprocess.Popen(
        ["bash", osp.join("scripts", SCRIPT), *ARGS],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: bash and train.py are killed together
    )
    seen, waiting = [], list(markers)
    for line in process.stdout:
        seen.append(line)
        if line.startswith(waiting[0]):
            waiting.pop(0)
            if not waiting:
                os.killpg(process.pid, signal.SIGKILL)
                break
    process.wait()
    assert process.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    return "".join(seen)


def test_a_kill_in_either_stage_resumes_that_stage(env):
    """Two epochs, a checkpoint each: killed in stage 1's second epoch, then in stage 2's."""
    run_env = dict(env, OPTS="OPTIM.MAX_EPOCH 2 DATALOADER.TRAIN_X.BATCH_SIZE 36 TRAIN.CHECKPOINT_FREQ 1")
    stage1 = osp.join(env["OUTPUT"], "visiononly", "toy_shapes", "PLOTPP", "toy_clip_2shots", "seed1")
    stage2 = osp.join(env["OUTPUT"], "toy_shapes", "PLOTPP", "toy_clip_2shots", "seed3")
    output = run_until(run_env, "epoch [2/2]")  # stage 1's epoch 1 is saved
    assert "Stage 2 starts" not in output and not osp.exists(stage2)

    output = run_until(run_env, "Stage 2 starts", "epoch [2/2]")  # stage 2's epoch 1 is saved
    assert f"Found an unfinished run with a checkpoint in {stage1}: resuming" in output
    assert f"Stage 2 starts from the stage-1 file {stage1}/{LEARNER}/model.pth.tar-2" in output
    assert osp.exists(osp.join(stage2, LEARNER, "model.pth.tar-1"))

    output = run_script(SCRIPT, *ARGS, env=run_env)
    assert f"Results are available in {stage1}: skipping" in output
    assert f"Found an unfinished run with a checkpoint in {stage2}: resuming" in output
    (resumed,) = [name for name in os.listdir(stage2) if name.startswith("log.txt-")]
    with open(osp.join(stage2, resumed)) as f:
        assert "Finish training" in f.read()


def test_plot_main_sh_takes_upstreams_arguments_and_writes_its_layout(env):
    run_script("plot/main.sh", "toy_shapes", "3", env=dict(env, SHOTS_LIST="1", SEEDS="1"))
    tail = ("OP_N3", "toy_shapes", "PLOT", "rn50_1shots", "nctx16_cscFalse_ctpend", "seed1")
    log = read(env, *tail)
    assert "N = 3 prompts of n = 16 tokens" in log and "Finish training" in log
    assert f"Trainable parameters (prompt learner): {3 * 16 * 64:,}" in log


def test_plotpp_upstream_entry_points_write_their_layouts(env):
    """main_visiononly.sh, then main_joint.sh from its file, then evaluation.sh of that model."""
    run_env = dict(env, SHOTS_LIST="1", SEEDS="1")
    tail = ("OP_N4", "toy_shapes", "PLOTPP", "vit_1shots", "nctx4_cscFalse_ctpend", "seed1")
    run_script("plotpp/main_visiononly.sh", "toy_shapes", "3", env=run_env)
    assert "M = 3 visual prompt sets of 2 tokens" in read(env, "output_visiononly", *tail)
    run_script("plotpp/main_joint.sh", "toy_shapes", "3", env=run_env)
    stage1 = osp.join(env["OUTPUT"], "output_visiononly", *tail, LEARNER, "model.pth.tar-1")
    joint = read(env, "output_joint", *tail)
    assert f"Initialising the learned prompts from {stage1} (TRAINER.PLOTPP.PRETRAIN_DIR)" in joint
    assert "trains: joint, global term off" in joint and "Finish training" in joint
    run_script("plotpp/evaluation.sh", "toy_shapes", "3", env=run_env)
    evaluation = read(env, "output_eval", *tail)
    stage2 = osp.join(env["OUTPUT"], "output_joint", *tail, LEARNER, "model.pth.tar-1")
    assert f"from {stage2} (TRAINER.PLOTPP.PRETRAIN_DIR)" in evaluation and "=> result" in evaluation
