"""Memory is bounded by a band of tile rows, not by the scene: a taller scene does not raise the peak."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[2]


def test_peak_memory_does_not_grow_with_scene_height(tmp_path):
    # Same width, 6000 then 14000 rows of a generated 12-band scene (dask-backed, nothing on disk), in one process:
    # once the first run has reached its steady state, the second (8000 x 600 x 12 float32 = 220 MB more scene,
    # 110 MB more uint16 output) must not raise the peak RSS by more than a fraction of that.
    script = (
        "import sys, json; sys.path.insert(0, 'benchmarks'); from pathlib import Path; "
        "import bench_engine_memory as b; "
        f"small = b.run(6000, 600, Path({str(tmp_path / 'a')!r})); "
        f"big = b.run(14000, 600, Path({str(tmp_path / 'b')!r})); "
        "print(json.dumps([small, big]))"
    )
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    # Two malloc arenas: glibc's per-thread arenas (prefetch thread, GDAL threads) otherwise add noise to the RSS.
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    small, big = json.loads(result.stdout.strip().splitlines()[-1])
    assert big["tiles"] == 88 * 4 and small["tiles"] == 38 * 4
    added_scene_mb = big["float32_scene_mb"] - small["float32_scene_mb"]
    assert big["peak_rss_mb"] - small["peak_rss_mb"] < 0.4 * added_scene_mb, (small, big)
    assert big["peak_rss_mb"] - big["baseline_rss_mb"] < big["float32_scene_mb"], big
    with rasterio.open(tmp_path / "b" / "bench_s2.tif") as dst:
        assert dst.shape == (14000, 600) and dst.count == 12 and dst.overviews(1)
        corner = dst.read(4, window=((13990, 14000), (590, 600)))
    y, x = np.mgrid[13990:14000, 590:600]
    assert (corner == 1000 + (3 * y + 7 * x + 1500) % 8000).all()  # identity through the whole pipeline
