"""The tile loop: prefetch batches, run the tile function, stitch, stream rows to the writers, summarise.

Three threads overlap: the prefetcher reads and cuts tiles ahead, the calling thread runs the tile function (the
model), and one writer thread stitches results and streams final rows to the writers (compression included), so the
model never waits for stitching or for GDAL. Both hand-offs are bounded queues, which bounds memory, and the writer
thread takes batches strictly in order, so outputs are identical to a single-threaded run.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio

from geomind_cli.engine.batches import Prefetcher, TileBatch, produce, static_batches, want_pinned, yield_to_model
from geomind_cli.engine.outputs import OutputSpec
from geomind_cli.engine.scene import Scene
from geomind_cli.engine.stitch import make_stitcher
from geomind_cli.engine.tiling import DEFAULT_OVERLAP, plan_tiles
from geomind_cli.engine.writer import STREAM_CACHE_BYTES, RasterWriter, check_writable, open_writer

TileFn = Callable[[TileBatch], dict]


@dataclass
class RunSummary:
    """What a run did. ``peak_rss_mb`` is the process's peak resident memory so far (Linux ru_maxrss)."""

    tiles: int
    processed: int
    skipped: int
    seconds: float
    tiles_per_second: float
    km2: float
    peak_rss_mb: float
    outputs: list[str] = field(default_factory=list)
    tile_size: int = 224
    overlap: int = DEFAULT_OVERLAP
    batch_size: int = 8
    grid: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _progress(enabled: bool, total: int):
    if not (enabled and sys.stderr.isatty()):
        return None
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=Console(stderr=True), transient=False,
    )
    progress.start()
    progress.add_task("tiles", total=total, rate="")
    return progress


def check_outputs(outputs: list[OutputSpec], *, overwrite: bool) -> None:
    """Raise before any work if an output (or its probability/confidence sidecar) cannot be written."""
    names = [o.name for o in outputs]
    if len(set(names)) != len(names):
        raise ValueError(f"output names must be unique: {names}")
    paths = []
    for spec in outputs:
        paths.append(spec.path)
        if spec.probabilities:
            paths.append(spec.sidecar("probabilities"))
        if spec.confidence:
            paths.append(spec.sidecar("confidence"))
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError(f"two outputs share a path: {[str(p) for p in paths]}")
    for path in paths:
        check_writable(path, overwrite=overwrite)


def _expected(spec: OutputSpec, array: np.ndarray, batch: int, tile: int) -> np.ndarray:
    side = tile // 16 if spec.kind == "grid" else tile
    channels = spec.channels
    ok = array.ndim == 4 and array.shape[0] == batch and array.shape[2:] == (side, side)
    if not ok or (channels is not None and array.shape[1] != channels):
        raise ValueError(f"tile function output {spec.name!r} has shape {array.shape}; expected "
                         f"[{batch}, {channels or 'K'}, {side}, {side}]")
    return array


class _Outputs:
    """Stitchers and writers for every output, created when the channel counts are known."""

    def __init__(self, scene: Scene, outputs: list[OutputSpec], plan, capacity_rows: int):
        self.scene, self.specs, self.plan, self.capacity = scene, outputs, plan, capacity_rows
        self.stitchers: dict[str, object] = {}
        self.writers: dict[tuple[str, str], RasterWriter] = {}

    def ensure(self, spec: OutputSpec, channels: int):
        if spec.name in self.stitchers:
            return
        self.stitchers[spec.name] = make_stitcher(spec, self.plan, capacity_rows=self.capacity, channels=channels)
        grid = self.scene.grid.scaled(16) if spec.kind == "grid" else self.scene.grid
        tags = {"GEOMIND_OUTPUT": spec.name, "GEOMIND_KIND": spec.kind}
        made_by = {"GEOMIND_FINGERPRINT": spec.fingerprint} if spec.fingerprint else {}
        tags.update(made_by)
        if spec.class_names:
            tags["CLASS_NAMES"] = list(spec.class_names)
        self.writers[(spec.name, "main")] = open_writer(
            spec.path, name=spec.name, grid=grid, count=1 if spec.kind == "classes" else channels, dtype=spec.dtype,
            nodata=spec.fill, descriptions=list(spec.bands), overview_resampling=spec.overview_resampling,
            colormap=spec.colormap, tags=tags, scale=spec.scale, offset=spec.offset)
        names = list(spec.class_names or [f"class_{k}" for k in range(channels)])
        for what, count, descriptions in (("probabilities", channels, names), ("confidence", 1, ["confidence"])):
            if getattr(spec, what):
                self.writers[(spec.name, what)] = open_writer(
                    spec.sidecar(what), name=what, grid=grid, count=count, dtype="float32", nodata=float("nan"),
                    descriptions=descriptions, overview_resampling="AVERAGE", tags={"GEOMIND_OUTPUT": spec.name, **made_by})

    def checked(self, batch: TileBatch, results: dict) -> dict[str, np.ndarray]:
        """The tile function's arrays by output name, shapes checked (raises ValueError naming the output)."""
        arrays = {}
        for spec in self.specs:
            if spec.name not in results:
                raise ValueError(f"tile function returned no {spec.name!r} output (got {sorted(results)})")
            arrays[spec.name] = _expected(spec, np.asarray(results[spec.name]), len(batch), self.plan.tile_size)
        return arrays

    def add(self, batch: TileBatch, results: dict):
        arrays = self.checked(batch, results)
        for spec in self.specs:
            array = arrays[spec.name]
            self.ensure(spec, array.shape[1])
            stitcher = self.stitchers[spec.name]
            for i in range(len(batch)):
                stitcher.add(int(batch.tile_rows[i]), int(batch.tile_cols[i]), array[i], batch.valid[i])

    def flush(self, next_tile_row: int):
        for spec in self.specs:
            if spec.name not in self.stitchers:
                continue
            for key, row0, rows in self.stitchers[spec.name].pop(next_tile_row):
                self.writers[(spec.name, key)].write_rows(row0, rows)

    def finish(self, bar=None) -> list[str]:
        """Flush the last rows and finish every file (COG layout, overviews); ``bar``: a rich Progress to show it."""
        for spec in self.specs:  # every tile was skipped: still write all-nodata outputs
            self.ensure(spec, spec.channels or 1)
        self.flush(len(self.plan.ys))
        self.stitchers.clear()  # free the row bands before GDAL builds the COGs
        for writer in self.writers.values():
            writer.finish(progress=_finish_progress(bar, writer.path.name))
        for writer in self.writers.values():
            writer.commit()
        return [str(w.path) for w in self.writers.values()]

    def abort(self):
        for writer in self.writers.values():
            writer.abort()


def _finish_progress(bar, name: str):
    """A ``progress(done_bytes, total_bytes)`` callback drawing a "finishing NAME" line on ``bar`` (None: none)."""
    if bar is None:
        return None
    task = bar.add_task(f"finishing {name} (MB)", total=None, rate="")

    def update(done: int, total: int):
        bar.update(task, completed=done // 2**20, total=max(1, total // 2**20))

    return update


_END = object()


class _WriteBehind:
    """Stitch and write in one background thread, fed in batch order through a queue of ``depth`` items.

    ``submit`` blocks while the queue is full, so at most ``depth`` batches of results wait (plus the one being
    stitched): memory stays bounded whatever the scene size. An exception in the thread is re-raised by the next
    ``submit`` or by ``close``; ``cancel`` stops the thread (after its current item) so the caller can abort.
    """

    def __init__(self, state: _Outputs, depth: int):
        self.state = state
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="geomind-writer", daemon=True)
        self.thread.start()

    def _run(self):
        # GDAL's block cache size is process-wide: run_scene sets it for the reader and this thread together.
        yield_to_model()
        while not self.stopping.is_set():
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            batch, arrays, next_tile_row = item
            try:
                if batch is not None:
                    self.state.add(batch, arrays)
                self.state.flush(next_tile_row)
            except BaseException as error:  # re-raised in the calling thread
                self.error = error
                return

    def _put(self, item):
        while True:
            if self.error is not None:
                raise self.error
            if not self.thread.is_alive():
                raise RuntimeError("the output writer thread stopped unexpectedly")
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def submit(self, batch: TileBatch | None, arrays: dict | None, next_tile_row: int):
        self._put((batch, arrays, next_tile_row))

    def close(self):
        """Wait until every submitted batch is written; re-raise the thread's error if it had one."""
        self._put(_END)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def cancel(self):
        """Stop without writing what is still queued; the writers may then be aborted safely."""
        self.stopping.set()
        self.thread.join(timeout=60)


def run_scene(scene: Scene, tile_fn: TileFn, outputs: list[OutputSpec], *, tile_size: int = 224,
              overlap: int = DEFAULT_OVERLAP, batch_size: int = 8, overwrite: bool = False, progress: bool = True,
              skip_nodata: bool = True, prefetch: int = 2, summary_path: Path | None = None,
              valid_rule: str = "all", pin_memory: bool | None = None, write_behind: int = 2) -> RunSummary:
    """Run ``tile_fn`` over every tile of ``scene`` and write ``outputs`` as COGs; see :class:`TileBatch`.

    ``tile_fn(batch) -> {output name: array}`` with continuous [B, C, T, T], classes [B, K, T, T] probabilities,
    grid [B, C, T/16, T/16]. Nothing is left at any output path if it raises (or on Ctrl-C).

    ``write_behind``: batches of results that may wait for the writer thread (see :class:`_WriteBehind`); 0 stitches
    and writes in the calling thread, between tile function calls.
    """
    if valid_rule not in ("all", "any"):
        raise ValueError(f"valid_rule must be 'all' or 'any', not {valid_rule!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    start = time.perf_counter()
    tile_fn = static_batches(tile_fn, batch_size)  # CUDA: one batch shape for compiled models
    plan = plan_tiles(scene.grid.height, scene.grid.width, tile_size=tile_size, overlap=overlap)
    check_outputs(outputs, overwrite=overwrite)
    # Rows a stitcher must hold: the tile rows one batch can span, plus one.
    capacity = tile_size + plan.stride * -(-batch_size // len(plan.xs))
    state = _Outputs(scene, outputs, plan, capacity)
    bar = _progress(progress, len(plan))
    processed = skipped = 0
    prefetcher = writer = None
    # GDAL's block cache is one for the process: the writers' streaming share plus a block row of every input.
    with rasterio.Env(GDAL_CACHEMAX=STREAM_CACHE_BYTES + scene.read_cache_bytes()):
        try:
            for spec in outputs:
                if spec.channels is not None:
                    state.ensure(spec, spec.channels)
            items = produce(scene, plan, batch_size=batch_size, skip_nodata=skip_nodata, valid_rule=valid_rule,
                            pin=want_pinned(pin_memory))
            prefetcher = Prefetcher(items, prefetch)
            writer = _WriteBehind(state, write_behind) if write_behind > 0 else None
            for item in prefetcher:
                arrays = None
                if item.batch is not None:
                    # Shapes are checked here, so a wrong tile function fails at its first batch.
                    arrays = state.checked(item.batch, tile_fn(item.batch))
                    processed += len(item.batch)
                skipped += item.skipped
                if writer is not None:
                    # The stitcher needs where the tiles go and which pixels are valid, not their inputs: without
                    # them the batch's arrays return to the reader's pool while results wait for the writer.
                    writer.submit(item.batch and item.batch.placement(), arrays, item.next_tile_row)
                else:
                    if arrays is not None:
                        state.add(item.batch, arrays)
                    state.flush(item.next_tile_row)
                if bar is not None:
                    elapsed = time.perf_counter() - start
                    bar.update(0, completed=processed + skipped, rate=f"{processed / max(elapsed, 1e-9):.1f} tiles/s")
            if writer is not None:
                writer.close()
            paths = state.finish(bar)
        except BaseException:
            if prefetcher is not None:
                prefetcher.stop()
            if writer is not None:
                writer.cancel()
            state.abort()
            raise
        finally:
            if bar is not None:
                bar.stop()
    seconds = time.perf_counter() - start
    summary = RunSummary(
        tiles=len(plan), processed=processed, skipped=skipped, seconds=round(seconds, 3),
        tiles_per_second=round(processed / seconds, 2) if seconds > 0 else 0.0, km2=round(scene.grid.area_km2(), 3),
        peak_rss_mb=round(peak_rss_mb(), 1), outputs=paths, tile_size=tile_size, overlap=overlap,
        batch_size=batch_size, grid={"crs": scene.grid.crs.to_string() if scene.grid.crs else None,
                                     "width": scene.grid.width, "height": scene.grid.height})
    if summary_path is not None:
        summary_path = Path(summary_path)
        staged = summary_path.with_name(f".{summary_path.name}.partial")
        staged.write_text(summary.to_json() + "\n")
        os.replace(staged, summary_path)
    return summary
