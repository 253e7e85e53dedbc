"""``build_sampler``: the one place data samplers are built.

In a distributed (torchrun) run each process gets its own part of the data: training data through
torch's ``DistributedSampler`` (equal parts, padded, so that every process runs the same number of
steps), evaluation data through ``ShardSampler`` (contiguous blocks, no padding, so that no item
is counted twice when the results are gathered).
"""
from torch.utils.data import Sampler
from torch.utils.data.distributed import DistributedSampler
from torch.utils.data.sampler import RandomSampler, SequentialSampler

from dassl.config import ConfigError
from dassl.utils import get_rank, get_world_size, is_distributed, shared_random_seed

__all__ = ["SUPPORTED_SAMPLERS", "ShardSampler", "build_sampler", "check_sampler_type"]

SUPPORTED_SAMPLERS = ["RandomSampler", "SequentialSampler"]
# Dassl.pytorch's domain/class samplers: known names that this engine does not implement.
_NOT_IMPLEMENTED = ["RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler"]


class ShardSampler(Sampler):
    """Process ``rank``'s contiguous block of ``range(len(data_source))``, without padding.

    Block sizes differ by at most one (the first ``n % num_replicas`` blocks hold one more item);
    a block may be empty when there are fewer items than processes. Concatenating the blocks in
    rank order gives back the dataset order, which is how the evaluator gathers its results.
    """

    def __init__(self, data_source, num_replicas, rank):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"ShardSampler: rank must be in [0, {num_replicas}), got {rank}")
        size, extra = divmod(len(data_source), num_replicas)
        self.start = rank * size + min(rank, extra)
        self.stop = self.start + size + (1 if rank < extra else 0)

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self):
        return self.stop - self.start


def check_sampler_type(sampler_type, key=None):
    """Refuse a sampler this engine does not have.

    Raises:
        ConfigError: naming ``key`` (e.g. "DATALOADER.TRAIN_X.SAMPLER") when given, the value and
            the supported samplers.
    """
    where = f"{key} = {sampler_type!r}: " if key else ""
    if sampler_type in _NOT_IMPLEMENTED:
        raise ConfigError(
            "{}Sampler {} (Dassl.pytorch) is not implemented by this engine; supported: {}".format(
                where, sampler_type, ", ".join(SUPPORTED_SAMPLERS)
            )
        )
    if sampler_type not in SUPPORTED_SAMPLERS:
        raise ConfigError(
            "{}Unknown sampler type: {} (supported: {})".format(where, sampler_type, ", ".join(SUPPORTED_SAMPLERS))
        )


def build_sampler(
    sampler_type, cfg=None, data_source=None, batch_size=32, n_domain=0, n_ins=16, is_train=True
):
    """A sampler over ``data_source``: ``RandomSampler`` (torch's, without replacement) or
    ``SequentialSampler``.

    In a distributed run (see the module doc), training data (``is_train``) gets a
    ``DistributedSampler`` that shuffles for ``RandomSampler`` (seeded with ``cfg.SEED``, or a
    seed shared by all processes when no seed is set; the trainer calls ``set_epoch`` every
    epoch) and keeps the order for ``SequentialSampler`` (process r gets items r, r + N, ...);
    evaluation data gets a ``ShardSampler``.
    """
    check_sampler_type(sampler_type)

    if is_distributed():
        if not is_train:
            return ShardSampler(data_source, get_world_size(), get_rank())
        if sampler_type == "SequentialSampler":
            return DistributedSampler(data_source, shuffle=False)
        seed = cfg.SEED if cfg is not None and cfg.SEED >= 0 else shared_random_seed()
        return DistributedSampler(data_source, shuffle=True, seed=seed)

    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    return SequentialSampler(data_source)
