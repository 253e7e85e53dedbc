"""Process-rank queries: the single seam for distributed (torchrun) runs.

Everything that must happen once per job, not once per process, asks ``is_main_process()``:
writing log.txt (``setup_logger``), saving checkpoints (``TrainerBase.save_model``), the
tensorboard writer (``TrainerBase.init_writer``), the confusion-matrix file (the evaluator) and
the progress bars. Without an initialised ``torch.distributed`` process group every process is
the main one, so single-process runs are unaffected.
"""
import torch.distributed as dist

__all__ = ["get_rank", "get_world_size", "is_main_process"]


def _initialized():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    """Rank of this process in the default process group (0 without one)."""
    return dist.get_rank() if _initialized() else 0


def get_world_size():
    """Number of processes in the default process group (1 without one)."""
    return dist.get_world_size() if _initialized() else 1


def is_main_process():
    """True on rank 0 (and in every non-distributed run)."""
    return get_rank() == 0
