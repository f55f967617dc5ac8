"""Model handles: one model per process and settings, picklable, released on demand."""

import pickle

import cloudpickle
import torch

from geomind_cli.tasks.base import model_handle, release_models
from geomind_cli.tasks.runtime import Runtime


def test_a_handle_builds_once_travels_without_its_model_and_can_release_it():
    runtime = Runtime.resolve(device="cpu", precision="fp32", compile=False, weights="random")
    handle = model_handle("terramind_v1_tiny", runtime, modalities=["S2L2A"])
    first = handle()
    assert handle() is first  # built once per process
    assert model_handle("terramind_v1_tiny", runtime, modalities=["S2L2A"])() is first  # same settings, same model
    other = model_handle("terramind_v1_tiny", runtime, modalities=["S1GRD"])()
    assert other is not first
    shipped = cloudpickle.dumps(handle)
    assert len(shipped) < 10_000  # the description travels, not the weights
    assert pickle.loads(shipped)() is first  # unpickled in the same process: the cached model
    release_models()
    rebuilt = handle()
    assert rebuilt is not first and isinstance(rebuilt, torch.nn.Module)
    release_models()


def test_random_weights_are_the_same_in_every_process_and_leave_the_global_generator_alone():
    """--weights random draws from a seed fixed by the model name, not from the process's torch generator (which
    every process, each Dask worker included, seeds differently)."""
    runtime = Runtime.resolve(device="cpu", precision="fp32", compile=False, weights="random")
    handle = model_handle("terramind_v1_tiny", runtime, modalities=["S2L2A"])
    states = []
    for global_seed in (1, 2):
        release_models()
        torch.manual_seed(global_seed)
        states.append({k: v.clone() for k, v in handle().state_dict().items()})
        after = torch.rand(1)
        torch.manual_seed(global_seed)
        assert torch.equal(after, torch.rand(1))  # the build did not draw from the global generator
    release_models()
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
