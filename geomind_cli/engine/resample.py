"""Coarser files on the grid's own lattice (Sentinel-2's 20 m and 60 m bands under its 10 m grid), resampled in numpy.

A file whose pixels are whole multiples of the grid's (same CRS, no rotation, each file pixel exactly ``ky`` x ``kx``
grid pixels, edges on grid pixel edges) needs no general warper: every grid pixel samples the same few file pixels
with the same weights, phase after phase. GDAL's warper recomputes all of it per pixel and per band with
validity masks, about 13 million pixels per second (a 4,096 px scene's eight 20 m and 60 m Sentinel-2 bands: most
of a 9.5 s run on 2 cores, where decoding all twelve band files takes 0.9 s). Here the file window is decoded once and
each phase is a few whole-array operations.

The values are GDAL's (measured against rasterio's WarpedVRT with the reader's options, GDAL 3.10, in
tests/engine/test_engine_resample.py): bilinear takes the four file pixels around a grid pixel's centre with
weights ``(1 - t, t)`` per axis, drops those that are nodata or outside the file and divides by the weights kept,
in float64, in GDAL's order (float32 where that is exact: :func:`_exact_in_float32`); a grid pixel is nodata where
the file pixel under its centre is (or outside the file). Nearest takes the file pixel under the centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Lattice:
    """Where a coarser file sits on the grid: file pixel (row, col) covers grid rows ``row * ky - rows0`` .. and
    columns ``col * kx - cols0`` ..; the centre of grid pixel (r, c) is at file coordinates
    ``((r + rows0 + 0.5) / ky, (c + cols0 + 0.5) / kx)``."""

    ky: int
    kx: int
    rows0: int
    cols0: int

    @classmethod
    def between(cls, file_transform, grid_transform) -> "Lattice | None":
        """The lattice of a file (same CRS as the grid assumed) on the grid, or None if its pixels are not whole
        multiples of the grid's, edges on grid pixel edges (or if it is the grid's own lattice: a direct read)."""
        a, b = file_transform, grid_transform
        if a.b or a.d or b.b or b.d or a.a * b.a <= 0 or a.e * b.e <= 0:
            return None
        ky, kx = a.e / b.e, a.a / b.a
        if min(ky, kx) < 1 or abs(ky - round(ky)) > 1e-9 or abs(kx - round(kx)) > 1e-9 or round(ky * kx) == 1:
            return None
        ky, kx = int(round(ky)), int(round(kx))
        col, row = ~a @ (b.c, b.f)  # the grid's top-left corner in file pixels
        rows0, cols0 = row * ky, col * kx
        if abs(rows0 - round(rows0)) > 1e-6 or abs(cols0 - round(cols0)) > 1e-6:
            return None
        return cls(ky, kx, int(round(rows0)), int(round(cols0)))

    def file_window(self, y0: int, y1: int, x0: int, x1: int) -> tuple[int, int, int, int]:
        """File rows and columns [fy0, fy1) x [fx0, fx1) that bilinear sampling of grid window y0:y1, x0:x1 touches
        (not clipped to the file)."""
        rows, cols = _Axis(y0, y1, self.rows0, self.ky), _Axis(x0, x1, self.cols0, self.kx)
        return rows.lo, rows.hi, cols.lo, cols.hi


class _Axis:
    """Sampling along one axis of a grid window ``[start, stop)``: file coordinate of each centre ``u``, the file
    pixel before it ``i0 = floor(u - 0.5)`` and the weight ``t = u - 0.5 - i0`` of the one after. Positions with
    the same phase (every ``k``-th) share ``t``, and their ``i0`` advance by one."""

    def __init__(self, start: int, stop: int, offset: int, k: int):
        positions = np.arange(start, stop, dtype=np.float64)
        u = (positions + offset + 0.5) / k
        s = u - 0.5
        self.i0 = np.floor(s).astype(np.int64)
        self.t = s - self.i0
        self.centre = np.floor(u).astype(np.int64)
        self.k, self.n = k, stop - start
        self.lo, self.hi = int(self.i0.min()), int(self.i0.max()) + 2  # the samples' file span

    def phases(self):
        """(first position, its i0 relative to ``lo``, t) of each phase."""
        for p in range(min(self.k, self.n)):
            yield p, int(self.i0[p]) - self.lo, float(self.t[p])


def _placed(data: np.ndarray, origin: tuple[int, int], rows: _Axis, cols: _Axis, dtype, *,
            valid: np.ndarray | None, clamp: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The file window ``data`` (from file row and column ``origin`` on, clipped to the file) over the samples' span
    [rows.lo, rows.hi) x [cols.lo, cols.hi) in ``dtype``, and where it is valid (None: everywhere).

    Samples outside the file are not valid, and take 0 like nodata ones; with ``clamp`` (every centre in the file,
    no nodata, exact arithmetic) they repeat the file's edge instead, valid: weights that sum to one over copies of
    one value give that value, as GDAL's dropping of the outside samples does.
    """
    shape = (data.shape[0], rows.hi - rows.lo, cols.hi - cols.lo)
    oy, ox = origin[0] - rows.lo, origin[1] - cols.lo
    pad = ((0, 0), (oy, shape[1] - oy - data.shape[1]), (ox, shape[2] - ox - data.shape[2]))
    if valid is None and (clamp or not any(any(p) for p in pad)):
        return np.pad(data.astype(dtype, copy=False), pad, mode="edge"), None
    mask = np.pad(np.ones(data.shape, bool) if valid is None else valid, pad)
    values = np.pad(data.astype(dtype, copy=False), pad)
    if valid is not None:
        values[~mask] = 0
    return values, mask


def _exact_in_float32(dtype: np.dtype, lattice: Lattice) -> bool:
    """Whether float32 gives the very values of GDAL's float64 arithmetic on ``dtype`` integers on this lattice
    (and twice as fast): with a power-of-two ``k`` the weights ``(2j + 1) / 2k`` add ``log2(2k)`` bits per axis to
    the integers' 16 at most, so every product and sum is exact in float32's 24 bits, and a quotient of exact
    values rounds alike either way (float64's 53 bits >= 2 x 24 + 2: double rounding is innocuous)."""
    powers = all(k & (k - 1) == 0 for k in (lattice.ky, lattice.kx))
    extra = (lattice.ky * 2).bit_length() - 1 + (lattice.kx * 2).bit_length() - 1
    return dtype.kind in "iu" and dtype.itemsize <= 2 and powers and 16 + extra <= 24


def upsample(data: np.ndarray, lattice: Lattice, window: tuple[int, int, int, int], file_origin: tuple[int, int], *,
             nodata: float | None, nearest: bool) -> np.ndarray:
    """Grid window ``(y0, y1, x0, x1)`` as float32 [c, h, w], NaN for nodata and outside the file (what GDAL's
    warped VRT gives), from ``data`` [c, fh, fw]: the file's values as read (raw), rows and columns from
    ``file_origin`` on: the part of :meth:`Lattice.file_window` inside the file."""
    y0, y1, x0, x1 = window
    out = np.empty((data.shape[0], y1 - y0, x1 - x0), np.float32)
    valid = upsample_into(out, data, lattice, window, file_origin, nodata=nodata, nearest=nearest)
    if valid is not None:
        out[~valid] = np.nan
    return out


def upsample_into(out: np.ndarray, data: np.ndarray, lattice: Lattice, window: tuple[int, int, int, int],
                  file_origin: tuple[int, int], *, nodata: float | None, nearest: bool) -> np.ndarray | None:
    """:func:`upsample` written into ``out`` (float32 [c, h, w], a view is fine); returns where it is valid (bool
    [c, h, w]; None: everywhere). Invalid pixels hold arbitrary values."""
    y0, y1, x0, x1 = window
    rows, cols = _Axis(y0, y1, lattice.rows0, lattice.ky), _Axis(x0, x1, lattice.cols0, lattice.kx)
    valid = None if nodata is None else data != nodata
    if valid is not None and valid.all():
        valid = None
    exact32 = nearest or _exact_in_float32(data.dtype, lattice)
    cy, cx = rows.centre - rows.lo, cols.centre - cols.lo
    centres_inside = all(
        origin <= int(axis.centre.min()) and int(axis.centre.max()) < origin + size
        for axis, origin, size in ((rows, file_origin[0], data.shape[1]), (cols, file_origin[1], data.shape[2])))
    values, mask = _placed(data, file_origin, rows, cols, np.float32 if exact32 else np.float64, valid=valid,
                           clamp=exact32 and centres_inside)
    if nearest:
        out[...] = values[:, cy][:, :, cx]
    else:
        _bilinear(values, mask, rows, cols, out)
    return None if mask is None else mask[:, cy][:, :, cx]


def _bilinear(values: np.ndarray, mask: np.ndarray | None, rows: _Axis, cols: _Axis, out: np.ndarray):
    """Weighted means of the four samples around each centre into ``out``, in GDAL's order (top-left, top-right,
    bottom-left, bottom-right), over the valid ones (``mask``; None: all valid), phase by phase: one weight per
    phase pair."""
    weights = None if mask is None else mask.astype(values.dtype)
    for py, sy, ty in rows.phases():
        ny = len(range(py, rows.n, rows.k))
        for px, sx, tx in cols.phases():
            nx = len(range(px, cols.n, cols.k))
            num = np.zeros((values.shape[0], ny, nx), values.dtype)
            den = 0.0 if weights is None else np.zeros_like(num)
            term = np.empty_like(num)
            for dy, wy in ((0, 1.0 - ty), (1, ty)):
                for dx, wx in ((0, 1.0 - tx), (1, tx)):
                    w = wy * wx
                    at = (slice(None), slice(sy + dy, sy + dy + ny), slice(sx + dx, sx + dx + nx))
                    num += np.multiply(values[at], w, out=term)
                    if weights is None:
                        den += w
                    else:
                        den += np.multiply(weights[at], w, out=term)
            if weights is None:
                if den != 1.0:
                    num /= den
            else:
                np.divide(num, den, out=num, where=den > 0)
            out[:, py::rows.k, px::cols.k] = num
