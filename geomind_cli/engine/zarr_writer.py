"""Streaming Zarr output: rows in, a georeferenced Zarr store out, atomically.

The same contract as :class:`~geomind_cli.engine.writer.RasterWriter` (rows in order, ``finish``, ``commit``,
``abort``), for outputs whose path ends in ``.zarr``: one variable named after the output, dims ``(band, y, x)``,
pixel-centre coordinates, CRS and transform in a CF ``spatial_ref`` variable (rioxarray's layout), band names in the
``long_name`` attribute. Chunks hold every band of a small square of pixels, so one pixel's feature vector (an
embedding, say) is one read. Read it with ``xr.open_zarr(path, decode_coords="all")``.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from geomind_cli.engine.grid import Grid
from geomind_cli.engine.resume import owner_token
from geomind_cli.engine.writer import RowBlocks
from geomind_cli.errors import OutputError

CHUNK_BYTES = 4 * 2**20  # per chunk (all bands), before compression


def chunk_side(count: int, itemsize: int) -> int:
    """Side of the square pixel chunk: about CHUNK_BYTES per chunk, a multiple of 16 between 16 and 512."""
    side = int((CHUNK_BYTES / (count * itemsize)) ** 0.5) // 16 * 16
    return max(16, min(512, side))


class ZarrWriter:
    """Write [count, rows, width] arrays, in row order, into a Zarr store at ``path`` once :meth:`commit` is called."""

    def __init__(self, path: Path, *, grid: Grid, count: int, dtype: str, nodata, descriptions: list[str],
                 tags: dict | None = None, scale: float = 1.0, offset: float = 0.0, name: str = "data"):
        import dask.array as da
        import rioxarray  # noqa: F401  (registers .rio)
        import xarray as xr

        self.path = Path(path)
        token = owner_token()
        self.partial = self.path.with_name(f".{self.path.name}.{token}.partial.zarr")
        self.grid, self.count, self.dtype, self.name = grid, count, np.dtype(dtype), name
        self.side = chunk_side(count, self.dtype.itemsize)
        transform = grid.transform
        xs = transform.c + transform.a * (np.arange(grid.width) + 0.5)
        ys = transform.f + transform.e * (np.arange(grid.height) + 0.5)
        fill = np.nan if nodata is None else nodata
        template = da.full((count, grid.height, grid.width), fill, dtype=self.dtype,
                           chunks=(count, self.side, self.side))
        ds = xr.Dataset({name: (("band", "y", "x"), template)},
                        coords={"band": np.arange(1, count + 1), "y": ys, "x": xs})
        ds = ds.rio.write_crs(grid.crs).rio.write_transform(transform)
        attrs = {"long_name": list(descriptions)}
        for key, value in (tags or {}).items():
            attrs[key] = value if isinstance(value, str) else json.dumps(value)
        if scale != 1.0 or offset != 0.0:
            attrs.update(scale_factor=scale, add_offset=offset)
        ds[name].attrs.update(attrs)
        # Keep rioxarray's encoding (grid_mapping -> spatial_ref), which an explicit encoding would replace.
        encoding = {name: {**ds[name].encoding, "chunks": (count, self.side, self.side), "fill_value": fill}}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zarr v3 notes on consolidated metadata
                ds.to_zarr(self.partial, mode="w", compute=False, encoding=encoding, consolidated=True)
        except OSError as error:
            raise OutputError(f"Cannot create {self.path} ({error}); check the output folder.") from error
        # One chunk row at a time, so no chunk is ever written twice.
        self.rows = RowBlocks(count=count, height=self.side, width=grid.width, total=grid.height, dtype=self.dtype,
                              store=self._store)

    def write_rows(self, row0: int, data: np.ndarray):
        """Append rows ``row0 .. row0 + h`` (data [count, h, width]); rows must come in order, without gaps."""
        self.rows.add(row0, data)

    def _store(self, row0: int, block: np.ndarray):
        import xarray as xr

        region = {"band": slice(None), "y": slice(row0, row0 + block.shape[1]), "x": slice(None)}
        xr.Dataset({self.name: (("band", "y", "x"), block)}).to_zarr(self.partial, region=region, consolidated=False)

    def finish(self, progress=None):
        """Write the last rows (every chunk is final as soon as it is written: nothing else to do)."""
        self.rows.close()

    def commit(self) -> Path:
        """Move the finished store onto ``path``; an existing store there is removed only after the move."""
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.{owner_token()}.old")
            os.replace(self.path, old)
        os.replace(self.partial, self.path)
        if old is not None and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        elif old is not None:
            old.unlink()
        return self.path

    def abort(self):
        self.rows = None
        shutil.rmtree(self.partial, ignore_errors=True)
