"""Scenes on a Dask distributed cluster: blocks of tile rows on the workers, COGs assembled by the client.

Dask's own scheduler does the work placement, retries and recomputation (a worker that dies loses nothing: its
blocks run again elsewhere). Per scene: one counting task per block (non-skipped tiles per tile row), then one
:func:`~geomind_cli.engine.blocks.compute_block` task per block, which writes its output rows as ``.npy`` files to a
hidden staging folder next to the outputs; the client streams those rows, in order, through the engine's writers
(tiled GeoTIFF, then COG, atomic rename) and removes the staging folder. Workers therefore need the outputs' folder
on a shared file system (as they need the inputs).

Each worker process keeps one model replica: tasks carry a picklable :class:`~geomind_cli.tasks.base.ModelHandle`
that builds the model on first use and caches it in the process.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from geomind_cli.engine.blocks import BlockResult, compute_block, count_tiles, plan_blocks
from geomind_cli.engine.outputs import OutputSpec
from geomind_cli.engine.resume import STAGING_PREFIX, owner_token
from geomind_cli.engine.runner import (STREAM_CACHE_BYTES, RunSummary, TileFn, _finish_progress, _Outputs,
                                       check_outputs, peak_rss_mb)
from geomind_cli.engine.scene import Scene
from geomind_cli.engine.stitch import final_row
from geomind_cli.engine.tiling import DEFAULT_OVERLAP, TilePlan, plan_tiles


@dataclass
class _Pending:
    """A scene whose blocks are submitted: what the client needs to assemble it."""

    scene: Scene
    outputs: list[OutputSpec]
    plan: TilePlan
    blocks: list
    futures: list
    staging: Path
    start: float
    summary_path: Path | None


def default_rows_per_block(plan: TilePlan, workers: int) -> int:
    """About four blocks per worker (load balance, and a dead worker costs little), at least 2 tile rows each
    unless the scene is short (each block recomputes about one tile row of halo)."""
    rows = len(plan.ys)
    return max(1, min(rows, max(2, -(-rows // (4 * max(1, workers))))))


def _workers(client) -> int:
    try:
        return max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    except TypeError:  # older distributed: no n_workers argument
        return max(1, len(client.scheduler_info()["workers"]))


def submit_scene(client, scene: Scene, tile_fn: TileFn, outputs: list[OutputSpec], *, tile_size: int = 224,
                 overlap: int = DEFAULT_OVERLAP, batch_size: int = 8, overwrite: bool = False,
                 skip_nodata: bool = True, valid_rule: str = "all", rows_per_block: int | None = None,
                 summary_path: Path | None = None) -> _Pending:
    """Submit a scene's counting and block tasks; :func:`assemble` then writes its outputs."""
    if valid_rule not in ("all", "any"):
        raise ValueError(f"valid_rule must be 'all' or 'any', not {valid_rule!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    start = time.perf_counter()
    plan = plan_tiles(scene.grid.height, scene.grid.width, tile_size=tile_size, overlap=overlap)
    check_outputs(outputs, overwrite=overwrite)
    blocks = plan_blocks(plan, rows_per_block or default_rows_per_block(plan, _workers(client)))
    run_id = owner_token()  # a later run removes the staging folder if this process dies
    staging = Path(outputs[0].path).parent / f"{STAGING_PREFIX}{run_id}"
    staging.mkdir()
    options = dict(batch_size=batch_size, skip_nodata=skip_nodata, valid_rule=valid_rule)
    # Scene, plan and tile function go inside each task (a few kB pickled), not scattered: scattered data lives only
    # on the workers that hold it and would be lost with them, whereas a task can always run again elsewhere.
    counts = [client.submit(count_tiles, scene, plan, b.first, b.stop, **options,
                            key=f"geomind-count-{run_id}-{b.index}", pure=False) for b in blocks]
    futures = [client.submit(compute_block, scene, plan, b, tile_fn, outputs, counts, str(staging), **options,
                             key=f"geomind-block-{run_id}-{b.index}", pure=False) for b in blocks]
    return _Pending(scene, outputs, plan, blocks, futures, staging, start, summary_path)


def _fill_rows(spec: OutputSpec, key: str, channels: int, rows: int, width: int) -> np.ndarray:
    """Rows no tile reaches, as the stitchers write them: nodata, NaN probabilities and confidence."""
    if key == "main":
        count = 1 if spec.kind == "classes" else channels
        return np.full((count, rows, width), spec.fill, np.dtype(spec.dtype))
    return np.full((channels if key == "probabilities" else 1, rows, width), np.nan, np.float32)


def assemble(pending: _Pending, *, tile_size: int = 224, batch_size: int = 8, progress=None, bar=None) -> RunSummary:
    """Wait for a scene's blocks in order and stream their rows into the outputs' COGs (atomically).

    ``progress(result)`` after each block; ``bar``, a rich Progress, also shows the finishing of each COG."""
    scene, plan, specs = pending.scene, pending.plan, pending.outputs
    state = _Outputs(scene, specs, plan, 1)
    results: list[BlockResult] = []
    try:
        with rasterio.Env(GDAL_CACHEMAX=STREAM_CACHE_BYTES):
            for block, future in zip(pending.blocks, pending.futures):
                result = future.result()
                results.append(result)
                for spec in specs:
                    channels = result.channels.get(spec.name)
                    if channels is None:  # a channel count is needed even if no tile has reached any block yet
                        known = [r.channels[spec.name] for r in results if spec.name in r.channels]
                        channels = known[0] if known else spec.channels or 1
                    state.ensure(spec, channels)
                    row0, row1 = final_row(spec, plan, block.first), final_row(spec, plan, block.stop)
                    for (name, key), writer in state.writers.items():
                        if name != spec.name or row1 <= row0:
                            continue
                        path = result.files.get((name, key))
                        if path is not None:
                            rows = np.load(path, mmap_mode="r")
                        else:
                            width = -(-scene.grid.width // 16) if spec.kind == "grid" else scene.grid.width
                            rows = _fill_rows(spec, key, channels, row1 - row0, width)
                        writer.write_rows(row0, rows)
                if progress is not None:
                    progress(result)
            state.stitchers.clear()
            for writer in state.writers.values():
                writer.finish(progress=_finish_progress(bar, writer.path.name))
            for writer in state.writers.values():
                writer.commit()
    except BaseException:
        for future in pending.futures:
            future.cancel()
        state.abort()
        raise
    finally:
        shutil.rmtree(pending.staging, ignore_errors=True)
    seconds = time.perf_counter() - pending.start
    processed = sum(r.processed for r in results)
    summary = RunSummary(
        tiles=len(plan), processed=processed, skipped=sum(r.skipped for r in results), seconds=round(seconds, 3),
        tiles_per_second=round(processed / seconds, 2) if seconds > 0 else 0.0, km2=round(scene.grid.area_km2(), 3),
        peak_rss_mb=round(peak_rss_mb(), 1), outputs=[str(w.path) for w in state.writers.values()],
        tile_size=tile_size, overlap=plan.overlap, batch_size=batch_size,
        grid={"crs": scene.grid.crs.to_string() if scene.grid.crs else None, "width": scene.grid.width,
              "height": scene.grid.height})
    if pending.summary_path is not None:
        path = Path(pending.summary_path)
        staged = path.with_name(f".{path.name}.partial")
        staged.write_text(summary.to_json() + "\n")
        staged.replace(path)
    return summary


def run_scene_distributed(scene: Scene, tile_fn: TileFn, outputs: list[OutputSpec], *, client,
                          tile_size: int = 224, overlap: int = DEFAULT_OVERLAP, batch_size: int = 8,
                          overwrite: bool = False, progress: bool = True, skip_nodata: bool = True,
                          valid_rule: str = "all", rows_per_block: int | None = None,
                          summary_path: Path | None = None) -> RunSummary:
    """:func:`~geomind_cli.engine.run_scene` on a Dask cluster: same arguments plus ``client`` (a
    ``distributed.Client``) and ``rows_per_block``; the outputs are identical to a single-process run."""
    pending = submit_scene(client, scene, tile_fn, outputs, tile_size=tile_size, overlap=overlap,
                           batch_size=batch_size, overwrite=overwrite, skip_nodata=skip_nodata,
                           valid_rule=valid_rule, rows_per_block=rows_per_block, summary_path=summary_path)
    bar = _BlockProgress(progress, len(pending.blocks))
    try:
        return assemble(pending, tile_size=tile_size, batch_size=batch_size, progress=bar.advance, bar=bar.bar)
    finally:
        bar.stop()


class _BlockProgress:
    """A rich progress bar over blocks on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=Console(stderr=True))
            self.bar.start()
            self.task = self.bar.add_task("blocks", total=total)

    def advance(self, _result=None):
        if self.bar is not None:
            self.bar.advance(self.task)

    def stop(self):
        if self.bar is not None:
            self.bar.stop()
