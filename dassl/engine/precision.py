"""Numeric precision of a trainer, decided in one place (the ``TRAINER.<METHOD>.PREC`` flags).

``resolve_precision(prec, device)`` turns the flag into a ``Precision``:

==========  ==================  ================  ===========================
name        weight_dtype        autocast_dtype    grad scaler
==========  ==================  ================  ===========================
fp16        float16             None              None (half tensors train directly)
fp32        float32             None              None
amp         float32             float16           torch.amp.GradScaler on CUDA
bf16        float32             bfloat16          None
==========  ==================  ================  ===========================

``weight_dtype`` is the storage dtype of the frozen backbone's matmul weights (a CLIP trainer
keeps its norms and embeddings in float32 under fp16, as OpenAI's checkpoints do); each method
stores its learned tensors as its upstream code does under that backbone. On a
CPU device fp16 and amp fall back to fp32 (CPU half kernels are slow, and older torch versions
lack some), with one printed warning line per flag value and process; bf16 stays (CPU autocast
supports bfloat16).

Test and debug mode, never a default: with the environment variable ``DASSL_CPU_HALF=1`` fp16
and amp are kept on the CPU exactly as on a GPU (fp16: float16 storage, no fallback; amp:
float16 autocast with a ``torch.amp.GradScaler("cpu")``), so that the GPU precision paths and
their dtype mistakes show up on a machine without one (tests/test_gpu_precision_paths.py). It is
slow, and says so in one line per flag value and process.
"""

import contextlib
import os
from dataclasses import dataclass

import torch

__all__ = ["CPU_HALF_ENV", "SUPPORTED_PRECISIONS", "Precision", "cpu_half_mode", "resolve_precision"]

SUPPORTED_PRECISIONS = ("fp16", "fp32", "amp", "bf16")
# Environment variable: "1" keeps fp16 and amp on the CPU (a test and debug mode, see the module doc).
CPU_HALF_ENV = "DASSL_CPU_HALF"

_CPU_FALLBACK = {"fp16": "fp32", "amp": "fp32"}
_warned_fallbacks = set()


def cpu_half_mode():
    """Whether ``DASSL_CPU_HALF=1`` asks to run fp16 and amp on the CPU as on a GPU."""
    return os.environ.get(CPU_HALF_ENV) == "1"


@dataclass(frozen=True)
class Precision:
    """An effective precision setting (build it with ``resolve_precision``).

    Attributes:
        name: the effective flag value, one of SUPPORTED_PRECISIONS.
        weight_dtype: storage dtype of the frozen backbone's weights.
        autocast_dtype: dtype of ``torch.autocast`` regions, or None for no autocast.
    """

    name: str
    weight_dtype: torch.dtype
    autocast_dtype: torch.dtype | None

    def autocast(self, device):
        """A ``torch.autocast`` context for ``device`` (amp, bf16), or a null context."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(device).type, dtype=self.autocast_dtype)

    def grad_scaler(self, device):
        """A ``torch.amp.GradScaler`` for amp on CUDA (and on the CPU under ``DASSL_CPU_HALF=1``),
        else None (no loss scaling needed)."""
        device = torch.device(device)
        if self.name == "amp" and (device.type == "cuda" or (device.type == "cpu" and cpu_half_mode())):
            return torch.amp.GradScaler(device.type)
        return None


_PRECISIONS = {
    "fp16": Precision("fp16", torch.float16, None),
    "fp32": Precision("fp32", torch.float32, None),
    "amp": Precision("amp", torch.float32, torch.float16),
    "bf16": Precision("bf16", torch.float32, torch.bfloat16),
}


def resolve_precision(prec, device):
    """The ``Precision`` to use for the flag value ``prec`` on ``device``.

    Raises:
        ValueError: ``prec`` is not one of SUPPORTED_PRECISIONS.
    """
    if prec not in _PRECISIONS:
        raise ValueError("Unknown precision {!r}: expected one of {}".format(prec, ", ".join(SUPPORTED_PRECISIONS)))
    if torch.device(device).type == "cpu" and prec in _CPU_FALLBACK:
        if cpu_half_mode():
            if ("kept", prec) not in _warned_fallbacks:
                _warned_fallbacks.add(("kept", prec))
                print(
                    f"Note: {CPU_HALF_ENV}=1: precision {prec} runs on the CPU as on a GPU "
                    "(a test and debug mode: slow; results are not those of a GPU)"
                )
            return _PRECISIONS[prec]
        fallback = _CPU_FALLBACK[prec]
        if prec not in _warned_fallbacks:
            _warned_fallbacks.add(prec)
            print(f"Warning: precision {prec} is not supported on the CPU; using {fallback} instead")
        prec = fallback
    return _PRECISIONS[prec]
