"""train.py with a prompt trainer and a tiny CLIP: a missing MODEL.INIT_WEIGHTS file is one
``Error:`` line, and keys set under another method's TRAINER node (a recipe given to the wrong
--trainer, an opt for another method) are named in a warning, since the trainer never reads them."""

import os.path as osp

import pytest

import train
from tests.engine_toys import make_toy_images, run_train_py, tiny_clip_argv
from tests.tiny_clip import save_tiny_clip
from tools.methods import load_methods

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(make_toy_images(str(tmp_path_factory.mktemp("data"))))


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")
    save_tiny_clip(path, seed=1)
    return path


@pytest.fixture
def run(monkeypatch, capsys):
    """train.py in-process (environment report stubbed); returns (exit status, stdout, stderr)."""
    monkeypatch.setattr(train, "collect_env_info", lambda: "<environment report>")

    def _run(argv):
        capsys.readouterr()
        status = run_train_py(argv)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return _run


def test_a_missing_init_weights_file_is_one_line_naming_the_key(run, data_root, clip_path, tmp_path):
    for missing, what in (
        (tmp_path / "run" / "prompt_learner" / "model.pth.tar-5", "does not exist"),
        (tmp_path, "is a folder"),
    ):
        argv = tiny_clip_argv(data_root, tmp_path / "out", clip_path, "CoOp", "MODEL.INIT_WEIGHTS", str(missing))
        status, out, err = run(argv)
        assert status == 1
        assert out.rstrip("\n").rsplit("\n", 1)[-1] == (
            f'Error: MODEL.INIT_WEIGHTS = "{missing}" {what}: expected a checkpoint file to start the learned '
            "weights from (e.g. a run's <model name>/model.pth.tar-N, or an official full-model file)"
        )
        assert "Traceback" not in out + err
        assert "Loading CLIP" not in out  # refused before anything is built


def test_another_methods_recipe_is_named_in_a_warning(run, data_root, clip_path, tmp_path):
    maple_recipe = osp.join(REPO, "configs", "trainers", "MaPLe", "toy_clip.yaml")
    argv = tiny_clip_argv(
        data_root, tmp_path / "out", clip_path, "CoOp", "TRAINER.VPT.N_CTX_VISION", "4",
        extra_flags=["--config-file", maple_recipe, "--no-train"],
    )  # fmt: skip
    status, out, _ = run(argv)
    assert status == 0
    warnings = [line for line in out.splitlines() if line.startswith("Warning: TRAINER.")]
    assert warnings == [
        f'Warning: TRAINER.MAPLE, set in config file "{maple_recipe}", is not read by --trainer CoOp (it reads '
        "TRAINER.COOP): those keys are ignored (is this file another method's recipe?)",
        "Warning: TRAINER.VPT, set in the command-line opts, is not read by --trainer CoOp (it reads TRAINER.COOP): "
        "those keys are ignored",
    ]
    with open(tmp_path / "out" / "log.txt") as log:
        assert warnings[0] in log.read()


def test_every_method_with_its_own_recipes_gets_no_warning():
    """Each registered method's recipes set only the node its trainer reads (zero-shot CLIP reads
    TRAINER.COOP, its recipes are CoOp's); a trainer without a known node is never warned about."""
    assert train.trainer_config_node("ZeroshotCLIP2") == "COOP"
    assert train.trainer_config_node("NoSuchTrainer") is None
    for method in load_methods():
        assert train.trainer_config_node(method.trainer), method.name
        for recipe in method.recipe_names():
            path = osp.join(REPO, method.config_dir, recipe + ".yaml")
            args = train.build_parser().parse_args(["--trainer", method.trainer, "--config-file", path])
            assert train.ignored_trainer_nodes(train.setup_cfg(args), args) == [], (method.name, recipe)
