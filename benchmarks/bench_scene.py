"""Synthetic scene files and the geomind end-to-end measurement (read pass, instrumented engine run).

The scene is written once as tiled GeoTIFFs (S2L2A 12-band uint16 reflectance x10000, DEM float32 metres) on a
UTM grid at 10 m, so both geomind and the reference read real files through rasterio.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

from bench_common import PeakMemory, Stopwatch

PIXEL_M = 10.0


@dataclass(frozen=True)
class SceneFiles:
    s2l2a: Path
    dem: Path
    height: int
    width: int

    @property
    def km2(self) -> float:
        return self.height * self.width * PIXEL_M * PIXEL_M / 1e6

    def path(self, modality: str) -> Path:
        return self.dem if modality == "DEM" else self.s2l2a


def write_scene(folder: Path, size: int, *, seed: int = 0) -> SceneFiles:
    """A ``size`` x ``size`` scene with smooth, band-dependent texture (not constant, so no codec shortcut)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.sin(x / 37.0) * np.cos(y / 53.0)
    profile = dict(driver="GTiff", height=size, width=size, crs=CRS.from_epsg(32633), tiled=True,
                   blockxsize=256, blockysize=256, transform=Affine(PIXEL_M, 0, 300000, 0, -PIXEL_M, 5000000))
    s2 = folder / "scene_S2L2A.tif"
    with rasterio.open(s2, "w", count=12, dtype="uint16", nodata=0, **profile) as dst:
        for band in range(12):
            noise = rng.normal(0, 80, (size, size)).astype(np.float32)
            values = 1500 + 200 * band + 700 * base + noise
            dst.write(np.clip(values, 1, 10000).astype(np.uint16), band + 1)
    dem = folder / "scene_DEM.tif"
    with rasterio.open(dem, "w", count=1, dtype="float32", nodata=-9999, **profile) as dst:
        dst.write((300 + 150 * base + rng.normal(0, 2, (size, size))).astype(np.float32), 1)
    return SceneFiles(s2, dem, size, size)


@dataclass
class EndToEnd:
    """One end-to-end run. ``read_s`` is a separate pure read pass over the same tile plan. ``model_s``: time inside
    the tile function. ``stitch_write_s``: time in the engine's stitchers and writers (blending, streaming, COG
    finishing); since the engine stitches and writes in a background thread, all but the final COG build overlaps
    the model, so ``model_s + stitch_write_s`` may exceed ``wall_s``. ``other_s``: the wall time neither covers
    (reads not hidden behind the model, setup)."""

    tiles: int
    wall_s: float
    read_s: float
    model_s: float
    stitch_write_s: float
    other_s: float
    tiles_per_s: float
    km2_per_s: float
    read_tiles_per_s: float
    peak_rss_mb: float
    peak_gpu_mb: float | None

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def open_scene(files: SceneFiles, modality: str):
    from geomind_cli.tasks.inputs import open_inputs

    return open_inputs([f"{files.path(modality)}:{modality}"])


def read_pass(files: SceneFiles, modality: str, *, tile_size: int, overlap: int, batch_size: int) -> tuple[float, int]:
    """Seconds to read and cut every tile batch of the plan (the engine's producer, no model), and the tile count."""
    from geomind_cli.engine.batches import produce
    from geomind_cli.engine.tiling import plan_tiles

    with open_scene(files, modality) as scene:
        plan = plan_tiles(scene.grid.height, scene.grid.width, tile_size=tile_size, overlap=overlap)
        start, tiles = time.perf_counter(), 0
        for item in produce(scene, plan, batch_size=batch_size, skip_nodata=True, valid_rule="all", pin=False):
            tiles += 0 if item.batch is None else len(item.batch)
        return time.perf_counter() - start, tiles


class _EngineTimers:
    """Times the runner's stitch/write stages by wrapping its private output manager (benchmark-only hook)."""

    def __init__(self, device: torch.device):
        # Host work in the writer thread: no device sync there (it would wait for the model's kernels).
        self.watch = Stopwatch(torch.device("cpu"))
        self._saved = {}

    def __enter__(self):
        from geomind_cli.engine import runner

        outputs = getattr(runner, "_Outputs", None)
        for name in ("add", "flush", "finish"):
            if outputs is not None and hasattr(outputs, name):
                self._saved[name] = getattr(outputs, name)
                setattr(outputs, name, self.watch.wrap(self._saved[name]))
        return self

    def __exit__(self, *exc):
        from geomind_cli.engine import runner

        for name, fn in self._saved.items():
            setattr(runner._Outputs, name, fn)
        return False


def geomind_end_to_end(files: SceneFiles, modality: str, task, device: torch.device, *, tile_size: int, overlap: int,
                       batch_size: int) -> EndToEnd:
    """Run ``task`` (a geomind Task) over the scene with the engine, timing each stage."""
    from geomind_cli.engine import run_scene

    read_s, _ = read_pass(files, modality, tile_size=tile_size, overlap=overlap, batch_size=batch_size)
    model = Stopwatch(device)
    with open_scene(files, modality) as scene, PeakMemory(device) as memory, _EngineTimers(device) as engine:
        start = time.perf_counter()
        summary = run_scene(scene, model.wrap(task.tile_fn), task.outputs, tile_size=tile_size, overlap=overlap,
                            batch_size=batch_size, overwrite=True, progress=False)
        wall = time.perf_counter() - start
    tiles = summary.processed
    return EndToEnd(
        tiles=tiles, wall_s=wall, read_s=read_s, model_s=model.seconds, stitch_write_s=engine.watch.seconds,
        other_s=max(0.0, wall - model.seconds - engine.watch.seconds), tiles_per_s=tiles / wall,
        km2_per_s=files.km2 / wall, read_tiles_per_s=tiles / read_s if read_s else 0.0,
        peak_rss_mb=memory.host_peak_mb, peak_gpu_mb=memory.gpu_peak_mb,
    )
