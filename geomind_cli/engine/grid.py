"""The target grid and the alignment of every input file onto it.

All inputs are aligned on the fly onto one :class:`Grid` (default: the finest-resolution optical input). A file
already on the grid's pixel lattice (same CRS and resolution, whole-pixel offset, nodata as its only mask) is read
directly, with GDAL decoding its blocks in several threads. An integer file coarser by whole factors on that lattice
(Sentinel-2's 20 m and 60 m bands under its 10 m grid) is decoded directly too and resampled in numpy with GDAL's
values (:mod:`.resample`). Any other file goes through a GDAL warped VRT. Both resample bilinearly for continuous
data, nearest for categorical layers. Values are float32 with NaN for nodata and for pixels outside an input;
:func:`~geomind_cli.engine.sources.to_physical` turns file values into physical ones.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Interleaving, MaskFlags, Resampling
from rasterio.errors import CRSError
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window

from geomind_cli.engine.buffers import BufferPool
from geomind_cli.engine.remote import gdal_path, open_env, open_raster
from geomind_cli.engine.resample import Lattice, upsample, upsample_into
from geomind_cli.engine.sources import FileBands, ResolvedSource, to_physical
from geomind_cli.errors import InputError

OPTICAL = ("S2L2A", "S2L1C", "RGB")
# Decoded strips of one file kept for reuse: those alive at once are the decoder's queue (the pieces of two to four
# tile rows, engine.batches.RowBands.read_ahead), the one being decoded and the one being converted; only that many
# are ever allocated.
STRIPS_IN_FLIGHT = 64


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: ``height`` rows x ``width`` columns of ``transform``-placed pixels in ``crs``."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in grid CRS units."""
        left, top = self.transform.c, self.transform.f
        return left, top + self.transform.e * self.height, left + self.transform.a * self.width, top

    def scaled(self, factor: int) -> "Grid":
        """The grid of ``factor`` x ``factor`` pixel cells (token grids use 16), covering the scene and its padding."""
        return Grid(self.crs, self.transform @ Affine.scale(factor),
                    math.ceil(self.width / factor), math.ceil(self.height / factor))

    def area_km2(self) -> float:
        """Area of the grid's bounding box on an equal-area projection (EPSG:6933), in km2."""
        left, bottom, right, top = transform_bounds(self.crs, "EPSG:6933", *self.bounds, densify_pts=21)
        return abs(right - left) * abs(top - bottom) / 1e6


def _crs(value) -> CRS:
    try:
        return CRS.from_user_input(value)
    except CRSError as error:
        raise InputError(f"Unknown CRS {value!r} ({error}); give an EPSG code such as EPSG:32633.")


def choose_grid(sources: list[ResolvedSource], *, crs=None, resolution: float | None = None, bounds=None) -> Grid:
    """The target grid: the finest optical input (or finest input) unless ``crs``/``resolution``/``bounds`` say otherwise."""
    candidates = []
    for source in sources:
        for fb in source.files:
            with open_georeferenced(fb) as dataset:
                candidates.append((source.modality not in OPTICAL, dataset.crs, dataset.transform, dataset.width,
                                   dataset.height, dataset.res))
    first_crs = sorted(candidates, key=lambda c: c[0])[0][1]
    same = [c for c in candidates if c[1] == first_crs] or candidates
    _, ref_crs, ref_transform, ref_w, ref_h, _ = min(same, key=lambda c: (c[0], c[5][0] * c[5][1]))
    ref_bounds = rasterio.transform.array_bounds(ref_h, ref_w, ref_transform)
    ref_bounds = (ref_bounds[0], ref_bounds[1], ref_bounds[2], ref_bounds[3])
    target_crs = _crs(crs) if crs is not None else ref_crs
    if bounds is None and target_crs == ref_crs and resolution is None:
        return Grid(target_crs, ref_transform, ref_w, ref_h)
    if bounds is None:
        if target_crs != ref_crs:
            transform, w, h = calculate_default_transform(ref_crs, target_crs, ref_w, ref_h, *ref_bounds,
                                                          resolution=resolution)
            return Grid(target_crs, transform, w, h)
        bounds = ref_bounds
    left, bottom, right, top = bounds
    if not (right > left and top > bottom):
        raise InputError(f"Bounds {tuple(bounds)} are empty; give them as left, bottom, right, top.")
    if resolution is None:
        if target_crs == ref_crs:
            resolution = abs(ref_transform.a)
        else:
            resolution = calculate_default_transform(ref_crs, target_crs, ref_w, ref_h, *ref_bounds)[0].a
    width = max(1, math.ceil((right - left) / resolution - 1e-6))
    height = max(1, math.ceil((top - bottom) / resolution - 1e-6))
    return Grid(target_crs, Affine(resolution, 0, left, 0, -resolution, top), width, height)


def open_georeferenced(fb: FileBands, crs=None):
    """The file of ``fb`` as a dataset with a CRS and transform.

    Files georeferenced by ground control points (Sentinel-1 GRD measurements) are warped with their GCPs onto
    GDAL's suggested grid in ``crs`` (default: the GCPs' CRS), nearest neighbour at about their own resolution, so
    values stay raw: rasterio's WarpedVRT ignores GCPs when given a target transform, so the alignment onto the
    scene grid is a second, ordinary warp of this one.
    """
    dataset = open_raster(fb.path)
    if not fb.gcps:
        return dataset
    return WarpedVRT(dataset, crs=crs or dataset.gcps[1], src_nodata=fb.nodata, nodata=fb.nodata,
                     resampling=Resampling.nearest)


def _on_lattice(dataset, grid: Grid) -> bool:
    """True when the file's pixels coincide with grid pixels (same CRS and resolution, whole-pixel offset)."""
    if dataset.crs != grid.crs:
        return False
    a, b = dataset.transform, grid.transform
    if abs(a.b) > 0 or abs(a.d) > 0 or not np.allclose([a.a, a.e], [b.a, b.e], rtol=1e-9, atol=0):
        return False
    col, row = ~b @ (a.c, a.f)
    return abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6


def _kernel_scale(dataset, grid: Grid) -> tuple[float, float]:
    """Grid pixels per source pixel along x and y (GDAL's XSCALE/YSCALE warp options)."""
    if dataset.crs == grid.crs:
        src_x, src_y = dataset.res
    else:
        transform, _, _ = calculate_default_transform(dataset.crs, grid.crs, dataset.width, dataset.height,
                                                      *dataset.bounds)
        src_x, src_y = abs(transform.a), abs(transform.e)
    return src_x / grid.res[0], src_y / grid.res[1]


def _overlaps(dataset, grid: Grid) -> bool:
    left, bottom, right, top = transform_bounds(dataset.crs, grid.crs, *dataset.bounds, densify_pts=21)
    g_left, g_bottom, g_right, g_top = grid.bounds
    return left < g_right and right > g_left and bottom < g_top and top > g_bottom


def _nodata_only_masks(dataset, bands) -> bool:
    """True when the selected bands have no mask but their nodata value (no alpha, no internal mask band)."""
    flags = dataset.mask_flag_enums
    return all(set(flags[b - 1]) <= {MaskFlags.all_valid, MaskFlags.nodata} for b in bands)


def decode_threads() -> int:
    """Threads GDAL may use to decode the blocks of one read (GEOMIND_DECODE_THREADS, else the usable cores)."""
    value = os.environ.get("GEOMIND_DECODE_THREADS")
    if value:
        return max(1, int(value))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def nodata_of(raw: np.ndarray, fb: FileBands) -> np.ndarray | None:
    """bool [c, h, w]: where raw integers of ``fb``'s bands equal its nodata value (None: the file has none)."""
    if fb.nodata is None or np.isnan(fb.nodata):
        return None
    return raw == fb.nodata


def integers_to_physical(raw: np.ndarray, fb: FileBands, out: np.ndarray, fill: np.ndarray,
                         missing: np.ndarray | None):
    """Raw integers [c, h, w] of ``fb``'s bands written into ``out`` (float32, a view is fine) as physical values:
    float32(raw) * scale + offset, rounded in the same two steps as :meth:`FileBands.to_physical`; then ``fill``
    [c, 1, 1] where ``missing`` (from :func:`nodata_of`; None: nothing to fill)."""
    # A plain cast, then the scale in place, as FileBands.to_physical does: numpy's mixed-type multiply buffers its
    # casts (a third slower where there is no scale, as in most files), and it multiplied 32-bit integers in
    # float64, which rounded differently from the general road.
    np.copyto(out, raw)
    _scale_in_place(out, fb)
    if missing is not None:
        np.copyto(out, fill, where=missing)


def _scale_in_place(values: np.ndarray, fb: FileBands):
    """float32 file values [c, h, w] turned into physical ones in place: times the scale, plus the offset, each in
    float32 as :meth:`FileBands.to_physical` does (no dB conversion)."""
    if any(s != 1.0 for s in fb.scales):
        np.multiply(values, np.asarray(fb.scales, np.float32)[:, None, None], out=values)
    offsets = np.asarray(fb.offsets, np.float32)[:, None, None]
    if offsets.any():
        np.add(values, offsets, out=values)


@dataclass(frozen=True)
class FetchedWindow:
    """A window of one layer as decoded: raw integers of ``fb``'s bands, or (``fb`` None) float32 physical values
    with NaN for nodata, as :meth:`RasterLayer.read` gives them. With ``resample``, ``data`` is the window of a
    coarser file and ``resample(data, out, fill)`` does what :meth:`fill_into` does with the grid's values: the
    work runs where the values are used, not in the thread that decodes."""

    data: np.ndarray
    fb: FileBands | None = None
    resample: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None

    def fill_into(self, out: np.ndarray, fill: np.ndarray) -> np.ndarray:
        """Physical values written into ``out`` [c, h, w] float32 (a view is fine), every nodata or non-finite value
        replaced by ``fill`` [c, 1, 1] (not only NaN: one inf pixel would spread through attention over the whole
        tile); returns bool [h, w], True where every band has data. Same values as :func:`to_physical`."""
        if self.resample is not None:
            return self.resample(self.data, out, fill)
        if self.fb is None:
            finite = np.isfinite(self.data)
            np.copyto(out, self.data)
            valid = finite.all(axis=0)
            if not valid.all():
                np.copyto(out, fill, where=~finite)
            return valid
        valid, missing = self._valid()
        integers_to_physical(self.data, self.fb, out, fill, missing)
        return valid

    def copy_raw_into(self, out: np.ndarray) -> np.ndarray:
        """The raw integers copied into ``out`` (same dtype) unconverted; returns the valid mask as :meth:`fill_into`
        does. The conversion then happens tile by tile (:func:`integers_to_physical`)."""
        np.copyto(out, self.data)
        return self._valid()[0]

    def _valid(self) -> tuple[np.ndarray, np.ndarray | None]:
        missing = nodata_of(self.data, self.fb)
        if missing is None:
            return np.ones(self.data.shape[1:], bool), None
        valid = ~missing.any(axis=0)
        return valid, (None if valid.all() else missing)


class RasterLayer:
    """Some bands of one file on the grid: read windows as float32 with NaN for nodata.

    A file on the grid's lattice is read directly (``direct``: no warper; blocks decoded in several threads);
    any other through a warped VRT. Datasets open lazily once per thread (GDAL datasets must not be shared
    between threads).
    """

    def __init__(self, fb: FileBands, grid: Grid, *, categorical: bool, to_db: bool = False,
                 mask: FileBands | None = None, mask_values: tuple[int, ...] = ()):
        self.fb, self.grid, self.to_db = fb, grid, to_db
        # A classification layer (Sentinel-2 SCL) whose listed classes make pixels nodata: read on the same grid.
        self.mask = RasterLayer(mask, grid, categorical=True) if mask is not None else None
        self.mask_values = tuple(mask_values)
        with open_georeferenced(fb, grid.crs) as dataset:
            if not _overlaps(dataset, grid):
                raise InputError(f"{fb.path} does not overlap the target grid; check the inputs and --bounds/--crs.")
            exact = _on_lattice(dataset, grid)
            self.scale = _kernel_scale(dataset, grid)
            # GCP-georeferenced files are never read directly: their pixels are in radar geometry.
            self.direct = exact and not fb.gcps and _nodata_only_masks(dataset, fb.file_bands)
            # Grid pixel (row, col) is file pixel (row + row_off, col + col_off) when direct.
            col, row = ~dataset.transform @ (grid.transform.c, grid.transform.f)
            self.row_off, self.col_off = int(round(row)), int(round(col))
            self.file_shape = (dataset.height, dataset.width)
            self.dtype = np.dtype(dataset.dtypes[0])
            # A coarser integer file on the grid's lattice (Sentinel-2's 20 m and 60 m bands) is resampled in numpy
            # with GDAL's values (engine.resample), ten times faster than through the warper.
            lattice_ok = (dataset.crs == grid.crs and not exact and not fb.gcps and self.dtype.kind in "iu"
                          and _nodata_only_masks(dataset, fb.file_bands))
            self.lattice = Lattice.between(dataset.transform, grid.transform) if lattice_ok else None
            # One row of the file's blocks, every band GDAL decodes with them (all of a pixel-interleaved block):
            # the rows of consecutive tile rows straddle block rows, which must stay cached to be decoded once.
            decoded = dataset.count if dataset.interleaving != Interleaving.band else self.count
            self.block_row_bytes = (decoded * dataset.block_shapes[0][0] * dataset.width
                                    * np.dtype(dataset.dtypes[0]).itemsize)
        self.resampling = Resampling.nearest if (categorical or exact) else Resampling.bilinear
        # Read as raw integers (fetch): a direct integer file whose values need no mask and no dB conversion.
        self._raw_integers = self.direct and self.mask is None and not fb.db_factor and self.dtype.kind in "iu"
        # ... in every window of the grid: the file covers the whole grid.
        self.raw_everywhere = self._raw_integers and self._in_file(0, grid.height, 0, grid.width)
        self._local = threading.local()

    def __getstate__(self) -> dict:
        # Pickled (to Dask workers) as its description; each process opens its own GDAL handles lazily.
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict):
        self.__dict__.update(state)
        self._local = threading.local()

    @property
    def count(self) -> int:
        return len(self.fb.file_bands)

    def cache_bytes(self) -> int:
        """GDAL block cache this layer needs so that reading the scene top to bottom decodes each block once.

        Two block rows: a tile row read piece by piece (engine.batches) whose rows straddle two block rows touches
        both, piece after piece; with room for one, each new block would evict (least recently used) a block of
        the upper row that the next piece still needs, and every straddled block would be decoded twice.
        """
        return 2 * self.block_row_bytes

    def _vrt(self) -> WarpedVRT:
        vrt = getattr(self._local, "vrt", None)
        if vrt is None:
            src = open_georeferenced(self.fb, self.grid.crs)
            vrt = WarpedVRT(src, src_nodata=self.fb.nodata, nodata=np.nan, dtype="float32", crs=self.grid.crs,
                            transform=self.grid.transform, width=self.grid.width, height=self.grid.height,
                            resampling=self.resampling,
                            # Fixed kernel scale: GDAL otherwise derives it per warped chunk, so one pixel could get
                            # slightly different values in two overlapping tile windows.
                            XSCALE=repr(self.scale[0]), YSCALE=repr(self.scale[1]),
                            # Per-band nodata: GDAL's default masks a pixel only where every band is nodata.
                            UNIFIED_SRC_NODATA="NO")
            self._local.src, self._local.vrt = src, vrt
        return vrt

    def _file(self):
        src = getattr(self._local, "file", None)
        if src is None:
            # NUM_THREADS: GDAL decodes the blocks of one read in parallel (GeoTIFF, GDAL >= 3.6).
            with open_env(self.fb.path):  # remote files: no directory listing, a VSI cache
                src = rasterio.open(gdal_path(self.fb.path), NUM_THREADS=str(decode_threads()))
            self._local.file = src
            self._local.strips = BufferPool(STRIPS_IN_FLIGHT)
        return src

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """float32 [c, y1-y0, x1-x0] of grid rows y0:y1, columns x0:x1 (inside the grid), physical values, NaN for
        nodata (and for pixels the cloud mask removes)."""
        data = self._read(y0, y1, x0, x1)
        if self.mask is not None:
            classes = self.mask.read(y0, y1, x0, x1)[0]
            data[:, np.isin(classes, self.mask_values)] = np.nan
        return data

    @property
    def road(self) -> str:
        """How this file reaches the grid, for ``geomind info``."""
        method, lattice = self.resampling.name, self.lattice
        if self.direct:
            return "direct"
        if lattice is not None:  # numpy, on the grid's lattice
            factor = f"x{lattice.kx}" if lattice.kx == lattice.ky else f"{lattice.kx}x{lattice.ky}"
            return f"upsampled {factor}, {method}"
        return f"warped, {method}"  # GDAL's warper

    def _in_file(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        """Whether grid rows y0:y1, columns x0:x1 lie inside the file (direct reads)."""
        return (0 <= y0 + self.row_off and y1 + self.row_off <= self.file_shape[0]
                and 0 <= x0 + self.col_off and x1 + self.col_off <= self.file_shape[1])

    def fetch(self, y0: int, y1: int, x0: int, x1: int) -> "FetchedWindow":
        """The window decoded but not yet converted (see :class:`FetchedWindow`): reading threads only decode, the
        conversion runs where the values are used.

        Integer files read directly (the common case: Sentinel-2 digital numbers) stay raw integers, so that nodata
        is found on them and the float conversion writes straight into the row band: each pixel is touched twice
        after decoding instead of six times. Every other file is read as :meth:`read` reads it.
        """
        if self.lattice is not None and self.mask is None:
            return self._fetch_coarser(y0, y1, x0, x1)
        if not (self._raw_integers and self._in_file(y0, y1, x0, x1)):
            return FetchedWindow(self.read(y0, y1, x0, x1))
        src = self._file()
        # Strips are decoded into reused arrays (a fresh 40 MB array per strip costs page faults in the thread that
        # everything waits for); a strip comes back once its FetchedWindow is converted and dropped.
        raw = self._local.strips.get((self.count, y1 - y0, x1 - x0), src.dtypes[0])
        src.read(list(self.fb.file_bands), window=Window(x0 + self.col_off, y0 + self.row_off, x1 - x0, y1 - y0),
                 out=raw)
        return FetchedWindow(raw, self.fb)

    def _clip_to_file(self, fy0: int, fy1: int, fx0: int, fx1: int) -> tuple[int, int, int, int] | None:
        """File rows [fy0, fy1) and columns [fx0, fx1) cut to the file; None when nothing of them is in it."""
        fy0, fx0 = max(0, fy0), max(0, fx0)
        fy1, fx1 = min(self.file_shape[0], fy1), min(self.file_shape[1], fx1)
        return None if fy1 <= fy0 or fx1 <= fx0 else (fy0, fy1, fx0, fx1)

    def _outside(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Grid window y0:y1, x0:x1 with no data of this file: all NaN (as the warper gives outside a file)."""
        return np.full((self.count, y1 - y0, x1 - x0), np.nan, np.float32)

    def _decode_coarser(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The part inside a coarser file (on the lattice) of the file window under grid window y0:y1, x0:x1,
        decoded into a reused array, and its first file row and column; None when it is wholly outside the file."""
        inside = self._clip_to_file(*self.lattice.file_window(y0, y1, x0, x1))
        if inside is None:
            return None
        fy0, fy1, fx0, fx1 = inside
        src = self._file()
        raw = self._local.strips.get((self.count, fy1 - fy0, fx1 - fx0), src.dtypes[0])
        src.read(list(self.fb.file_bands), window=Window(fx0, fy0, fx1 - fx0, fy1 - fy0), out=raw)
        return raw, (fy0, fx0)

    def _fetch_coarser(self, y0: int, y1: int, x0: int, x1: int) -> "FetchedWindow":
        """A coarser file's window decoded, and resampled here when GDAL decodes in several threads (this thread
        then only waits for them), else by the FetchedWindow's user (the one thread that cuts tiles has time to
        spare while a single thread decodes)."""
        if decode_threads() > 1:
            return FetchedWindow(self._read(y0, y1, x0, x1))
        decoded = self._decode_coarser(y0, y1, x0, x1)
        if decoded is None:
            return FetchedWindow(self._outside(y0, y1, x0, x1))
        raw, origin = decoded
        return FetchedWindow(raw, self.fb, resample=partial(self._resample_into, window=(y0, y1, x0, x1),
                                                            origin=origin))

    def _resampled(self, raw: np.ndarray, window: tuple[int, int, int, int], origin: tuple[int, int]) -> np.ndarray:
        """A coarser file's window on the grid: physical float32 values, NaN for nodata (what the warper gives)."""
        data = upsample(raw, self.lattice, window, origin, nodata=self.fb.nodata,
                        nearest=self.resampling == Resampling.nearest)
        return to_physical(self.fb, data, to_db=self.to_db)

    def _resample_into(self, raw: np.ndarray, out: np.ndarray, fill: np.ndarray, *,
                       window: tuple[int, int, int, int], origin: tuple[int, int]) -> np.ndarray:
        """:meth:`_resampled` written straight into ``out`` with nodata filled (see FetchedWindow.fill_into): the
        values of integer data after scale and offset are finite, so where they are valid is known from the file
        without looking at them again. dB conversions take the general road."""
        if self.fb.db_factor:
            return FetchedWindow(self._resampled(raw, window, origin)).fill_into(out, fill)
        valid = upsample_into(out, raw, self.lattice, window, origin, nodata=self.fb.nodata,
                              nearest=self.resampling == Resampling.nearest)
        _scale_in_place(out, self.fb)
        if valid is None:
            return np.ones(out.shape[1:], bool)
        np.copyto(out, fill, where=~valid)
        return valid.all(axis=0)

    def _read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if self.lattice is not None:
            decoded = self._decode_coarser(y0, y1, x0, x1)
            if decoded is None:
                return self._outside(y0, y1, x0, x1)
            return self._resampled(decoded[0], (y0, y1, x0, x1), decoded[1])
        if not self.direct:
            data = self._vrt().read(list(self.fb.file_bands), window=Window(x0, y0, x1 - x0, y1 - y0))
            return to_physical(self.fb, data, to_db=self.to_db)
        # Direct read: the part of the window inside the file, NaN around it (as the warper would give).
        inside = self._clip_to_file(y0 + self.row_off, y1 + self.row_off, x0 + self.col_off, x1 + self.col_off)
        if inside is None:
            return self._outside(y0, y1, x0, x1)
        fy0, fy1, fx0, fx1 = inside
        raw = self._file().read(list(self.fb.file_bands), window=Window(fx0, fy0, fx1 - fx0, fy1 - fy0))
        nodata = self.fb.nodata
        mask = None if nodata is None else (np.isnan(raw) if np.isnan(nodata) else raw == nodata)
        if raw.shape[1:] == (y1 - y0, x1 - x0):
            return to_physical(self.fb, raw, to_db=self.to_db, nodata_mask=mask)
        out = self._outside(y0, y1, x0, x1)
        oy, ox = fy0 - self.row_off - y0, fx0 - self.col_off - x0
        out[:, oy:oy + raw.shape[1], ox:ox + raw.shape[2]] = to_physical(self.fb, raw, to_db=self.to_db,
                                                                          nodata_mask=mask)
        return out

    def to_dataarray(self, chunks) -> xr.DataArray:
        """The same values as a lazy dask DataArray [band, y, x] with the grid's CRS and transform.

        Each block is a :meth:`read` of its window, so lazy and tile reads share one code path and one set of GDAL
        handles per thread (and remote files are never reopened with other settings).
        """
        import dask.array as da

        grid = self.grid
        shape = (self.count, grid.height, grid.width)
        template = da.empty(shape, chunks=(self.count, chunks.get("y", 1024), chunks.get("x", 1024)),
                            dtype=np.float32)

        def block(_, block_info=None):
            (_, _), (y0, y1), (x0, x1) = block_info[None]["array-location"]
            return self.read(y0, y1, x0, x1)

        x = grid.transform.c + grid.transform.a * (np.arange(grid.width) + 0.5)
        y = grid.transform.f + grid.transform.e * (np.arange(grid.height) + 0.5)
        return xr.DataArray(template.map_blocks(block, dtype=np.float32), dims=("band", "y", "x"),
                            coords={"band": np.arange(1, self.count + 1), "y": y, "x": x})

    def close(self):
        if self.mask is not None:
            self.mask.close()
        vrt = getattr(self._local, "vrt", None)
        if vrt is not None:
            vrt.close()
            self._local.src.close()
            self._local.vrt = None
        src = getattr(self._local, "file", None)
        if src is not None:
            src.close()
            self._local.file = None


class ArrayLayer:
    """A [band, y, x] DataArray already on the grid (lazy or not): used for synthetic and in-memory scenes."""

    raw_everywhere = False  # values are floats already

    def __init__(self, array: xr.DataArray):
        self.array = array

    @property
    def count(self) -> int:
        return self.array.shape[0]

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        # Always a copy: the reader masks and fills what it gets in place, never the caller's array.
        return np.array(self.array[:, y0:y1, x0:x1].values, dtype=np.float32)

    def fetch(self, y0: int, y1: int, x0: int, x1: int) -> "FetchedWindow":
        return FetchedWindow(self.read(y0, y1, x0, x1))

    def to_dataarray(self, chunks) -> xr.DataArray:
        return self.array.astype("float32")

    def cache_bytes(self) -> int:
        return 0

    def close(self):
        pass
