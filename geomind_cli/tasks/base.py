"""What every task is: a tile function plus a description of its outputs, run by the one scene engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from geomind_cli.engine import OutputSpec, TileBatch
from geomind_cli.tasks.runtime import Runtime

TileFn = Callable[[TileBatch], dict[str, np.ndarray]]


@dataclass
class Task:
    """A command's work for the engine: ``tile_fn`` maps a batch of input tiles to one array per output."""

    outputs: list[OutputSpec]
    tile_fn: TileFn
    description: str = ""


def build(name: str, runtime: Runtime, **kwargs) -> torch.nn.Module:
    """Build a registered model with the runtime's weights choice, on its device, in eval mode."""
    from geomind_cli.models import build_model

    return runtime.prepare(build_model(name, **runtime.model_kwargs(), **kwargs))


def to_tensors(arrays: dict[str, np.ndarray], runtime: Runtime) -> dict[str, torch.Tensor]:
    """Host arrays to device tensors; pinned and non-blocking on CUDA so the copy overlaps the previous batch."""
    out = {}
    for name, array in arrays.items():
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if runtime.device.type == "cuda":
            tensor = tensor.pin_memory().to(runtime.device, non_blocking=True)
        out[name] = tensor
    return out


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


def standardize(name: str, x: torch.Tensor) -> torch.Tensor:
    """Physical units to TerraMind's pre-training statistics, ``(x - mean) / std`` per band."""
    from geomind_cli.models.modalities import statistics

    mean, std = statistics(name)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def destandardize(name: str, x: torch.Tensor) -> torch.Tensor:
    from geomind_cli.models.modalities import statistics

    mean, std = statistics(name)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * std_t + mean_t


def model_name(size: str, suffix: str = "") -> str:
    """Registry name of a TerraMind v1 variant, e.g. ``model_name("base", "_generate")``."""
    from geomind_cli.errors import InputError
    from geomind_cli.models.weights import MODEL_SIZES

    if size not in MODEL_SIZES:
        raise InputError(f"--model {size}: choose from {', '.join(MODEL_SIZES)}")
    return f"terramind_v1_{size}{suffix}"
