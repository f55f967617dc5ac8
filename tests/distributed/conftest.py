"""A LocalCluster with two single-threaded worker processes, shared by the distributed tests of a module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit="2GiB", silence_logs=40) as cluster, Client(cluster) as c:
        yield c
