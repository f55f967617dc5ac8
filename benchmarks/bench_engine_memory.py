"""Peak memory of the scene engine on a large generated scene (bounded by a band of tile rows, not the scene).

Builds a synthetic, dask-backed 12-band S2L2A scene (values generated per chunk from the pixel position: nothing is
read from or held on disk), runs an identity tile function with the default tiling, and streams a 12-band uint16 COG.

    .venv/bin/python benchmarks/bench_engine_memory.py --size 20000 --out /tmp/bench   # about 9.6 GB decoded

Prints one JSON line: scene size, decoded size (uint16), peak RSS before and after the run, time, tiles/s.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_scene(height: int, width: int, bands: int = 12):
    """A lazy [bands, height, width] float32 scene of uint16-range values; chunk rows match the 160 px stride."""
    from geomind_cli.engine import Grid, Scene

    def block(block_info=None):
        info = block_info[None]
        (b0, b1), (y0, y1), (x0, x1) = info["array-location"]
        y = np.arange(y0, y1, dtype=np.float32)[None, :, None]
        x = np.arange(x0, x1, dtype=np.float32)[None, None, :]
        c = np.arange(b0, b1, dtype=np.float32)[:, None, None]
        return (1000.0 + ((3.0 * y + 7.0 * x + 500.0 * c) % 8000.0)).astype(np.float32)

    chunks = ((bands,), tuple(_split(height, 160)), tuple(_split(width, 1024)))
    data = da.map_blocks(block, dtype=np.float32, chunks=chunks)
    transform = Affine(10, 0, 300000, 0, -10, 5000000)
    array = xr.DataArray(data, dims=("band", "y", "x"))
    grid = Grid(CRS.from_epsg(32633), transform, width, height)
    return Scene.from_arrays({"S2L2A": array}, grid=grid)


def _split(n: int, size: int) -> list[int]:
    return [size] * (n // size) + ([n % size] if n % size else [])


def run(height: int, width: int, out_dir: Path, *, batch_size: int = 8) -> dict:
    from geomind_cli.engine import OutputSpec, run_scene
    from geomind_cli.facts.modalities import MODALITIES

    scene = synthetic_scene(height, width)
    baseline = _peak_mb()
    spec = OutputSpec("s2", out_dir / "bench_s2.tif", "continuous", list(MODALITIES["S2L2A"].band_ids), "uint16",
                      nodata=0)
    start = time.perf_counter()
    summary = run_scene(scene, lambda b: {"s2": b.arrays["S2L2A"]}, [spec], overwrite=True, progress=False,
                        batch_size=batch_size)
    return {
        "height": height, "width": width, "bands": 12,
        "decoded_gb_uint16": round(height * width * 12 * 2 / 1e9, 2),
        "float32_scene_mb": round(height * width * 12 * 4 / 2**20, 1),
        "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(_peak_mb(), 1),
        "seconds": round(time.perf_counter() - start, 1), "tiles": summary.tiles,
        "tiles_per_second": summary.tiles_per_second, "output_mb": round(spec.path.stat().st_size / 2**20, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000, help="square scene side in pixels")
    parser.add_argument("--height", type=int, help="overrides --size")
    parser.add_argument("--width", type=int, help="overrides --size")
    parser.add_argument("--out", type=Path, help="output folder (default: a temporary folder)")
    args = parser.parse_args()
    height, width = args.height or args.size, args.width or args.size
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        print(json.dumps(run(height, width, args.out)))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run(height, width, Path(tmp))))


if __name__ == "__main__":
    main()
