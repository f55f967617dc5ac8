"""Fixtures of the distributed tests: an offline HF cache of tiny random checkpoints, visible to worker processes,
and one LocalCluster of two single-threaded worker processes for the whole session, started after it (so the workers inherit it)."""

from __future__ import annotations

import pytest

from hub_cache import HubCache


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """Official-layout random checkpoints (TerraMind tiny, the S1GRD and LULC tokenizers), offline, in os.environ."""
    import huggingface_hub.constants as constants
    import torch

    from geomind_cli.models import official_state_dict
    from geomind_cli.models.modalities import MODALITIES
    from geomind_cli.models.tokenizers import build_tokenizer
    from geomind_cli.models.weights import model_file

    cache = HubCache(tmp_path_factory.mktemp("hf-home"))
    cache.place(*model_file("tiny"), official_state_dict("tiny", seed=1))
    for name in ("S1GRD", "LULC"):
        info = MODALITIES[name].tokenizer
        torch.manual_seed(len(name))
        cache.place(info.repo_id, info.filename, build_tokenizer(info.name).state_dict())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(cache.home))
        patch.setenv("HF_HUB_CACHE", str(cache.hub))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(constants, "HF_HUB_CACHE", str(cache.hub))
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        yield cache


@pytest.fixture(scope="session")
def client(hub):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit="3GiB", silence_logs=50) as cluster, Client(cluster) as c:
        yield c
