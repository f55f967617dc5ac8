"""Tile batches: read windows of the scene, cut tiles, mark nodata, fill it, batch; in two background threads.

The producer walks tile rows top to bottom. :class:`RowBands` reads each input pixel once (the rows a tile row
shares with the previous one stay in memory): one thread decodes the new rows (GDAL), a second converts them into
the row band and cuts tiles from memory, copying each into its batch (converting raw integers on the way for
one-file integer inputs). Tiles without any valid pixel are skipped. Each queued item also says which tile row
comes next, so the stitchers know which output rows are final. Large arrays are reused (:mod:`.buffers`).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from geomind_cli.engine.buffers import BufferPool
from geomind_cli.engine.grid import FetchedWindow, decode_threads, integers_to_physical, nodata_of
from geomind_cli.engine.scene import Scene
from geomind_cli.engine.sources import FileBands
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

    def placement(self) -> "TileBatch":
        """This batch without its input arrays: where its tiles go and which pixels are valid (what stitching
        needs), so that the inputs can be freed or reused while results wait to be written."""
        return dataclasses.replace(self, arrays={})

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


def _fill_values(name: str, channels: int, bands: list[str] | None = None) -> np.ndarray:
    """Nodata fill: the pre-training mean of each band (also of a band subset, by band name), else 0."""
    if name in MODALITIES and len(MODALITIES[name].mean) == channels:
        return np.asarray(MODALITIES[name].mean, np.float32)
    known = MODALITIES[name].bands if name in MODALITIES else ()
    if bands and len(bands) == channels and all(b in known for b in bands):
        return np.asarray([MODALITIES[name].mean[known.index(b)] for b in bands], np.float32)
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


# Columns one decode call reads, per decoding thread: the cutter starts on a tile row as soon as its first columns
# are decoded instead of after the whole row (the whole first block row, 12 % of a 4,096 px scene's decoding, was
# time before the first tile), and each GDAL thread still gets a couple of 512 px blocks per call.
PIECE_COLUMNS = 1024


def piece_columns() -> int:
    return PIECE_COLUMNS * decode_threads()


# Decoded pieces queued ahead of the cutter, in tile rows: with two, the decoder (the limit) still blocked on a full
# queue for a tenth of a 4,096 px run whenever the cutter fell behind for a moment; with four it never did. Capped in
# bytes so that a very wide scene does not hold gigabytes of decoded rows.
READ_AHEAD_ROWS = 4
READ_AHEAD_BYTES = 256 * 2**20


class RowBands:
    """The scene's rows for one tile row after another, each input pixel read and converted once.

    Tile row r covers rows ``ys[r] .. ys[r] + T`` and shares ``overlap`` rows with the previous one: those stay in
    memory, already masked and filled, and only the rows below them are read, one source read per piece of
    columns (:meth:`pieces`; GDAL decoding blocks in parallel). Reading is split so that it can run in a thread of
    its own: :meth:`fetch` decodes the new rows of one piece (:meth:`Scene.fetch`); :meth:`start` begins tile row
    r's band (the shared rows) and :meth:`fill` converts each piece into it, saying how many columns are final, so
    tiles are cut while later pieces are still being decoded. A band holds per modality the filled values
    [C, T, padded width] (nodata replaced by ``fills``; for the modalities in ``raw``, the raw integers, converted
    tile by tile as batches are filled), whether every band is finite [T, padded width], and the in-scene mask.
    Past the bottom/right scene edges values are reflect-padded, exactly as ``np.pad`` pads the tile-row window
    (scenes smaller than a tile take that path itself).
    """

    def __init__(self, scene: Scene, plan: TilePlan, fills: dict[str, np.ndarray], *, piece: int | None = None):
        self.scene, self.plan, self.fills = scene, plan, fills
        self.tile = plan.tile_size
        self.width = int(plan.xs[-1]) + plan.tile_size
        self.piece = piece or piece_columns()
        self.small = scene.grid.height < self.tile or scene.grid.width < self.tile
        self.previous = -1  # the last tile row whose band is complete
        # Modalities whose bands stay raw integers (half the bytes of float32 for 16-bit data): converted while each
        # tile is copied into its batch, which saves a float pass over the scene and halves what copying reads.
        self.raw = {} if self.small else scene.raw_modalities()
        self.values: dict[str, np.ndarray] = {}
        self.finite: dict[str, np.ndarray] = {}
        # Bands come from a pool: a fresh 100 MB array per band costs more in page faults than the conversion. Three
        # are enough: the band being cut, the one filled from its last rows, and one that is being let go.
        self.pool = BufferPool(3 * 2 * len(scene.band_counts))

    def _rows(self, r: int) -> tuple[int, int, int]:
        """(first row, rows in the scene, rows shared with tile row r - 1) of tile row r."""
        y = int(self.plan.ys[r])
        h = min(y + self.tile, self.scene.grid.height) - y
        if r == 0 or self.small:
            return y, h, 0
        above = int(self.plan.ys[r - 1])
        return y, h, min(h, max(0, above + min(self.tile, self.scene.grid.height - above) - y))

    def _dtype(self, name: str) -> np.dtype:
        """What a modality's decoded pieces and row bands hold: the file's integers (``raw``) or float32."""
        return np.dtype(self.raw[name][1] if name in self.raw else np.float32)

    def read_ahead(self) -> int:
        """How many decoded pieces may wait for the cutter: READ_AHEAD_ROWS tile rows' worth, fewer (never under
        two tile rows) where those rows would exceed READ_AHEAD_BYTES (very wide or many-band scenes)."""
        row_bytes = sum(c * self.plan.stride * self.scene.grid.width * self._dtype(name).itemsize
                        for name, c in self.scene.band_counts.items())
        rows = max(2, min(READ_AHEAD_ROWS, READ_AHEAD_BYTES // max(1, row_bytes)))
        return rows * len(self.pieces(0))

    def pieces(self, r: int) -> list[tuple[int, int]]:
        """The column ranges [x0, x1) of tile row r read at once, left to right, covering the scene's width."""
        y, h, keep = self._rows(r)
        w = self.scene.grid.width
        if self.small or keep >= h:  # nothing to read (or the whole small scene at once)
            return [(0, w)]
        return [(x0, min(w, x0 + self.piece)) for x0 in range(0, w, self.piece)]

    def fetch(self, r: int, x0: int, x1: int):
        """The rows of tile row r that the previous band does not hold, columns x0:x1, decoded (any thread; in
        tile-row and piece order)."""
        y, h, keep = self._rows(r)
        if self.small or keep >= h:
            return None
        return self.scene.fetch(y + keep, y + h, x0, x1)

    def _next_buffer(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        values = {}
        for name, c in self.scene.band_counts.items():
            values[name] = self.pool.get((c, self.tile, self.width), self._dtype(name))
        finite = {name: self.pool.get((self.tile, self.width), bool) for name in self.scene.band_counts}
        return values, finite

    def _padded(self, y: int, h: int):
        """The tile row read whole and padded with np.pad: the reference semantics, used for tiny scenes."""
        w = self.scene.grid.width
        data = self.scene.read(y, y + h, 0, w)
        pad = ((0, self.tile - h), (0, self.width - w))
        if pad != ((0, 0), (0, 0)):
            mode = "reflect" if min(h, w) > 1 else "edge"
            data = {name: np.pad(a, ((0, 0), *pad), mode=mode) for name, a in data.items()}
        values, finite = {}, {}
        for name, a in data.items():
            values[name] = np.empty_like(a)
            finite[name] = FetchedWindow(a).fill_into(values[name], self.fills[name])
        return values, finite

    def start(self, r: int):
        """Begin tile row r's band (after the last :meth:`fill` of r - 1): (values, finite, inside), final only in
        the columns :meth:`fill` reports."""
        (y, h, keep), tile, w = self._rows(r), self.tile, self.scene.grid.width
        inside = np.zeros((tile, self.width), bool)
        inside[:h, :w] = True
        if self.small:
            self.values, self.finite = self._padded(y, h)
            return self.values, self.finite, inside
        if keep and self.previous != r - 1:
            raise RuntimeError(f"tile row {r} needs the band of row {r - 1}, not {self.previous}")
        shift = y - int(self.plan.ys[r - 1]) if keep else 0
        values, finite = self._next_buffer()
        for name in values:
            if keep:
                values[name][:, :keep] = self.values[name][:, shift:shift + keep]
                finite[name][:keep] = self.finite[name][shift:shift + keep]
        self.values, self.finite = values, finite
        return values, finite, inside

    def fill(self, r: int, x0: int, x1: int, fetched) -> int:
        """Convert ``fetch(r, x0, x1)`` into the band begun by :meth:`start`; returns how many columns of the band
        (from the left) are final: ``x1``, or the padded width once the last piece is in."""
        if self.small:
            self.previous = r
            return self.width
        (y, h, keep), tile, w = self._rows(r), self.tile, self.scene.grid.width
        values, finite = self.values, self.finite
        if fetched is not None:  # the new rows, converted in place
            fresh = self.scene.fill_into(fetched, {n: v[:, keep:h, x0:x1] for n, v in values.items()}, self.fills,
                                         raw=frozenset(self.raw))
            for name, mask in fresh.items():
                finite[name][keep:h, x0:x1] = mask
        if h < tile:  # the last tile row: reflect the last rows (np.pad's "reflect": the edge row is not repeated)
            reflect = h - 2 - np.arange(tile - h)
            for name in values:
                values[name][:, h:, x0:x1] = values[name][:, reflect, x0:x1]
                finite[name][h:, x0:x1] = finite[name][reflect, x0:x1]
        if x1 < w:
            return x1
        if self.width > w:  # reflect the last columns, in every row (the reflected bottom rows included)
            reflect = w - 2 - np.arange(self.width - w)
            for name in values:
                values[name][:, :, w:] = values[name][:, :, reflect]
                finite[name][:, w:] = finite[name][:, reflect]
        self.previous = r
        return self.width


def produce(scene: Scene, plan: TilePlan, *, batch_size: int, skip_nodata: bool, valid_rule: str, pin: bool):
    """Yield :class:`Item` s in tile order (row-major).

    Masks, nodata fill and the skip test run over whole pieces of tile rows at once (numpy, each pixel once); each
    tile is copied from its row band into its batch's slot as soon as its columns are final, so no view into a band
    outlives the band.
    """
    fills = {name: _fill_values(name, c, scene.band_names(name))[:, None, None]
             for name, c in scene.band_counts.items()}
    bands = RowBands(scene, plan, fills)
    pieces = [(r, x0, x1) for r in range(len(plan.ys)) for x0, x1 in bands.pieces(r)]
    # GDAL decodes the pieces of the next tile rows in a thread of its own while this one converts them and cuts and
    # copies the tiles: on two cores decoding (the limit) never waits for the rest.
    decoded = Prefetcher(((r, x0, x1, bands.fetch(r, x0, x1)) for r, x0, x1 in pieces), depth=bands.read_ahead(),
                         niceness=DECODE_NICENESS, name="geomind-decode")
    try:
        builder = _BatchBuilder(scene, plan, batch_size, _allocator(pin), fills=fills,
                                raw={name: fb for name, (fb, _) in bands.raw.items()})
        yield from _batches(plan, bands, decoded, builder, skip_nodata=skip_nodata,
                            combine=np.logical_and if valid_rule == "all" else np.logical_or)
    finally:
        decoded.stop()


class _BatchBuilder:
    """One batch being filled: tiles are copied into [B, C, T, T] arrays (pinned when asked) from a
    :class:`BufferPool`, so the arrays of earlier batches come back once their batch is done with. Tiles of the
    ``raw`` modalities come as raw integers and are converted to physical values (nodata filled) as they are
    copied."""

    POOL = 8  # batches in flight: two prefetched, one being filled, one in the model, a few waiting for the writer

    def __init__(self, scene: Scene, plan: TilePlan, batch_size: int, alloc, *, fills: dict[str, np.ndarray],
                 raw: dict[str, FileBands]):
        self.scene, self.plan, self.size, self.fills, self.raw = scene, plan, batch_size, fills, raw
        self.arrays: dict[str, np.ndarray] = {}
        self.tiles: list[tuple] = []  # (tile row, tile col, per-modality valid [T, T], valid [T, T])
        self.pool = BufferPool(self.POOL * len(scene.band_counts), alloc)

    def __len__(self) -> int:
        return len(self.tiles)

    def add(self, r: int, c: int, values: dict[str, np.ndarray], per_mod: dict, valid: np.ndarray):
        if not self.tiles:
            t = self.plan.tile_size
            self.arrays = {name: self.pool.get((self.size, n, t, t), np.float32)
                           for name, n in self.scene.band_counts.items()}
        for name, array in values.items():
            slot = self.arrays[name][len(self.tiles)]
            if name not in self.raw:
                slot[...] = array
                continue
            fb = self.raw[name]
            missing = None if per_mod[name].all() else nodata_of(array, fb)
            integers_to_physical(array, fb, slot, self.fills[name], missing)
        self.tiles.append((r, c, per_mod, valid))

    def pop(self) -> TileBatch:
        n, tiles = len(self.tiles), self.tiles
        rows, cols = np.asarray([t[0] for t in tiles]), np.asarray([t[1] for t in tiles])
        batch = TileBatch(
            arrays={name: a[:n] for name, a in self.arrays.items()},  # a leading slice: still contiguous
            valid=np.stack([t[3] for t in tiles]), rows=self.plan.ys[rows], cols=self.plan.xs[cols],
            tile_rows=rows, tile_cols=cols,
            valid_by_modality={name: np.stack([t[2][name] for t in tiles]) for name in self.scene.band_counts},
        )
        self.arrays, self.tiles = {}, []
        return batch


def _batches(plan: TilePlan, bands: RowBands, decoded, pending: "_BatchBuilder", *, skip_nodata: bool, combine):
    """Items from the decoded pieces ``(r, x0, x1, fetched)``: each tile is cut once its columns are final."""
    tile, batch_size, last_col = plan.tile_size, pending.size, len(plan.xs) - 1
    skipped, row = 0, -1
    for r, x0, x1, fetched in decoded:
        if r != row:  # a new tile row: its band, masks, and the next tile to cut
            values, finite, inside = bands.start(r)
            per_mod = {name: np.empty_like(inside) for name in finite}
            valid = np.empty_like(inside)
            row, final, c = r, 0, 0
        # Masks of the columns this piece made final (pieces are contiguous: every piece makes some final).
        ready = bands.fill(r, x0, x1, fetched)
        cols = slice(final, ready)
        for name, m in finite.items():
            np.logical_and(m[:, cols], inside[:, cols], out=per_mod[name][:, cols])
        masks = [m[:, cols] for m in per_mod.values()]
        np.copyto(valid[:, cols], masks[0])
        for m in masks[1:]:
            combine(valid[:, cols], m, out=valid[:, cols])
        final = ready
        while c <= last_col and plan.xs[c] + tile <= final:
            sl = slice(int(plan.xs[c]), int(plan.xs[c]) + tile)
            if skip_nodata and not valid[:, sl].any():
                skipped += 1
            else:
                pending.add(r, c, {name: a[:, :, sl] for name, a in values.items()},
                            {name: m[:, sl] for name, m in per_mod.items()}, valid[:, sl])
                if len(pending) == batch_size:
                    # A batch ending with the row's last tile completes that row.
                    yield Item(pending.pop(), r + 1 if c == last_col else r, skipped)
                    skipped = 0
            c += 1
        if c > last_col and not len(pending) and final == bands.width:
            yield Item(None, r + 1, skipped)
            skipped = 0
    if len(pending):
        yield Item(pending.pop(), len(plan.ys), skipped)


# Niceness added to background threads: decoding is the critical path (everything else waits for it), cutting and
# writing have slack. The model's thread keeps the caller's priority. Far down, because a background thread that
# takes a core from one of torch's workers stalls the whole parallel region: at 5 and 10, embed (tiny, CPU, 2,048 px
# scene, 2 cores) ran its model 10 % slower than alone; at 15 and 19, 1 % (medians of 5 runs, 2026-12-03).
DECODE_NICENESS, BACKGROUND_NICENESS = 15, 19


def yield_to_model(niceness: int = BACKGROUND_NICENESS):
    """Lower the calling thread's CPU priority by ``niceness`` (Linux: niceness is per thread) so that the model's
    threads win every core they ask for and background work (decoding, cutting, writing) runs in the gaps; when the
    model waits for a batch, the background threads have the CPU to themselves. Where threads cannot be re-niced,
    nothing changes."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except (AttributeError, OSError):
        pass


class Prefetcher:
    """Run an iterator (:func:`produce`'s batches, or its decoded pieces) in a daemon thread, ``depth`` items ahead;
    exceptions re-raise in the consumer; :meth:`stop` ends the thread early."""

    def __init__(self, items, depth: int, *, niceness: int = BACKGROUND_NICENESS, name: str = "geomind-cut"):
        self._items, self._niceness = items, niceness
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
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
        yield_to_model(self._niceness)
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
