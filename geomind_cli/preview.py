"""PNG quick-looks of written rasters: true colour for S2, VV/VH false colour for S1, hillshade for DEM, palette
for class maps, a percentile stretch of the first bands for anything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

MAX_SIDE = 1024


def _read_decimated(path: Path) -> tuple[np.ndarray, rasterio.DatasetReader]:
    with rasterio.open(path) as src:
        factor = max(1, int(np.ceil(max(src.width, src.height) / MAX_SIDE)))
        shape = (src.count, max(1, src.height // factor), max(1, src.width // factor))
        data = src.read(out_shape=shape, masked=True).astype("float32")
        meta = dict(descriptions=src.descriptions, res=src.res[0] * factor, colormap=None, count=src.count)
        try:
            meta["colormap"] = src.colormap(1)
        except ValueError:
            pass
    return np.ma.filled(data, np.nan), meta


def _stretch(x: np.ndarray, lo=2, hi=98) -> np.ndarray:
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros(x.shape, dtype=np.uint8)
    a, b = np.percentile(finite, [lo, hi])
    y = np.clip((x - a) / max(b - a, 1e-6), 0, 1)
    return np.nan_to_num(y * 255).astype(np.uint8)


def _hillshade(dem: np.ndarray, res: float, azimuth=315.0, altitude=45.0) -> np.ndarray:
    filled = np.where(np.isfinite(dem), dem, np.nanmean(dem) if np.isfinite(dem).any() else 0)
    dy, dx = np.gradient(filled, res)
    slope = np.arctan(np.hypot(dx, dy))
    aspect = np.arctan2(-dx, dy)
    az, alt = np.radians(azimuth), np.radians(altitude)
    shade = np.sin(alt) * np.cos(slope) + np.cos(alt) * np.sin(slope) * np.cos(az - aspect)
    return np.nan_to_num(np.clip(shade, 0, 1) * 255).astype(np.uint8)


def render(path: Path, modality: str | None = None) -> np.ndarray:
    """An RGB uint8 image [H, W, 3] for the raster at ``path``."""
    data, meta = _read_decimated(Path(path))
    names = [d or "" for d in meta["descriptions"]]
    if meta["colormap"] and meta["count"] == 1:
        lut = np.zeros((256, 3), dtype=np.uint8)
        for value, rgba in meta["colormap"].items():
            lut[value] = rgba[:3]
        return lut[np.nan_to_num(data[0]).astype(np.uint8)]
    if modality in ("S2L2A", "S2L1C") or {"RED", "GREEN", "BLUE"} <= set(names):
        # By description when the file has them, else Sentinel-2's band order (B01, B02 blue, B03 green, B04 red, ...).
        named = {"RED", "GREEN", "BLUE"} <= set(names)
        idx = [names.index(b) for b in ("RED", "GREEN", "BLUE")] if named else [3, 2, 1]
        rgb = np.clip(data[idx] / 3000.0, 0, 1)
        return np.nan_to_num(np.moveaxis(rgb, 0, -1) * 255).astype(np.uint8)
    if modality in ("S1GRD", "S1RTC") or names[:2] == ["VV", "VH"]:
        vv, vh = data[0], data[1]
        return np.dstack([_stretch(vv), _stretch(vh), _stretch(vv - vh)])
    if modality == "DEM" or names == ["DEM"]:
        return np.repeat(_hillshade(data[0], meta["res"])[..., None], 3, axis=-1)
    bands = [data[min(i, data.shape[0] - 1)] for i in range(3)]
    return np.dstack([_stretch(b) for b in bands])


def write_preview(path: Path, modality: str | None = None) -> Path:
    """Write ``<path without .tif>.png`` next to the raster and return its path."""
    target = Path(path).with_suffix(".png")
    tmp = target.with_name(f".{target.name}.tmp")
    Image.fromarray(render(path, modality)).save(tmp, format="PNG")
    tmp.replace(target)
    return target
