"""Resume: which outputs a previous run already finished, and the leftovers of one that was killed.

The writers only ever rename a finished COG (or Zarr store) onto an output path, so a file there that geomind wrote
is complete. :func:`is_complete` checks exactly that: the file opens, is a COG (or a Zarr store), carries our
``GEOMIND_OUTPUT`` tag for this output, and lies on this scene's grid (so an output of another scene with the same
name is not taken for done).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import rasterio

from geomind_cli.engine.grid import Grid
from geomind_cli.engine.outputs import OutputSpec


def output_files(spec: OutputSpec) -> list[Path]:
    """Every file an output writes: the main raster and its probability/confidence sidecars."""
    files = [Path(spec.path)]
    files += [spec.sidecar(what) for what in ("probabilities", "confidence") if getattr(spec, what)]
    return files


def _complete_file(path: Path, name: str, grid: Grid) -> bool:
    try:
        with rasterio.open(path) as src:
            return (src.tags().get("GEOMIND_OUTPUT") == name
                    and src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
                    and (src.width, src.height) == (grid.width, grid.height)
                    and src.crs == grid.crs and src.transform.almost_equals(grid.transform, precision=1e-9))
    except (rasterio.errors.RasterioError, OSError):
        return False


def _complete_store(path: Path, name: str, grid: Grid) -> bool:
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr

    try:
        with xr.open_zarr(path, decode_coords="all") as ds:
            ours = [v for v in ds.data_vars.values() if v.attrs.get("GEOMIND_OUTPUT") == name]
            return len(ours) == 1 and (ours[0].sizes["x"], ours[0].sizes["y"]) == (grid.width, grid.height) \
                and ours[0].rio.crs == grid.crs and ours[0].rio.transform().almost_equals(grid.transform, precision=1e-9)
    except (OSError, ValueError, KeyError):
        return False


def is_complete(spec: OutputSpec, grid: Grid) -> bool:
    """True when every file of ``spec`` is a finished geomind COG or Zarr store on ``grid`` (the scene's grid)."""
    target = grid.scaled(16) if spec.kind == "grid" else grid
    return all((_complete_store if path.suffix.lower() == ".zarr" else _complete_file)(path, spec.name, target)
               for path in output_files(spec))


def leftovers(spec: OutputSpec) -> list[Path]:
    """Hidden staging files of this output that a killed run left next to it (the writers' ``.NAME.*`` files)."""
    found = []
    for path in output_files(spec):
        found += [p for p in path.parent.glob(f".{path.name}.*") if p.suffix in (".tif", ".zarr")]
    return found


def remove(path: Path) -> None:
    """Delete a leftover: a file, or a Zarr store's folder."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
