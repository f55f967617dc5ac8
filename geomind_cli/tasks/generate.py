"""Any-to-any generation over a scene: TerraMind's generation model as a tile function.

Randomness is a function of place (geomind_cli.noise): every token position gets a 64-bit key and every pixel its
diffusion starting noise from a hash of (seed, stream, global row, column, channel).

- ``noise="world"`` (``--noise world``, the default): one stream per output for the whole scene, so overlapping
  tiles share the keys and the starting noise wherever they overlap. Tokens are drawn by Gumbel-max with the keys
  (geomind_cli.models.sampling): each vocabulary entry gets its own place-keyed Gumbel noise, so two tiles whose
  logits at a shared position are close pick the same token (about 90% of overlap tokens agree on random weights,
  against 4-8% with inverse-CDF draws from shared uniforms). With ``decoding_steps > 1`` the decoding order is a
  priority hashed from the same keys, so also a function of place.
- ``noise="tile"`` (``--noise tile``): each tile has its own streams (named by its origin), as if every tile drew
  from a fresh generator: what other tools do, kept for comparison.

Either way the same ``seed`` gives the same pixels whatever the batch size, tile order, device or worker count.
``GenerateOptions.token_sampling="cdf"`` (no CLI flag) replaces the keys by world/tile uniforms and inverse-CDF draws,
the earlier scheme, kept for the seam benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from geomind_cli.engine import OutputSpec, TileBatch
from geomind_cli.errors import ModalityError
from geomind_cli.facts.modalities import LULC_CLASS_NAMES, LULC_COLORS, MODALITIES, get_modality
from geomind_cli.noise import tile_gaussian, tile_token_keys, tile_token_uniforms
from geomind_cli.tasks.base import Task, check_class_inputs, model_handle, model_name, to_numpy, to_tensors
from geomind_cli.tasks.run import check_outputs
from geomind_cli.tasks.runtime import Runtime

# How each generated modality is written: physical units, documented in the README.
_FORMATS = {
    "S2L2A": dict(dtype="uint16", nodata=0),  # reflectance x10000, 0 = nodata as in Sentinel-2 products
    "S1GRD": dict(dtype="float32", nodata=math.nan),  # dB
    "S1RTC": dict(dtype="float32", nodata=math.nan),  # dB
    "DEM": dict(dtype="float32", nodata=math.nan),  # metres
    "NDVI": dict(dtype="float32", nodata=math.nan),
}


@dataclass(frozen=True)
class GenerateOptions:
    targets: tuple[str, ...]
    size: str = "base"
    timesteps: int = 50
    temperature: float = 1.0
    top_p: float = 0.8
    top_k: int = 0
    decoding_steps: int = 1
    seed: int = 0
    noise: Literal["world", "tile"] = "world"
    token_sampling: Literal["gumbel", "cdf"] = "gumbel"  # cdf: the earlier uniforms + inverse CDF, for comparison


def output_specs(targets, out_dir: Path, stem: str) -> list[OutputSpec]:
    specs = []
    for name in targets:
        modality = MODALITIES[name]
        path = Path(out_dir) / f"{stem}_{name}.tif"
        if modality.categorical:
            specs.append(OutputSpec(
                name=name, path=path, kind="classes", bands=[name], dtype="uint8", nodata=0,
                class_names=list(LULC_CLASS_NAMES), colormap=dict(enumerate(LULC_COLORS)),
            ))
        else:
            specs.append(OutputSpec(name=name, path=path, kind="continuous", bands=list(modality.bands),
                                    **_FORMATS[name]))
    return specs


def _check_targets(inputs, targets) -> tuple[str, ...]:
    canonical = tuple(get_modality(t).name for t in targets)
    for name in canonical:
        if MODALITIES[name].token_key is None:
            raise ModalityError(f"{name} cannot be generated; choose from S2L2A, S1GRD, S1RTC, DEM, NDVI, LULC")
        if name in inputs:
            raise ModalityError(f"{name} is already an input; drop it from --to or from the inputs")
    return canonical


def generate_task(inputs: list[str], options: GenerateOptions, runtime: Runtime, out_dir: Path, stem: str, *,
                  overwrite: bool = False) -> Task:
    """Build the generation model for ``inputs`` -> ``options.targets`` and the tile function around it."""
    targets = _check_targets(inputs, options.targets)
    outputs = output_specs(targets, out_dir, stem)
    check_outputs(outputs, overwrite=overwrite)
    model = model_handle(
        model_name(options.size, "_generate"),
        runtime,
        modalities=list(inputs),
        output_modalities=list(targets),
        temps=options.temperature,
        top_p=options.top_p,
        top_k=options.top_k,
        decoding_steps=options.decoding_steps,
        timesteps=options.timesteps,
        standardize=True,
    )
    model()  # build now: missing or mismatched weights fail before any tile
    channels = {t: MODALITIES[t].num_channels for t in targets if not MODALITIES[t].categorical}
    if options.token_sampling not in ("gumbel", "cdf"):
        raise ValueError(f"token_sampling must be 'gumbel' or 'cdf', got {options.token_sampling!r}")
    gumbel = options.token_sampling == "gumbel"
    draws_kwarg = "token_keys" if gumbel else "token_uniforms"

    def token_draws(seed, stream, origins, size):  # looked up at call time, so tests can watch the draws
        return (tile_token_keys if gumbel else tile_token_uniforms)(seed, stream, origins, size)

    def tile_fn(batch: TileBatch) -> dict[str, np.ndarray]:
        size = next(iter(batch.arrays.values())).shape[-1]
        origins = list(zip(batch.rows.tolist(), batch.cols.tolist()))
        draws, noise = {}, {}
        for t in targets:
            # "tile" noise: each tile gets its own stream, as if every tile drew from a fresh generator.
            streams = [f"{t}" if options.noise == "world" else f"{t}@{r},{c}" for r, c in origins]
            draws[t] = torch.from_numpy(np.concatenate([
                token_draws(options.seed, f"tokens/{s}", [o], size) for s, o in zip(streams, origins)
            ])).to(runtime.device)
            if t in channels:
                noise[t] = torch.from_numpy(np.concatenate([
                    tile_gaussian(options.seed, f"diffusion/{s}", [o], size, channels[t])
                    for s, o in zip(streams, origins)
                ])).to(runtime.device)
        check_class_inputs(batch)
        x = to_tensors(batch.arrays, runtime)
        with torch.inference_mode(), runtime.autocast():
            out = model()(x, diffusion_noise=noise, **{draws_kwarg: draws})
        result = {}
        for t in targets:
            y = out[t].float()
            result[t] = to_numpy(torch.softmax(y, dim=1) if MODALITIES[t].categorical else y)
        return result

    return Task(outputs=outputs, tile_fn=tile_fn,
                description=f"generate {', '.join(targets)} from {', '.join(inputs)} ({options.size})",
                made_by={"command": "generate", "inputs": list(inputs), "options": options, "runtime": runtime})
