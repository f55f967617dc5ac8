"""The reference path a TerraMind user has today: terratorch 1.2.13's models driven by its ``tiled_inference``.

``terratorch/tasks/tiled_inference.py`` is loaded from the installed file itself. Its only heavy import is
``terratorch.models.utils.pad_images`` (which pulls torchvision's detection models); ``tiled_inference`` never calls
it, so a stub module stands in. The user's workflow around it is the documented one: read the whole scene into
memory, standardize, ``tiled_inference(model_forward, scene_tensor, crop, stride, batch_size)``, write a GeoTIFF.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch

from bench_common import PeakMemory, Stopwatch

TESTS = Path(__file__).resolve().parents[1] / "tests"


def load_reference():
    """(backbones, full models, tokenizers) builder dicts of the reference (see tests/reference.py)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from reference import load_reference as load

    return load()


def load_tiled_inference():
    """terratorch 1.2.13's ``tiled_inference`` function, imported from its own file."""
    name = "terratorch.tasks.tiled_inference"
    if name in sys.modules:
        return sys.modules[name].tiled_inference
    load_reference()  # registers the bare ``terratorch`` package (its __path__ is the installed folder)
    root = Path(sys.modules["terratorch"].__path__[0])
    if "terratorch.models.utils" not in sys.modules:
        utils = types.ModuleType("terratorch.models.utils")

        def pad_images(*args, **kwargs):  # imported by tiled_inference.py, never called by tiled_inference()
            raise NotImplementedError("stub")

        utils.pad_images = pad_images
        sys.modules["terratorch.models.utils"] = utils
    if "terratorch.tasks" not in sys.modules:
        tasks = types.ModuleType("terratorch.tasks")
        tasks.__path__ = [str(root / "tasks")]
        sys.modules["terratorch.tasks"] = tasks
    file_spec = importlib.util.spec_from_file_location(name, root / "tasks" / "tiled_inference.py")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[name] = module
    file_spec.loader.exec_module(module)
    return module.tiled_inference


@dataclass(frozen=True)
class ReferenceOutput:
    """How the reference's stitched output becomes a file: per-pixel continuous, class argmax, or a 1/16 grid."""

    kind: str  # "continuous" | "classes" | "grid"
    dtype: str = "float32"


def _write(path: Path, array: np.ndarray, profile: dict) -> None:
    with rasterio.open(path, "w", driver="GTiff", count=array.shape[0], dtype=array.dtype.name, tiled=True,
                       compress="deflate", height=array.shape[1], width=array.shape[2], crs=profile["crs"],
                       transform=profile["transform"]) as dst:
        dst.write(array)


def reference_end_to_end(files, modality: str, forward, output: ReferenceOutput, out_path: Path,
                         device: torch.device, *, tile_size: int, overlap: int, batch_size: int, stats) -> dict:
    """Read the whole scene, standardize with ``stats`` = (mean, std), tiled_inference, write; time each stage.

    ``forward(x [B,C,T,T]) -> [B,K,T,T]`` on ``device``. Tiles: crop ``tile_size``, stride ``tile_size - overlap``,
    terratorch's default 8 px border crop (``delta``), its reflect padding and blend masks.
    """
    tiled_inference = load_tiled_inference()
    model = Stopwatch(device)
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        with rasterio.open(files.path(modality)) as src:
            data = src.read().astype(np.float32)
            profile = {"crs": src.crs, "transform": src.transform}
        mean, std = (torch.tensor(v, dtype=torch.float32)[None, :, None, None] for v in stats)
        scene = (torch.from_numpy(data)[None] - mean) / std
        read_done = time.perf_counter()
        calls = []

        def model_forward(x):
            calls.append(len(x))
            with model.measure():
                return forward(x)

        # The scene tensor on the model's device is what makes tiled_inference send chips there; it keeps the
        # scene itself and the blend accumulators on the host.
        result = tiled_inference(model_forward, scene.to(device), crop=tile_size, stride=tile_size - overlap,
                                 batch_size=batch_size).cpu()
        infer_done = time.perf_counter()
        if output.kind == "classes":
            array = result[0].argmax(0, keepdim=True).numpy().astype(np.uint8)
        elif output.kind == "grid":
            # The reference stitches pixels only: grid outputs went in repeated 16x, one value per patch comes back.
            array = result[0, :, 8::16, 8::16].numpy().astype(output.dtype)
            profile["transform"] = profile["transform"] * profile["transform"].scale(16)
        else:
            array = result[0].numpy().astype(output.dtype)
        _write(out_path, array, profile)
        end = time.perf_counter()
    tiles = sum(calls)
    wall = end - start
    return {
        "tiles": tiles, "wall_s": round(wall, 4), "read_s": round(read_done - start, 4),
        "model_s": round(model.seconds, 4),
        "stitch_write_s": round((infer_done - read_done - model.seconds) + (end - infer_done), 4),
        "tiles_per_s": round(tiles / wall, 4), "km2_per_s": round(files.km2 / wall, 4),
        "peak_rss_mb": memory.host_peak_mb, "peak_gpu_mb": memory.gpu_peak_mb,
    }
