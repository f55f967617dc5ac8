"""Coarser files on the grid's lattice (Sentinel-2 20 m and 60 m bands) resampled in numpy: GDAL's warper's values."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform as reproject_points

from geomind_cli.engine import OutputSpec, SourceSpec, open_scene, run_scene
from geomind_cli.engine.grid import Grid, RasterLayer
from geomind_cli.engine.resample import Lattice
from geomind_cli.engine.sources import resolve_sources
from engine_rasters import UTM, write_raster

LEFT, TOP = 500000.0, 4000000.0


def _coarse_file(tmp_path, k: int, *, holes: bool, seed: int = 0, size: int = 30, name: str = "coarse"):
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 12000, (1, size, size)).astype(np.uint16)
    if holes:
        data[0, rng.integers(0, size, 25), rng.integers(0, size, 25)] = 0
        data[0, 4:7, 9:13] = 0
    path = write_raster(tmp_path / f"{name}_{k}.tif", data, transform=Affine(10 * k, 0, LEFT, 0, -10 * k, TOP),
                        nodata=0)
    return path


def _layer(path, grid: Grid, *, categorical: bool) -> RasterLayer:
    (source,) = resolve_sources(SourceSpec([path], modality="DEM"))
    return RasterLayer(source.files[0], grid, categorical=categorical)


def _warped(layer: RasterLayer, window) -> np.ndarray:
    """The same window through GDAL's warper (the reader's own warped VRT), the lattice path switched off."""
    lattice, layer.lattice = layer.lattice, None
    try:
        return layer.read(*window)
    finally:
        layer.lattice = lattice


def _assert_fetched_fill_like(layer: RasterLayer, window, gdal: np.ndarray, monkeypatch):
    """Both roads of the tile reader give GDAL's values, nodata filled: resampled where the values are used (one
    decoding thread) and resampled by the reading thread (several decoding threads: it only waits for GDAL)."""
    for threads, deferred in (("1", True), ("2", False)):
        monkeypatch.setenv("GEOMIND_DECODE_THREADS", threads)
        fetched = layer.fetch(*window)
        assert (fetched.resample is not None) == deferred
        out, fill = np.full(gdal.shape, -1.0, np.float32), np.full((gdal.shape[0], 1, 1), 7.5, np.float32)
        valid = fetched.fill_into(out, fill)
        np.testing.assert_array_equal(valid, ~np.isnan(gdal).any(axis=0))
        np.testing.assert_array_equal(out, np.where(np.isnan(gdal), fill, gdal))


@pytest.mark.parametrize("k", [2, 3, 6])
@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize("categorical", [False, True])
# The grid: the file's own extent, a window inside it off its lattice corner, one reaching past the file on every
# side (pixels outside are nodata), one at its right edge.
@pytest.mark.parametrize("shift,size", [((0, 0), None), ((7, 3), (41, 50)), ((-5, -4), "past"), ("right", (30, 40))])
def test_coarser_files_get_the_warpers_values_bit_for_bit(tmp_path, monkeypatch, k, holes, categorical, shift, size):
    path = _coarse_file(tmp_path, k, holes=holes, seed=k)
    side = 30 * k
    if shift == "right":
        shift = (side - 20, 0)
    height, width = (side, side) if size is None else (side + 9, side + 11) if size == "past" else size
    grid = Grid(UTM, Affine(10, 0, LEFT + 10 * shift[0], 0, -10, TOP - 10 * shift[1]), width, height)
    layer = _layer(path, grid, categorical=categorical)
    assert layer.lattice == Lattice(k, k, shift[1], shift[0])
    for window in ((0, height, 0, width), (3, min(height, 40), 5, min(width, 37))):
        ours, gdal = layer.read(*window), _warped(layer, window)
        np.testing.assert_array_equal(ours, gdal)  # NaN where GDAL has nodata, every other value identical
        _assert_fetched_fill_like(layer, window, gdal, monkeypatch)
    if holes or size == "past":
        assert np.isnan(gdal).any()
    layer.close()


@pytest.mark.parametrize("file_transform,expected", [
    (Affine(20, 0, LEFT, 0, -20, TOP), Lattice(2, 2, 0, 0)),
    (Affine(60, 0, LEFT - 120, 0, -60, TOP + 60), Lattice(6, 6, 6, 12)),  # the grid starts inside the file
    (Affine(20, 0, LEFT + 10, 0, -20, TOP), Lattice(2, 2, 0, -1)),  # edges on grid pixel edges: still a lattice
    (Affine(20, 0, LEFT + 5, 0, -20, TOP), None),  # edges between grid pixel edges
    (Affine(15, 0, LEFT, 0, -15, TOP), None),  # not a whole multiple
    (Affine(10, 0, LEFT, 0, -10, TOP), None),  # the grid's own lattice: read directly
    (Affine(5, 0, LEFT, 0, -5, TOP), None),  # finer than the grid: the warper averages
    (Affine(20, 0, LEFT, 0, 20, TOP), None),  # south-up
    (Affine(20, 1, LEFT, 0, -20, TOP), None),  # rotated
])
def test_lattice_is_found_only_for_whole_multiples_on_grid_pixel_edges(file_transform, expected):
    assert Lattice.between(file_transform, Affine(10, 0, LEFT, 0, -10, TOP)) == expected


def test_other_crs_and_float_files_keep_the_warper(tmp_path):
    grid = Grid(UTM, Affine(10, 0, LEFT, 0, -10, TOP), 60, 60)
    data = np.random.default_rng(0).uniform(1, 100, (1, 30, 30)).astype(np.float32)
    floats = write_raster(tmp_path / "float.tif", data, transform=Affine(20, 0, LEFT, 0, -20, TOP), nodata=0)
    assert _layer(floats, grid, categorical=False).lattice is None
    (x,), (y,) = reproject_points(UTM, "EPSG:32632", [LEFT], [TOP])
    other = write_raster(tmp_path / "other.tif", data.astype(np.uint16), crs="EPSG:32632",
                         transform=Affine(20, 0, round(x), 0, -20, round(y)), nodata=0)
    layer = _layer(other, grid, categorical=False)
    assert layer.lattice is None and not layer.direct


def test_sentinel2_band_files_at_three_resolutions_give_the_warped_scene(tmp_path, monkeypatch):
    """A scene from 10, 20 and 60 m band files (as Sentinel-2 products ship them): the run's output and every tile
    equal those of the same scene read through GDAL's warper."""
    rng = np.random.default_rng(3)
    side = 240
    paths = []
    for band, k in (("B02", 1), ("B03", 1), ("B04", 1), ("B08", 1), ("B05", 2), ("B06", 2), ("B07", 2),
                    ("B8A", 2), ("B11", 2), ("B12", 2), ("B01", 6), ("B09", 6)):
        data = rng.integers(1, 12000, (1, side // k, side // k)).astype(np.uint16)
        data[0, : 12 // k + 1, : 40 // k + 1] = 0  # a corner without data, as at a swath edge
        paths.append(write_raster(tmp_path / f"T33_{band}.tif", data, nodata=0,
                                  transform=Affine(10 * k, 0, LEFT, 0, -10 * k, TOP)))
    spec = SourceSpec(paths, modality="S2L2A")
    outputs = []
    for road in ("lattice", "lattice, resampled by the reading thread", "warper"):
        monkeypatch.setenv("GEOMIND_DECODE_THREADS", "2" if "reading" in road else "1")
        out = OutputSpec("bands", tmp_path / f"{len(outputs)}.tif", "continuous", [f"b{i}" for i in range(12)],
                         "float32", nodata=float("nan"))
        tiles = []

        def keep(batch):
            tiles.append(batch.arrays["S2L2A"].copy())
            return {"bands": batch.arrays["S2L2A"]}

        with open_scene([spec]) as scene:
            assert sum(layer.lattice is not None for layer in scene.layers) == 8
            if road == "warper":
                for layer in scene.layers:
                    layer.lattice = None
            run_scene(scene, keep, [out], tile_size=64, overlap=16, batch_size=5, progress=False)
        outputs.append((out.path, np.concatenate(tiles)))
    warper_path, warper_tiles = outputs[-1]
    with rasterio.open(warper_path) as warped:
        expected = warped.read()
    for path, tiles in outputs[:-1]:
        np.testing.assert_array_equal(tiles, warper_tiles)
        with rasterio.open(path) as src:
            np.testing.assert_array_equal(src.read(), expected)


@pytest.mark.parametrize("case", ["scale_offset", "amplitude_to_db"])
def test_coarser_files_convert_to_physical_units_as_the_warped_road_does(tmp_path, monkeypatch, case):
    """File scale and offset (applied after resampling, in float32) and Sentinel-1 amplitude to dB (after it too,
    where non-positive values become nodata) give the values and nodata of the warped road."""
    path = _coarse_file(tmp_path, 2, holes=True, seed=5)
    if case == "scale_offset":
        with rasterio.open(path, "r+") as dst:
            dst.scales, dst.offsets = (1e-4,), (-0.1,)
        spec = SourceSpec([path], modality="DEM")
    else:  # VV and VH amplitudes (digital numbers), VH with a band of zeros: log10(0) is nodata
        with rasterio.open(path) as src:
            vv = src.read()
        vh = vv // 3
        vh[:, 20:22] = 0
        path = write_raster(tmp_path / "s1.tif", np.concatenate([vv, vh]), descriptions=["VV", "VH"],
                            transform=Affine(20, 0, LEFT, 0, -20, TOP))
        spec = SourceSpec([path], modality="S1GRD", s1_units="amplitude")
    (source,) = resolve_sources(spec)
    fb = source.files[0]
    assert (fb.scales, fb.offsets) == ((1e-4,), (-0.1,)) if case == "scale_offset" else fb.db_factor == 20.0
    grid = Grid(UTM, Affine(10, 0, LEFT, 0, -10, TOP), 60, 60)
    layer = RasterLayer(fb, grid, categorical=False, to_db=bool(fb.db_factor))
    assert layer.lattice == Lattice(2, 2, 0, 0)
    window = (2, 57, 3, 60)
    gdal = _warped(layer, window)
    np.testing.assert_array_equal(layer.read(*window), gdal)
    _assert_fetched_fill_like(layer, window, gdal, monkeypatch)
    assert np.isnan(gdal).any() and np.nanmax(np.abs(gdal)) > 0
    layer.close()
