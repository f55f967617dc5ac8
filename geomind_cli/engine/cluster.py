"""Connect to a Dask cluster: an existing scheduler, or a local one with one worker per GPU (or per CPU core group).

``open_client(scheduler="tcp://host:8786")`` (or a scheduler file written by ``dask scheduler --scheduler-file``,
as on SLURM), or ``open_client(cluster="local", workers=N)``. Locally, dask-cuda's ``LocalCUDACluster`` is used when
it is installed (one worker per visible GPU, each seeing only its own); otherwise a ``LocalCluster`` of processes,
each pinned to one GPU by a worker plugin, or on a machine without GPU, each given an equal share of the cores.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass

from distributed.diagnostics.plugin import WorkerPlugin

from geomind_cli.errors import ConfigError


@dataclass(frozen=True)
class ClusterOptions:
    """Where blocks run: ``scheduler`` address or file, or ``cluster="local"`` with ``workers`` processes."""

    scheduler: str | None = None
    cluster: str | None = None
    workers: int | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.scheduler or self.cluster)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA setup is a CPU machine here
        return 0


class _PinDevice(WorkerPlugin):
    """Worker plugin: worker ``i`` of a LocalCluster uses GPU ``i`` (mod the count), or ``threads`` CPU threads."""

    name = "geomind-pin-device"

    def __init__(self, gpus: int, threads: int):
        self.gpus, self.threads = gpus, threads

    def setup(self, worker):
        import torch

        if self.gpus:
            index = int(worker.name) if str(worker.name).isdigit() else 0
            torch.cuda.set_device(index % self.gpus)  # "cuda" tensors of this process go to that GPU
        else:
            torch.set_num_threads(self.threads)

    def teardown(self, worker):
        pass


def local_cluster(workers: int | None = None):
    """A local cluster: ``(cluster, plugin or None)``; see the module docstring."""
    from distributed import LocalCluster

    gpus = _gpus()
    if gpus and importlib.util.find_spec("dask_cuda") is not None:
        from dask_cuda import LocalCUDACluster

        devices = ",".join(str(i) for i in range(min(workers or gpus, gpus)))
        return LocalCUDACluster(CUDA_VISIBLE_DEVICES=devices, threads_per_worker=1, dashboard_address=None), None
    count = workers or gpus or max(1, _cores() // 4)
    threads = max(1, _cores() // count)
    cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None)
    return cluster, _PinDevice(gpus, threads)


@contextlib.contextmanager
def open_client(options: ClusterOptions):
    """Yield a ``distributed.Client`` for ``options`` (None when no cluster was asked for); closed on exit."""
    if not options.enabled:
        yield None
        return
    if options.scheduler and options.cluster:
        raise ConfigError("--scheduler and --cluster exclude each other; give one of them.")
    if options.cluster and options.cluster != "local":
        raise ConfigError(f"--cluster {options.cluster}: only 'local' is built in; start other clusters yourself "
                          "(dask-jobqueue, dask-kubernetes) and pass --scheduler ADDRESS.")
    if options.workers is not None and options.workers < 1:
        raise ConfigError("--workers must be at least 1.")
    from distributed import Client
    with contextlib.ExitStack() as stack:
        if options.cluster:
            cluster, plugin = local_cluster(options.workers)
            stack.enter_context(cluster)
            client = stack.enter_context(Client(cluster))
            if plugin is not None:
                client.register_plugin(plugin)
        else:
            address = options.scheduler
            kwargs = {"scheduler_file": address} if address.endswith(".json") else {"address": address}
            try:
                client = stack.enter_context(Client(timeout="30s", **kwargs))
            except (OSError, TimeoutError, ValueError) as error:
                raise ConfigError(f"Cannot reach the Dask scheduler at {address} ({error}); check the address and "
                                  "that the scheduler is running.") from error
        yield client
