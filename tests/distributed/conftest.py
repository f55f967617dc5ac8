"""Fixtures of the distributed tests: an offline HF cache of tiny random checkpoints, visible to worker processes,
and one LocalCluster of two single-threaded worker processes for the whole session, started after it (so the workers inherit it)."""

from __future__ import annotations

import pytest
import torch

from hub_cache import HubCache


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """Official-layout random checkpoints (TerraMind tiny, the S1GRD and LULC tokenizers), offline, in os.environ."""
    cache = HubCache(tmp_path_factory.mktemp("hf-home"))
    cache.place_random_official("tiny", ("S1GRD", "LULC"))
    with cache.active():
        yield cache


@pytest.fixture(scope="session")
def client(hub):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit="3GiB", silence_logs=50) as cluster, Client(cluster) as c:
        yield c


def _torch_threads() -> int:
    return torch.get_num_threads()


@pytest.fixture
def one_thread(client):
    """Compared runs compute with one torch thread on both sides: this process and every worker (Dask's nanny sets
    OMP_NUM_THREADS=1 for a one-thread worker; checked here, not assumed). CPU reductions split over another number
    of threads round differently in the last bit, and MKL/oneDNN may even change how many threads they use under
    load; one thread makes the single-process reference and the workers run the same kernels in the same order, on
    any machine (Intel or AMD), so their outputs can be compared byte for byte."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    workers = client.run(_torch_threads)
    assert set(workers.values()) == {1}, f"Dask workers run {workers} torch threads, not 1"
    yield
    torch.set_num_threads(threads)
