"""Sentinel-1 GRD: a SAFE product (ESA manifest and annotation as published, measurements georeferenced by GCPs),
calibrated to sigma0 dB and warped with its GCPs; units overridable."""

import math

import numpy as np
import pytest

from geomind_cli.engine import detect_modality, open_scene
from geomind_cli.engine.sources import ReadOptions
from geomind_cli.errors import InputError
from product_trees import build_s1_safe, zip_folder


def _full(scene):
    return scene.read(0, scene.grid.height, 0, scene.grid.width)


def test_grd_safe_sigma0_db_warped_with_gcps(tmp_path):
    safe = build_s1_safe(tmp_path, {"VV": 100, "VH": 30}, 475.0)
    for given in (safe, zip_folder(safe, tmp_path / "grd.zip")):
        assert detect_modality(str(given)) == "S1GRD"
        with open_scene([str(given)]) as scene:
            data = _full(scene)["S1GRD"]
            grid, described = scene.grid, scene.describe()["sources"]
        # sigma0 = DN^2 / A^2 -> dB: 20 log10(DN / A)
        finite = np.isfinite(data[0])
        assert 0.4 < finite.mean() < 0.95  # the swath is a tilted quadrilateral inside its bounding grid
        np.testing.assert_allclose(data[0][finite], 20 * math.log10(100 / 475), atol=1e-4)
        np.testing.assert_allclose(data[1][np.isfinite(data[1])], 20 * math.log10(30 / 475), atol=1e-4)
        # On the manifest's footprint (lat 45.61..47.51, lon 8.77..12.45, EPSG:4326).
        left, bottom, right, top = grid.bounds
        assert grid.crs.to_epsg() == 4326
        assert abs(left - 8.77) < 0.05 and abs(right - 12.45) < 0.05 and abs(bottom - 45.61) < 0.05
        assert abs(top - 47.51) < 0.05
        # A footprint corner (lat 47.117, lon 12.446) is inside, the opposite corner of the bounding box is not.
        col, row = ~grid.transform * (12.40, 47.08)
        assert np.isfinite(data[0, int(row), int(col)])
        assert np.isnan(data[0, 0, 0])
        assert any("sigmaNought 475" in d for d in described[0]["decisions"])


def test_grd_units_override_and_single_pol_error(tmp_path):
    safe = build_s1_safe(tmp_path, {"VV": 100, "VH": 30}, 475.0)
    with open_scene([str(safe)], read=ReadOptions(s1_units="db")) as scene:
        data = _full(scene)["S1GRD"]
    np.testing.assert_allclose(data[0][np.isfinite(data[0])], 100 / 475, rtol=1e-5)  # scale only, no log
    for path in (safe / "measurement").glob("*-vh-*"):
        path.unlink()
    with pytest.raises(InputError, match="needs VV, VH"):
        open_scene([str(safe)])


def test_stac_grd_item_relative_hrefs_over_http(tmp_path):
    """The stactools-generated sentinel-1-grd item (relative hrefs into its SAFE) next to generated measurements
    (GCPs on the item's bbox corners) and calibration annotations, served over loopback HTTP."""
    import json
    import posixpath
    import shutil

    import rasterio
    from rasterio.control import GroundControlPoint

    from http_server import serve
    from product_trees import STAC, calibration_xml

    source = (STAC / "stactools-generated"
              / "sentinel1-grd__S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13.json")
    item = json.loads(source.read_text())
    served = tmp_path / "served"
    # Where the item sits in the stactools repository: its hrefs (../../../tests/data-files/grd/...) are relative.
    item_path = f"examples/grd/{item['id']}/{item['id']}.json"
    (served / item_path).parent.mkdir(parents=True)
    shutil.copy(source, served / item_path)

    def beside(href):
        return served / posixpath.normpath(posixpath.join(posixpath.dirname(item_path), href))

    west, south, east, north = item["bbox"]
    height, width = 40, 50
    gcps = [GroundControlPoint(0, 0, west, north), GroundControlPoint(0, width, east, north),
            GroundControlPoint(height, 0, west, south), GroundControlPoint(height, width, east, south)]
    for pol, dn in (("vv", 200), ("vh", 50)):
        target = beside(item["assets"][pol]["href"])
        target.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(target, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint16",
                           gcps=gcps, crs="EPSG:4326", nodata=0) as dst:
            dst.write(np.full((1, height, width), dn, np.uint16))
        calibration = beside(item["assets"][f"schema-calibration-{pol}"]["href"])
        calibration.parent.mkdir(parents=True, exist_ok=True)
        calibration.write_text(calibration_xml(500.0))
    with serve(served) as (base, _):
        with open_scene([f"{base}/{item_path}"]) as scene:
            data = _full(scene)["S1GRD"]
            described = scene.describe()["sources"]
    np.testing.assert_allclose(data[0][np.isfinite(data[0])], 20 * math.log10(200 / 500), atol=1e-4)
    np.testing.assert_allclose(data[1][np.isfinite(data[1])], 20 * math.log10(50 / 500), atol=1e-4)
    assert np.isfinite(data).mean() > 0.9
    assert [s["asset"] for s in described] == ["vv", "vh"]


def test_earth_search_single_pol_grd_item_is_refused(tmp_path):
    from product_trees import STAC

    item = STAC / "earth-search/sentinel-1-grd__S1A_IW_GRDH_1SSH_20250731T135702_20250731T135722_060328_077F7E.json"
    assert detect_modality(str(item)) == "S1GRD"
    with pytest.raises(InputError, match="no asset for VV, VH"):
        open_scene([str(item)])


def test_rtc_item_linear_gamma0_to_db_over_http(tmp_path):
    """A sentinel-1-rtc item in the Planetary Computer layout (generated: no published one is in shared/):
    vv/vh float32 COGs of linear gamma0 -> 10 log10."""
    import json

    from affine import Affine

    from http_server import serve
    from product_trees import write_band

    served = tmp_path / "served"
    vv = np.full((40, 40), 0.1, np.float32)
    vv[3, 4] = 0.0  # no backscatter: -inf in dB, so nodata
    vh = np.full((40, 40), 0.01, np.float32)
    transform = Affine(10, 0, 600000, 0, -10, 5200000)
    for name, data in (("vv", vv), ("vh", vh)):
        write_band(served / f"rtc/{name}.tif", data, crs="EPSG:32632", transform=transform, driver="COG",
                   nodata=-32768)
    with serve(served) as (base, _):
        item = {"type": "Feature", "stac_version": "1.0.0", "id": "S1A_IW_GRDH_1SDV_20230101_rtc",
                "collection": "sentinel-1-rtc", "geometry": None, "bbox": None,
                "properties": {"datetime": "2023-01-01T00:00:00Z", "sar:product_type": "RTC",
                               "sar:polarizations": ["VV", "VH"], "proj:epsg": 32632},
                "links": [], "assets": {name: {"href": f"{base}/rtc/{name}.tif", "roles": ["data"],
                                               "type": "image/tiff; application=geotiff; profile=cloud-optimized"}
                                        for name in ("vv", "vh")}}
        (served / "rtc.json").write_text(json.dumps(item))
        assert detect_modality(f"{base}/rtc.json") == "S1RTC"
        with open_scene([f"{base}/rtc.json"]) as scene:
            data = _full(scene)["S1RTC"]
    assert np.isnan(data[0, 3, 4]) and np.isfinite(data).sum() == data.size - 1
    np.testing.assert_allclose(data[0][np.isfinite(data[0])], -10.0, atol=1e-5)
    np.testing.assert_allclose(data[1], -20.0, atol=1e-5)


def test_gcp_georeferenced_grd_cog_given_as_a_file(tmp_path):
    """A GRD measurement COG in radar geometry (GCPs, no CRS), as Planetary Computer serves them: warped with its
    GCPs; uint16 amplitude detected from the values -> 20 log10(DN) (no calibration table with a bare file)."""
    import rasterio
    from rasterio.control import GroundControlPoint

    gcps = [GroundControlPoint(0, 0, 9.0, 47.0), GroundControlPoint(0, 50, 10.0, 47.1),
            GroundControlPoint(40, 0, 8.9, 46.0), GroundControlPoint(40, 50, 9.9, 46.1)]
    path = tmp_path / "grd_vv_vh.tif"
    with rasterio.open(path, "w", driver="GTiff", width=50, height=40, count=2, dtype="uint16", gcps=gcps,
                       crs="EPSG:4326", nodata=0) as dst:
        dst.write(np.stack([np.full((40, 50), 1000, np.uint16), np.full((40, 50), 100, np.uint16)]))
        dst.descriptions = ("VV", "VH")
    with open_scene([f"{path}:S1GRD"]) as scene:
        data = _full(scene)["S1GRD"]
        notes = scene.describe()["sources"][0]["decisions"]
    assert scene.grid.crs.to_epsg() == 4326 and 0.5 < np.isfinite(data[0]).mean() < 1.0
    np.testing.assert_allclose(data[0][np.isfinite(data[0])], 60.0, atol=1e-4)
    np.testing.assert_allclose(data[1][np.isfinite(data[1])], 40.0, atol=1e-4)
    assert any("amplitude" in n for n in notes)
