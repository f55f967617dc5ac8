"""Shared benchmark helpers: machine description, timing with device sync, peak memory per phase, FLOP counts.

Not part of the library: imported by ``run_all.py`` and the other benchmark modules (``benchmarks/`` on sys.path).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata

import torch

# Dense bf16 tensor-core peak (FLOP/s) of the GPUs we report MFU for; the CPU has no such figure here.
BF16_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def gpu_name(device: torch.device) -> str | None:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def bf16_peak(device: torch.device) -> float | None:
    """Dense bf16 peak of a known GPU, else None (then MFU is not reported)."""
    name = gpu_name(device) or ""
    for key, peak in BF16_PEAK_FLOPS.items():
        if key in name:
            return peak
    return None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("geomind", "numpy", "rasterio", "terratorch"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def machine(device: torch.device) -> dict:
    return {
        "cpu": cpu_model(), "cores": usable_cores(), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "gpu": gpu_name(device) or "none",
        "cuda": torch.version.cuda if device.type == "cuda" else None,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc), else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class PeakMemory:
    """Peak host RSS (sampled every 10 ms by a thread) and peak GPU allocation while the context is open."""

    device: torch.device
    host_peak_mb: float = 0.0
    gpu_peak_mb: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self):
        while not self._stop.wait(0.01):
            self.host_peak_mb = max(self.host_peak_mb, current_rss_mb())

    def __enter__(self) -> "PeakMemory":
        self.host_peak_mb = current_rss_mb()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.host_peak_mb = round(max(self.host_peak_mb, current_rss_mb()), 1)
        if self.device.type == "cuda":
            self.gpu_peak_mb = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return False


def time_calls(fn, device: torch.device, *, repeats: int, warmup: int = 1) -> float:
    """Mean seconds per call after ``warmup`` calls (compilation, allocator warm-up), device-synchronised."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / max(repeats, 1)


def count_flops(fn) -> int:
    """Total FLOPs (2 per multiply-add) of one call, from torch's dispatcher-level counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


class Stopwatch:
    """Accumulates seconds spent in wrapped calls (device-synchronised before the clock stops)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.calls = device, 0.0, 0

    @contextmanager
    def measure(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            sync(self.device)
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def wrap(self, fn):
        def timed(*args, **kwargs):
            with self.measure():
                return fn(*args, **kwargs)

        return timed


def free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


_T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"{time.perf_counter() - _T0:7.1f}s {message}", file=sys.stderr, flush=True)


@contextmanager
def random_weights_cache(size: str | None, tokenizers=(), *, seed: int = 1, folder=None):
    """An offline Hugging Face cache holding random official-layout checkpoints (TerraMind ``size``, None for none,
    and the tokenizers of the named modalities), active in this process and inherited by the processes it starts
    (Dask workers), in ``folder`` or a temporary folder. For timing and numerics only: the weights are random."""
    import tempfile
    from pathlib import Path

    tests = str(Path(__file__).resolve().parents[1] / "tests")
    sys.path.insert(0, tests)
    try:
        from hub_cache import HubCache
    finally:
        sys.path.remove(tests)
    with tempfile.TemporaryDirectory(prefix="geomind-hf-") as tmp:
        hub = HubCache(Path(folder) if folder is not None else Path(tmp))
        hub.place_random_official(size, tokenizers, seed=seed)
        with hub.active():
            yield hub
