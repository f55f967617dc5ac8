"""Generated test rasters for the engine tests (all synthetic; real rasters come from the shared_data fixture)."""

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

UTM = "EPSG:32633"
ORIGIN = Affine(10, 0, 500000, 0, -10, 4000000)


def write_raster(path: Path, data: np.ndarray, *, crs=UTM, transform=ORIGIN, nodata=None, descriptions=None,
                 tags=None, band_tags=None) -> Path:
    """Write [C, H, W] ``data`` as a GeoTIFF."""
    count, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name,
                       crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
        if tags:
            dst.update_tags(**tags)
        for band, bt in (band_tags or {}).items():
            dst.update_tags(band, **bt)
    return path


def smooth_field(channels: int, height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """float32 [C, H, W] low-frequency pattern in the range of Sentinel-2 digital numbers."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((channels, height, width), np.float32)
    for c in range(channels):
        fy, fx, phase = rng.uniform(0.002, 0.02, 2).tolist() + [rng.uniform(0, 6.28)]
        out[c] = 3000 + 1500 * np.sin(fy * y + phase) * np.cos(fx * x) + 10 * c
    return out
