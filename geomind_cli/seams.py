"""Seam measurements for tiled outputs: how much overlapping tiles disagree, and how visible tile borders are.

Two numbers, both defined on the scene's target grid:

- :func:`overlap_disagreement`, on the per-tile outputs *before* blending. For every pair of tiles whose footprints
  intersect (side and corner neighbours alike), compare the two tiles pixel by pixel inside the intersection
  (clipped to the scene). Continuous outputs: the mean of ``|a - b|`` over all such (pair, channel, pixel) samples,
  in the output's own units (dB, metres). Class outputs (``categorical=True``, per-tile class scores [K, T, T]): the
  fraction of such (pair, pixel) samples whose argmax class differs. 0 means the tiles agree exactly.
- :func:`seam_score`, on the final mosaic. Differences between neighbouring pixels ``d = r[.., j] - r[.., j-1]``
  (columns) and ``r[.., i, :] - r[.., i-1, :]`` (rows) are split into those that cross a *seam line* of the tile
  plan and all others ("inside"). The score is ``mean(d**2 on seam lines) / mean(d**2 inside)``, pooled over both
  axes, all channels and all pixels with finite values on both sides; for class maps ``d**2`` is replaced by the
  indicator "the class changes". 1.0 means the lines look like anywhere else; above 1 a step; below 1 a smoothed
  band (a blended average of two tiles that disagree has less texture than either tile).

Seam lines (:func:`seam_lines`) along an axis with tile origins ``o_k`` and tile size ``T``:

- ``"edges"``: the tile edges, ``o_k`` for k > 0 and ``o_k + T`` for every tile but the last; the line at position
  p separates pixels p-1 and p. This is where an unblended mosaic would step. The engine blends with a sin^2 taper
  that is almost 0 at a tile's edge, so a blended mosaic has almost no step there.
- ``"middles"``: the middle of each neighbouring pair's overlap, ``(o_k + o_{k-1} + T) // 2``, where both tiles
  weigh about the same in the blend. This is where a blended mosaic of disagreeing tiles turns from one tile to the other and where
  averaging two different samples removes the most texture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from geomind_cli.engine.tiling import TilePlan

LineKind = Literal["edges", "middles"]


@dataclass(frozen=True)
class TileOutput:
    """One tile's output before blending: ``data`` [C, T, T] whose pixel (i, j) is global pixel (row + i, col + j)."""

    row: int
    col: int
    data: np.ndarray


@dataclass(frozen=True)
class Disagreement:
    """Result of :func:`overlap_disagreement`: ``mean`` over ``samples`` compared values from ``pairs`` tile pairs."""

    mean: float
    pairs: int
    samples: int


@dataclass
class TileRecorder:
    """Wraps a task's tile function and keeps every tile's outputs: ``tiles[name]`` lists :class:`TileOutput` s.

    Use as the tile function of a run (``Task(task.outputs, TileRecorder(task.tile_fn))``); it returns what the
    wrapped function returns. Memory grows with the number of tiles: for measurements on small scenes.
    """

    tile_fn: Callable[..., dict[str, np.ndarray]]
    tiles: dict[str, list[TileOutput]] = field(default_factory=dict)

    def __call__(self, batch) -> dict[str, np.ndarray]:
        result = self.tile_fn(batch)
        for name, values in result.items():
            store = self.tiles.setdefault(name, [])
            for b, (row, col) in enumerate(zip(batch.rows.tolist(), batch.cols.tolist())):
                store.append(TileOutput(int(row), int(col), np.array(values[b], copy=True)))
        return result


def overlap_disagreement(tiles: Iterable[TileOutput], *, categorical: bool = False, height: int | None = None,
                         width: int | None = None) -> Disagreement:
    """Mean disagreement of overlapping tiles inside their overlaps (module docstring has the exact definition).

    tiles: :class:`TileOutput` s of one output, data [C, T, T] (class scores [K, T, T] when ``categorical``).
    height, width: the scene size; overlaps are clipped to it (reflect-padded pixels past the edge are not
    compared). Non-finite values are left out. A scene of one tile has no pairs: mean NaN.
    """
    tiles = list(tiles)
    labels = [np.argmax(t.data, axis=0)[None] if categorical else t.data for t in tiles]
    total, samples, pairs = 0.0, 0, 0
    for i in range(len(tiles)):
        a = tiles[i]
        for j in range(i + 1, len(tiles)):
            b = tiles[j]
            y0, x0 = max(a.row, b.row), max(a.col, b.col)
            y1 = min(a.row + a.data.shape[-2], b.row + b.data.shape[-2], height if height is not None else 1 << 62)
            x1 = min(a.col + a.data.shape[-1], b.col + b.data.shape[-1], width if width is not None else 1 << 62)
            if y1 <= y0 or x1 <= x0:
                continue
            va = labels[i][:, y0 - a.row:y1 - a.row, x0 - a.col:x1 - a.col]
            vb = labels[j][:, y0 - b.row:y1 - b.row, x0 - b.col:x1 - b.col]
            if categorical:
                diff = (va != vb).astype(np.float64)
            else:
                diff = np.abs(va.astype(np.float64) - vb.astype(np.float64))
                diff = diff[np.isfinite(diff)]
            total += float(diff.sum())
            samples += diff.size
            pairs += 1
    return Disagreement(total / samples if samples else float("nan"), pairs, samples)


def seam_lines(plan: TilePlan, axis: int, kind: LineKind = "edges") -> np.ndarray:
    """Seam line positions p (separating pixels p-1 and p) along ``axis`` (0 rows, 1 columns), inside the scene."""
    origins = (plan.ys if axis == 0 else plan.xs).astype(np.int64)
    length = plan.height if axis == 0 else plan.width
    t = plan.tile_size
    if kind == "edges":
        lines = np.concatenate([origins[1:], origins[:-1] + t])
    elif kind == "middles":
        lines = (origins[1:] + origins[:-1] + t) // 2
    else:
        raise ValueError(f"seam line kind must be 'edges' or 'middles', not {kind!r}")
    lines = np.unique(lines)
    return lines[(lines >= 1) & (lines <= length - 1)]


def _energies(raster: np.ndarray, axis: int, lines: np.ndarray, categorical: bool,
              nodata) -> tuple[float, int, float, int]:
    """(sum over line crossings, count, sum over other neighbour pairs, count) of d**2 (or class changes)."""
    n = raster.shape[axis + 1]
    a = np.take(raster, np.arange(1, n), axis=axis + 1)
    b = np.take(raster, np.arange(0, n - 1), axis=axis + 1)
    if categorical:
        ok = np.ones(a.shape, bool) if nodata is None else (a != nodata) & (b != nodata)
        energy = np.where(ok, a != b, False).astype(np.float64)
    else:
        d = a.astype(np.float64) - b.astype(np.float64)
        ok = np.isfinite(d)
        energy = np.where(ok, d, 0.0) ** 2
    # Difference k (pixels k and k + 1) crosses the line at position k + 1.
    on = np.zeros(n - 1, bool)
    on[lines - 1] = True
    shape = [1, 1, 1]
    shape[axis + 1] = -1
    on = on.reshape(shape)
    return (float((energy * on).sum()), int((ok & on).sum()),
            float((energy * ~on).sum()), int((ok & ~on).sum()))


def seam_score(raster: np.ndarray, plan: TilePlan, *, categorical: bool = False, lines: LineKind = "edges",
               nodata: int | None = None) -> float:
    """Gradient energy on the plan's seam lines over gradient energy inside tiles (1.0: no seam).

    raster: the mosaic, [H, W] or [C, H, W]; NaN is nodata and left out. With ``categorical=True`` a class map
    [H, W] of class ids, where neighbour pairs touching a ``nodata`` class are left out. lines: which seam lines
    (:func:`seam_lines`). NaN when either part has no samples or the inside has no texture at all.
    """
    raster = np.asarray(raster)
    if raster.ndim == 2:
        raster = raster[None]
    if raster.shape[-2:] != (plan.height, plan.width):
        raise ValueError(f"raster is {raster.shape[-2:]} but the plan covers {plan.height} x {plan.width}")
    on_sum = on_n = in_sum = in_n = 0
    for axis in (0, 1):
        a, b, c, d = _energies(raster, axis, seam_lines(plan, axis, lines), categorical, nodata)
        on_sum, on_n, in_sum, in_n = on_sum + a, on_n + b, in_sum + c, in_n + d
    if not on_n or not in_n or in_sum == 0:
        return float("nan")
    return (on_sum / on_n) / (in_sum / in_n)
