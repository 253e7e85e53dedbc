"""Measuring tools of the benchmarks: timing, peak memory, and the machine's description.

Peak memory:
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (the caching
  allocator's allocated bytes: tensors, not the reserved pool).
- CPU (Linux): the kernel's peak resident set size VmHWM of /proc/self/status, reset to the
  current RSS at the start of the section by writing "5" to /proc/self/clear_refs (Linux >= 4.0):
  exact, no sampling. Where clear_refs cannot be written, a thread samples VmRSS every
  SAMPLE_INTERVAL_S instead (it can miss peaks shorter than that); the method used is reported.
  glibc keeps freed heap resident (allocations below its mmap threshold, which grows up to
  32 MB), so an RSS peak can include memory freed by earlier code: call ``release_freed_heap``
  (``malloc_trim``) before a section whose peak should be its own. Not before a timed run: the
  run then faults its pages in again and slows down (2.3x on a tiny training step, measured).
Both report the peak in absolute terms and as the increase over the start of the section.
"""

import ctypes
import ctypes.util
import functools
import gc
import os
import platform
import statistics
import threading
import time

import torch

from .reference import synchronize

SAMPLE_INTERVAL_S = 0.001
_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
_RESET_PEAK_RSS = "5"


def _status_bytes(field):
    """A kB field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open(_STATUS) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{_STATUS} has no field {field}")


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None (another C library, or none found)."""
    libc_name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(libc_name), "malloc_trim", None) if libc_name else None


def release_freed_heap():
    """Collect garbage and hand freed glibc heap pages back to the OS (no-op without glibc)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class PeakMemory:
    """Context manager: peak memory of the code run inside, on ``device``.

    After exit: ``start_bytes``, ``peak_bytes`` (absolute), ``method``; ``as_dict()`` for reports.
    On a CPU without /proc (not Linux) the figures are None and ``method`` says "unavailable".
    """

    def __init__(self, device):
        self.device = torch.device(device)
        self.start_bytes = self.peak_bytes = None
        self.method = None
        self._sampler = None
        self._stop = threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        if not os.path.exists(_STATUS):
            self.method = "unavailable"
            return self
        self.start_bytes = _status_bytes("VmRSS")
        try:
            with open(_CLEAR_REFS, "w") as clear_refs:
                clear_refs.write(_RESET_PEAK_RSS)
            self.start_bytes = _status_bytes("VmHWM")  # the RSS at the reset
            self.method = "VmHWM after clear_refs reset"
        except OSError:
            self.method = f"VmRSS sampled every {SAMPLE_INTERVAL_S * 1000:g} ms"
            self._sampled_peak = self.start_bytes
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self):
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._sampled_peak = max(self._sampled_peak, _status_bytes("VmRSS"))

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self.peak_bytes = max(self._sampled_peak, _status_bytes("VmRSS"))
        elif self.method != "unavailable":
            self.peak_bytes = _status_bytes("VmHWM")
        return False

    def as_dict(self):
        increase = None if self.peak_bytes is None else self.peak_bytes - self.start_bytes
        return {
            "method": self.method,
            "start_bytes": self.start_bytes,
            "peak_bytes": self.peak_bytes,
            "peak_increase_bytes": increase,
        }


def timed(function, device):
    """Run ``function()`` -> (wall seconds with the device synchronised at both ends, its result)."""
    device = torch.device(device)
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - start, result


def median(values):
    return statistics.median(values) if values else None


def cpu_model():
    """The CPU's model name as lscpu prints it (from /proc/cpuinfo), else platform's guess."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device):
    """Where the numbers come from: CPU, cores, threads, torch, and the GPU when on CUDA."""
    device = torch.device(device)
    description = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        description.update(
            gpu_name=properties.name,
            gpu_memory_bytes=properties.total_memory,
            gpu_capability=f"{properties.major}.{properties.minor}",
            cuda=torch.version.cuda,
        )
    return description
