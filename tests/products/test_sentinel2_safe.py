"""Sentinel-2 SAFE products (folder and zip), built from ESA's published metadata with JP2 band files: modality
from the product type, bands at native resolution on the 10 m grid, reflectance x 10000 with the offset removed."""

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from geomind_cli.engine import SourceSpec, detect_modality, open_scene
from geomind_cli.engine.sources import ReadOptions
from geomind_cli.errors import InputError
from product_trees import L2A_IDS, SIZE_10M, build_s2_safe, zip_folder


def _full(scene):
    return scene.read(0, scene.grid.height, 0, scene.grid.width)


def test_l2a_safe_folder_and_zip_give_reflectance_without_offset(tmp_path):
    safe, dn = build_s2_safe(tmp_path, "L2A")
    archive = zip_folder(safe, tmp_path / "product.zip")
    for given in (str(safe), str(archive)):
        assert detect_modality(given) == "S2L2A"
        with open_scene([SourceSpec.parse(given)]) as scene:
            assert scene.band_counts == {"S2L2A": 12}
            assert scene.grid.res == (10.0, 10.0) and (scene.grid.width, scene.grid.height) == (SIZE_10M, SIZE_10M)
            assert scene.grid.crs.to_epsg() == 32634 and scene.grid.transform.c == 300000
            data = _full(scene)["S2L2A"]
            source = scene.describe()["sources"]
        # 10 m bands: exactly DN + BOA_ADD_OFFSET (-1000), quantification 10000 -> reflectance x 10000.
        for band in ("B02", "B03", "B04", "B08"):
            i = L2A_IDS.index(band)
            np.testing.assert_array_equal(data[i], dn[band].astype(np.float32) - 1000, err_msg=band)
        # 20 and 60 m bands: bilinear from their native pixels, minus 1000 (reference warp computed here).
        for band, res in (("B8A", 20), ("B11", 20), ("B01", 60)):
            with rasterio.open(next(s["path"] for s in source if s["bands"] == [band])) as src:
                raw = src.read(1).astype(np.float32)
                assert src.res == (res, res) and src.driver == "JP2OpenJPEG"
                expected = np.full((SIZE_10M, SIZE_10M), np.nan, np.float32)
                reproject(raw - 1000, expected, src_transform=src.transform, src_crs=src.crs,
                          dst_transform=scene.grid.transform, dst_crs=scene.grid.crs,
                          resampling=Resampling.bilinear, dst_nodata=np.nan)
            got = data[L2A_IDS.index(band)]
            both = np.isfinite(expected) & np.isfinite(got)
            assert both.mean() > 0.8
            assert np.max(np.abs(got[both] - expected[both])) < 0.02 * np.nanmax(np.abs(expected)), band
        assert all(s["offsets"] == [-1000.0] and s["scales"] == [1.0] for s in source)
        assert any("baseline offset -1000" in d and "05.09" in d for d in source[0]["decisions"])
        assert source[0]["origin"].endswith("_B01_60m.jp2")


def test_l1c_safe_keeps_b10_and_radio_offset(tmp_path):
    safe, dn = build_s2_safe(tmp_path, "L1C")
    with open_scene([str(safe)]) as scene:
        assert scene.band_counts == {"S2L1C": 13}
        data = _full(scene)["S2L1C"]
    np.testing.assert_array_equal(data[3], dn["B04"].astype(np.float32) - 1000)  # B04, RADIO_ADD_OFFSET -1000


def test_offset_option_overrides_product_metadata(tmp_path):
    safe, dn = build_s2_safe(tmp_path, "L2A")
    with open_scene([str(safe)], read=ReadOptions(s2_offset="none")) as scene:
        data = _full(scene)["S2L2A"]
    np.testing.assert_array_equal(data[3], dn["B04"].astype(np.float32))


def test_cloud_mask_from_scene_classification(tmp_path):
    scl = np.full((SIZE_10M // 2, SIZE_10M // 2), 4, np.uint8)  # vegetation
    scl[0:5, 0:5] = 9  # cloud high probability: 10 x 10 px at 10 m
    scl[10, 10] = 3  # cloud shadow
    scl[20, 20] = 6  # water stays
    safe, dn = build_s2_safe(tmp_path, "L2A", scl=scl)
    with open_scene([str(safe)], read=ReadOptions(cloud_mask=True)) as scene:
        data = _full(scene)["S2L2A"]
        lazy = scene.modalities["S2L2A"].values
    assert np.isnan(data[:, :10, :10]).all() and np.isnan(data[:, 20:22, 20:22]).all()
    assert np.isfinite(data[:, 40:42, 40:42]).all() and np.isfinite(data[:, 10:20, 10:20]).all()
    assert np.isnan(data).any(axis=0).sum() == 100 + 4
    np.testing.assert_array_equal(np.isnan(lazy), np.isnan(data))


def test_incomplete_product_and_wrong_level_are_one_line_errors(tmp_path):
    safe, _ = build_s2_safe(tmp_path, "L1C")
    with pytest.raises(InputError, match="needs the scene classification"):
        open_scene([str(safe)], read=ReadOptions(cloud_mask=True))
    next(safe.rglob("*_B8A.jp2")).unlink()
    with pytest.raises(InputError, match=r"B8A.jp2 that the metadata lists is missing") as info:
        open_scene([str(safe)])
    assert "\n" not in str(info.value)


def test_tile_function_receives_reflectance_without_offset(tmp_path):
    """What the model sees: the arrays of each batch equal DN - 1000 (B04, 10 m) at the tile's place."""
    from geomind_cli.engine import OutputSpec, run_scene

    safe, dn = build_s2_safe(tmp_path, "L2A")
    seen = []

    def tile_fn(batch):
        seen.append((batch.arrays["S2L2A"].copy(), batch.rows.copy(), batch.cols.copy(), batch.valid.copy()))
        return {"out": batch.arrays["S2L2A"][:, 3:4]}

    with open_scene([str(safe)]) as scene:
        run_scene(scene, tile_fn, [OutputSpec("out", tmp_path / "b04.tif", "continuous", ["B04"], "float32")],
                  progress=False, tile_size=32, overlap=16)
    expected = dn["B04"].astype(np.float32) - 1000
    checked = 0
    for arrays, rows, cols, valid in seen:
        for i, (y, x) in enumerate(zip(rows, cols)):
            h, w = min(32, SIZE_10M - y), min(32, SIZE_10M - x)
            np.testing.assert_array_equal(arrays[i, 3, :h, :w], expected[y:y + h, x:x + w])
            checked += int(valid[i, :h, :w].sum())
    assert checked >= SIZE_10M * SIZE_10M
    with rasterio.open(tmp_path / "b04.tif") as out:
        np.testing.assert_array_equal(out.read(1), expected)
