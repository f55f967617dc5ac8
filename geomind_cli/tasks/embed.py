"""TerraMind patch embeddings of a scene: one feature vector per 16 x 16 patch, as a georeferenced COG or Zarr store.

float16 halves the output; TerraMind's features (layer-normed at the last layer) sit well inside its range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geomind_cli.engine import OutputSpec, TileBatch
from geomind_cli.errors import InputError
from geomind_cli.models.normalize import standardize
from geomind_cli.tasks.base import Task, model_handle, model_name, to_numpy, to_tensors
from geomind_cli.tasks.run import check_outputs
from geomind_cli.tasks.runtime import Runtime

PATCH = 16
MERGE_METHODS = ("mean", "max", "concat")  # those that give one vector per patch position
DTYPES = ("float32", "float16")
FORMATS = (".tif", ".tiff", ".zarr")


@dataclass(frozen=True)
class EmbedOptions:
    size: str = "base"
    layer: int = -1  # -1: the last, layer-normed output
    merge_method: str = "mean"
    dtype: str = "float32"


def embed_task(inputs: list[str], options: EmbedOptions, runtime: Runtime, out_path: Path, *,
               overwrite: bool = False) -> Task:
    """Tile function: standardized inputs -> embeddings ``[B, D, T/16, T/16]`` of one encoder layer."""
    if options.merge_method not in MERGE_METHODS:
        raise InputError(f"--merge {options.merge_method}: choose from {', '.join(MERGE_METHODS)}")
    if options.dtype not in DTYPES:
        raise InputError(f"--dtype {options.dtype}: choose float32 or float16")
    if Path(out_path).suffix.lower() not in FORMATS:
        raise InputError(f"{out_path}: the embedding output must end in .tif (a COG) or .zarr (a Zarr store)")
    model = model_handle(model_name(options.size), runtime, modalities=list(inputs),
                         merge_method=options.merge_method)
    encoder = model()  # build now: missing or mismatched weights fail before any tile
    depth = len(encoder.encoder)
    if not -depth <= options.layer < depth:
        raise InputError(f"--layer {options.layer}: the {options.size} encoder has layers 0..{depth - 1} (or -1)")
    dim = encoder.out_channels[options.layer] if hasattr(encoder, "out_channels") else None
    bands = [f"feature_{i}" for i in range(dim)] if dim else []
    outputs = [OutputSpec(name="embedding", path=Path(out_path), kind="grid", bands=bands, dtype=options.dtype,
                          nodata=math.nan)]
    check_outputs(outputs, overwrite=overwrite)

    def tile_fn(batch: TileBatch) -> dict[str, np.ndarray]:
        x = to_tensors(batch.arrays, runtime)
        x = {name: standardize(name, t) for name, t in x.items()}
        size = next(iter(x.values())).shape[-1]
        with torch.inference_mode(), runtime.autocast():
            tokens = model()(x)[options.layer]  # [B, N, D]
        grid = tokens.float().transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], size // PATCH, size // PATCH)
        return {"embedding": to_numpy(grid)}

    return Task(outputs=outputs, tile_fn=tile_fn,
                description=f"embed {', '.join(inputs)} ({options.size}, layer {options.layer})",
                made_by={"command": "embed", "inputs": list(inputs), "options": options, "runtime": runtime})
