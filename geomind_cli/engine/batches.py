"""Tile batches: read windows of the scene, cut tiles, mark nodata, fill it, batch; in a prefetch thread.

The producer walks tile rows top to bottom and reads one window per run of up to ``batch_size`` tiles of a row
(neighbouring tiles overlap, so this reads each pixel about once). Tiles without any valid pixel are skipped. Each
queued item also says which tile row comes next, so the stitchers know which output rows are final.
"""

from __future__ import annotations

import queue
import sys
import threading
from dataclasses import dataclass, field

import numpy as np

from geomind_cli.engine.scene import Scene
from geomind_cli.engine.tiling import TilePlan
from geomind_cli.facts.modalities import MODALITIES


@dataclass
class TileBatch:
    """A batch of B tiles of size T.

    arrays: per modality float32 [B, C, T, T], physical units, NaN-free: nodata (and anything outside an input) is
        filled with the modality's pre-training mean, so it standardizes to 0.
    valid: bool [B, T, T], True where the pixel is inside the scene and every modality has data (rule "all"; with
        rule "any", where at least one has).
    rows, cols: int [B], global top-left pixel of each tile on the target grid. Always >= 0 and multiples of 16.
        Tiles that reach past the bottom/right scene edge (the last row/column of a scene whose size is not a
        multiple of 16, or any tile of a scene smaller than a tile) hold reflect-padded pixels there (valid False),
        so pixel (i, j) of tile b is global pixel (rows[b] + i, cols[b] + j) everywhere.
    tile_rows, tile_cols: int [B], index of each tile in the plan (plan.ys[tile_rows] == rows).
    valid_by_modality: per modality bool [B, T, T].
    """

    arrays: dict[str, np.ndarray]
    valid: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    tile_rows: np.ndarray
    tile_cols: np.ndarray
    valid_by_modality: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def padded(self, size: int) -> "TileBatch":
        """This batch grown to ``size`` tiles by repeating its last tile (self when already that large)."""
        extra = size - len(self)
        if extra <= 0:
            return self

        def grow(a: np.ndarray) -> np.ndarray:
            return np.concatenate([a, np.repeat(a[-1:], extra, axis=0)])

        return TileBatch(
            arrays={name: grow(a) for name, a in self.arrays.items()}, valid=grow(self.valid),
            rows=grow(self.rows), cols=grow(self.cols), tile_rows=grow(self.tile_rows), tile_cols=grow(self.tile_cols),
            valid_by_modality={name: grow(a) for name, a in self.valid_by_modality.items()},
        )


@dataclass
class Item:
    batch: TileBatch | None
    next_tile_row: int  # no later item holds a tile of a row above this one
    skipped: int  # tiles skipped (all nodata) since the previous item


_END = object()


def _fill_values(name: str, channels: int) -> np.ndarray:
    if name in MODALITIES and len(MODALITIES[name].mean) == channels:
        return np.asarray(MODALITIES[name].mean, np.float32)
    return np.zeros(channels, np.float32)


def _allocator(pin: bool):
    if not pin:
        return lambda shape, dtype: np.empty(shape, dtype)
    import torch

    def pinned(shape, dtype):
        tensor = torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name)).pin_memory()
        return tensor.numpy()

    return pinned


def want_pinned(pin_memory: bool | None) -> bool:
    """Pin host memory when asked, or (None) when torch is already imported and a CUDA device is present."""
    if pin_memory is not None:
        return pin_memory
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available())


def want_static_batches(static: bool | None) -> bool:
    """Pad short batches when asked, or (None) when torch is already imported and a CUDA device is present: there a
    new batch shape costs a recompilation (torch.compile, CUDA graphs) or a cuDNN re-tune, far more than the few
    padded tiles; on the CPU the padding would only be wasted work."""
    return want_pinned(static)


def static_batches(tile_fn, batch_size: int, *, static: bool | None = None):
    """``tile_fn`` that always sees ``batch_size`` tiles: a short batch (the last one, or one cut by skipped tiles)
    is padded with copies of its last tile and the results trimmed back, so compiled shapes stay static.

    ``tile_fn(batch) -> {name: array [B, ...]}``; the wrapper returns arrays of ``len(batch)`` rows. Every tile is
    computed independently of the others in its batch, so the padding does not change any real tile's result.
    """
    if not want_static_batches(static):
        return tile_fn

    def padded_fn(batch: TileBatch) -> dict:
        n = len(batch)
        if n >= batch_size:
            return tile_fn(batch)
        return {name: value[:n] for name, value in tile_fn(batch.padded(batch_size)).items()}

    return padded_fn


def read_window(scene: Scene, y: int, x0: int, x1: int, tile: int):
    """Per modality [C, T, x1-x0] of rows y..y+T, reflect-padded past the scene edges, and the in-scene mask."""
    h, w = min(y + tile, scene.grid.height) - y, min(x1, scene.grid.width) - x0
    data = scene.read(y, y + h, x0, x0 + w)
    pad = ((0, tile - h), (0, x1 - x0 - w))
    inside = np.zeros((tile, x1 - x0), bool)
    inside[:h, :w] = True
    if pad != ((0, 0), (0, 0)):
        mode = "reflect" if min(h, w) > 1 else "edge"
        data = {name: np.pad(a, ((0, 0), *pad), mode=mode) for name, a in data.items()}
    return data, inside


def produce(scene: Scene, plan: TilePlan, *, batch_size: int, skip_nodata: bool, valid_rule: str, pin: bool):
    """Yield :class:`Item` s in tile order (row-major)."""
    tile = plan.tile_size
    alloc = _allocator(pin)
    fills = {name: _fill_values(name, c) for name, c in scene.band_counts.items()}
    pending: list[tuple] = []
    skipped = 0

    def batch_of(tiles) -> TileBatch:
        arrays = {}
        for name, c in scene.band_counts.items():
            arrays[name] = alloc((len(tiles), c, tile, tile), np.float32)
            for i, t in enumerate(tiles):
                arrays[name][i] = t[2][name]
        return TileBatch(
            arrays=arrays,
            valid=np.stack([t[4] for t in tiles]),
            rows=plan.ys[[t[0] for t in tiles]], cols=plan.xs[[t[1] for t in tiles]],
            tile_rows=np.asarray([t[0] for t in tiles]), tile_cols=np.asarray([t[1] for t in tiles]),
            valid_by_modality={name: np.stack([t[3][name] for t in tiles]) for name in scene.band_counts},
        )

    combine = np.logical_and if valid_rule == "all" else np.logical_or
    for r, y in enumerate(plan.ys):
        for c0 in range(0, len(plan.xs), batch_size):
            cols = range(c0, min(c0 + batch_size, len(plan.xs)))
            x0 = int(plan.xs[cols[0]])
            window, inside = read_window(scene, int(y), x0, int(plan.xs[cols[-1]]) + tile, tile)
            for c in cols:
                sl = slice(int(plan.xs[c]) - x0, int(plan.xs[c]) - x0 + tile)
                tiles = {name: a[:, :, sl] for name, a in window.items()}
                per_mod = {name: np.isfinite(a).all(axis=0) & inside[:, sl] for name, a in tiles.items()}
                masks = list(per_mod.values())
                valid = masks[0]
                for m in masks[1:]:
                    valid = combine(valid, m)
                if skip_nodata and not valid.any():
                    skipped += 1
                    continue
                # Not only NaN: one inf pixel would spread through attention over the whole tile.
                filled = {name: np.where(np.isfinite(a), a, fills[name][:, None, None]) for name, a in tiles.items()}
                pending.append((r, c, filled, per_mod, valid))
                if len(pending) == batch_size:
                    # A batch ending with the row's last tile completes that row.
                    yield Item(batch_of(pending), r + 1 if c == len(plan.xs) - 1 else r, skipped)
                    pending, skipped = [], 0
        if not pending:
            yield Item(None, r + 1, skipped)
            skipped = 0
    if pending:
        yield Item(batch_of(pending), len(plan.ys), skipped)


class Prefetcher:
    """Run :func:`produce` in a daemon thread, ``depth`` items ahead; exceptions re-raise in the consumer."""

    def __init__(self, items, depth: int):
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="geomind-prefetch", daemon=True)
        self._thread.start()

    def _put(self, value) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._put(error)

    def __iter__(self):
        while True:
            value = self._queue.get()
            if value is _END:
                return
            if isinstance(value, BaseException):
                raise value
            yield value

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
