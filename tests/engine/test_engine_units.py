"""Raw values to physical units: GDAL scale/offset, the Sentinel-2 baseline offset, Sentinel-1 units, non-finite
values as nodata, checked against values computed by hand from known digital numbers."""

import numpy as np
import pytest

from engine_rasters import write_raster
from geomind_cli.engine import OutputSpec, SourceSpec, open_scene, run_scene
from geomind_cli.engine.sources import ReadOptions
from geomind_cli.errors import InputError

S2_IDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


def _full(scene):
    return scene.read(0, scene.grid.height, 0, scene.grid.width)


def _with_scale(path, scale, offset):
    import rasterio

    with rasterio.open(path, "r+") as dst:
        dst.scales = (scale,) * dst.count
        dst.offsets = (offset,) * dst.count
    return path


def test_gdal_scale_offset_int16_db_x100(tmp_path):
    raw = np.full((2, 16, 16), -1260, np.int16)
    raw[1] = -1985
    path = _with_scale(write_raster(tmp_path / "s1_db100.tif", raw, descriptions=["VV", "VH"]), 0.01, 0.0)
    with open_scene([SourceSpec.parse(f"{path}:S1GRD")]) as scene:
        data = _full(scene)["S1GRD"]
        described = scene.describe()["sources"][0]
    np.testing.assert_allclose(data[0], -12.60, atol=1e-4)
    np.testing.assert_allclose(data[1], -19.85, atol=1e-4)
    assert described["scales"] == [0.01, 0.01] and described["db_factor"] == 0.0
    assert any("dB" in d or "db" in d for d in described["decisions"])


def test_gdal_reflectance_scale_becomes_reflectance_x10000(tmp_path):
    # A COG that states reflectance = DN * 0.0001 - 0.1 (baseline >= 04.00 in STAC/GDAL terms): DN 3000 -> 2000.
    raw = np.full((12, 8, 8), 3000, np.uint16)
    path = _with_scale(write_raster(tmp_path / "s2.tif", raw, descriptions=S2_IDS, nodata=0), 0.0001, -0.1)
    with open_scene([SourceSpec([path])]) as scene:
        np.testing.assert_allclose(_full(scene)["S2L2A"], 2000.0, atol=1e-3)
    with open_scene([SourceSpec([path])], read=ReadOptions(s2_offset="none")) as scene:
        np.testing.assert_allclose(_full(scene)["S2L2A"], 3000.0, atol=1e-3)


def test_s2_offset_option_on_untagged_file(tmp_path):
    raw = np.full((12, 8, 8), 1500, np.uint16)
    raw[:, 0, 0] = 0  # nodata stays nodata, never -1000
    path = write_raster(tmp_path / "s2.tif", raw, descriptions=S2_IDS, nodata=0)
    with open_scene([SourceSpec([path])]) as scene:
        auto = _full(scene)["S2L2A"]
        notes = scene.describe()["sources"][0]["decisions"]
    assert auto[0, 1, 1] == 1500 and any("--s2-offset -1000" in n for n in notes)  # auto says what it assumed
    with open_scene([SourceSpec([path])], read=ReadOptions(s2_offset="-1000")) as scene:
        given = _full(scene)["S2L2A"]
    assert given[0, 1, 1] == 500 and np.isnan(given[:, 0, 0]).all()
    with pytest.raises(InputError, match="--s2-offset"):
        ReadOptions(s2_offset="lots")


def test_s1_units_amplitude_and_override(tmp_path):
    amplitude = np.full((2, 8, 8), 100, np.uint16)  # GRD digital numbers: 20 log10(100) = 40
    path = write_raster(tmp_path / "grd_dn.tif", amplitude, descriptions=["VV", "VH"], nodata=0)
    with open_scene([SourceSpec([path], "S1GRD")]) as scene:
        np.testing.assert_allclose(_full(scene)["S1GRD"], 40.0, atol=1e-4)
    with open_scene([SourceSpec([path], "S1GRD")], read=ReadOptions(s1_units="linear")) as scene:
        np.testing.assert_allclose(_full(scene)["S1GRD"], 20.0, atol=1e-4)
    with open_scene([SourceSpec([path], "S1GRD")], read=ReadOptions(s1_units="db")) as scene:
        np.testing.assert_allclose(_full(scene)["S1GRD"], 100.0)


def test_infinite_values_are_nodata_and_filled(tmp_path):
    """-inf (no backscatter in a dB product) must be NaN in the scene and filled before the tile function."""
    db = np.full((2, 40, 40), -12.0, np.float32)
    db[0, 5, 7] = -np.inf
    db[1, 9, 9] = np.inf
    path = write_raster(tmp_path / "s1.tif", db, descriptions=["VV", "VH"])
    with open_scene([SourceSpec([path])]) as scene:
        data = _full(scene)["S1GRD"]
        lazy = scene.modalities["S1GRD"].values
        assert np.isnan(data[0, 5, 7]) and np.isnan(data[1, 9, 9]) and np.isfinite(data).sum() == data.size - 2
        np.testing.assert_array_equal(np.isnan(lazy), np.isnan(data))
        seen = []

        def tile_fn(batch):
            seen.append((batch.arrays["S1GRD"].copy(), batch.valid.copy()))
            return {"out": batch.arrays["S1GRD"]}

        run_scene(scene, tile_fn, [OutputSpec("out", tmp_path / "out.tif", "continuous", ["VV", "VH"], "float32")],
                  progress=False)
    arrays, valid = seen[0]
    assert np.isfinite(arrays).all()  # filled: one bad pixel no longer turns the tile's outputs into NaN
    assert not valid[0, 5, 7] and not valid[0, 9, 9] and valid[0, 0, 0]
    assert np.all(arrays[0, :, 0, 0] == -12.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.uint32])
@pytest.mark.parametrize("scale, offset", [(1.0, 0.0), (0.0001, -0.1), (0.37, 12.5)])
def test_tile_conversion_equals_reference_conversion(dtype, scale, offset):
    # The engine converts raw integers tile by tile (integers_to_physical); the values must be those of
    # FileBands.to_physical bit for bit, 32-bit integers included (they do not fit a float32 exactly).
    from geomind_cli.engine.grid import integers_to_physical
    from geomind_cli.engine.sources import FileBands

    info = np.iinfo(dtype)
    raw = np.random.default_rng(0).integers(info.min, info.max, (3, 32, 32), dtype=dtype, endpoint=True)
    raw[:, 0, 0] = [info.min, info.max, 16_777_217 if info.max > 16_777_217 else info.max - 1]
    fb = FileBands("x.tif", (1, 2, 3), (0, 1, 2), None, (offset,) * 3, (scale,) * 3)
    out = np.empty(raw.shape, np.float32)
    integers_to_physical(raw, fb, out, np.zeros((3, 1, 1), np.float32), None)
    np.testing.assert_array_equal(out, fb.to_physical(raw))
