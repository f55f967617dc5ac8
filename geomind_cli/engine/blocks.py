"""Blocks of tile rows: the unit of work a Dask worker computes, bit-identical to the single-process tile loop.

A block owns tile rows ``first .. stop`` and writes the output rows those tile rows own
(:func:`~geomind_cli.engine.stitch.final_row`). Two things make its rows equal, bit for bit, to a
:func:`~geomind_cli.engine.runner.run_scene` run:

* Blending: an output row also receives tiles of earlier tile rows (the overlap). The block recomputes them (its halo,
  from :func:`~geomind_cli.engine.stitch.first_contributor`) and adds every tile in the same row-major order, so
  each pixel's weighted sum is accumulated in the same order from the same terms.
* Batches: the single-process loop batches the non-skipped tiles of the whole scene in row-major order, ``batch``
  at a time, across row ends. A model's output for one tile may depend (in its last bits) on the other tiles of its
  batch, so a block rebuilds exactly those global batches: it needs the number of non-skipped tiles in every tile
  row (:func:`count_tiles`, a cheap first pass), and computes the few tiles of neighbouring rows that share a batch
  with its own, then drops them.

A block is pure: its files (``<staging>/b<index>.<output>.<file>.npy``) are written to a temporary name and renamed,
so a block recomputed after a worker died simply writes the same bytes again.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geomind_cli.engine.batches import TileBatch, produce, static_batches
from geomind_cli.engine.outputs import OutputSpec
from geomind_cli.engine.scene import Scene
from geomind_cli.engine.stitch import final_row, first_contributor, make_stitcher
from geomind_cli.engine.tiling import TilePlan

# One model call at a time per process: a worker with several threads still keeps one model replica busy (and
# builds it once), while reading and stitching of other blocks go on in its other threads.
MODEL_LOCK = threading.Lock()


@dataclass(frozen=True)
class Block:
    """Tile rows ``first .. stop`` owned, computed from tile row ``halo`` (<= first) on."""

    index: int
    first: int
    stop: int
    halo: int


@dataclass
class BlockResult:
    """What a block wrote: per (output name, file key) the ``.npy`` file of its owned rows [C, rows, width]."""

    index: int
    processed: int  # non-skipped tiles of the owned tile rows
    skipped: int
    channels: dict[str, int] = field(default_factory=dict)  # channels of each output's tile arrays
    files: dict[tuple[str, str], str] = field(default_factory=dict)


def plan_blocks(plan: TilePlan, rows_per_block: int) -> list[Block]:
    """Split the plan's tile rows into blocks of ``rows_per_block`` rows (the last may be shorter)."""
    if rows_per_block < 1:
        raise ValueError("rows_per_block must be at least 1")
    rows = len(plan.ys)
    return [Block(i, r0, min(rows, r0 + rows_per_block), first_contributor(plan, r0))
            for i, r0 in enumerate(range(0, rows, rows_per_block))]


def _rows(plan: TilePlan, start: int, stop: int) -> TilePlan:
    """The same plan restricted to tile rows ``start .. stop`` (pixel origins unchanged)."""
    return dataclasses.replace(plan, ys=plan.ys[start:stop])


def _tiles(scene: Scene, plan: TilePlan, start: int, stop: int, *, batch_size: int, skip_nodata: bool,
           valid_rule: str):
    """Yield ``(tile_row, single-tile TileBatch)`` for the non-skipped tiles of rows ``start .. stop``, in order.

    Reads through the engine's own producer, with the same windows as a whole-scene run, so the tiles are identical.
    """
    items = produce(scene, _rows(plan, start, stop), batch_size=batch_size, skip_nodata=skip_nodata,
                    valid_rule=valid_rule, pin=False)
    for item in items:
        batch = item.batch
        if batch is None:
            continue
        for i in range(len(batch)):
            one = slice(i, i + 1)
            yield start + int(batch.tile_rows[i]), TileBatch(
                arrays={k: a[one] for k, a in batch.arrays.items()}, valid=batch.valid[one],
                rows=batch.rows[one], cols=batch.cols[one], tile_rows=batch.tile_rows[one] + start,
                tile_cols=batch.tile_cols[one],
                valid_by_modality={k: a[one] for k, a in batch.valid_by_modality.items()})


def count_tiles(scene: Scene, plan: TilePlan, start: int, stop: int, *, batch_size: int, skip_nodata: bool,
                valid_rule: str) -> np.ndarray:
    """int [stop - start]: the tiles of each tile row that the tile loop does not skip."""
    counts = np.zeros(stop - start, np.int64)
    if not skip_nodata:
        counts[:] = len(plan.xs)
        return counts
    for row, _ in _tiles(scene, plan, start, stop, batch_size=batch_size, skip_nodata=True, valid_rule=valid_rule):
        counts[row - start] += 1
    return counts


def _concat(tiles: list[TileBatch]) -> TileBatch:
    return TileBatch(
        arrays={k: np.concatenate([t.arrays[k] for t in tiles]) for k in tiles[0].arrays},
        valid=np.concatenate([t.valid for t in tiles]), rows=np.concatenate([t.rows for t in tiles]),
        cols=np.concatenate([t.cols for t in tiles]), tile_rows=np.concatenate([t.tile_rows for t in tiles]),
        tile_cols=np.concatenate([t.tile_cols for t in tiles]),
        valid_by_modality={k: np.concatenate([t.valid_by_modality[k] for t in tiles])
                           for k in tiles[0].valid_by_modality})


def _save(path: Path, array: np.ndarray) -> str:
    staged = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp.npy")
    np.save(staged, np.ascontiguousarray(array))
    os.replace(staged, path)  # a recomputed block replaces its own file whole
    return str(path)


def compute_block(scene: Scene, plan: TilePlan, block: Block, tile_fn, outputs: list[OutputSpec], counts: list,
                  staging: str, *, batch_size: int, skip_nodata: bool, valid_rule: str) -> BlockResult:
    """Run ``tile_fn`` over the block's global batches, stitch, and save the owned output rows under ``staging``.

    ``counts``: the per-row arrays of :func:`count_tiles` for consecutive row ranges covering the whole plan.
    """
    from geomind_cli.engine.runner import _expected

    tile_fn = static_batches(tile_fn, batch_size)  # as the single-process loop does (padded batches on CUDA)
    per_row = np.concatenate([np.asarray(c, np.int64) for c in counts])
    if len(per_row) != len(plan.ys):
        raise ValueError(f"tile counts cover {len(per_row)} tile rows, the plan has {len(plan.ys)}")
    starts = np.concatenate([[0], np.cumsum(per_row)])  # global index of each row's first non-skipped tile
    total = int(starts[-1])
    want0, want1 = int(starts[block.halo]), int(starts[block.stop])  # the tiles this block stitches
    result = BlockResult(block.index, int(starts[block.stop] - starts[block.first]), 0)
    result.skipped = (block.stop - block.first) * len(plan.xs) - result.processed
    stitchers: dict[str, object] = {}
    if want1 > want0:
        g0 = (want0 // batch_size) * batch_size  # the global batches that hold those tiles
        g1 = min(-(-want1 // batch_size) * batch_size, total)
        read0 = int(np.searchsorted(starts, g0, side="right")) - 1
        read1 = int(np.searchsorted(starts, g1 - 1, side="right"))
        index = int(starts[read0])
        pending: list[tuple[int, TileBatch]] = []
        capacity = int(plan.ys[block.stop - 1]) + plan.tile_size - int(plan.ys[block.halo])

        def run(tiles: list[tuple[int, TileBatch]]):
            batch = _concat([t for _, t in tiles])
            with MODEL_LOCK:
                results = tile_fn(batch)
            for spec in outputs:
                if spec.name not in results:
                    raise ValueError(f"tile function returned no {spec.name!r} output (got {sorted(results)})")
                array = _expected(spec, np.asarray(results[spec.name]), len(batch), plan.tile_size)
                if spec.name not in stitchers:
                    stitchers[spec.name] = make_stitcher(spec, plan, capacity_rows=capacity, channels=array.shape[1],
                                                         first_tile_row=block.halo)
                    result.channels[spec.name] = array.shape[1]
                for i, (row, tile) in enumerate(tiles):
                    if block.halo <= row < block.stop:
                        stitchers[spec.name].add(row, int(tile.tile_cols[0]), array[i], tile.valid[0])

        for row, tile in _tiles(scene, plan, read0, read1, batch_size=batch_size, skip_nodata=skip_nodata,
                                valid_rule=valid_rule):
            if index >= g1:
                break
            if index >= g0:
                pending.append((row, tile))
                if len(pending) == batch_size or index == g1 - 1:
                    run(pending)
                    pending = []
            index += 1
        if pending or index < g1:
            raise RuntimeError(f"block {block.index}: the scene changed between the counting pass and the tile pass")
    folder = Path(staging)
    for spec in outputs:
        stitcher = stitchers.get(spec.name)
        if stitcher is None:
            continue  # no tile reaches the block: the client writes nodata rows
        row0, row1 = final_row(spec, plan, block.first), final_row(spec, plan, block.stop)
        pieces: dict[str, list[np.ndarray]] = {}
        for key, at, rows in stitcher.pop(block.stop):
            lo, hi = max(at, row0), min(at + rows.shape[1], row1)
            if hi > lo:
                pieces.setdefault(key, []).append(rows[:, lo - at:hi - at])
        for key, parts in pieces.items():
            array = np.concatenate(parts, axis=1)
            if array.shape[1] != row1 - row0:
                raise RuntimeError(f"block {block.index}: {array.shape[1]} rows of {spec.name}, expected {row1 - row0}")
            result.files[(spec.name, key)] = _save(folder / f"b{block.index:05d}.{spec.name}.{key}.npy", array)
    return result
