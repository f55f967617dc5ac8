"""Processing only part of a scene: an area of interest as a window of the scene's grid.

A user with a 110 km Sentinel-2 tile who wants one city gives ``--bbox`` (in the grid's CRS, or in ``--bbox-crs``)
or ``--aoi area.geojson``. The scene's grid is cut to the pixel window that covers the area, on the same pixel
lattice (no resampling beyond what the full scene would have), so only the source blocks under that window are read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds

from geomind_cli.engine.grid import Grid
from geomind_cli.engine.remote import read_bytes
from geomind_cli.errors import InputError


@dataclass(frozen=True)
class Area:
    """An area of interest: ``bounds`` (left, bottom, right, top) in ``crs`` (None: the scene grid's CRS)."""

    bounds: tuple[float, float, float, float]
    crs: str | None = None
    source: str = "--bbox"  # for messages

    def __post_init__(self):
        left, bottom, right, top = (float(v) for v in self.bounds)
        if not (right > left and top > bottom):
            raise InputError(f"{self.source} {left:g} {bottom:g} {right:g} {top:g} is empty; give minx miny maxx maxy.")
        object.__setattr__(self, "bounds", (left, bottom, right, top))
        if self.crs is not None:
            try:
                CRS.from_user_input(self.crs)
            except CRSError as error:
                raise InputError(f"Unknown CRS {self.crs!r} for {self.source} ({error}); give one like EPSG:4326.")

    @classmethod
    def from_geojson(cls, path: str) -> "Area":
        """The bounding box of every geometry of a GeoJSON file (FeatureCollection, Feature or geometry), in
        EPSG:4326 as RFC 7946 says (or the legacy ``crs`` member's CRS)."""
        try:
            data = json.loads(read_bytes(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"--aoi {path} is not GeoJSON ({error}).")
        xs, ys = [], []

        def walk(coords):
            if coords and isinstance(coords[0], (int, float)):
                xs.append(coords[0])
                ys.append(coords[1])
            else:
                for c in coords:
                    walk(c)

        features = data.get("features") or [data]
        for feature in features:
            geometry = feature.get("geometry", feature) if isinstance(feature, dict) else None
            if geometry:
                for geom in geometry.get("geometries", [geometry]):
                    walk(geom.get("coordinates", []))
        if not xs:
            raise InputError(f"--aoi {path} holds no coordinates.")
        crs = (data.get("crs") or {}).get("properties", {}).get("name") or "EPSG:4326"
        return cls((min(xs), min(ys), max(xs), max(ys)), crs, source=f"--aoi {path}")


def window_grid(grid: Grid, area: Area) -> Grid:
    """The part of ``grid`` (whole pixels, same lattice) that covers ``area``; an error if they do not overlap."""
    bounds = area.bounds
    if area.crs is not None and CRS.from_user_input(area.crs) != grid.crs:
        bounds = transform_bounds(area.crs, grid.crs, *bounds, densify_pts=21)
    inverse = ~grid.transform
    cols, rows = zip(*(inverse @ (x, y) for x in (bounds[0], bounds[2]) for y in (bounds[1], bounds[3])))
    col0 = max(0, math.floor(min(cols) + 1e-9))
    row0 = max(0, math.floor(min(rows) + 1e-9))
    col1 = min(grid.width, math.ceil(max(cols) - 1e-9))
    row1 = min(grid.height, math.ceil(max(rows) - 1e-9))
    if col1 <= col0 or row1 <= row0:
        left, bottom, right, top = grid.bounds
        raise InputError(f"{area.source} does not overlap the scene (scene bounds {left:.6g} {bottom:.6g} "
                         f"{right:.6g} {top:.6g} in {grid.crs.to_string()}); check the coordinates and --bbox-crs.")
    return Grid(grid.crs, grid.transform @ Affine.translation(col0, row0), col1 - col0, row1 - row0)
