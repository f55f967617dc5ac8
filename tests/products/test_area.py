"""--bbox / --bbox-crs / --aoi: a window of the scene's grid on the same pixel lattice, read alone."""

import json

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from geomind_cli.engine import Area, open_scene
from geomind_cli.errors import InputError
from http_server import serve
from product_trees import build_s2_safe, write_band


def _full(scene):
    return scene.read(0, scene.grid.height, 0, scene.grid.width)


def test_bbox_in_grid_crs_and_in_wgs84_and_aoi(tmp_path):
    safe, _ = build_s2_safe(tmp_path, "L2A")
    with open_scene([str(safe)]) as scene:
        whole = _full(scene)["S2L2A"]
        full_grid = scene.grid
    bbox = (300100.0, 6099600.0, 300300.0, 6099900.0)  # UTM 34N
    with open_scene([str(safe)], area=Area(bbox)) as scene:
        assert (scene.grid.width, scene.grid.height) == (20, 30)
        assert scene.grid.transform.c == 300100 and scene.grid.transform.f == 6099900
        np.testing.assert_array_equal(_full(scene)["S2L2A"], whole[:, 12:42, 10:30])  # same lattice: same values
    lonlat = transform_bounds("EPSG:32634", "EPSG:4326", *bbox)
    with open_scene([str(safe)], area=Area(lonlat, "EPSG:4326")) as scene:
        left, bottom, right, top = scene.grid.bounds
        assert left <= bbox[0] and bottom <= bbox[1] and right >= bbox[2] and top >= bbox[3]
        assert scene.grid.width < 25 and scene.grid.height < 35  # the box, not the tile
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [[[lonlat[0], lonlat[1]], [lonlat[2], lonlat[1]],
                                                         [lonlat[2], lonlat[3]], [lonlat[0], lonlat[1]]]]}}]}))
    with open_scene([str(safe)], area=Area.from_geojson(str(aoi))) as scene:
        assert scene.grid.bounds == pytest.approx((left, bottom, right, top))
    with pytest.raises(InputError, match="does not overlap the scene"):
        open_scene([str(safe)], area=Area((0, 0, 10, 10)))
    with pytest.raises(InputError, match="is empty"):
        Area((5, 5, 1, 1))
    assert full_grid.width == 60


def test_bbox_reads_only_the_blocks_it_needs_over_http(tmp_path):
    served = tmp_path / "served"
    dem = np.random.default_rng(0).uniform(0, 3000, (2048, 2048)).astype(np.float32)
    from affine import Affine

    write_band(served / "dem.tif", dem, crs="EPSG:32633", transform=Affine(30, 0, 500000, 0, -30, 4100000),
               driver="COG", nodata=None)
    size = (served / "dem.tif").stat().st_size
    with serve(served) as (base, log):
        with open_scene([f"{base}/dem.tif:DEM"], area=Area((510000, 4080000, 513000, 4083000))) as scene:
            data = _full(scene)["DEM"]
        fetched = 0
        for method, _, byte_range in log:
            if method == "GET" and byte_range:
                start, end = byte_range.split("=")[1].split("-")
                fetched += int(end) - int(start) + 1
    # 30 m pixels: the box edges fall inside pixels 333.3..433.3 and 566.7..666.7, which are kept whole.
    np.testing.assert_array_equal(data[0], dem[566:667, 333:434])
    assert fetched < 0.1 * size, (fetched, size)
