"""Stitchers: put tile outputs back together in a sliding band of rows.

Each stitcher keeps only the output rows that tiles still to come may touch. The runner tells it which tile row comes
next; every output row above that row's first pixel (or its first owned 16 px cell) is final and is handed to the
writer, then dropped. Memory is a band of about ``tile + stride`` rows, whatever the scene height.
"""

from __future__ import annotations

import numpy as np

from geomind_cli.engine.outputs import OutputSpec
from geomind_cli.engine.tiling import TilePlan, grid_owners, taper


class RowBand:
    """Planes [P, rows, width] holding output rows ``start .. start + rows``; slides down with :meth:`take`."""

    def __init__(self, planes: int, width: int, dtype, fill, capacity: int):
        self.fill = fill
        self.data = np.full((planes, capacity, width), fill, dtype)
        self.start = 0

    def ensure(self, end: int):
        have = self.start + self.data.shape[1]
        if end > have:
            extra = np.full((self.data.shape[0], end - have, self.data.shape[2]), self.fill, self.data.dtype)
            self.data = np.concatenate([self.data, extra], axis=1)

    def view(self, y0: int, y1: int) -> np.ndarray:
        return self.data[:, y0 - self.start:y1 - self.start]

    def take(self, end: int, finish):
        """``finish(rows [P, end - start, width])``, then drop those rows and return its result."""
        k = end - self.start
        result = finish(self.data[:, :k])
        rest = self.data.shape[1] - k
        self.data[:, :rest] = self.data[:, k:]  # numpy buffers the overlapping move
        self.data[:, rest:] = self.fill
        self.start = end
        return result


class Stitcher:
    """Base class: ``add`` tiles, then ``pop(next_tile_row)`` yields ``(path_key, row0, [C, h, w])`` final rows."""

    scale = 1

    def __init__(self, spec: OutputSpec, plan: TilePlan, capacity_rows: int):
        self.spec, self.plan = spec, plan

    def final_rows(self, next_tile_row: int) -> int:
        raise NotImplementedError


class BlendStitcher(Stitcher):
    """Continuous and class outputs: taper-weighted average at full resolution.

    Weight of a tile pixel = row taper x column taper x (pixel valid). Continuous outputs accumulate in float64 when
    written as floats, so that equal inputs come back bit-exact (an identity tile function returns the input).
    """

    def __init__(self, spec: OutputSpec, plan: TilePlan, capacity_rows: int, channels: int):
        super().__init__(spec, plan, capacity_rows)
        self.channels = channels
        exact = spec.kind == "continuous" and np.dtype(spec.dtype).kind == "f"
        dtype = np.float64 if exact else np.float32
        self.band = RowBand(channels + 1, plan.width, dtype, 0, min(capacity_rows, plan.height))
        self.wy = [taper(plan, 0, i) for i in range(len(plan.ys))]
        self.wx = [taper(plan, 1, j) for j in range(len(plan.xs))]

    def add(self, row: int, col: int, data: np.ndarray, valid: np.ndarray):
        """data [C, T, T], valid bool [T, T] for tile (row, col)."""
        y, x, t = int(self.plan.ys[row]), int(self.plan.xs[col]), self.plan.tile_size
        h, w = min(t, self.plan.height - y), min(t, self.plan.width - x)
        weight = (self.wy[row][:h, None] * self.wx[col][None, :w]) * valid[:h, :w]
        self.band.ensure(y + h)
        region = self.band.view(y, y + h)[:, :, x:x + w]
        region[:-1] += data[:, :h, :w] * weight
        region[-1] += weight

    def final_rows(self, next_tile_row: int) -> int:
        if next_tile_row >= len(self.plan.ys):
            return self.plan.height
        return min(int(self.plan.ys[next_tile_row]), self.plan.height)

    def pop(self, next_tile_row: int):
        end = self.final_rows(next_tile_row)
        if end <= self.band.start:
            return []
        row0 = self.band.start
        return [(key, row0 + offset, arr) for key, offset, arr in self.band.take(end, self._finish)]

    def _finish(self, rows: np.ndarray) -> list[tuple[str, int, np.ndarray]]:
        """Final rows [C + 1, h, W] -> (file key, row offset, array) pieces, in chunks of 32 rows to bound temporaries."""
        pieces = []
        for start in range(0, rows.shape[1], 32):
            pieces += [(key, start, arr) for key, arr in self._finish_chunk(rows[:, start:start + 32])]
        return pieces

    def _finish_chunk(self, rows: np.ndarray):
        total = rows[-1]
        valid = total > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            values = rows[:-1] / np.where(valid, total, 1)
        if self.spec.kind == "continuous":
            return [("main", self.spec.encode(values, valid))]
        out = [("main", self.spec.encode(np.argmax(values, axis=0)[None].astype(np.float64), valid))]
        if self.spec.probabilities:
            probs = values.astype(np.float32)
            probs[:, ~valid] = np.nan
            out.append(("probabilities", probs))
        if self.spec.confidence:
            conf = values.max(axis=0, keepdims=True).astype(np.float32)
            conf[:, ~valid] = np.nan
            out.append(("confidence", conf))
        return out


class GridStitcher(Stitcher):
    """1/16-scale outputs: cell (i, j) is copied from the tile that owns it (nearest centre), never averaged.

    A cell none of whose 16 x 16 pixels is valid is nodata, whether its tile ran or was skipped, so the nodata mask
    does not depend on the tiling. Values go through :meth:`OutputSpec.encode` like every other output (scale,
    offset, rounding).
    """

    scale = 16

    def __init__(self, spec: OutputSpec, plan: TilePlan, capacity_rows: int, channels: int):
        super().__init__(spec, plan, capacity_rows)
        p = plan.patch
        self.height, self.width = -(-plan.height // p), -(-plan.width // p)
        self.own_y, self.own_x = grid_owners(plan, 0)[:self.height], grid_owners(plan, 1)[:self.width]
        # Values as the tile function gave them plus a 0/1 "valid" plane; float32 holds token ids and float32
        # features exactly, wider integer or float outputs keep float64.
        wide = np.dtype(spec.dtype).itemsize > 4 or np.dtype(spec.dtype) in (np.int32, np.uint32)
        self.band = RowBand(channels + 1, self.width, np.float64 if wide else np.float32, 0,
                            min(capacity_rows // p + 2, self.height))

    def _run(self, owners: np.ndarray, index: int) -> tuple[int, int]:
        cells = np.flatnonzero(owners == index)
        return (int(cells[0]), int(cells[-1]) + 1) if cells.size else (0, 0)

    def add(self, row: int, col: int, data: np.ndarray, valid: np.ndarray):
        """data [C, T/16, T/16], valid bool [T, T] for tile (row, col); cells it owns are copied."""
        p = self.plan.patch
        cy0, cy1 = self._run(self.own_y, row)
        cx0, cx1 = self._run(self.own_x, col)
        if cy1 <= cy0 or cx1 <= cx0:
            return
        ty, tx = int(self.plan.ys[row]) // p, int(self.plan.xs[col]) // p
        self.band.ensure(cy1)
        region = self.band.view(cy0, cy1)[:, :, cx0:cx1]
        side = valid.shape[0] // p
        cells_valid = valid[:side * p, :side * p].reshape(side, p, side, p).any(axis=(1, 3))
        region[:-1] = data[:, cy0 - ty:cy1 - ty, cx0 - tx:cx1 - tx]
        region[-1] = cells_valid[cy0 - ty:cy1 - ty, cx0 - tx:cx1 - tx]

    def final_rows(self, next_tile_row: int) -> int:
        return int(np.searchsorted(self.own_y, next_tile_row, side="left"))

    def pop(self, next_tile_row: int):
        end = self.final_rows(next_tile_row)
        if end <= self.band.start:
            return []
        row0 = self.band.start
        return [("main", row0, self.band.take(end, self._finish))]

    def _finish(self, rows: np.ndarray) -> np.ndarray:
        return self.spec.encode(rows[:-1], rows[-1] > 0)


def make_stitcher(spec: OutputSpec, plan: TilePlan, *, capacity_rows: int, channels: int,
                  first_tile_row: int = 0) -> Stitcher:
    """A stitcher for ``spec``; ``first_tile_row`` > 0 starts its band where that tile row's output begins, for a
    block of tile rows (see :mod:`geomind_cli.engine.blocks`): tiles of earlier rows must then not be added."""
    cls = GridStitcher if spec.kind == "grid" else BlendStitcher
    stitcher = cls(spec, plan, capacity_rows, channels)
    if first_tile_row:
        stitcher.band.start = final_row(spec, plan, first_tile_row)
    return stitcher


def final_row(spec: OutputSpec, plan: TilePlan, next_tile_row: int) -> int:
    """First output row (pixels, or 16 px cells for grid outputs) that tile rows >= ``next_tile_row`` can touch.

    Output rows ``final_row(r0) .. final_row(r1)`` are exactly the rows that tile rows ``r0 .. r1`` own: for blended
    outputs, those rows are final once every tile row up to ``r1`` is added; for grid outputs, their cells are
    copied from tile rows r0 .. r1 only.
    """
    rows = len(plan.ys)
    if spec.kind == "grid":
        cells = -(-plan.height // plan.patch)
        return int(np.searchsorted(grid_owners(plan, 0)[:cells], next_tile_row, side="left"))
    if next_tile_row >= rows:
        return plan.height
    return min(int(plan.ys[next_tile_row]), plan.height)


def first_contributor(plan: TilePlan, tile_row: int) -> int:
    """Index of the first tile row whose tiles reach the output rows of ``tile_row`` (its halo for blending)."""
    y = int(plan.ys[tile_row])
    return int(np.argmax(plan.ys + plan.tile_size > y))
