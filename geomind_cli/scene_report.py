"""What ``geomind info`` reports about a scene: inputs, target grid, tile plan, work and memory, cached weights."""

from __future__ import annotations

import math
from pathlib import Path

from geomind_cli.engine import DEFAULT_OVERLAP, Scene, plan_tiles
from geomind_cli.engine.remote import display_name
from geomind_cli.models.weights import is_cached, official_files

# Encoder work per 224 px tile of TerraMind base (torch FLOP counter on the reference), for the estimate.
BASE_ENCODER_GFLOP_PER_TILE = 34.0
ROWS_IN_FLIGHT = 2  # the engine keeps about two rows of tiles of accumulators in memory


def crs_units(crs) -> str:
    """The unit of a CRS's coordinates (and so of its resolution): "degrees" for a geographic CRS, else its linear
    unit ("metre", "US survey foot", ...)."""
    from rasterio.crs import CRS

    crs = CRS.from_user_input(crs)
    return "degrees" if crs.is_geographic else (crs.linear_units or "unknown").replace("meter", "metre")


def format_resolution(res, units: str) -> str:
    """``[x, y]`` resolution with its unit, e.g. "10 m", "8.983e-05 deg" (one number if x and y agree)."""
    x, y = (abs(float(r)) for r in res)
    unit = {"degrees": "deg", "metre": "m"}.get(units, units)
    return f"{x:.4g} {unit}" if math.isclose(x, y, rel_tol=1e-9) else f"{x:.4g} x {y:.4g} {unit}"


def _one(values: list[float]):
    """One number when every band shares it, else the list."""
    return values[0] if values and len(set(values)) == 1 else values


def scene_report(scene: Scene, *, overlap: int | None = None, batch_size: int = 8, tile_size: int = 224) -> dict:
    """A JSON-ready description of the scene and of the work a command would do on it."""
    described = scene.describe()
    grid = scene.grid
    overlap = DEFAULT_OVERLAP if overlap is None else overlap
    plan = plan_tiles(grid.height, grid.width, tile_size=tile_size, overlap=overlap)
    rows, cols = plan.shape
    # Accumulators of a 12-band float32 output (value + weight) over the band of tile rows in flight.
    band_px = min(grid.height, ROWS_IN_FLIGHT * tile_size) * plan.padded_shape[1]
    peak_mb = band_px * (12 + 1) * 4 / 2**20 + batch_size * sum(scene.band_counts.values()) * tile_size**2 * 4 / 2**20
    sources = [
        {
            "path": src.get("path"),
            "file": display_name(src.get("path", "")),
            "modality": src.get("modality"),
            "bands": " ".join(map(str, src.get("bands", []))),
            "crs": src.get("crs"),
            "resolution": src.get("res"),
            "units": crs_units(src["crs"]) if src.get("crs") else None,
            "size": src.get("size"),
            "nodata": src.get("nodata"),
            # Where the bands come from (a file, or a STAC asset key), and how raw values became physical ones.
            "from": src.get("asset") or src.get("origin") or Path(src.get("path", "")).name,
            "product": src.get("product") or None,
            "scale": _one(src.get("scales", [])),
            "offset": _one(src.get("offsets", [])),
            "value_units": (src.get("units") or "") + {10.0: " (from linear power)", 20.0: " (from amplitude)"}.get(
                src.get("db_factor") or 0.0, ""),
            "decisions": src.get("decisions", []),
            "cloud_mask": src.get("mask"),
            "read": src.get("read", ""),  # direct, resampled on the grid's lattice, or through GDAL's warper
        }
        for src in described["sources"]
    ]
    return {
        "sources": sources,
        "modalities": described["modalities"],
        "grid": {
            "crs": described["grid"]["crs"],
            "resolution": grid.res[0],
            "units": crs_units(grid.crs),
            "width": grid.width,
            "height": grid.height,
            "area_km2": grid.area_km2(),
            "transform": described["grid"]["transform"],
        },
        "tile_plan": {"tiles": len(plan), "rows": rows, "cols": cols, "tile_size": tile_size, "overlap": overlap,
                      "stride": plan.stride},
        "estimate": {
            "batches": math.ceil(len(plan) / batch_size),
            "peak_memory_mb": peak_mb,
            "encoder_gflop": len(plan) * BASE_ENCODER_GFLOP_PER_TILE,
        },
        "weights": cached_weights(),
    }


def cached_weights() -> list[dict]:
    """Every official file and its path in the local Hugging Face cache (None if not there)."""
    return [
        {"name": name, "repo_id": repo, "file": filename, "path": str(p) if (p := is_cached(repo, filename)) else None}
        for name, (repo, filename) in official_files().items()
    ]
