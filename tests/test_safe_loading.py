"""Pickled files are read without running their code: checkpoints with pickled objects load their
tensors through the safe unpickler (objects become inert placeholders; full unpickling only with
DASSL_ALLOW_UNSAFE_LOAD=1), also through train.py and on resume, and the dataset caches build only
Datum records and plain containers.

Every payload here runs ``touch <marker>`` when unpickled by the standard unpickler; the tests
check that the marker is never created, and that it is under the opt-in (so the payload is real).
"""

import argparse
import io
import os
import os.path as osp
import pickle
import random
import types
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

import datasets  # noqa: F401  (registers the datasets)
import train
from dassl.data.datasets import DATASET_REGISTRY, DatasetLayoutError, Datum
from dassl.utils import UnsafeCheckpointError, load_checkpoint, resume_from_checkpoint
from dassl.utils.safe_unpickle import Placeholder, find_placeholders, is_placeholder, load_torch_file
from datasets import caches
from tests.engine_toys import make_toy_images, run_train_py, tiny_clip_argv
from tests.fake_datasets import build_fake, make_cfg
from tests.tiny_clip import save_tiny_clip
from tests.upstream_files import Payload, dassl_pytorch_checkpoint, dassl_pytorch_schedule

SYSTEM = f"{os.system.__module__}.{os.system.__name__}"  # posix.system: how a pickle names os.system


@pytest.fixture(autouse=True)
def default_loading(monkeypatch):
    monkeypatch.delenv("DASSL_ALLOW_UNSAFE_LOAD", raising=False)


def small_weights(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {"weight": torch.randn(3, 2, generator=generator), "bias": torch.randn(3, generator=generator)}


def write_payload_checkpoint(path, marker, legacy=False, epoch=2, weights=None):
    """A Dassl.pytorch checkpoint whose pickled scheduler object carries a Payload(marker)."""
    checkpoint = dassl_pytorch_checkpoint(weights or small_weights(), epoch, marker=marker)
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    return checkpoint


# ---------------------------------------------------------------------------- load_checkpoint


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_payload_checkpoint_loads_its_tensors_and_runs_nothing(tmp_path, capsys, legacy):
    marker, path = tmp_path / "MARKER", str(tmp_path / "model.pth.tar-2")
    written = write_payload_checkpoint(path, marker, legacy=legacy)

    checkpoint = load_checkpoint(path)
    assert not marker.exists()
    for key, value in written["state_dict"].items():
        torch.testing.assert_close(checkpoint["state_dict"][key], value, rtol=0, atol=0)
    momentum = checkpoint["optimizer"]["state"][0]["momentum_buffer"]
    torch.testing.assert_close(momentum, written["optimizer"]["state"][0]["momentum_buffer"], rtol=0, atol=0)
    assert checkpoint["epoch"] == 2 and checkpoint["scheduler"]["cons_lr"] == 1e-5

    successor = checkpoint["scheduler"]["successor"]
    assert find_placeholders(checkpoint) == [("['scheduler']['successor']", successor)]
    assert successor.pickled_name == "torch.optim.lr_scheduler.CosineAnnealingLR"
    assert successor.state["last_epoch"] == written["scheduler"]["successor"].last_epoch
    payload = successor.state["payload"]
    assert isinstance(payload, Placeholder) and payload.pickled_name == SYSTEM
    assert payload.args == (f"touch '{marker}'",) and not callable(payload)

    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith(f'"{path}" holds pickled Python objects (as checkpoints written by Dassl.pytorch do)')
    assert "read as inert placeholders, never run (torch.optim.lr_scheduler.CosineAnnealingLR, " in out


def test_the_opt_in_unpickles_in_full_and_so_runs_the_payload(tmp_path, capsys, monkeypatch):
    """The test's payload is real: the full unpickler (DASSL_ALLOW_UNSAFE_LOAD=1 only) runs it."""
    marker, path = tmp_path / "MARKER", str(tmp_path / "model.pth.tar-2")
    written = write_payload_checkpoint(path, marker)
    monkeypatch.setenv("DASSL_ALLOW_UNSAFE_LOAD", "1")
    checkpoint = load_checkpoint(path)
    assert marker.exists()
    assert isinstance(checkpoint["scheduler"]["successor"], torch.optim.lr_scheduler.CosineAnnealingLR)
    torch.testing.assert_close(checkpoint["state_dict"]["weight"], written["state_dict"]["weight"], rtol=0, atol=0)
    assert "with full unpickling (weights_only=False, DASSL_ALLOW_UNSAFE_LOAD=1)" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "", "yes", "true"])
def test_only_the_value_1_opts_in(tmp_path, monkeypatch, value):
    marker, path = tmp_path / "MARKER", str(tmp_path / "model.pth.tar-2")
    write_payload_checkpoint(path, marker)
    monkeypatch.setenv("DASSL_ALLOW_UNSAFE_LOAD", value)
    assert is_placeholder(load_checkpoint(path)["scheduler"]["successor"])
    assert not marker.exists()


def test_a_payload_among_the_weights_is_refused_naming_the_file_and_the_key(tmp_path, capsys):
    marker, path = tmp_path / "MARKER", str(tmp_path / "model.pth.tar-1")
    torch.save({"state_dict": {**small_weights(), "ctx": Payload(marker)}, "epoch": 1}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f'Checkpoint "{path}" holds pickled objects among its weights, not tensors: ')
    assert f"['state_dict']['ctx'] is <placeholder for {SYSTEM}>" in message
    assert "set DASSL_ALLOW_UNSAFE_LOAD=1" in message
    assert f'Unable to load checkpoint from "{path}"' in capsys.readouterr().out
    assert not marker.exists()


class HookedTensor:
    """Pickles as torch's tensor rebuild with a backward hook: a payload torch would keep."""

    def __init__(self, tensor, hook):
        self.tensor, self.hook = tensor, hook

    def __reduce__(self):
        storage = self.tensor._typed_storage()
        hooks = OrderedDict(hook=self.hook)
        return torch._utils._rebuild_tensor_v2, (storage, 0, tuple(self.tensor.shape), (1,), False, hooks)


def test_what_the_safe_unpickler_cannot_rebuild_is_refused_suggesting_the_opt_in(tmp_path):
    marker, path = tmp_path / "MARKER", str(tmp_path / "model.pth.tar-1")
    torch.save({"state_dict": {"ctx": HookedTensor(torch.ones(4), Payload(marker))}, "epoch": 1}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(
        f'Checkpoint "{path}" holds pickled objects that the safe unpickler cannot rebuild '
        "(a tensor pickled with backward hooks). If you trust the file, set DASSL_ALLOW_UNSAFE_LOAD=1"
    )
    assert not marker.exists()


class Python2Str(bytes):
    """Bytes that ``Python2Pickler`` writes as a Python 2 ``str`` (SHORT_BINSTRING)."""


class Python2Pickler(pickle._Pickler):
    """The pure-Python pickler, writing Python2Str the way Python 2 pickled its ``str``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj):
        self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + bytes(obj))
        self.memoize(obj)

    dispatch[Python2Str] = save_python2_str


def test_a_legacy_checkpoint_pickled_by_python_2_loads_as_latin1(tmp_path):
    """torch's legacy format with a Python 2 string (not UTF-8) beside the pickled objects."""
    path = str(tmp_path / "model.pth.tar-2")
    checkpoint = dassl_pytorch_checkpoint(small_weights(), 2)
    checkpoint["note"] = Python2Str("café".encode("latin-1"))
    python2_pickle = types.SimpleNamespace(
        __name__="python2_pickle",
        Pickler=Python2Pickler,
        dump=lambda obj, f, protocol: Python2Pickler(f, protocol).dump(obj),
    )
    torch.save(checkpoint, path, pickle_module=python2_pickle, _use_new_zipfile_serialization=False)
    loaded = load_checkpoint(path)
    assert loaded["note"] == "café"
    torch.testing.assert_close(loaded["state_dict"]["bias"], checkpoint["state_dict"]["bias"], rtol=0, atol=0)
    assert loaded["scheduler"]["successor"].pickled_name == "torch.optim.lr_scheduler.CosineAnnealingLR"


def test_plain_containers_and_parameters_are_rebuilt():
    buffer = io.BytesIO()
    value = {
        "set": {1, 2},
        "frozenset": frozenset({"a"}),
        "bytes": b"\x00\xff",
        "ordered": OrderedDict(b=1, a=2),
        "param": nn.Parameter(torch.arange(3.0)),
        "object": argparse.Namespace(lr=0.1),  # any other class: a placeholder
    }
    torch.save(value, buffer)  # protocol 2: sets, bytes and parameters are named globals
    buffer.seek(0)
    loaded = load_torch_file(buffer)
    assert (loaded["set"], loaded["frozenset"], loaded["bytes"]) == ({1, 2}, frozenset({"a"}), b"\x00\xff")
    assert type(loaded["ordered"]) is OrderedDict and list(loaded["ordered"].items()) == [("b", 1), ("a", 2)]
    assert type(loaded["param"]) is nn.Parameter and loaded["param"].requires_grad
    torch.testing.assert_close(loaded["param"].detach(), torch.arange(3.0), rtol=0, atol=0)
    assert loaded["object"].pickled_name == "argparse.Namespace" and loaded["object"].state == {"lr": 0.1}


# ---------------------------------------------------------------------------- resume


def test_resume_from_a_dassl_pytorch_checkpoint_continues_its_schedule(tmp_path):
    torch.save(dassl_pytorch_checkpoint(small_weights(), 3), tmp_path / "model.pth.tar-3")
    (tmp_path / "checkpoint").write_text("model.pth.tar-3\n")
    optimizer, scheduler = dassl_pytorch_schedule(0)
    model = nn.Linear(2, 3)
    assert resume_from_checkpoint(str(tmp_path), model, optimizer, scheduler) == 3
    reference_optimizer, reference = dassl_pytorch_schedule(3)
    assert scheduler.get_last_lr() == reference.get_last_lr()
    for _ in range(4):
        for sched in (scheduler, reference):
            sched.optimizer.step()
            sched.step()
        assert optimizer.param_groups[0]["lr"] == reference_optimizer.param_groups[0]["lr"]


def test_resume_from_a_payload_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "MARKER"
    path = str(tmp_path / "model.pth.tar-3")
    write_payload_checkpoint(path, marker, epoch=3)
    (tmp_path / "checkpoint").write_text("model.pth.tar-3\n")
    optimizer, scheduler = dassl_pytorch_schedule(0)
    with pytest.raises(UnsafeCheckpointError) as err:
        resume_from_checkpoint(str(tmp_path), nn.Linear(2, 3), optimizer, scheduler)
    assert str(err.value).startswith(
        f'Checkpoint "{path}" holds a pickled object where plain data is needed: '
        f"scheduler['successor']['payload'] is <placeholder for {SYSTEM}>. If you trust the file"
    )
    assert not marker.exists()


# ---------------------------------------------------------------------------- through train.py


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(make_toy_images(str(tmp_path_factory.mktemp("data"))))


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")
    save_tiny_clip(path, seed=1)
    return path


def upstream_full_model(seed):
    """The learned context and frozen entries of an upstream full-model file for CoOp with 4
    context tokens on the tiny CLIP (d_text 64; the upstream run had 5 classes)."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {
        "prompt_learner.ctx": (4, 64),
        "prompt_learner.token_prefix": (5, 1, 64),
        "prompt_learner.token_suffix": (5, 72, 64),
        "image_encoder.conv1.weight": (64, 3, 8, 8),
        "text_encoder.positional_embedding": (77, 64),
        "logit_scale": (),
    }
    return {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}


def run_recording_trainer(argv, monkeypatch):
    """(exit status, the trainer train.py built) of an in-process train.py run."""
    built = []

    def recording_build_trainer(cfg):
        built.append(train_build_trainer(cfg))
        return built[-1]

    train_build_trainer = train.build_trainer
    monkeypatch.setattr(train, "build_trainer", recording_build_trainer)
    return run_train_py(argv), (built[0] if built else None)


def coop_argv(data_root, output_dir, clip_path, *opts, extra_flags=()):
    return tiny_clip_argv(data_root, output_dir, clip_path, "CoOp", "TRAINER.COOP.N_CTX", "4", *opts,
                          extra_flags=extra_flags)  # fmt: skip


@pytest.mark.parametrize("how", ["model_dir", "init_weights"])
def test_train_py_loads_a_payload_full_model_checkpoint_and_runs_nothing(
    data_root, clip_path, tmp_path, monkeypatch, how
):
    marker, model_dir = tmp_path / "MARKER", tmp_path / "upstream"
    path = model_dir / "prompt_learner" / "model.pth.tar-5"
    path.parent.mkdir(parents=True)
    weights = upstream_full_model(seed=3)
    write_payload_checkpoint(str(path), marker, epoch=5, weights=weights)
    if how == "model_dir":
        flags, opts = ["--eval-only", "--model-dir", str(model_dir), "--load-epoch", "5"], []
    else:
        flags, opts = ["--eval-only"], ["MODEL.INIT_WEIGHTS", str(path)]
    output_dir = tmp_path / "eval"
    status, trainer = run_recording_trainer(
        coop_argv(data_root, output_dir, clip_path, *opts, extra_flags=flags), monkeypatch
    )
    assert status == 0
    assert not marker.exists()
    torch.testing.assert_close(trainer.model.prompt_learner.ctx.detach(), weights["prompt_learner.ctx"], rtol=0, atol=0)
    with open(output_dir / "log.txt") as f:
        log = f.read()
    assert f'"{path}" holds pickled Python objects' in log and "* accuracy:" in log


def test_train_py_refuses_a_checkpoint_with_a_payload_among_its_weights(data_root, clip_path, tmp_path, capsys):
    marker, model_dir = tmp_path / "MARKER", tmp_path / "upstream"
    path = model_dir / "prompt_learner" / "model.pth.tar-5"
    path.parent.mkdir(parents=True)
    weights = {**upstream_full_model(seed=4), "prompt_learner.ctx": Payload(marker)}
    torch.save({"state_dict": weights, "epoch": 5}, path)
    flags = ["--eval-only", "--model-dir", str(model_dir), "--load-epoch", "5"]
    assert run_train_py(coop_argv(data_root, tmp_path / "eval", clip_path, extra_flags=flags)) == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f'Error: Checkpoint "{path}" holds pickled objects among its weights')
    assert "DASSL_ALLOW_UNSAFE_LOAD=1" in errors[0]
    assert not marker.exists()


# ---------------------------------------------------------------------------- dataset caches


def load_dataset(info, **cfg_options):
    random.seed(1)
    return DATASET_REGISTRY.get(info.name)(make_cfg(info.root, info.name, **cfg_options))


def write_pickle(path, data, protocol=pickle.HIGHEST_PROTOCOL):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)


def test_a_payload_fewshot_cache_is_refused_naming_the_file_and_runs_nothing(tmp_path):
    info = build_fake("EuroSAT", tmp_path)
    full = load_dataset(info)
    marker = tmp_path / "MARKER"
    path = osp.join(info.dataset_dir, "split_fewshot", "shot_1-seed_1.pkl")
    write_pickle(path, {"train": full.train_x[:3], "val": [Payload(marker)]})
    with pytest.raises(DatasetLayoutError) as err:
        load_dataset(info, num_shots=1)
    first_line = str(err.value).splitlines()[0]
    assert first_line == (
        f"EuroSAT: refused the few-shot cache {path} unread: it pickles {SYSTEM}, where only Datum "
        "records and plain data belong (nothing in the file was run)"
    )
    assert "fix: delete shot_1-seed_1.pkl" in str(err.value)
    assert not marker.exists()


def test_a_payload_preprocessed_pkl_is_refused_naming_the_file_and_runs_nothing(tmp_path):
    info = build_fake("ImageNet", tmp_path)
    full = load_dataset(info)  # writes preprocessed.pkl
    marker = tmp_path / "MARKER"
    path = osp.join(info.dataset_dir, "preprocessed.pkl")
    write_pickle(path, {"train": [*full.train_x, Payload(marker)], "test": full.test})
    with pytest.raises(DatasetLayoutError) as err:
        load_dataset(info)
    assert str(err.value).splitlines()[0] == (
        f"ImageNet: refused preprocessed.pkl {path} unread: it pickles {SYSTEM}, where only Datum "
        "records and plain data belong (nothing in the file was run)"
    )
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_coop_format_caches_load(tmp_path, protocol):
    """CoOp's code pickles Datum objects (dassl.data.datasets.base_dataset.Datum) in dicts of lists."""
    info = build_fake("EuroSAT", tmp_path)
    full = load_dataset(info)
    assert (Datum.__module__, Datum.__qualname__) == ("dassl.data.datasets.base_dataset", "Datum")
    path = osp.join(info.dataset_dir, "split_fewshot", "shot_1-seed_1.pkl")
    train, val = (list({item.label: item for item in items}.values()) for items in (full.train_x, full.val))
    write_pickle(path, {"train": train, "val": val}, protocol=protocol)
    read = caches.read_item_cache(path)
    assert [(type(item), repr(item)) for item in read["train"]] == [(Datum, repr(item)) for item in train]
    dataset = load_dataset(info, num_shots=1)
    assert [repr(item) for item in dataset.train_x] == [repr(item) for item in train]
    assert [repr(item) for item in dataset.val] == [repr(item) for item in val]
