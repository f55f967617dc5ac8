"""What ``geomind info`` reports about a scene: inputs, target grid, tile plan, work and memory, cached weights."""

from __future__ import annotations

import math
from pathlib import Path

from geomind_cli.engine import DEFAULT_OVERLAP, Scene, plan_tiles
from geomind_cli.models.weights import is_cached, official_files

# Encoder work per 224 px tile of TerraMind base (torch FLOP counter on the reference), for the estimate.
BASE_ENCODER_GFLOP_PER_TILE = 34.0
ROWS_IN_FLIGHT = 2  # the engine keeps about two rows of tiles of accumulators in memory


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
            "file": Path(src.get("path", "")).name,
            "modality": src.get("modality"),
            "bands": " ".join(map(str, src.get("bands", []))),
            "crs": src.get("crs"),
            "resolution": src.get("res"),
            "size": src.get("size"),
            "nodata": src.get("nodata"),
        }
        for src in described["sources"]
    ]
    return {
        "sources": sources,
        "modalities": described["modalities"],
        "grid": {
            "crs": described["grid"]["crs"],
            "resolution": grid.res[0],
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
        "weights": [
            {"name": name, "repo_id": repo, "file": filename, "path": str(p) if (p := is_cached(repo, filename)) else None}
            for name, (repo, filename) in official_files().items()
        ],
    }
