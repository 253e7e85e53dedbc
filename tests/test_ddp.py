"""Multi-process training (torchrun + DistributedDataParallel, gloo on the CPU) against one process.

The ALIGN runs use the toy images (12 training, 9 test images: 9 is odd, so the two evaluation
shards differ in size) and a tiny CLIP in fp32. One process trains with batch 4; two processes with
batch 2 each. The training sampler is sequential: DistributedSampler(shuffle=False) gives rank r
the items r, r + 2, ..., so each global step of the two processes sees the same 4 images as the
single-process step, and DDP's gradient average of the two half-batch means is the full-batch mean.

OT_THRESH is 0: every Sinkhorn problem then runs exactly OT_MAX_ITER iterations. With the default
threshold the prompt-level Sinkhorn stops on a group made of the whole local batch, so a plan would
depend on which other images share the process's batch, and the comparison would measure that
stopping rule rather than the distributed machinery.

Tolerance for the learned prompts: the two runs differ only in float32 summation order (two
half-batch means averaged by the all-reduce vs one mean over 4 images, and BLAS blocking for batch
2 vs 4). After the 9 SGD steps here that gives differences of a few 1e-6 on values of size ~0.1-0.5;
we allow 5e-5 and check that training moved the prompts by more than 200 times that, so a wrong
reduction (summed instead of averaged gradients, unsynchronised replicas) cannot pass.

Result blocks and confusion matrices are compared exactly although their logits come from
different kernels (other weights by rounding, other batch compositions): they count argmax
predictions, which rounding cannot change when every test image's top-2 logit margin is far above
the logit differences. The tests check that margin instead of relying on it.
"""

import glob
import os
import os.path as osp
import re
import shutil
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from dassl.config import ConfigError
from dassl.data.samplers import ShardSampler
from dassl.utils import LOCK_FILE_NAME, OutputDirInUseError, lock_output_dir, torchrun_session
from dassl.utils import lock as lock_module
from tests.engine_toys import CLASSNAMES, SPLIT_SIZES, run_train_py, tiny_clip_argv, toy_argv
from tests.engine_toys import build_from_argv as build
from tests.tiny_clip import save_tiny_clip
from trainers.align import LEARNER_NAME

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
N_TEST = SPLIT_SIZES["test"] * len(CLASSNAMES)
EPOCHS = 3
PROMPT_ATOL = 5e-5
# Logits of the two runs' models may differ by rounding (measured: ~1e-6); every test image's top-2
# margin must exceed twice this for exactly equal predictions to be the expected outcome.
LOGIT_ATOL = 1e-4
# The result block with the per-class lines (the cmat line after it names the output folder).
RESULT_BLOCK = re.compile(r"=> result\n.*?\* average: \d+\.\d%\n", flags=re.S)
DISTRIBUTED_LINE = (
    "Distributed run: 2 processes (gloo); training batch 2 per process (DATALOADER.TRAIN_X.BATCH_SIZE), "
    "global batch 2 x 2 = 4\n"
)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    """A tiny CLIP whose vision width is its text width (64), unlike conftest's: the official-layout
    checkpoints built here have 64-wide projections."""
    path = str(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")
    save_tiny_clip(path, seed=1, vision_layers=3, transformer_layers=3)
    return path


def align_argv(data_root, output_dir, clip_path, batch_size, extra_flags=()):
    """train.py arguments: ALIGN on ToyColors, tiny CLIP, fp32, sequential training order."""
    return tiny_clip_argv(
        data_root, output_dir, clip_path, "ALIGN",
        *("DATALOADER.TRAIN_X.BATCH_SIZE", str(batch_size), "DATALOADER.TRAIN_X.SAMPLER", "SequentialSampler"),
        *("OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", str(EPOCHS), "TRAIN.CHECKPOINT_FREQ", "1"),
        *("TEST.PER_CLASS_RESULT", "True", "TEST.COMPUTE_CMAT", "True"),
        *("TRAINER.ALIGN.TEXT_PROMPT_DEPTH", "3", "TRAINER.ALIGN.TEXT_PROMPT_NUMBER", "2"),
        *("TRAINER.ALIGN.VISION_PROMPT_NUMBER", "2", "TRAINER.ALIGN.OT_THRESH", "0.0"),
        extra_flags=extra_flags,
    )  # fmt: skip


def torchrun(argv, log_dir):
    """Run ``torchrun --nproc_per_node 2`` on train.py (with the toy dataset registered).

    Returns {rank: (stdout, stderr)}: what each process printed to its console (torchrun
    redirects every process's output to files under ``log_dir``).
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "--log-dir",
        str(log_dir),
        "--redirects",
        "3",
        "-m",
        "tests.engine_toys",
        *argv,
    ]
    # One thread per process (2 processes on 2 cores); torchrun would set it itself with a warning.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    consoles = {}
    for rank in (0, 1):
        (folder,) = glob.glob(osp.join(str(log_dir), "*", "attempt_0", str(rank)))
        consoles[rank] = tuple(open(osp.join(folder, name)).read() for name in ("stdout.log", "stderr.log"))
    assert done.returncode == 0, (done.stderr, consoles)
    return consoles


def read_log(output_dir):
    with open(osp.join(output_dir, "log.txt")) as f:
        return f.read()


def result_block(output_dir):
    (block,) = RESULT_BLOCK.findall(read_log(output_dir))
    return block


def prompts(output_dir, epoch=EPOCHS):
    path = osp.join(output_dir, LEARNER_NAME, f"model.pth.tar-{epoch}")
    return torch.load(path, weights_only=True)["state_dict"]


def assert_prompts_close(actual, expected):
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=PROMPT_ATOL, msg=key)


@pytest.fixture(scope="module")
def single_run(data_root, clip_path, tmp_path_factory):
    """One process, batch 4: the reference run (its OUTPUT_DIR)."""
    output_dir = str(tmp_path_factory.mktemp("single"))
    assert run_train_py(align_argv(data_root, output_dir, clip_path, batch_size=4)) == 0
    return output_dir


@pytest.fixture(scope="module")
def two_process_run(data_root, clip_path, tmp_path_factory):
    """torchrun, 2 processes x batch 2, from scratch: (OUTPUT_DIR, consoles)."""
    output_dir = str(tmp_path_factory.mktemp("ddp"))
    argv = align_argv(data_root, output_dir, clip_path, batch_size=2)
    consoles = torchrun(argv, tmp_path_factory.mktemp("logs"))
    return output_dir, consoles


def final_logits(data_root, clip_path, output_dir):
    """(N_TEST, classes) logits of the model that training in ``output_dir`` saved last."""
    trainer = build(align_argv(data_root, output_dir + "_eval", clip_path, batch_size=4, extra_flags=["--eval-only"]))
    trainer.load_model(output_dir, epoch=EPOCHS)
    with torch.no_grad():
        return torch.cat([trainer.model_inference(trainer.parse_batch_test(batch)[0]) for batch in trainer.test_loader])


def assert_predictions_are_robust(logits):
    top2 = logits.topk(2, dim=1).values
    assert (top2[:, 0] - top2[:, 1]).min() > 2 * LOGIT_ATOL


# ---------------------------------------------------------------------------- ALIGN, 2 processes vs 1


def test_two_processes_learn_the_single_process_prompts(single_run, two_process_run):
    learned, reference = prompts(two_process_run[0]), prompts(single_run)
    assert_prompts_close(learned, reference)
    first_epoch = prompts(single_run, epoch=1)
    moved = max((reference[key] - first_epoch[key]).abs().max().item() for key in reference)
    assert moved > 200 * PROMPT_ATOL  # the compared epochs changed the prompts a lot more than atol


def test_two_processes_give_the_single_process_result_block(single_run, two_process_run, data_root, clip_path):
    reference = final_logits(data_root, clip_path, single_run)
    torch.testing.assert_close(
        final_logits(data_root, clip_path, two_process_run[0]), reference, rtol=0, atol=LOGIT_ATOL
    )
    assert_predictions_are_robust(reference)  # so the predictions, counted below, must be equal
    block = result_block(two_process_run[0])
    assert block == result_block(single_run)
    assert f"* total: {N_TEST}\n" in block  # no padded duplicate counted, nothing lost
    assert torch.equal(
        torch.load(osp.join(two_process_run[0], "cmat.pt"), weights_only=True),
        torch.load(osp.join(single_run, "cmat.pt"), weights_only=True),
    )


def test_sharded_evaluation_equals_one_process_on_the_same_weights(two_process_run, data_root, clip_path, tmp_path):
    """The two-process run's final test (shards of 5 and 4 images, gathered) against one process
    evaluating the very checkpoint it saved: identical block and confusion matrix (other batch
    compositions, so other kernels: the margins make equal predictions the expected outcome)."""
    output_dir = two_process_run[0]
    assert_predictions_are_robust(final_logits(data_root, clip_path, output_dir))
    argv = align_argv(
        data_root,
        tmp_path,
        clip_path,
        batch_size=2,
        extra_flags=["--eval-only", "--model-dir", output_dir, "--load-epoch", str(EPOCHS)],
    )
    assert run_train_py(argv) == 0
    assert result_block(tmp_path) == result_block(output_dir)
    assert torch.equal(
        torch.load(osp.join(tmp_path, "cmat.pt"), weights_only=True),
        torch.load(osp.join(output_dir, "cmat.pt"), weights_only=True),
    )


def test_only_rank_0_prints_and_writes(single_run, two_process_run):
    output_dir, consoles = two_process_run
    assert consoles[1] == ("", "")  # rank 1: nothing on stdout or stderr
    log = read_log(output_dir)
    assert consoles[0] == (log, "")  # rank 0: its console is what log.txt holds
    assert log.startswith("Setting fixed seed: 1\n" + DISTRIBUTED_LINE + "***************\n** Arguments **\n")
    assert log.count("Distributed run") == 1 and "Distributed run" not in read_log(single_run)
    assert sorted(os.listdir(output_dir)) == sorted([LEARNER_NAME, "cmat.pt", "log.txt"])  # one log
    assert sorted(os.listdir(osp.join(output_dir, LEARNER_NAME))) == [
        "checkpoint",
        "model.pth.tar-1",
        "model.pth.tar-2",
        "model.pth.tar-3",
    ]
    assert log.count("Checkpoint saved to ") == EPOCHS
    assert prompts(output_dir).keys() == prompts(single_run).keys()  # no "module." prefix


def test_resumed_two_process_run_continues_like_one_process(single_run, data_root, clip_path, tmp_path):
    """Both processes resume from the single-process checkpoint of epoch 2 (weights, SGD momentum,
    scheduler) and train epoch 3: a process that did not load it would pull the average gradient
    (and its own update) away from the reference."""
    learner_dir = tmp_path / "out" / LEARNER_NAME
    learner_dir.mkdir(parents=True)
    shutil.copy(osp.join(single_run, LEARNER_NAME, "model.pth.tar-2"), learner_dir)
    (learner_dir / "checkpoint").write_text("model.pth.tar-2\n")
    consoles = torchrun(align_argv(data_root, tmp_path / "out", clip_path, batch_size=2), tmp_path / "logs")
    log = read_log(tmp_path / "out")
    assert consoles[1] == ("", "")
    assert "Previous epoch: 2\n" in log and "epoch [3/3] batch [3/3]" in log and "epoch [2/3]" not in log
    assert_prompts_close(prompts(tmp_path / "out"), prompts(single_run))
    assert result_block(tmp_path / "out") == result_block(single_run)


# ---------------------------------------------------------------------------- the engine's pieces


@pytest.fixture
def one_process_group(tmp_path):
    """A real gloo process group of one process inside the test process."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("n_items, n_processes", [(9, 2), (10, 2), (7, 3), (2, 3), (0, 2)])
def test_shard_sampler_splits_into_contiguous_blocks_without_padding(n_items, n_processes):
    samplers = [ShardSampler(range(n_items), n_processes, rank) for rank in range(n_processes)]
    blocks = [list(sampler) for sampler in samplers]
    assert sum(blocks, []) == list(range(n_items))  # every item once, in dataset order
    assert [len(sampler) for sampler in samplers] == [len(block) for block in blocks]
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_shard_sampler_rejects_a_bad_rank():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        ShardSampler(range(4), 2, 2)


def test_loaders_in_a_process_group(one_process_group, data_root, tmp_path):
    trainer = build(
        toy_argv(data_root, tmp_path, "DATALOADER.TRAIN_X.SAMPLER", "RandomSampler", extra_flags=["--seed", "7"])
    )
    sampler = trainer.train_loader_x.sampler
    assert isinstance(sampler, DistributedSampler) and sampler.shuffle and sampler.seed == 7
    assert trainer.train_loader_x.drop_last  # 12 items per process >= batch 4, as in one process
    for loader in (trainer.val_loader, trainer.test_loader):
        assert isinstance(loader.sampler, ShardSampler) and not loader.drop_last

    sequential = build(
        toy_argv(
            data_root,
            tmp_path,
            "DATALOADER.TRAIN_X.SAMPLER",
            "SequentialSampler",
            "DATALOADER.TRAIN_X.BATCH_SIZE",
            "16",
        )
    )
    assert not sequential.train_loader_x.sampler.shuffle
    assert not sequential.train_loader_x.drop_last  # 12 items < batch 16: one short batch


def test_training_order_changes_every_epoch(one_process_group, data_root, tmp_path):
    trainer = build(toy_argv(data_root, tmp_path, "OPTIM.MAX_EPOCH", "2", extra_flags=["--seed", "3"]))
    orders = {0: [], 1: []}

    def record(batch):
        orders[trainer.epoch].extend(batch["index"].tolist())
        return {"loss": 0.0}

    trainer.forward_backward = record
    for epoch in (0, 1):
        trainer.epoch = epoch
        trainer.run_epoch()
    n_train = SPLIT_SIZES["train"] * len(CLASSNAMES)
    for epoch, order in orders.items():
        generator = torch.Generator().manual_seed(3 + epoch)  # DistributedSampler's: seed + epoch
        assert order == torch.randperm(n_train, generator=generator).tolist()
    assert orders[0] != orders[1]


def test_a_trainer_that_does_not_wrap_its_model_is_refused(one_process_group, data_root, tmp_path):
    trainer = build(toy_argv(data_root, tmp_path))
    with pytest.raises(
        ConfigError,
        match=r"ToyLinearProbe cannot train in a distributed .* \['linear_probe'\] "
        r"are not wrapped in DistributedDataParallel.*self\.wrap_ddp\(module\)",
    ):
        trainer.train()


def test_only_rank_0_locks_the_output_folder_and_a_refusal_reaches_every_rank(one_process_group, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    with lock_output_dir(out):
        assert osp.isfile(osp.join(out, LOCK_FILE_NAME))
        with pytest.raises(
            OutputDirInUseError, match=f'Output folder "{out}" is in use by another run \\(pid {os.getpid()} '
        ):
            with lock_output_dir(out):  # the refusal goes through the broadcast from rank 0
                pass
    assert not osp.exists(osp.join(out, LOCK_FILE_NAME))
    monkeypatch.setattr(lock_module, "is_main_process", lambda: False)
    with lock_output_dir(str(tmp_path / "other")):  # a rank > 0 takes no lock and creates nothing
        assert not osp.exists(tmp_path / "other")


def test_train_py_in_a_torchrun_environment_reports_errors_in_the_log(data_root, tmp_path, monkeypatch):
    """train.py as one torchrun worker (world size 1, in this process): the process group exists
    during the run and is gone after it; a trainer that does not wrap its model is refused, and the
    error line reaches rank 0's log."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    for name, value in dict(WORLD_SIZE=1, RANK=0, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1", MASTER_PORT=port).items():
        monkeypatch.setenv(name, str(value))
    assert run_train_py(toy_argv(data_root, tmp_path)) == 1
    assert not dist.is_initialized()
    log = read_log(tmp_path)
    assert "Distributed run: 1 processes (gloo); training batch 4 per process" in log
    assert log.endswith(
        "are not wrapped in DistributedDataParallel, so each process would update its own copy. "
        "In build_model, wrap the module that the training forward calls with self.wrap_ddp(module) "
        "and call the returned module in forward_backward (docs/engine.md), or run a single "
        "process.\n"
    )
    assert "\nError: ToyLinearProbe cannot train in a distributed (torchrun) run" in log


def test_align_trains_through_ddp_and_registers_the_plain_learner(one_process_group, data_root, clip_path, tmp_path):
    trainer = build(align_argv(data_root, tmp_path, clip_path, batch_size=4))
    assert isinstance(trainer.train_model, DistributedDataParallel) and trainer.train_model.module is trainer.model
    assert trainer.get_model_names() == [LEARNER_NAME]
    assert trainer._models[LEARNER_NAME] is trainer.model.prompt_learner
    trainer.batch_idx, trainer.num_batches = 0, len(trainer.train_loader_x)
    trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert trainer.model.prompt_learner.ctx.grad is not None
    assert trainer.model.clip.visual.conv1.weight.grad is None  # the frozen CLIP stays out of DDP


def test_without_torchrun_nothing_is_distributed(data_root, clip_path, tmp_path, monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with torchrun_session(use_cuda=False):
        assert not dist.is_initialized()
    trainer = build(align_argv(data_root, tmp_path, clip_path, batch_size=4))
    assert trainer.train_model is trainer.model
    assert type(trainer.train_loader_x.sampler).__name__ == "SequentialSampler"
    assert not dist.is_initialized()
