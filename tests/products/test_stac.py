"""STAC items as published by Earth Search and the Planetary Computer: asset choice, raster:bands scale/offset and
the publishers' contradictions, served over loopback HTTP (and S3 through GDAL's /vsis3/ on the same server)."""

import json

import numpy as np
import pytest

from geomind_cli.engine import SourceSpec, detect_modality, open_scene
from geomind_cli.engine.sources import ReadOptions
from geomind_cli.errors import InputError
from http_server import serve
from product_trees import L2A_IDS, STAC, sample_dn, write_stac_assets

ES = STAC / "earth-search"
PC = STAC / "planetary-computer"


def _full(scene):
    return scene.read(0, scene.grid.height, 0, scene.grid.width)


def _served_item(tmp_path, item: dict, base: str, name: str = "item.json") -> str:
    """The item with its https:// hrefs pointing at the loopback server (host and path kept as folders); the rest
    of the metadata as published. Written next to the served files; returns its URL."""
    text = json.dumps(item).replace('"https://', f'"{base}/')
    (tmp_path / "served" / name).write_text(text)
    return f"{base}/{name}"


def _assert_s2(data, dn, offset):
    for band in ("B02", "B03", "B04", "B08"):
        np.testing.assert_array_equal(data[L2A_IDS.index(band)], dn[band].astype(np.float32) + offset, err_msg=band)
    # A 20 m band inside: the mean of each 2 x 2 block of the grid is the 20 m pixel (bilinear, interior).
    got = data[L2A_IDS.index("B11")][2:-2, 2:-2]
    assert np.nanmax(np.abs(np.nanmean(got) - (dn["B11"][2:-2, 2:-2].mean() + offset))) < 30


@pytest.mark.parametrize("item_file, collection, offset", [
    # Earth Search sentinel-2-l2a: raster:bands says -0.1 and boa_offset_applied true: the COGs are harmonised.
    (ES / "sentinel-2-l2a__S2B_24MUV_20250731_0_L2A.json", "sentinel-2-l2a", 0.0),
    # Planetary Computer, baseline 02.12: no raster:bands, no offset before 04.00.
    (PC / "sentinel-2-l2a__S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json", "sentinel-2-l2a", 0.0),
])
def test_s2_items_over_http(tmp_path, item_file, collection, offset):
    item = json.loads(item_file.read_text())
    dn = sample_dn()
    with serve(tmp_path / "served") as (base, log):
        (tmp_path / "served").mkdir(exist_ok=True)
        write_stac_assets(item, tmp_path / "served", "https://", dn)
        url = _served_item(tmp_path, item, base)
        assert detect_modality(url) == "S2L2A"
        with open_scene([SourceSpec.parse(url)]) as scene:
            data = _full(scene)["S2L2A"]
            sources = scene.describe()["sources"]
    assert item["collection"] == collection
    _assert_s2(data, dn, offset)
    assert [s["asset"] for s in sources][:4] in (["coastal", "blue", "green", "red"], ["B01", "B02", "B03", "B04"])
    assert all(s["offsets"] == [offset] for s in sources)


def test_planetary_computer_array_of_items_offset_from_baseline(tmp_path):
    """stac-geoparquet's JSON array of 4 PC items (baseline 05.10, no raster:bands): pick one by id, -1000."""
    items = json.loads((PC / "sentinel-2-l2a-pc.json").read_text())
    item = items[0]
    assert item["properties"]["s2:processing_baseline"] == "05.10"
    dn = sample_dn()
    (tmp_path / "served").mkdir()
    with serve(tmp_path / "served") as (base, _):
        write_stac_assets(item, tmp_path / "served", "https://", dn)
        text = json.dumps(items).replace('"https://', f'"{base}/')
        (tmp_path / "served" / "items.json").write_text(text)
        with pytest.raises(InputError, match=r"holds 4 S2L2A items.*#ITEM_ID"):
            open_scene([f"{base}/items.json"])
        with open_scene([f"{base}/items.json#{item['id']}"]) as scene:
            data = _full(scene)["S2L2A"]
            notes = scene.describe()["sources"][0]["decisions"]
    _assert_s2(data, dn, -1000.0)
    assert any("05.10" in n and "-1000" in n for n in notes)


def test_earth_search_c1_l2a_and_l1c_apply_stated_offset(tmp_path, monkeypatch):
    """sentinel-2-c1-l2a COGs (https) and sentinel-2-l1c JP2s (s3://, through /vsis3/ on the loopback server):
    raster:bands scale 0.0001, offset -0.1 -> DN - 1000."""
    response = json.loads((ES / "earth-search-v1_search-response_page1.json").read_text())
    c1 = next(f for f in response["features"] if f["collection"] == "sentinel-2-c1-l2a"
              and "24MUV" in f["id"])
    l1c = json.loads((ES / "sentinel-2-l1c__S2B_24MUV_20250731_0_L1C.json").read_text())
    dn = sample_dn()
    served = tmp_path / "served"
    served.mkdir()
    with serve(served) as (base, log):
        write_stac_assets(c1, served, "https://", dn)
        write_stac_assets(l1c, served, "s3://", dn)
        (served / "c1.json").write_text(json.dumps(c1).replace('"https://', f'"{base}/'))
        (served / "l1c.json").write_text(json.dumps(l1c))  # s3:// hrefs as published
        monkeypatch.setenv("AWS_S3_ENDPOINT", base.split("://", 1)[1])
        monkeypatch.setenv("AWS_HTTPS", "NO")
        monkeypatch.setenv("AWS_VIRTUAL_HOSTING", "FALSE")
        monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "YES")
        with open_scene([f"{base}/c1.json"]) as scene:
            _assert_s2(_full(scene)["S2L2A"], dn, -1000.0)
        with open_scene([f"{base}/l1c.json"]) as scene:
            data = _full(scene)["S2L1C"]
            sources = scene.describe()["sources"]
    np.testing.assert_array_equal(data[3], dn["B04"].astype(np.float32) - 1000)
    assert sources[10]["asset"] == "cirrus" and sources[3]["path"].startswith("s3://sentinel-s2-l1c/")
    assert any(path.startswith("/sentinel-s2-l1c/tiles/24/M/UV/") for _, path, _ in log)


def test_offset_override_on_earth_search_item(tmp_path):
    item = json.loads((ES / "sentinel-2-l2a__S2B_24MUV_20250731_0_L2A.json").read_text())
    dn = sample_dn()
    (tmp_path / "served").mkdir()
    with serve(tmp_path / "served") as (base, _):
        write_stac_assets(item, tmp_path / "served", "https://", dn)
        url = _served_item(tmp_path, item, base)
        with open_scene([url], read=ReadOptions(s2_offset=-1000)) as scene:
            _assert_s2(_full(scene)["S2L2A"], dn, -1000.0)


def test_planetary_computer_dem_item_in_metres(tmp_path):
    """cop-dem-glo-30 (PC, JSON array of 4 items, no raster:bands): the data asset, float32 metres as stored,
    on the non-square lon/lat pixels proj:transform states."""
    items = json.loads((PC / "cop-dem-glo-30-pc.json").read_text())
    item = items[1]
    dem = np.linspace(-20.0, 2500.0, 40 * 30, dtype=np.float32).reshape(40, 30)
    dem[0, 0] = -np.inf  # an infinite value is nodata, not a height
    (tmp_path / "served").mkdir()
    with serve(tmp_path / "served") as (base, _):
        write_stac_assets(item, tmp_path / "served", "https://", {"DATA": dem})
        text = json.dumps(items).replace('"https://', f'"{base}/')
        (tmp_path / "served" / "dem.json").write_text(text)
        with open_scene([f"{base}/dem.json#{item['id']}"]) as scene:
            data = _full(scene)["DEM"]
            grid = scene.grid
    assert grid.crs.to_epsg() == 4326 and grid.res == pytest.approx((0.002777777777777778, 0.0002777777777777778))
    assert np.isnan(data[0, 0, 0])
    np.testing.assert_array_equal(data[0].ravel()[1:], dem.ravel()[1:])


def test_item_collection_is_one_scene_per_item_in_batch_mode():
    from geomind_cli.tasks.inputs import group_scenes

    items = json.loads((PC / "sentinel-2-l2a-pc.json").read_text())
    groups = group_scenes([str(PC / "sentinel-2-l2a-pc.json")])
    assert [g.stem for g in groups] == [i["id"] for i in items]
    assert all(g.sources == [f"{PC / 'sentinel-2-l2a-pc.json'}#{i['id']}"] for g, i in zip(groups, items))


def test_items_of_one_date_and_grid_are_mosaicked(tmp_path):
    """The two sentinel-2-c1-l2a items of 2025-07-31 in UTM 24S (tiles 24MUV and 24MVV, 99.96 km apart on one
    10 m lattice) from the Earth Search response: one scene, each tile's pixels where its proj:transform puts them."""
    response = json.loads((ES / "earth-search-v1_search-response_page1.json").read_text())
    pair = [f for f in response["features"] if f["collection"] == "sentinel-2-c1-l2a" and "T24M" in f["id"]]
    assert len(pair) == 2 and {f["properties"]["proj:epsg"] for f in pair} == {32724}
    dn = sample_dn()
    served = tmp_path / "served"
    served.mkdir()
    with serve(served) as (base, _):
        for item in pair:
            write_stac_assets(item, served, "https://", dn)
        collection = {"type": "FeatureCollection", "features": pair}
        (served / "pair.json").write_text(json.dumps(collection).replace('"https://', f'"{base}/'))
        with open_scene([f"{base}/pair.json"]) as scene:
            grid = scene.grid
            notes = scene.describe()["sources"][0]["decisions"]
            for item in pair:
                x0, y0 = item["assets"]["red"]["proj:transform"][2], item["assets"]["red"]["proj:transform"][5]
                col, row = (round(v) for v in ~grid.transform * (x0, y0))
                window = scene.read(row, row + 60, col, col + 60)["S2L2A"]
                np.testing.assert_array_equal(window[L2A_IDS.index("B04")], dn["B04"].astype(np.float32) - 1000)
    assert grid.crs.to_epsg() == 32724 and grid.res == (10.0, 10.0)
    assert any("mosaic of 2 items" in n for n in notes)


def test_cloud_mask_from_the_scl_asset(tmp_path):
    item = json.loads((ES / "sentinel-2-l2a__S2B_24MUV_20250731_0_L2A.json").read_text())
    bands = sample_dn()
    scl = np.full((30, 30), 4, np.uint8)
    scl[5:10, 5:10] = 8  # cloud medium probability: 10 x 10 px at 10 m
    bands["SCL"] = scl
    (tmp_path / "served").mkdir()
    with serve(tmp_path / "served") as (base, _):
        written = write_stac_assets(item, tmp_path / "served", "https://", bands)
        assert "scl" in written
        url = _served_item(tmp_path, item, base)
        with open_scene([url], read=ReadOptions(cloud_mask=True)) as scene:
            data = _full(scene)["S2L2A"]
    assert np.isnan(data[:, 10:20, 10:20]).all() and np.isnan(data).any(axis=0).sum() == 100
