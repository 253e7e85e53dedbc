"""A new method costs only its own files (docs/adding_a_method.md).

In a copy of the repository, a dummy method is added as a user would: a subclass of CoOp in one
new file under trainers/, its config folder, and scripts/<name>/ with env.sh and the two
base-to-new step scripts; nothing else is edited. The registry lists it, the completeness check
names what it still lacks (its docs), and its scripts run through scripts/reproduce.sh base2new on
the toy world, ending with its table row.
"""

import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

from tests.script_runs import REPO, small_toy_env

TRAINER_FILE = '''"""A dummy method: CoOp under another name."""

from dassl.engine import TRAINER_REGISTRY

from .coop import CoOp


@TRAINER_REGISTRY.register()
class DummyCoOp(CoOp):
    """CoOp, registered as DummyCoOp."""


def add_config(cfg):
    """No keys of its own: it reads TRAINER.COOP."""
'''

ENV_FILE = """METHOD=DummyCoOp
TRAINER=DummyCoOp
CONFIG_DIR=configs/trainers/DummyCoOp
LEARNER=prompt_learner
BASE2NEW_CFG=toy_clip
TOY_CFG=toy_clip
DESCRIPTION="a dummy CoOp"
LEARNS="text context"
"""

STEP_SCRIPT = 'source "$(dirname "${{BASH_SOURCE[0]}}")/../lib/protocols.sh"\nprotocol_main {step} "$@"\n'
COPIED = ("clip", "configs", "dassl", "datasets", "scripts", "tools", "trainers", "docs")


@pytest.fixture(scope="module")
def repo_with_a_new_method(tmp_path_factory):
    """A copy of the repository's code with the dummy method's files added."""
    root = tmp_path_factory.mktemp("repo")
    ignore = shutil.ignore_patterns("__pycache__", "output")
    for name in COPIED:
        shutil.copytree(osp.join(REPO, name), root / name, ignore=ignore)
    for name in ("train.py", "parse_test_res.py", "README.md"):
        shutil.copy(osp.join(REPO, name), root / name)
    (root / "trainers" / "dummycoop.py").write_text(TRAINER_FILE)
    shutil.copytree(root / "configs" / "trainers" / "CoOp", root / "configs" / "trainers" / "DummyCoOp")
    scripts = root / "scripts" / "dummycoop"
    scripts.mkdir()
    (scripts / "env.sh").write_text(ENV_FILE)
    for step in ("base2new_train", "base2new_test"):
        (scripts / f"{step}.sh").write_text(STEP_SCRIPT.format(step=step))
    return root


def run_in(root, *command, env=None, expect=0):
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == expect, (result.stdout + result.stderr)[-3000:]
    return result.stdout + result.stderr


def test_the_registry_lists_it_and_the_check_names_what_it_lacks(repo_with_a_new_method):
    root = repo_with_a_new_method
    listed = run_in(root, sys.executable, "-m", "tools.methods", "list")
    assert f"DummyCoOp {root}/scripts/dummycoop" in listed.splitlines()
    problems = run_in(root, sys.executable, "-m", "tools.methods", "check", expect=1)
    assert "DummyCoOp: lacks DOCS in scripts/dummycoop/env.sh" in problems
    assert "README.md: the methods table is out of date" in problems
    assert [line for line in problems.splitlines() if line.startswith("DummyCoOp")] == [
        "DummyCoOp: lacks DOCS in scripts/dummycoop/env.sh (its documentation section, docs/<file>.md#<anchor>)"
    ]


def test_it_runs_through_reproduce_sh(repo_with_a_new_method, tmp_path):
    root = repo_with_a_new_method
    env = small_toy_env(tmp_path, train_per_class=4, shots=4, batch_size=32)
    output = run_in(
        root, "bash", "scripts/reproduce.sh", "base2new", "ZeroshotCLIP DummyCoOp", "toy_shapes", "1", env=env
    )
    assert "Trainable parameters (prompt learner): 256" in output  # CoOp's 4 x 64 context on the toy CLIP
    row = r"^(ZeroshotCLIP|DummyCoOp) +1 +1 +[\d.]+ \+- 0\.00 +[\d.]+ \+- 0\.00 +[\d.]+$"
    rows = re.findall(row, output, flags=re.M)
    assert rows == ["ZeroshotCLIP", "DummyCoOp"]  # the comparison table, a row per method
