"""``build_sampler`` (dassl-api §4.2): the one place data samplers are built.

A distributed run swaps in its sampler here (``dassl.utils.dist``).
"""
from torch.utils.data.sampler import RandomSampler, SequentialSampler

__all__ = ["SUPPORTED_SAMPLERS", "build_sampler"]

SUPPORTED_SAMPLERS = ["RandomSampler", "SequentialSampler"]
# Dassl.pytorch's domain/class samplers: known names that this engine does not implement.
_NOT_IMPLEMENTED = ["RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler"]


def build_sampler(sampler_type, cfg=None, data_source=None, batch_size=32, n_domain=0, n_ins=16):
    """``RandomSampler`` (torch's, without replacement) or ``SequentialSampler`` over data_source."""
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type in _NOT_IMPLEMENTED:
        raise ValueError(
            "Sampler {} (Dassl.pytorch) is not implemented by this engine; supported: {}".format(
                sampler_type, ", ".join(SUPPORTED_SAMPLERS)
            )
        )
    raise ValueError(
        "Unknown sampler type: {} (supported: {})".format(sampler_type, ", ".join(SUPPORTED_SAMPLERS))
    )
