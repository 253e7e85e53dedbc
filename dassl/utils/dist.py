"""Process ranks and the torchrun process group: the single seam for distributed runs.

Everything that must happen once per job, not once per process, asks ``is_main_process()``:
writing log.txt (``setup_logger``), saving checkpoints (``TrainerBase.save_model``), the
tensorboard writer (``TrainerBase.init_writer``), the confusion-matrix file (the evaluator) and
the progress bars. Without an initialised ``torch.distributed`` process group every process is
the main one and every collective helper here is the identity, so single-process runs are
unaffected.

``torchrun_session`` (used by train.py) creates the process group from the environment that
``torchrun`` sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
"""

import contextlib
import os
import random
import warnings

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_cat",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "is_main_process",
    "launched_by_torchrun",
    "shared_random_seed",
    "synchronize",
    "torchrun_session",
]

TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


def is_distributed():
    """True while a default ``torch.distributed`` process group exists (a torchrun run)."""
    return dist.is_available() and dist.is_initialized()


def get_rank():
    """Rank of this process in the default process group (0 without one)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size():
    """Number of processes in the default process group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process():
    """True on rank 0 (and in every non-distributed run)."""
    return get_rank() == 0


def launched_by_torchrun():
    """True when the environment holds the variables torchrun sets for each worker."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


@contextlib.contextmanager
def torchrun_session(use_cuda):
    """Run the block as one worker of a torchrun job; a plain process runs it unchanged.

    Under torchrun: binds the process to ``cuda:LOCAL_RANK`` and creates the default process group
    (``nccl``) when CUDA is available and ``use_cuda``, else a ``gloo`` group on the CPU. Ranks
    other than 0 print nothing to the console: their stdout goes to ``os.devnull`` and Python
    warnings are ignored (rank 0 shows the same ones); tracebacks on stderr still appear. On exit
    their stdout is restored (rank 0 keeps its log tee, so a final error line reaches log.txt) and
    the process group is destroyed.

    Args:
        use_cuda (bool): ``cfg.USE_CUDA``.
    """
    if not launched_by_torchrun():
        yield
        return

    if torch.cuda.is_available() and use_cuda:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")

    try:
        with contextlib.ExitStack() as quiet:
            if not is_main_process():
                quiet.enter_context(contextlib.redirect_stdout(quiet.enter_context(open(os.devnull, "w"))))
                quiet.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore")
            yield
    finally:
        dist.destroy_process_group()


def synchronize():
    """Wait until every process reaches this point (a barrier); no-op without a process group."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_gather_cat(tensor):
    """Concatenate every process's ``tensor`` along dim 0, in rank order, on every process.

    Args:
        tensor: (N_r, ...) this process's part; the N_r may differ (also 0) between processes.
    Returns:
        (sum_r N_r, ...) CPU tensor; ``tensor`` on the CPU without a process group.
    """
    tensor = tensor.cpu()
    if not is_distributed():
        return tensor
    # Objects, not tensors: the parts have different lengths, and gloo/nccl need no padding this way.
    parts = [None] * get_world_size()
    dist.all_gather_object(parts, tensor)
    return torch.cat(parts)


def shared_random_seed():
    """A fresh random seed, the same on every process (drawn by rank 0 and broadcast).

    Drawn from the system's entropy, so torch's and Python's random states are left untouched.
    """
    seed = [random.SystemRandom().randrange(2**31)]
    if is_distributed():
        dist.broadcast_object_list(seed, src=0)
    return seed[0]
