"""The tile plan: where the overlapping model tiles sit on the scene.

Along each axis (length L, tile T, stride S = T - overlap, patch 16)::

    padded P = max(T, ceil(L / 16) * 16)        # the scene is reflect-padded at the bottom/right up to P
    origins  = 0, S, 2S, ... while o + T < P, then P - T   # the last tile is shifted back to end at the edge
    tiles    = ceil((P - T) / S) + 1

All origins are multiples of 16, so the 16 px patches of every tile fall on one global patch grid (token and
embedding outputs line up). Origins are never negative: a scene smaller than a tile is a single tile at (0, 0) whose
pixels beyond the scene are reflected scene pixels. Stride < T so that neighbouring tiles share ``overlap`` pixels,
where the stitcher blends them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PATCH = 16
DEFAULT_OVERLAP = 64


@dataclass(frozen=True)
class TilePlan:
    """Tile origins on the scene grid. ``ys``/``xs``: top/left pixel of each tile row/column (int arrays)."""

    height: int
    width: int
    tile_size: int
    overlap: int
    stride: int
    patch: int
    ys: np.ndarray
    xs: np.ndarray

    @property
    def padded_shape(self) -> tuple[int, int]:
        return int(self.ys[-1]) + self.tile_size, int(self.xs[-1]) + self.tile_size

    @property
    def shape(self) -> tuple[int, int]:
        """(tile rows, tile columns)."""
        return len(self.ys), len(self.xs)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def _axis(length: int, tile: int, stride: int, patch: int) -> np.ndarray:
    padded = max(tile, math.ceil(length / patch) * patch)
    origins = list(range(0, padded - tile, stride)) + [padded - tile]
    origins = np.asarray(sorted(set(origins)), dtype=np.int64)
    # Every pixel of the padded axis is inside some tile: starts at 0, no gaps, ends at the padded edge.
    assert origins[0] == 0 and origins[-1] + tile == padded and np.all(np.diff(origins) <= tile), origins
    return origins


def plan_tiles(height: int, width: int, *, tile_size: int = 224, overlap: int = DEFAULT_OVERLAP,
               patch: int = PATCH) -> TilePlan:
    """Plan tiles over a ``height`` x ``width`` scene; see the module docstring for the formula."""
    if height < 1 or width < 1:
        raise ValueError(f"cannot tile an empty scene of {height} x {width} pixels")
    if tile_size % patch or overlap % patch:
        raise ValueError(f"tile size ({tile_size}) and overlap ({overlap}) must be multiples of the {patch} px patch")
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap ({overlap}) must be at least 0 and smaller than the tile size ({tile_size})")
    stride = tile_size - overlap
    return TilePlan(height, width, tile_size, overlap, stride, patch,
                    _axis(height, tile_size, stride, patch), _axis(width, tile_size, stride, patch))


def taper(plan: TilePlan, axis: int, index: int) -> np.ndarray:
    """1-D blend weight (length T) of tile ``index`` along ``axis`` (0: rows, 1: columns).

    A sin^2 ramp over the ``overlap`` pixels at each side that has a neighbour, 1 elsewhere (flat at scene borders).
    Where two ramps meet over exactly ``overlap`` pixels they sum to 1; where the shifted last tile overlaps more,
    both tiles weigh 1 in the middle of the shared strip. Ramps never reach 0, so every pixel keeps some weight.
    """
    origins = plan.ys if axis == 0 else plan.xs
    weights = np.ones(plan.tile_size, np.float64)
    ramp_len = plan.overlap
    if ramp_len == 0:
        return weights
    ramp = np.sin(0.5 * np.pi * (np.arange(ramp_len) + 0.5) / ramp_len) ** 2
    if index > 0:
        weights[:ramp_len] = ramp
    if index < len(origins) - 1:
        weights[-ramp_len:] = ramp[::-1]
    return weights


def grid_owners(plan: TilePlan, axis: int) -> np.ndarray:
    """For each 16 px cell along ``axis`` (of the padded scene), the index of the tile whose centre is nearest.

    Ties go to the earlier tile. Owners are non-decreasing, so each tile owns one contiguous run of cells.
    """
    origins = plan.ys if axis == 0 else plan.xs
    cells = (int(origins[-1]) + plan.tile_size) // plan.patch
    centres = np.arange(cells) * plan.patch + plan.patch / 2
    tile_centres = origins + plan.tile_size / 2
    inside = (centres[:, None] >= origins[None, :]) & (centres[:, None] < origins[None, :] + plan.tile_size)
    distance = np.where(inside, np.abs(centres[:, None] - tile_centres[None, :]), np.inf)
    return np.argmin(distance, axis=1)
