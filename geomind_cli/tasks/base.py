"""What every task is: a tile function plus a description of its outputs, run by the one scene engine."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geomind_cli.engine import OutputSpec, TileBatch
from geomind_cli.tasks.runtime import Runtime

TileFn = Callable[[TileBatch], dict[str, np.ndarray]]


@dataclass
class Task:
    """A command's work for the engine: ``tile_fn`` maps a batch of input tiles to one array per output.

    ``made_by``: what determines the outputs' values (command, options, model, weights file; see
    :func:`fingerprint`). Given, it stamps every output with its hash, and resume keeps only outputs that match.
    """

    outputs: list[OutputSpec]
    tile_fn: TileFn
    description: str = ""
    made_by: dict | None = None

    def __post_init__(self):
        if self.made_by is not None:
            value = fingerprint(self.made_by)
            self.outputs = [dataclasses.replace(spec, fingerprint=value) for spec in self.outputs]


def fingerprint(made_by: dict) -> str:
    """A short hash of ``made_by`` (JSON-able values, paths and a Runtime): local files count by path, size and
    modification time, so a replaced weights file or checkpoint is another fingerprint. The device and compilation
    do not count (the same work on another machine); the precision and the weights do."""
    def identity(value):
        if isinstance(value, Runtime):
            return {"precision": str(value.dtype), "weights": identity(value.weights or "official")}
        if isinstance(value, (str, Path)) and value != "random" and Path(value).is_file():
            stat = Path(value).stat()
            return {"file": str(Path(value).resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if isinstance(value, dict):
            return {str(k): identity(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [identity(v) for v in value]
        if dataclasses.is_dataclass(value):
            return identity(dataclasses.asdict(value))
        return value if isinstance(value, (int, float, bool, type(None))) else str(value)

    text = json.dumps(identity(made_by), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelHandle:
    """A model named by how to build it, built at most once per process and runtime.

    Tasks hold a handle, not a module, so a task can travel to Dask workers (cloudpickle) and each worker builds
    its own replica on first use and keeps it for every later block and scene.
    """

    name: str
    runtime: Runtime
    kwargs: tuple[tuple[str, object], ...] = ()

    def key(self) -> str:
        return repr((self.name, self.runtime, self.kwargs))

    def __call__(self) -> torch.nn.Module:
        def build_now():
            from geomind_cli.models import build_model

            with random_weights_seed(self.name, self.runtime):
                model = build_model(self.name, **self.runtime.model_kwargs(), **dict(self.kwargs))
            return self.runtime.prepare(model)

        return cached_model(self.key(), build_now)


_MODELS: dict[str, torch.nn.Module] = {}


@contextlib.contextmanager
def random_weights_seed(name: str, runtime: Runtime):
    """With ``--weights random``, the model ``name`` draws its weights from a seed fixed by its name: every process
    (each Dask worker, each later run) builds the same model, so the same ``--seed`` gives the same output. The
    global torch generator is restored afterwards."""
    if not runtime.random_weights:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(name.encode()))
        yield


def cached_model(key: str, build_now: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """The process's model for ``key``, built by ``build_now`` on first use."""
    model = _MODELS.get(key)
    if model is None:
        model = _MODELS[key] = build_now()
    return model


def release_models() -> None:
    """Drop this process's models (and their GPU memory): a client whose workers hold the replicas keeps none."""
    _MODELS.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def model_handle(name: str, runtime: Runtime, **kwargs) -> ModelHandle:
    """Handle on a registered model (see :func:`geomind_cli.models.build_model`) with the runtime's weights."""
    return ModelHandle(name, runtime, tuple(sorted(kwargs.items())))


def build(name: str, runtime: Runtime, **kwargs) -> torch.nn.Module:
    """Build (or reuse) a registered model with the runtime's weights choice, on its device, in eval mode."""
    return model_handle(name, runtime, **kwargs)()


def check_class_inputs(batch: TileBatch) -> None:
    """Class inputs (LULC) must hold TerraMind's class indices 0..K-1 where they have data: other values (raw ESRI
    codes 1-11, say) would become all-zero one-hot vectors without a word."""
    from geomind_cli.errors import InputError
    from geomind_cli.facts.modalities import LULC_CLASS_NAMES, MODALITIES

    for name, array in batch.arrays.items():
        modality = MODALITIES.get(name)
        if modality is None or not modality.categorical:
            continue
        valid = batch.valid_by_modality.get(name, batch.valid)
        values = array[:, 0][valid] if array.ndim == 4 else array[valid]
        bad = values[(values < 0) | (values > len(LULC_CLASS_NAMES) - 1) | (values != np.round(values))]
        if bad.size:
            shown = ", ".join(f"{v:g}" for v in np.unique(bad)[:5])
            raise InputError(f"{name} input holds values outside the classes 0..{len(LULC_CLASS_NAMES) - 1} "
                             f"({shown}); remap it to TerraMind's classes ({', '.join(LULC_CLASS_NAMES)}), e.g. "
                             "raw ESRI land-cover codes 1-11 to 1-9, or mark those pixels nodata")


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


def model_name(size: str, suffix: str = "") -> str:
    """Registry name of a TerraMind v1 variant, e.g. ``model_name("base", "_generate")``."""
    from geomind_cli.errors import InputError
    from geomind_cli.models.weights import MODEL_SIZES

    if size not in MODEL_SIZES:
        raise InputError(f"--model {size}: choose from {', '.join(MODEL_SIZES)}")
    return f"terramind_v1_{size}{suffix}"
