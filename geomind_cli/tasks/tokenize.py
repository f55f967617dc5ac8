"""TerraMind tokens of a scene and back: one token id per 16 x 16 patch, as a georeferenced grid raster."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from geomind_cli.engine import OutputSpec, TileBatch
from geomind_cli.errors import ModalityError
from geomind_cli.facts.modalities import LULC_CLASS_NAMES, LULC_COLORS, get_modality
from geomind_cli.models.normalize import destandardize, standardize
from geomind_cli.noise import tile_gaussian
from geomind_cli.tasks.base import ModelHandle, Task, check_class_inputs, model_handle, to_numpy, to_tensors
from geomind_cli.tasks.run import check_outputs
from geomind_cli.tasks.runtime import Runtime

TOKEN_NODATA = 65535  # outside every vocabulary (at most 15360 ids)
PATCH = 16


def _tokenizer(name: str, runtime: Runtime) -> ModelHandle:
    """The modality's tokenizer, built now so that missing weights fail before any tile."""
    modality = get_modality(name)
    if modality.tokenizer is None:
        raise ModalityError(f"{modality.name} has no TerraMind tokenizer; use S2L2A, S1GRD, S1RTC, DEM, LULC or NDVI")
    tokenizer = model_handle(modality.tokenizer.name, runtime)
    tokenizer()
    return tokenizer


def tokenize_task(modality_name: str, runtime: Runtime, out_path: Path, *, overwrite: bool = False) -> Task:
    """Tile function: standardized input -> token ids ``[B, 1, T/16, T/16]`` (uint16 raster, nodata 65535)."""
    modality = get_modality(modality_name)
    outputs = [OutputSpec(name="tokens", path=Path(out_path), kind="grid", bands=[f"{modality.name}_token"],
                          dtype="uint16", nodata=TOKEN_NODATA)]
    check_outputs(outputs, overwrite=overwrite)
    tokenizer = _tokenizer(modality_name, runtime)

    def tile_fn(batch: TileBatch) -> dict[str, np.ndarray]:
        check_class_inputs(batch)
        x = to_tensors({modality.name: batch.arrays[modality.name]}, runtime)[modality.name]
        # LULC goes in as class indices (the tokenizer one-hot encodes them); the rest is standardized.
        x = x[:, 0].round().long() if modality.categorical else standardize(modality.name, x)
        with torch.inference_mode(), runtime.autocast():
            tokens = tokenizer().encode(x)
        return {"tokens": tokens[:, None].cpu().numpy().astype(np.float64)}

    return Task(outputs=outputs, tile_fn=tile_fn, description=f"tokenize {modality.name}",
                made_by={"command": "tokenize", "modality": modality.name, "runtime": runtime})


def detokenize_task(modality_name: str, runtime: Runtime, out_path: Path, *, timesteps: int = 50, seed: int = 0,
                    overwrite: bool = False) -> Task:
    """Tile function: a token-id image (ids repeated over each 16 x 16 patch) -> the reconstructed modality."""
    modality = get_modality(modality_name)
    if modality.categorical:
        spec = OutputSpec(name=modality.name, path=Path(out_path), kind="classes", bands=[modality.name],
                          dtype="uint8", nodata=0, class_names=list(LULC_CLASS_NAMES),
                          colormap=dict(enumerate(LULC_COLORS)))
    else:
        spec = OutputSpec(name=modality.name, path=Path(out_path), kind="continuous", bands=list(modality.bands),
                          dtype="float32", nodata=math.nan)
    check_outputs([spec], overwrite=overwrite)
    tokenizer = _tokenizer(modality_name, runtime)

    def tile_fn(batch: TileBatch) -> dict[str, np.ndarray]:
        ids = batch.arrays["tokens"][:, 0, PATCH // 2 :: PATCH, PATCH // 2 :: PATCH]  # one id per patch centre
        tokens = torch.from_numpy(np.rint(ids).astype(np.int64)).to(runtime.device)
        size = batch.arrays["tokens"].shape[-1]
        origins = list(zip(batch.rows.tolist(), batch.cols.tolist()))
        noise = None
        if not modality.categorical:
            noise = torch.from_numpy(
                tile_gaussian(seed, f"diffusion/{modality.name}", origins, size, modality.num_channels)
            ).to(runtime.device)
        with torch.inference_mode(), runtime.autocast():
            y = tokenizer().decode_tokens(tokens, image_size=size, timesteps=timesteps, noise=noise).float()
        if modality.categorical:
            return {modality.name: to_numpy(torch.softmax(y, dim=1))}
        return {modality.name: to_numpy(destandardize(modality.name, y))}

    return Task(outputs=[spec], tile_fn=tile_fn, description=f"detokenize {modality.name}",
                made_by={"command": "detokenize", "modality": modality.name, "timesteps": timesteps, "seed": seed,
                         "runtime": runtime})


def token_scene(path: Path, modality: str | None = None):
    """A lazy Scene of one modality ``tokens``: each token id repeated over its 16 x 16 patch, on the pixel grid.

    ``modality``: the modality to decode; a token raster from ``geomind tokenize`` names its own (band description
    ``<MODALITY>_token``), and another one is refused: its ids would decode into noise of the wrong kind.

    The token raster's transform is the pixel grid's scaled by 16 (as ``tokenize`` writes it), so dividing the
    scale by 16 restores the pixel grid. Nodata ids become NaN, so tiles without tokens are skipped.
    """
    import dask.array as da
    import rasterio
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr
    from affine import Affine

    from geomind_cli.engine import Scene
    from geomind_cli.errors import InputError

    try:
        ids = xr.open_dataarray(path, engine="rasterio", chunks={"band": 1, "y": 256, "x": 256})
    except (rasterio.errors.RasterioIOError, ValueError) as exc:
        raise InputError(f"{path} is not a readable token raster: {exc}") from exc
    if ids.shape[0] != 1:
        raise InputError(f"{path} has {ids.shape[0]} bands; a token raster from `geomind tokenize` has one")
    written_for = str(ids.attrs.get("long_name") or "")
    if isinstance(ids.attrs.get("long_name"), (list, tuple)):
        written_for = str(ids.attrs["long_name"][0])
    if modality is not None and written_for.endswith("_token"):
        own = written_for[: -len("_token")]
        if own != get_modality(modality).name:
            raise InputError(f"{path} holds {own} tokens, not {get_modality(modality).name}; run "
                             f"`geomind detokenize {path} --modality {own}`")
    nodata = ids.rio.nodata
    data = ids.data.astype("float32")
    if nodata is not None:
        data = da.where(data == nodata, np.nan, data)
    pixels = da.repeat(da.repeat(data, PATCH, axis=1), PATCH, axis=2)
    transform = ids.rio.transform() @ Affine.scale(1 / PATCH)
    array = xr.DataArray(pixels, dims=("band", "y", "x"))
    array = array.rio.write_crs(ids.rio.crs).rio.write_transform(transform)
    return Scene.from_arrays({"tokens": array})
