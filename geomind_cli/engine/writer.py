"""Streaming raster output: rows in, Cloud-Optimized GeoTIFF out, atomically.

Rows arrive top to bottom. They are buffered up to one row of blocks and written to a hidden, tiled,
band-interleaved GeoTIFF next to the target, uncompressed: each block is written once and read back twice
(overviews, COG copy), and decoding even ZSTD level 1 made up a fifth of finishing (750 x 750 x 192 float32:
6.8 s -> 5.8 s; overviews 1.3 s -> 0.35 s). The price is temporary disk: the raw bytes plus a third for the
overviews, next to the target, until the COG is renamed onto it. ``finish`` builds its overviews band by band, then
copies it with GDAL's COG driver (which takes those overviews as they are) to a second hidden file and renames that
onto the target: readers never see a partial file, and ``abort`` (error, Ctrl-C) removes both hidden files.

Finishing costs time linear in the bytes whatever the band count because the layout is chosen from the output's
shape (:class:`CogLayout`). GDAL 3.10's COG driver writes only pixel-interleaved tiles, so one COG tile holds every
band (a 512 px tile of a 768-band float32 embedding is 805 MB): the tile side shrinks with the band count to keep a
tile near ``TILE_BYTES``. The hidden file uses the same tile side band by band, so each COG tile reads exactly one
source tile per band, and the block cache holds a row of source tiles. Overviews built by the COG driver itself go
through a pixel-interleaved temporary file whose chunks outgrow any fixed cache as bands are added (the copy grew
with the square of the band count); built on the band-interleaved file they read each block once.

float16 outputs are stored as GeoTIFF Float32 with ``NBITS=16`` (IEEE half floats on disk, half the size): GDAL
before 3.11 has no Float16 type, and readers get float32 values that are exactly the float16 ones.
Paths ending in ``.zarr`` get a :class:`~geomind_cli.engine.zarr_writer.ZarrWriter` instead (:func:`open_writer`).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.windows import Window

from geomind_cli.engine.grid import Grid
from geomind_cli.engine.resume import owner_token
from geomind_cli.errors import OutputError

COG_BLOCK = 512  # the largest COG tile side (GDAL's default)
MIN_COG_BLOCK = 128  # the smallest tile side GDAL's COG driver accepts for a raster larger than one tile
TILE_BYTES = 64 * 2**20  # target size of one uncompressed COG tile (every band of it)
COMPRESS_BUFFER_BYTES = 256 * 2**20  # tiles GDAL may compress at once: bounds NUM_THREADS for huge tiles
MIN_CACHE_BYTES, MAX_CACHE_BYTES = 64 * 2**20, 1024 * 2**20  # GDAL block cache while finishing
# GDAL block cache while rows stream in (rasterio passes integers to GDAL as bytes, not MB): written blocks must not
# pile up. The runner sets it.
STREAM_CACHE_BYTES = 64 * 2**20


def cog_compression(dtype) -> dict[str, object]:
    """The COG's compression options for outputs of ``dtype``: DEFLATE (every GeoTIFF reader has it) with the
    predictor GDAL picks for the type (horizontal differencing, floating point for floats).

    Floats get level 1: their low mantissa bits are noise that no level compresses (a 256 x 256 x 192 float32
    embedding: 40.9 MB at level 1, 39.6 MB at 6), and level 6 took 1.7x as long to write. Integer outputs (class
    maps, tokens) are small and compress well: level 6."""
    return {"COMPRESS": "DEFLATE", "PREDICTOR": "YES", "LEVEL": 1 if np.dtype(dtype).kind == "f" else 6}


@dataclass(frozen=True)
class CogLayout:
    """Block sizes, GDAL block cache and compression threads of one output, from its shape.

    ``block``: the COG tile side and the hidden file's tile side (a power of two: the smallest covering the raster,
    at most 512, halved while one tile of every band exceeds ``TILE_BYTES``, never below 128 unless the raster is
    smaller). ``cache_bytes``: GDAL's block cache while finishing. ``threads``: compression threads, so that tiles
    in flight stay under ``COMPRESS_BUFFER_BYTES``.
    """

    block: int
    cache_bytes: int
    threads: int

    @classmethod
    def for_output(cls, *, count: int, width: int, height: int, itemsize: int, cpus: int | None = None) -> "CogLayout":
        side = max(width, height)
        # A small raster (an embedding of a small scene) gets a block no larger than itself: a 512 px block around
        # a 28 x 28 grid costs more to build than the whole run.
        block = min(COG_BLOCK, max(16, 1 << (side - 1).bit_length()))
        while block > MIN_COG_BLOCK and count * block * block * itemsize > TILE_BYTES:
            block //= 2
        tile_bytes = count * block * block * itemsize
        # Each COG tile reads exactly one staging tile per band and no other tile reads those: two tiles of every
        # band are all the cache the copy needs (measured: a cache of a whole tile row is no faster).
        cache = int(min(MAX_CACHE_BYTES, max(MIN_CACHE_BYTES, 2 * tile_bytes)))
        cpus = cpus or os.cpu_count() or 1
        threads = max(1, min(cpus, COMPRESS_BUFFER_BYTES // max(1, 2 * tile_bytes)))
        return cls(block, cache, threads)

    def memory_bytes(self, *, count: int, width: int, itemsize: int) -> int:
        """Upper estimate of what the writer holds at once: while streaming, one row of blocks (all bands, the
        full width: the only term that grows with the raster) and the streaming cache; while finishing, the block
        cache and the tiles being compressed (raw and compressed)."""
        streaming = count * self.block * width * itemsize + STREAM_CACHE_BYTES
        finishing = self.cache_bytes + 2 * (self.threads + 1) * count * self.block ** 2 * itemsize
        return max(streaming, finishing)


def check_writable(path: Path, *, overwrite: bool):
    """Raise OutputError before any work if ``path`` cannot be (re)written."""
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it or choose another output path.")
    if not path.parent.is_dir():
        raise OutputError(f"Output folder {path.parent} does not exist; create it first.")
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"Output folder {path.parent} is not writable; choose another output path.")


class RowBlocks:
    """Rows that arrive in order, without gaps, gathered into blocks of ``height`` full-width rows.

    Each full block (and the last, shorter one) goes to ``store(row0, block)`` once: the block height is the
    output's tile or chunk height, so no compressed block is ever written twice.
    """

    def __init__(self, *, count: int, height: int, width: int, total: int, dtype, store):
        self.buffer = np.empty((count, height, width), dtype)
        self.height, self.total, self.store = height, total, store
        self.row0 = 0  # grid row of buffer[:, 0]
        self.next_row = 0

    def add(self, row0: int, data: np.ndarray):
        """Append rows ``row0 .. row0 + h`` (data [count, h, width])."""
        if row0 != self.next_row:
            raise RuntimeError(f"rows must be written in order: expected row {self.next_row}, got {row0}")
        done = 0
        while done < data.shape[1]:
            at = self.next_row - self.row0
            n = min(self.height - at, data.shape[1] - done)
            self.buffer[:, at:at + n] = data[:, done:done + n]
            done += n
            self.next_row += n
            if self.next_row - self.row0 == self.height or self.next_row == self.total:
                self.flush()

    def flush(self):
        n = self.next_row - self.row0
        if n:
            self.store(self.row0, self.buffer[:, :n])
        self.row0 = self.next_row

    def close(self):
        """Flush the last rows; every row must have arrived."""
        if self.next_row != self.total:
            raise RuntimeError(f"only {self.next_row} of {self.total} rows were written")
        self.flush()
        self.buffer = None


class RasterWriter:
    """Write [count, rows, width] arrays, in row order, into ``path`` as a COG once :meth:`finish` is called."""

    def __init__(self, path: Path, *, grid: Grid, count: int, dtype: str, nodata, descriptions: list[str],
                 overview_resampling: str, colormap: dict | None = None, tags: dict | None = None,
                 band_tags: dict | None = None, scale: float = 1.0, offset: float = 0.0):
        self.path = Path(path)
        token = owner_token()  # a later run removes these if this process dies (engine.resume.leftovers)
        self.partial = self.path.with_name(f".{self.path.name}.{token}.partial.tif")
        self.staged = self.path.with_name(f".{self.path.name}.{token}.cog.tif")
        self.grid, self.count, self.dtype = grid, count, np.dtype(dtype)
        self.overview_resampling = overview_resampling
        self.nbits = {"NBITS": 16} if self.dtype == np.float16 else {}
        stored = "float32" if self.nbits else self.dtype.name
        self.layout = CogLayout.for_output(count=count, width=grid.width, height=grid.height,
                                           itemsize=np.dtype(stored).itemsize)
        block = self.layout.block
        # Band-interleaved: a COG tile then reads one hidden-file tile per band, and no hidden-file tile holds more
        # than one band (pixel interleaving makes every band read decode every band).
        profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=count, dtype=stored,
                       crs=grid.crs, transform=grid.transform, nodata=nodata, tiled=True, blockxsize=block,
                       blockysize=block, interleave="band", bigtiff="IF_SAFER",
                       **self.nbits)
        try:
            self.dataset = rasterio.open(self.partial, "w", **profile)
        except rasterio.errors.RasterioIOError as error:
            raise OutputError(f"Cannot create {self.path} ({str(error).splitlines()[0]}); check the output folder.")
        self.dataset.descriptions = tuple(descriptions)
        if colormap:
            self.dataset.write_colormap(1, {int(k): tuple(int(c) for c in v) for k, v in colormap.items()})
        if tags:
            self.dataset.update_tags(**{k: v if isinstance(v, str) else json.dumps(v) for k, v in tags.items()})
        for band, btags in (band_tags or {}).items():
            self.dataset.update_tags(band, **btags)
        if scale != 1.0 or offset != 0.0:
            self.dataset.scales = (scale,) * count
            self.dataset.offsets = (offset,) * count
        self.rows = RowBlocks(count=count, height=block, width=grid.width, total=grid.height, dtype=stored,
                              store=self._store)

    def write_rows(self, row0: int, data: np.ndarray):
        """Append rows ``row0 .. row0 + h`` (data [count, h, width]); rows must come in order, without gaps."""
        self.rows.add(row0, data)

    def _store(self, row0: int, block: np.ndarray):
        self.dataset.write(block, window=Window(0, row0, self.grid.width, block.shape[1]))

    def finish(self, progress=None):
        """Close and convert to a hidden COG with overviews; :meth:`commit` then moves it onto ``path``.

        ``progress(done_bytes, total_bytes)``, if given, is called about twice a second while GDAL works (estimated
        from the files GDAL writes; rasterio's copy reports no progress of its own).
        """
        self.rows.close()
        self.dataset.close()
        watcher = _CopyWatcher(self.partial, self.staged, progress) if progress is not None else None
        try:
            self._build_overviews()
            with rasterio.Env(GDAL_CACHEMAX=self.layout.cache_bytes):
                rasterio.shutil.copy(self.partial, self.staged, driver="COG", **cog_compression(self.dtype),
                                     BLOCKSIZE=self.layout.block, OVERVIEWS="FORCE_USE_EXISTING",
                                     OVERVIEW_RESAMPLING=self.overview_resampling, BIGTIFF="IF_SAFER",
                                     NUM_THREADS=self.layout.threads, **self.nbits)
        finally:
            if watcher is not None:
                watcher.stop()
        self.partial.unlink(missing_ok=True)

    def overview_factors(self) -> list[int]:
        """The levels GDAL's COG driver would build: halve until the raster fits in one block."""
        factors, side = [], max(self.grid.width, self.grid.height)
        while side > self.layout.block:
            factors.append(2 ** (len(factors) + 1))
            side //= 2
        return factors

    def _build_overviews(self):
        factors = self.overview_factors()
        if not factors:
            return
        options = dict(GDAL_CACHEMAX=self.layout.cache_bytes, GDAL_TIFF_OVR_BLOCKSIZE=self.layout.block,
                       INTERLEAVE_OVERVIEW="BAND")
        if self.nbits:
            options["NBITS_OVERVIEW"] = 16
        with rasterio.Env(**options), rasterio.open(self.partial, "r+") as dataset:
            dataset.build_overviews(factors, Resampling[self.overview_resampling.lower()])

    def commit(self) -> Path:
        """Atomically replace ``path`` with the finished COG."""
        os.replace(self.staged, self.path)
        return self.path

    def abort(self):
        """Drop everything written so far; the target path is left as it was."""
        try:
            if not self.dataset.closed:
                self.dataset.close()
        finally:
            self.rows = None
            self.partial.unlink(missing_ok=True)
            self.staged.unlink(missing_ok=True)


class _CopyWatcher:
    """Polls the size of the files finishing writes (overviews appended to the hidden file, then the COG) and
    reports it against an estimate: a third of the hidden file for the overviews, then the COG as large as both."""

    def __init__(self, source: Path, target: Path, progress):
        self.source, self.target = source, target
        self.start = source.stat().st_size
        self.total = max(1, int(self.start * 5 / 3))
        self.progress = progress
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="geomind-finish-progress", daemon=True)
        self.thread.start()

    def _done(self) -> int:
        done = 0
        for path, base in ((self.source, self.start), (self.target, 0)):
            try:
                done += max(0, path.stat().st_size - base)
            except FileNotFoundError:
                pass
        return done

    def _run(self):
        while not self.stopping.wait(0.5):
            self.progress(min(self._done(), self.total - 1), self.total)

    def stop(self):
        self.stopping.set()
        self.thread.join()
        self.progress(self.total, self.total)


def open_writer(path: Path, *, grid: Grid, count: int, dtype: str, nodata, descriptions: list[str],
                overview_resampling: str, colormap: dict | None = None, tags: dict | None = None,
                scale: float = 1.0, offset: float = 0.0, name: str = "data"):
    """A streaming writer for ``path``: Zarr for ``*.zarr``, else a COG (see :class:`RasterWriter`)."""
    if Path(path).suffix.lower() == ".zarr":
        from geomind_cli.engine.zarr_writer import ZarrWriter

        if colormap:
            tags = {**(tags or {}), "colormap": {str(k): list(v) for k, v in colormap.items()}}
        return ZarrWriter(path, grid=grid, count=count, dtype=dtype, nodata=nodata, descriptions=descriptions,
                          tags=tags, scale=scale, offset=offset, name=name)
    return RasterWriter(path, grid=grid, count=count, dtype=dtype, nodata=nodata, descriptions=descriptions,
                        overview_resampling=overview_resampling, colormap=colormap, tags=tags, scale=scale,
                        offset=offset)
