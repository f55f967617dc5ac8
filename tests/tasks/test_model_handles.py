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
