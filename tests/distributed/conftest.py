"""Fixtures of the distributed tests: an offline HF cache of tiny random checkpoints, visible to worker processes,
and one LocalCluster of two single-threaded worker processes for the whole session, started after it (so the workers inherit it)."""

from __future__ import annotations

import pytest

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
