"""Nodata and value encoding that the tiling cannot change: grid cells without a valid pixel are nodata, every
output kind is stored through OutputSpec.encode (scale, offset, rounding), and a class index equal to nodata
(TerraMind's LULC class 0, "No data") is written as itself."""

import numpy as np
import pytest
import rasterio

from engine_rasters import write_raster
from geomind_cli.engine import OutputSpec, SourceSpec, open_scene, run_scene
from geomind_cli.facts.modalities import MODALITIES

BANDS = list(MODALITIES["S2L2A"].band_ids)


def _scene(tmp_path, data, **kw):
    return open_scene([SourceSpec([write_raster(tmp_path / "in.tif", data, descriptions=BANDS, **kw)])])


def _cell_means(batch):
    """One value per 16 px cell: the mean of the first band there (nodata pixels were filled by the engine)."""
    a = batch.arrays["S2L2A"][:, :1]
    b, _, t, _ = a.shape
    return a.reshape(b, 1, t // 16, 16, t // 16, 16).mean(axis=(3, 5))


@pytest.mark.parametrize("overlap", [32, 64, 96])
def test_grid_cells_without_a_valid_pixel_are_nodata_whatever_the_tiling(tmp_path, overlap):
    # 400 x 400 px: nodata in the top-left 200 x 200 (cells 0..12 fully, pixel 192..199 of cell 12 too) and in a
    # 40 x 40 px patch at rows/cols 300..339 that half-covers cells 18 and 21 (those keep a valid pixel).
    data = np.full((12, 400, 400), 1000, np.int16)
    data[:, :200, :200] = 0
    data[:, 300:340, 300:340] = 0
    out = tmp_path / f"cells_{overlap}.tif"
    spec = OutputSpec("cells", out, "grid", ["mean"], "float32")
    with _scene(tmp_path, data, nodata=0) as scene:
        run_scene(scene, lambda batch: {"cells": _cell_means(batch)}, [spec], progress=False, overlap=overlap)
    with rasterio.open(out) as dst:
        got = dst.read(1)
    pixels_nodata = (data[0] == 0)
    cells_nodata = pixels_nodata.reshape(25, 16, 25, 16).all(axis=(1, 3))
    assert cells_nodata.sum() == 12 * 12 + 4  # 0..11 squared, and cells 19..20 x 19..20 of the small patch
    np.testing.assert_array_equal(np.isnan(got), cells_nodata)


def test_grid_values_are_rounded_and_scaled_like_every_output(tmp_path):
    data = np.full((12, 224, 224), 1000, np.int16)
    raw = OutputSpec("raw", tmp_path / "raw.tif", "grid", ["v"], "uint8")
    scaled = OutputSpec("scaled", tmp_path / "scaled.tif", "grid", ["v"], "uint8", scale=0.5, offset=1.0)

    def tile_fn(batch):
        value = np.full((len(batch), 1, 14, 14), 2.7, np.float32)
        return {"raw": value, "scaled": value}

    with _scene(tmp_path, data) as scene:
        run_scene(scene, tile_fn, [raw, scaled], progress=False)
    with rasterio.open(raw.path) as dst:
        assert (dst.read(1) == 3).all()  # rounded, not truncated to 2
    with rasterio.open(scaled.path) as dst:
        assert (dst.read(1) == 3).all()  # (2.7 - 1) / 0.5 = 3.4 -> 3
        assert dst.scales == (0.5,) and dst.offsets == (1.0,)
        assert np.allclose(dst.read(1) * dst.scales[0] + dst.offsets[0], 2.5)


def test_class_zero_stays_zero_when_it_is_the_nodata_class(tmp_path):
    """argmax 0 of TerraMind's LULC ("No data") is written 0, not moved to 1 (Water)."""
    from geomind_cli.tasks.generate import output_specs

    spec, = output_specs(["LULC"], tmp_path, "scene")
    assert spec.nodata == 0 and spec.class_names[0].lower().replace(" ", "") == "nodata"
    data = np.full((12, 224, 224), 1000, np.int16)

    def tile_fn(batch):
        probs = np.zeros((len(batch), 10, 224, 224), np.float32)
        probs[:, 0, :, :112] = 1  # left half: class 0
        probs[:, 1, :, 112:] = 1  # right half: class 1 (Water)
        return {"LULC": probs}

    with _scene(tmp_path, data) as scene:
        run_scene(scene, tile_fn, [spec], progress=False)
    with rasterio.open(spec.path) as dst:
        classes = dst.read(1)
    assert (classes[:, :112] == 0).all() and (classes[:, 112:] == 1).all()


def test_inf_pixels_are_nodata_and_never_reach_the_tile_function(tmp_path):
    data = np.full((12, 224, 224), 1000, np.float32)
    data[:, 10:20, 10:20] = np.inf
    data[:, 30:40, 30:40] = -np.inf
    data[:, 50:60, 50:60] = np.nan
    seen = []

    def tile_fn(batch):
        seen.append(all(np.isfinite(a).all() for a in batch.arrays.values()))
        return {"out": batch.arrays["S2L2A"][:, :1]}

    spec = OutputSpec("out", tmp_path / "out.tif", "continuous", ["B01"], "float32")
    with _scene(tmp_path, data) as scene:
        run_scene(scene, tile_fn, [spec], progress=False)
    assert seen == [True]
    with rasterio.open(spec.path) as dst:
        got = dst.read(1)
    bad = ~np.isfinite(data[0])
    assert np.isnan(got[bad]).all() and (got[~bad] == 1000).all()
