"""Streaming raster output: rows in, Cloud-Optimized GeoTIFF out, atomically.

Rows arrive top to bottom. They are buffered up to one row of 256 x 256 blocks and written to a hidden, tiled,
compressed GeoTIFF next to the target (so each compressed block is written once). ``finish`` copies it with GDAL's
COG driver (which builds the overviews) to a second hidden file and renames that onto the target: readers never see
a partial file, and ``abort`` (error, Ctrl-C) removes both hidden files.

float16 outputs are stored as GeoTIFF Float32 with ``NBITS=16`` (IEEE half floats on disk, half the size): GDAL
before 3.11 has no Float16 type, and readers get float32 values that are exactly the float16 ones.
Paths ending in ``.zarr`` get a :class:`~geomind_cli.engine.zarr_writer.ZarrWriter` instead (:func:`open_writer`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from geomind_cli.engine.grid import Grid
from geomind_cli.engine.resume import owner_token
from geomind_cli.errors import OutputError

BLOCK = 256
COG_BLOCK = 512
COG_CACHE_BYTES = 128 * 2**20  # GDAL block cache while building the COG and its overviews


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
        block = min(BLOCK, 16 * -(-max(grid.width, grid.height) // 16))
        # COG blocks (a power of two) no larger than needed: a 512 px block around a small many-band grid (an
        # embedding of a small scene) costs more to build than the whole run.
        self.cog_block = min(COG_BLOCK, max(16, 1 << (max(grid.width, grid.height) - 1).bit_length()))
        stored = "float32" if self.nbits else self.dtype.name
        profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=count, dtype=stored,
                       crs=grid.crs, transform=grid.transform, nodata=nodata, tiled=True, blockxsize=block,
                       blockysize=block, compress="DEFLATE", zlevel=1, bigtiff="IF_SAFER", **self.nbits)
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

    def finish(self):
        """Close and convert to a hidden COG with overviews; :meth:`commit` then moves it onto ``path``."""
        self.rows.close()
        self.dataset.close()
        with rasterio.Env(GDAL_CACHEMAX=COG_CACHE_BYTES):
            rasterio.shutil.copy(self.partial, self.staged, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES", LEVEL=6,
                                 BLOCKSIZE=self.cog_block, OVERVIEW_RESAMPLING=self.overview_resampling, BIGTIFF="IF_SAFER",
                                 NUM_THREADS="ALL_CPUS", **self.nbits)
        self.partial.unlink(missing_ok=True)

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
