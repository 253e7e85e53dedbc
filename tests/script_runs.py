"""Running the protocol scripts in tests: a subprocess from the repository root, an environment
over a small toy world, and the log of a run folder."""

import os
import os.path as osp
import subprocess
import sys

from tools.toy_world import write_toy_world

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_script(script, *args, env, expect=0):
    """Run ``bash scripts/<script> args`` from the repository root; return its stdout + stderr."""
    result = subprocess.run(
        ["bash", osp.join("scripts", script), *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    assert result.returncode == expect, output[-3000:]
    return output


def small_toy_env(root, train_per_class, shots, batch_size):
    """The scripts' environment over a small ToyShapes tree written under ``root`` (1 val and 2 test
    images per class), one epoch of each method's toy recipe (TOY=1)."""
    write_toy_world(str(root / "data"), 1, {"train": train_per_class, "val": 1, "test": 2})
    return dict(
        os.environ,
        PYTHON=sys.executable,
        DATA=str(root / "data"),
        OUTPUT=str(root / "output"),
        SHOTS=str(shots),
        TOY="1",
        OPTS=f"OPTIM.MAX_EPOCH 1 DATALOADER.TRAIN_X.BATCH_SIZE {batch_size}",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )


def read_log(env, *parts):
    """log.txt of the run folder OUTPUT/<parts>."""
    with open(osp.join(env["OUTPUT"], *parts, "log.txt")) as f:
        return f.read()
