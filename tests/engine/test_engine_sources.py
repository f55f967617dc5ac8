"""Opening, band mapping and alignment: real rasters from shared_data, plus generated edge cases."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from engine_rasters import ORIGIN, write_raster
from geomind_cli.engine import SourceSpec, detect_modality, open_scene
from geomind_cli.errors import InputError

S2_IDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


def _full(scene):
    return scene.read(0, scene.grid.height, 0, scene.grid.width)


def test_parse_cli_syntax(tmp_path):
    assert SourceSpec.parse("scene.tif") == SourceSpec([Path("scene.tif")])
    assert SourceSpec.parse("scene.tif:S1GRD").modality == "S1GRD"
    assert SourceSpec.parse("a.tif,b.tif:s2l2a").paths == ["a.tif", "b.tif"]
    assert SourceSpec.parse("a.tif,b.tif:s2l2a").modality == "S2L2A"
    with pytest.raises(InputError, match="unknown modality"):
        SourceSpec.parse("scene.tif:SAR9")


@pytest.mark.parametrize("text, path, modality", [
    ("https://host/a.tif", "https://host/a.tif", None),
    ("https://host:8080/dir/a.tif:S1GRD", "https://host:8080/dir/a.tif", "S1GRD"),
    ("/vsicurl/https://host/a.tif", "/vsicurl/https://host/a.tif", None),
    ("/vsicurl/https://host/a.tif:DEM", "/vsicurl/https://host/a.tif", "DEM"),
    ("s3://bucket/key/a.tif", "s3://bucket/key/a.tif", None),
    ("gs://bucket/a.tif:s1rtc", "gs://bucket/a.tif", "S1RTC"),
    ("az://container/a.tif", "az://container/a.tif", None),
    ("/vsizip//data/p.zip/x/b04.jp2", "/vsizip//data/p.zip/x/b04.jp2", None),
    ("https://acct.blob.core.windows.net/c/a.tif?se=2026-01-01T00:00:00Z&sig=x", None, None),
])
def test_parse_keeps_urls_and_vsi_paths_whole(text, path, modality):
    spec = SourceSpec.parse(text)
    assert spec.paths == [path or text] and spec.modality == modality


def test_gdal_paths_of_urls():
    from geomind_cli.engine.remote import gdal_path

    assert gdal_path("https://host/a.tif") == "/vsicurl/https://host/a.tif"
    assert gdal_path("s3://bucket/k/a.tif") == "/vsis3/bucket/k/a.tif"
    assert gdal_path("gs://bucket/a.tif") == "/vsigs/bucket/a.tif"
    assert gdal_path("az://container/a.tif") == "/vsiaz/container/a.tif"
    assert gdal_path("/vsicurl/https://host/a.tif") == "/vsicurl/https://host/a.tif"
    assert gdal_path("local/a.tif") == "local/a.tif"


def test_bigearthnet_band_files_stack_on_10m_grid(shared_data):
    folder = next((shared_data / "bigearthnet/BigEarthNet-S2-Example").iterdir())
    files = sorted(folder.glob("*_B*.tif"))
    assert len(files) == 12
    with open_scene([SourceSpec(files)]) as scene:
        assert scene.band_counts == {"S2L2A": 12}
        data = _full(scene)["S2L2A"]
        with rasterio.open(next(f for f in files if f.stem.endswith("_B02"))) as ref:
            assert scene.grid.transform == ref.transform and (scene.grid.height, scene.grid.width) == ref.shape
            dst_transform, dst_crs = ref.transform, ref.crs
        assert data.shape == (12, 120, 120) and data.dtype == np.float32
        for i, band in enumerate(S2_IDS):
            with rasterio.open(next(f for f in files if f.stem.endswith("_" + band))) as src:
                raw = src.read(1).astype(np.float32)
                if src.res == (10.0, 10.0):
                    assert np.array_equal(data[i], raw), band  # on the grid: an exact copy
                else:
                    expected = np.full((120, 120), np.nan, np.float32)
                    reproject(raw, expected, src_transform=src.transform, src_crs=src.crs, dst_transform=dst_transform,
                              dst_crs=dst_crs, resampling=Resampling.bilinear, dst_nodata=np.nan)
                    both = np.isfinite(expected) & np.isfinite(data[i])
                    assert both.mean() > 0.95
                    assert np.nanmax(np.abs(data[i][both] - expected[both])) < 0.02 * np.nanmax(raw), band
                    # A 20/60 m pixel covers 2x2/6x6 grid pixels: the grid mean over it matches the source pixel.
                    k = int(src.res[0] // 10)
                    block = data[i][: 120 // k * k, : 120 // k * k].reshape(120 // k, k, 120 // k, k).mean((1, 3))
                    inner = (slice(1, -1), slice(1, -1))
                    assert np.corrcoef(block[inner].ravel(), raw[inner].ravel())[0, 1] > 0.98, band


def test_sen1floods11_s1_s2l1c_epsg4326_nodata(shared_data):
    s1 = shared_data / "sen1floods11/Spain_7370579_S1Hand.tif"
    s2 = shared_data / "sen1floods11/Spain_7370579_S2Hand.tif"
    assert detect_modality(s2) == "S2L1C" and detect_modality(s1) == "S1GRD"
    with open_scene([SourceSpec.parse(str(s2)), SourceSpec.parse(str(s1))]) as scene:
        assert scene.grid.crs.to_epsg() == 4326 and (scene.grid.height, scene.grid.width) == (512, 512)
        data = _full(scene)
        description = scene.describe()
    assert {s["modality"] for s in description["sources"]} == {"S2L1C", "S1GRD"}
    assert not any(s["s1_linear_to_db"] for s in description["sources"])  # the chip is already in dB
    with rasterio.open(s2) as src:
        raw = src.read().astype(np.float32)
    np.testing.assert_array_equal(data["S2L1C"], raw)  # on its own grid: exact, B10 kept for L1C
    # The chip has no nodata pixels; declare a value that occurs as nodata: those pixels (per band) become NaN.
    value = float(raw[0, 0, 0])
    with open_scene([SourceSpec([s2], nodata=value)]) as scene:
        masked = _full(scene)["S2L1C"]
    assert np.array_equal(np.isnan(masked), raw == value) and (raw == value).sum() >= 1
    # Reprojected to UTM, pixels outside the chip's footprint are NaN.
    with open_scene([SourceSpec([s2])], crs="EPSG:32630") as scene:
        warped = _full(scene)["S2L1C"]
    assert 0.01 < np.isnan(warped[0]).mean() < 0.5
    with rasterio.open(s1) as src:
        np.testing.assert_array_equal(data["S1GRD"], src.read().astype(np.float32))


def test_terramind_examples_from_separate_files(shared_data):
    root = shared_data / "terramind_examples"
    sample = "282D_485L_3_3"
    sources = [SourceSpec([root / "S2L2A" / f"{sample}.tif"]), SourceSpec([root / "S1RTC" / f"{sample}.tif"], "S1RTC"),
               SourceSpec([root / "DEM" / f"{sample}.tif"], "DEM")]
    with open_scene(sources) as scene:
        data = _full(scene)
        lazy = scene.modalities
    assert set(data) == {"S2L2A", "S1RTC", "DEM"}
    for name in data:
        folder = "S2L2A" if name == "S2L2A" else name
        with rasterio.open(root / folder / f"{sample}.tif") as src:
            np.testing.assert_array_equal(data[name], src.read().astype(np.float32))
    assert lazy["S2L2A"].shape == (12, 224, 224) and lazy["S2L2A"].chunks is not None
    assert lazy["S1RTC"].rio.crs.to_epsg() == 32722
    np.testing.assert_array_equal(lazy["DEM"].values, data["DEM"])
    assert list(lazy["S2L2A"].band.values[:2]) == ["COASTAL_AEROSOL", "BLUE"]


def test_dem_in_other_crs_aligned_onto_utm_grid(shared_data, tmp_path):
    dem = shared_data / "dem_extra/Rome-30m-DEM.tif"
    with rasterio.open(dem) as src:
        left, bottom, right, top = rasterio.warp.transform_bounds(src.crs, "EPSG:32633", *src.bounds)
        raw, dem_transform, dem_crs = src.read(1), src.transform, src.crs
    # A generated 20 m S2 grid in UTM 33N, inside the DEM's footprint.
    transform = rasterio.Affine(20, 0, round(left) + 2000, 0, -20, round(top) - 2000)
    s2 = write_raster(tmp_path / "s2.tif", np.full((12, 150, 160), 1000, np.uint16), transform=transform)
    with open_scene([SourceSpec([s2]), SourceSpec([dem], "DEM")]) as scene:
        assert scene.grid.crs.to_epsg() == 32633 and scene.grid.transform == transform
        got = _full(scene)["DEM"][0]
    expected = np.full((150, 160), np.nan, np.float32)
    reproject(raw.astype(np.float32), expected, src_transform=dem_transform, src_crs=dem_crs, src_nodata=-32768,
              dst_transform=transform, dst_crs="EPSG:32633", resampling=Resampling.bilinear, dst_nodata=np.nan)
    assert np.isfinite(got).all() and np.ptp(got) > 20
    assert np.median(np.abs(got - expected)) < 0.5 and np.max(np.abs(got - expected)) < 5


def test_boa_offset_and_s1_linear_to_db(tmp_path):
    dn = np.full((12, 40, 40), 2000, np.uint16)
    s2 = write_raster(tmp_path / "s2.tif", dn, descriptions=S2_IDS, tags={"BOA_ADD_OFFSET": "-1000"})
    linear = np.full((2, 40, 40), 0.1, np.float32)
    linear[1] = 0.01
    s1 = write_raster(tmp_path / "s1.tif", linear, descriptions=["VV", "VH"])
    with open_scene([SourceSpec([s2]), SourceSpec([s1])]) as scene:
        data = _full(scene)
    assert np.all(data["S2L2A"] == 1000)
    np.testing.assert_allclose(data["S1GRD"][0], -10.0, atol=1e-5)
    np.testing.assert_allclose(data["S1GRD"][1], -20.0, atol=1e-5)
    with open_scene([SourceSpec([s1], s1_units="db")]) as scene:
        assert np.allclose(_full(scene)["S1GRD"][0], 0.1)


def test_band_descriptions_reorder_and_select(tmp_path):
    # A 13-band L1C-ordered file used as S2L2A: B10 dropped, others mapped by description.
    ids = S2_IDS[:10] + ["B10"] + S2_IDS[10:]
    data = np.arange(13, dtype=np.int16)[:, None, None] * np.ones((13, 8, 8), np.int16)
    path = write_raster(tmp_path / "l1c.tif", data, descriptions=ids[::-1])  # descriptions in reverse file order
    with open_scene([SourceSpec([path], "S2L2A")]) as scene:
        got = _full(scene)["S2L2A"][:, 0, 0]
    # File band i (0-based) holds value i and is described as ids[12 - i], so band b sits at 12 - ids.index(b).
    assert got.tolist() == [12 - ids.index(b) for b in S2_IDS]
    assert 2 not in got.tolist()  # B10 (file band 2) dropped


def test_missing_bands_error_names_present(tmp_path):
    path = write_raster(tmp_path / "rgb.tif", np.ones((3, 8, 8), np.uint16), descriptions=["B02", "B03", "B04"])
    with pytest.raises(InputError, match=r"needs bands B01, B05.*it has B02, B03, B04"):
        open_scene([SourceSpec([path], "S2L2A")])


def test_bad_inputs_give_one_line_errors(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    no_crs = write_raster(tmp_path / "nocrs.tif", np.ones((12, 8, 8), np.uint16), crs=None)
    far = write_raster(tmp_path / "far.tif", np.ones((2, 8, 8), np.float32) * -10,
                       transform=ORIGIN * rasterio.Affine.translation(1e5, 0))
    here = write_raster(tmp_path / "here.tif", np.ones((12, 8, 8), np.uint16))
    cases = [([SourceSpec([junk])], "Cannot read"), ([SourceSpec([no_crs])], "no coordinate reference system"),
             ([SourceSpec([here]), SourceSpec([far], "S1GRD")], "does not overlap"),
             ([SourceSpec([here])], "Unknown CRS")]
    for i, (sources, message) in enumerate(cases):
        with pytest.raises(InputError, match=message) as info:
            open_scene(sources, crs="EPSG:999999" if i == 3 else None)
        assert "\n" not in str(info.value)


def test_grid_options_crs_resolution_bounds(tmp_path):
    path = write_raster(tmp_path / "s2.tif", np.ones((12, 100, 100), np.uint16))
    with open_scene([SourceSpec([path])], resolution=20.0) as scene:
        assert (scene.grid.width, scene.grid.height) == (50, 50)
    with open_scene([SourceSpec([path])], bounds=(500100, 3999500, 500400, 3999900)) as scene:
        assert (scene.grid.width, scene.grid.height) == (30, 40) and scene.grid.transform.c == 500100
        assert np.isnan(_full(scene)["S2L2A"]).all() == False  # noqa: E712
    with open_scene([SourceSpec([path])], crs="EPSG:4326") as scene:
        assert scene.grid.crs.to_epsg() == 4326
        assert np.isfinite(_full(scene)["S2L2A"]).mean() > 0.8


def test_file_name_words_settle_what_band_counts_leave_open(tmp_path):
    one = np.ones((1, 32, 32), np.float32)
    two = np.ones((2, 32, 32), np.float32)
    cases = {
        "Rome-30m-DEM.tif": (one, "DEM"), "copdem.tif": (one, "DEM"), "tile.7.ndvi.tif": (one, "NDVI"),
        "worldcover_lulc_2021.tif": (one.astype(np.uint8), "LULC"), "scene-s1rtc.tif": (two, "S1RTC"),
        "scene_GRD.tif": (two, "S1GRD"), "scene.tif": (two, "S1GRD"),  # two bands without a hint: GRD
        "band.tif": (one, None),  # nothing to go on: the user names it FILE:MODALITY
        "dem-ndvi-diff.tif": (one, None),  # contradictory words decide nothing
        "s2_dem.tif": (np.ones((12, 32, 32), np.uint16), "S2L2A"),  # bands beat a word that does not fit them
    }
    for name, (data, expected) in cases.items():
        assert detect_modality(write_raster(tmp_path / name, data)) == expected, name
    with open_scene([SourceSpec([tmp_path / "Rome-30m-DEM.tif"])]) as scene:
        assert scene.band_counts == {"DEM": 1}


def test_describe_pairs_each_band_file_with_its_own_band(tmp_path):
    """13 single-band files (B10 included) as S2L2A, which has 12 bands: the B10 file feeds nothing, and every file
    after it must still be reported against its own band, not its neighbour's (files are paired by path)."""
    order = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]
    paths = [write_raster(tmp_path / f"T33_{band}.tif", np.full((1, 32, 32), 1000 + i, np.uint16))
             for i, band in enumerate(order)]
    with open_scene([SourceSpec(paths=paths, modality="S2L2A")]) as scene:
        described = scene.describe()["sources"]
    reported = {Path(src["path"]).stem.split("_")[1]: src["bands"] for src in described}
    assert reported.pop("B10") == []
    assert reported == {band: [band] for band in order if band != "B10"}
