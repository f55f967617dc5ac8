"""Remote reads over a loopback HTTP server with Range support: URLs and /vsicurl/ paths, the FILE:MODALITY suffix
on them, values equal to the local file, and no directory listing on open."""

import numpy as np
import rasterio

from engine_rasters import write_raster
from geomind_cli.engine import SourceSpec, open_scene
from http_server import serve


def _cog(path, data, **kw):
    local = write_raster(path.with_suffix(".plain.tif"), data, **kw)
    with rasterio.open(local) as src:
        profile = src.profile | {"driver": "COG", "compress": "deflate", "blocksize": 256}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read())
            dst.descriptions = src.descriptions
    local.unlink()
    return path


def test_http_and_vsicurl_inputs_read_like_local_files(tmp_path):
    served = tmp_path / "bucket" / "scenes"
    served.mkdir(parents=True)
    db = np.random.default_rng(0).uniform(-25, -5, (2, 300, 300)).astype(np.float32)
    _cog(served / "s1.tif", db)
    with serve(tmp_path / "bucket") as (base, log):
        for text in (f"{base}/scenes/s1.tif:S1GRD", f"/vsicurl/{base}/scenes/s1.tif:S1GRD"):
            with open_scene([SourceSpec.parse(text)]) as scene:
                assert scene.band_counts == {"S1GRD": 2}
                np.testing.assert_array_equal(scene.read(0, 300, 0, 300)["S1GRD"], db)
                window = scene.modalities["S1GRD"][:, 100:110, 50:60].values
                np.testing.assert_array_equal(window, db[:, 100:110, 50:60])
        requested = [(method, path) for method, path, _ in log]
    # GDAL_DISABLE_READDIR_ON_OPEN: never a listing of the "directory" (one request fewer, no 403 on S3 buckets).
    assert not any(path.rstrip("/").endswith("/scenes") or path == "/" for _, path in requested), requested
    assert any(r for _, _, r in log), "reads are Range requests"
    assert all(path.startswith("/scenes/s1.tif") for _, path in requested), requested


def test_missing_remote_file_is_one_line_error(tmp_path):
    import pytest

    from geomind_cli.errors import InputError

    with serve(tmp_path) as (base, _):
        with pytest.raises(InputError, match="Cannot read") as info:
            open_scene([SourceSpec.parse(f"{base}/nothing.tif:DEM")])
    assert "\n" not in str(info.value)
