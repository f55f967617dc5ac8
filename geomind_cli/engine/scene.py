"""A scene: every input modality aligned on one grid, read lazily by windows.

``open_scene`` resolves the sources (:mod:`.sources`), picks the grid and warps each file onto it (:mod:`.grid`).
``Scene.read`` serves the tile loop (windows in TerraMind band order, physical units, NaN for nodata);
``Scene.modalities`` gives the same data as lazy dask DataArrays for Python users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from geomind_cli.engine.area import Area, window_grid
from geomind_cli.engine.grid import ArrayLayer, FetchedWindow, Grid, RasterLayer, choose_grid
from geomind_cli.engine.remote import gdal_path
from geomind_cli.engine.sources import FileBands, ReadOptions, ResolvedSource, SourceSpec, resolve_sources
from geomind_cli.errors import InputError
from geomind_cli.facts.modalities import MODALITIES


@dataclass(frozen=True)
class _Part:
    layer: RasterLayer | ArrayLayer
    targets: tuple[int, ...]  # positions in the modality's band list that this layer's bands fill


class Scene:
    """Input modalities on one :class:`Grid`. Use as a context manager (or call ``close``) to release files."""

    def __init__(self, grid: Grid, parts: dict[str, list[_Part]], *, sources: tuple[ResolvedSource, ...] = (),
                 categorical: frozenset[str] = frozenset()):
        self.grid = grid
        self._parts = parts
        self._sources = sources
        self.categorical = categorical

    @classmethod
    def from_arrays(cls, arrays: dict[str, xr.DataArray], *, grid: Grid | None = None) -> "Scene":
        """A scene from [band, y, x] DataArrays already on one grid (lazy dask arrays stay lazy).

        The grid comes from the first array's rioxarray CRS/transform unless given. Bands must be in TerraMind order.
        """
        first = next(iter(arrays.values()))
        if grid is None:
            grid = Grid(first.rio.crs, first.rio.transform(), first.rio.width, first.rio.height)
        parts = {}
        for name, array in arrays.items():
            if array.shape[1:] != (grid.height, grid.width):
                raise InputError(f"Array {name} has shape {array.shape[1:]}, not the grid's {(grid.height, grid.width)}.")
            parts[name] = [_Part(ArrayLayer(array), tuple(range(array.shape[0])))]
        return cls(grid, parts)

    @property
    def band_counts(self) -> dict[str, int]:
        return {name: sum(len(p.targets) for p in parts) for name, parts in self._parts.items()}

    @property
    def modalities(self) -> dict[str, xr.DataArray]:
        """Lazy float32 [band, y, x] DataArrays per modality, TerraMind band order, NaN for nodata, CRS set."""
        out = {}
        for name, parts in self._parts.items():
            pieces = [(t, p.layer.to_dataarray(chunks={"band": -1, "y": 1024, "x": 1024})[i])
                      for p in parts for i, t in enumerate(p.targets)]
            pieces.sort(key=lambda item: item[0])
            array = xr.concat([piece.drop_vars("band", errors="ignore") for _, piece in pieces], dim="band")
            bands = self.band_names(name) or list(range(len(pieces)))
            array = array.assign_coords(band=bands)
            out[name] = array.rio.write_crs(self.grid.crs).rio.write_transform(self.grid.transform)
        return out

    @property
    def layers(self) -> list[RasterLayer | ArrayLayer]:
        """Every layer read (one per file, or per in-memory array)."""
        return [part.layer for parts in self._parts.values() for part in parts]

    def band_names(self, name: str) -> list[str] | None:
        """The band names of a modality in read order (a model's layout, or the pre-trained modality's), if known."""
        for source in self._sources:
            if source.modality == name:
                return list(source.spec.layout.bands if source.spec.layout else MODALITIES[name].bands)
        return list(MODALITIES[name].bands) if name in MODALITIES else None

    def read(self, y0: int, y1: int, x0: int, x1: int) -> dict[str, np.ndarray]:
        """Per modality float32 [C, y1-y0, x1-x0] of the window (inside the grid), NaN where nodata."""
        out = {}
        for name, parts in self._parts.items():
            if len(parts) == 1 and parts[0].targets == tuple(range(self.band_counts[name])):
                out[name] = parts[0].layer.read(y0, y1, x0, x1)  # one file in band order: no copy
                continue
            data = np.empty((self.band_counts[name], y1 - y0, x1 - x0), np.float32)
            for part in parts:
                data[list(part.targets)] = part.layer.read(y0, y1, x0, x1)
            out[name] = data
        return out

    def fetch(self, y0: int, y1: int, x0: int, x1: int) -> list[tuple[str, tuple[int, ...], FetchedWindow]]:
        """The window decoded but not converted, per part: (modality, band positions, :class:`FetchedWindow`).
        A reading thread calls this; :meth:`fill_into` converts, in the thread that uses the values."""
        return [(name, part.targets, part.layer.fetch(y0, y1, x0, x1))
                for name, parts in self._parts.items() for part in parts]

    def raw_modalities(self) -> dict[str, tuple[FileBands, np.dtype]]:
        """Modalities read from one integer file, all bands in order, as raw integers in every window (see
        :meth:`RasterLayer.fetch`): their row bands can stay integers and be converted tile by tile."""
        raw = {}
        for name, parts in self._parts.items():
            layer = parts[0].layer
            if len(parts) == 1 and parts[0].targets == tuple(range(self.band_counts[name])) and layer.raw_everywhere:
                raw[name] = (layer.fb, layer.dtype)
        return raw

    @staticmethod
    def fill_into(fetched: list[tuple[str, tuple[int, ...], FetchedWindow]], out: dict[str, np.ndarray],
                  fills: dict[str, np.ndarray], *, raw: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
        """A :meth:`fetch` written into ``out`` (per modality float32 [C, h, w], views allowed) with nodata replaced
        by ``fills`` (per modality [C, 1, 1]); returns per modality bool [h, w], True where every band has data.
        The values are those of :meth:`read` with NaN replaced, without its intermediate float copies. Modalities
        in ``raw`` (from :meth:`raw_modalities`) are copied as the raw integers instead, into integer ``out``."""
        valid: dict[str, np.ndarray] = {}
        for name, targets, window in fetched:
            if name in raw:  # one window holding every band
                valid[name] = window.copy_raw_into(out[name])
                continue
            first, count = targets[0], len(targets)
            if targets == tuple(range(first, first + count)):  # a run of bands: written in place
                mask = window.fill_into(out[name][first:first + count], fills[name][first:first + count])
            else:
                scattered = np.empty((count, *out[name].shape[1:]), np.float32)
                mask = window.fill_into(scattered, fills[name][list(targets)])
                out[name][list(targets)] = scattered
            valid[name] = mask if name not in valid else valid[name] & mask
        return valid

    def read_cache_bytes(self) -> int:
        """GDAL block cache that reading the scene top to bottom needs to decode each block once (two block rows
        of every file), at most 1 GB."""
        need = sum(part.layer.cache_bytes() for parts in self._parts.values() for part in parts)
        return min(need, 2**30)

    def describe(self) -> dict:
        """What ``geomind info`` prints: the grid and, per source file, modality, bands, CRS, resolution, size, nodata,
        where the bands come from (file or STAC asset), the scale/offset applied, units, automatic decisions and how
        the file reaches the grid (``read``: :attr:`RasterLayer.road`)."""
        left, bottom, right, top = self.grid.bounds
        roads = {str(layer.fb.path): layer.road for layer in self.layers if isinstance(layer, RasterLayer)}
        files = []
        for source in self._sources:
            bands = list(source.bands)
            # Paired by path: a file none of whose bands is used (a 13th band file for a 12-band modality) has info
            # but no FileBands, so pairing by position would shift every later file onto the wrong band.
            used = {str(fb.path): fb for fb in source.files}
            for i, info in enumerate(source.info):
                path = str(info.get("path", ""))
                fb = used.get(path) or used.get(gdal_path(path))
                if fb is None and len(source.info) == len(source.files):
                    fb = source.files[i]  # products name their files by asset; one info per file, in order
                files.append({**info, "modality": source.modality, "s1_linear_to_db": source.to_db,
                              "bands": [bands[t] for t in fb.targets] if fb else [],
                              "origin": fb.origin if fb else "", "scales": list(fb.scales) if fb else [],
                              "offsets": list(fb.offsets) if fb else [], "db_factor": fb.db_factor if fb else 0.0,
                              "units": source.units, "product": source.product, "decisions": list(source.notes),
                              "mask": (source.mask.origin if source.mask is not None else None),
                              "read": roads.get(str(fb.path), "") if fb else ""})
        return {
            "grid": {"crs": self.grid.crs.to_string(), "res": list(self.grid.res),
                     "size": [self.grid.width, self.grid.height], "bounds": [left, bottom, right, top],
                     "transform": list(self.grid.transform)[:6]},
            "modalities": self.band_counts,
            "sources": files,
        }

    def conversions(self) -> list[dict]:
        """How each source's raw values become physical ones (files, bands, scale, offset, dB, nodata, cloud mask):
        part of what made an output, so a resumed run with other reading options (--s2-offset ...) is not skipped."""
        return [{"modality": source.modality, "mask": source.mask.path if source.mask is not None else None,
                 "files": [[fb.path, fb.file_bands, fb.scales, fb.offsets, fb.db_factor, fb.nodata]
                           for fb in source.files]} for source in self._sources]

    def close(self):
        for parts in self._parts.values():
            for part in parts:
                part.layer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_scene(sources: list[SourceSpec | str], *, crs=None, resolution: float | None = None, bounds=None,
               categorical: set[str] = frozenset({"LULC"}), read: ReadOptions = ReadOptions(),
               area: Area | None = None) -> Scene:
    """Open sources lazily and align them on one grid (default: the finest optical input's grid).

    ``sources`` are :class:`SourceSpec` s or their text form (``"s2.tif"``, ``"https://host/a.tif:S1GRD"``, a SAFE
    folder or zip, a STAC item). ``crs`` (any rasterio CRS input), ``resolution`` (grid units) and ``bounds`` (left,
    bottom, right, top in the target CRS) override the grid. Modalities in ``categorical`` are resampled with nearest
    neighbour. ``read`` settles what metadata cannot (Sentinel-2 offset, Sentinel-1 units, cloud mask). ``area``
    (:class:`~geomind_cli.engine.area.Area`: ``--bbox``/``--aoi``) keeps only the grid window that covers it.
    """
    if not sources:
        raise InputError("No input given; pass at least one raster.")
    specs = [SourceSpec.parse(s) if isinstance(s, str) else s for s in sources]
    resolved = [r for s in specs for r in resolve_sources(s, read, categorical=set(categorical))]
    seen = set()
    for source in resolved:
        if source.modality in seen:
            raise InputError(f"Modality {source.modality} was given twice; give each modality once.")
        seen.add(source.modality)
    grid = choose_grid(resolved, crs=crs, resolution=resolution, bounds=bounds)
    if area is not None:
        grid = window_grid(grid, area)
    parts = {}
    for source in resolved:
        parts[source.modality] = [
            _Part(RasterLayer(fb, grid, categorical=source.categorical, mask=source.mask,
                              mask_values=source.mask_values), fb.targets)
            for fb in source.files
        ]
    cats = frozenset(s.modality for s in resolved if s.categorical)
    return Scene(grid, parts, sources=tuple(resolved), categorical=cats)
