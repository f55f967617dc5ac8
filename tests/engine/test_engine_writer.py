"""The COG writer: many-band outputs come out as valid COGs with every value intact, in bounded memory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate

from geomind_cli.engine.grid import Grid
from geomind_cli.engine.writer import CogLayout, RasterWriter, cog_compression

ROOT = Path(__file__).resolve().parents[2]
GB = 2**30


def _grid(width: int, height: int) -> Grid:
    return Grid(CRS.from_epsg(32633), Affine(160, 0, 500000, 0, -160, 4000000), width, height)


def _features(count: int, rows: slice, width: int) -> np.ndarray:
    """float32 [count, rows, width]: a smooth, band-dependent pattern (fast to compress), exact in float32."""
    y = np.arange(rows.start, rows.stop, dtype=np.float32)[None, :, None]
    x = np.arange(width, dtype=np.float32)[None, None, :]
    c = np.arange(count, dtype=np.float32)[:, None, None]
    return (c * 0.5 + np.sin(y * 0.05 + c) + np.cos(x * 0.03 - c)).astype(np.float32)


def test_many_band_output_is_a_valid_cog_with_every_value(tmp_path):
    count, width, height = 300, 300, 170
    path = tmp_path / "emb.tif"
    writer = RasterWriter(path, grid=_grid(width, height), count=count, dtype="float32", nodata=float("nan"),
                          descriptions=[f"f{i}" for i in range(count)], overview_resampling="NEAREST")
    # 300 float32 bands: a 512 px pixel-interleaved COG tile would be 315 MB; the layout picks 128 px (20 MB).
    assert writer.layout.block == 128
    progress = []
    for row0 in range(0, height, 37):  # rows arrive in runs that do not match the blocks
        rows = slice(row0, min(height, row0 + 37))
        writer.write_rows(row0, _features(count, rows, width))
    writer.finish(progress=lambda done, total: progress.append((done, total)))
    writer.commit()
    valid, errors, warnings = cog_validate(str(path), strict=True)
    assert valid, (errors, warnings)
    with rasterio.open(path) as dst:
        assert dst.count == count and dst.shape == (height, width) and dst.block_shapes[0] == (128, 128)
        assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and dst.overviews(1) == [2, 4]
        # DEFLATE with the floating-point predictor (3): readable everywhere, level 1 for floats (cog_compression)
        assert dst.compression.name == "deflate" and dst.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        assert dst.descriptions[-1] == f"f{count - 1}"
        assert np.array_equal(dst.read(), _features(count, slice(0, height), width))
    with rasterio.open(path, overview_level=0) as half:  # nearest at factor 2: the top-left cell of each 2 x 2
        assert half.shape == (85, 150)
        assert np.array_equal(half.read(200), _features(count, slice(0, height), width)[199, ::2, ::2])
    assert progress and progress[-1][0] == progress[-1][1]
    assert not list(tmp_path.glob(".*"))  # no hidden file left behind


def test_class_maps_keep_the_stronger_compression(tmp_path):
    """Integer outputs compress well and are small: level 6 and the integer predictor; floats (noise in their low
    mantissa bits) level 1, which writes a 768-band embedding in well under the time of level 6."""
    assert cog_compression("uint8")["LEVEL"] == 6 and cog_compression("int16")["LEVEL"] == 6
    assert cog_compression("float32")["LEVEL"] == 1 and cog_compression("float16")["LEVEL"] == 1
    path = tmp_path / "classes.tif"
    writer = RasterWriter(path, grid=_grid(600, 40), count=1, dtype="uint8", nodata=255, descriptions=["class"],
                          overview_resampling="MODE")
    classes = (np.arange(600)[None, None, :] // 50 % 10).repeat(40, axis=1).astype(np.uint8)
    writer.write_rows(0, classes)
    writer.finish()
    writer.commit()
    with rasterio.open(path) as dst:
        assert dst.compression.name == "deflate" and dst.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        assert np.array_equal(dst.read(), classes)


@pytest.mark.parametrize("count, width, height, itemsize", [
    (768, 686, 686, 4),      # TerraMind base embedding of a full Sentinel-2 tile (10,980 px)
    (1024, 750, 750, 4),     # large, of a 12,000 px scene
    (12, 12000, 12000, 2),   # a 12-band uint16 generated scene
    (1, 20000, 20000, 1),    # a class map
])
def test_layout_bounds_memory_whatever_the_band_count(count, width, height, itemsize):
    layout = CogLayout.for_output(count=count, width=width, height=height, itemsize=itemsize, cpus=16)
    assert layout.memory_bytes(count=count, width=width, itemsize=itemsize) < 0.75 * GB
    assert count * layout.block**2 * itemsize <= max(64 * 2**20, count * 128**2 * itemsize)


def test_768_band_output_stays_in_bounded_memory(tmp_path):
    # A 768-band float32 output (TerraMind base embeddings) 686 cells wide, as for a 10,980 px scene, in a fresh
    # process: the process stays under the 2 GB goal, and what the writer adds stays below the 805 MB that one
    # 512 px pixel-interleaved COG tile of it would take (what the writer used before). Measured 2026-12-02: about
    # 600 MB added, 1.5x the layout's own estimate (GDAL's COG copy holds more than the estimate counts).
    script = f"""
import json, numpy as np, sys
# ru_maxrss survives fork and exec, so a child of a large pytest worker would start at the worker's peak: reset this
# process's high-water mark (Linux clear_refs 5) and read VmHWM instead.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
sys.path.insert(0, {str(ROOT / 'tests' / 'engine')!r})
from test_engine_writer import _features, _grid
from geomind_cli.engine.writer import RasterWriter
count, width, height = 768, 686, 160
writer = RasterWriter({str(tmp_path / 'emb.tif')!r}, grid=_grid(width, height), count=count, dtype="float32",
                      nodata=float("nan"), descriptions=[str(i) for i in range(count)], overview_resampling="NEAREST")
chunk = _features(count, slice(0, 16), width)
baseline = peak()
for row0 in range(0, height, 16):
    writer.write_rows(row0, chunk)
writer.finish()
writer.commit()
print(json.dumps(dict(baseline=baseline, peak=peak(), block=writer.layout.block,
                      estimate=writer.layout.memory_bytes(count=count, width=width, itemsize=4))))
"""
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    run = json.loads(result.stdout.strip().splitlines()[-1])
    assert run["block"] == 128
    assert run["peak"] - run["baseline"] < 768 * 512 * 512 * 4, run
    assert run["peak"] < 2 * GB, run
    with rasterio.open(tmp_path / "emb.tif") as dst:
        assert dst.count == 768 and dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert np.array_equal(dst.read(700, window=((150, 160), (0, 686))), _features(768, slice(6, 16), 686)[699])
