"""run_scene end to end on generated and real rasters: exactness, seams, nodata, grids, classes, COG, atomicity."""

import json
import threading

import numpy as np
import pytest
import rasterio

from engine_rasters import ORIGIN, smooth_field, write_raster
from geomind_cli.engine import OutputSpec, SourceSpec, open_scene, plan_tiles, run_scene
from geomind_cli.errors import OutputError
from geomind_cli.facts.modalities import MODALITIES

BANDS = list(MODALITIES["S2L2A"].band_ids)


def _scene(tmp_path, data, **kw):
    return open_scene([SourceSpec([write_raster(tmp_path / "in.tif", data, descriptions=BANDS, **kw)])])


def _identity(batch):
    return {"out": batch.arrays["S2L2A"]}


@pytest.mark.parametrize("height,width", [(517, 389), (37, 50), (1, 240)])
def test_identity_round_trip_is_exact_edges_included(tmp_path, height, width):
    data = np.random.default_rng(1).integers(1, 12000, (12, height, width)).astype(np.int16)
    out = tmp_path / "out.tif"
    with _scene(tmp_path, data) as scene:
        summary = run_scene(scene, _identity, [OutputSpec("out", out, "continuous", BANDS, "float32")],
                            progress=False, batch_size=3)
    assert summary.tiles == len(plan_tiles(height, width)) and summary.skipped == 0
    with rasterio.open(out) as dst:
        assert np.array_equal(dst.read(), data.astype(np.float32))
        assert dst.transform == ORIGIN and dst.crs.to_epsg() == 32633 and list(dst.descriptions) == BANDS
    out16 = tmp_path / "out16.tif"
    with _scene(tmp_path, data) as scene:
        run_scene(scene, _identity, [OutputSpec("out", out16, "continuous", BANDS, "int16", nodata=-32768)],
                  progress=False, overwrite=True)
    with rasterio.open(out16) as dst:
        assert np.array_equal(dst.read(), data) and dst.nodata == -32768


def _seam_ratio(tmp_path, overlap, name):
    """Tiles disagree by a per-tile offset; compare column-gradient energy at tile edges with the rest."""
    height, width = 300, 900
    field = smooth_field(12, height, width)
    offsets = np.random.default_rng(3).uniform(-200, 200, 100)

    def tile_fn(batch):
        shift = offsets[(batch.tile_rows * 10 + batch.tile_cols) % 100].astype(np.float32)
        return {"out": batch.arrays["S2L2A"] + shift[:, None, None, None]}

    out = tmp_path / f"{name}.tif"
    with open_scene([SourceSpec([write_raster(tmp_path / f"{name}_in.tif", field, descriptions=BANDS)])]) as scene:
        run_scene(scene, tile_fn, [OutputSpec("out", out, "continuous", BANDS, "float32")], overlap=overlap,
                  progress=False)
    with rasterio.open(out) as dst:
        diff = dst.read(1).astype(np.float64) - field[0]
    grad = np.abs(np.diff(diff, axis=1))  # grad[:, j] is the step between columns j and j + 1
    plan = plan_tiles(height, width, overlap=overlap)
    edges = sorted({int(x) - 1 for x in plan.xs[1:]} | {int(x) + 223 for x in plan.xs[:-1]})
    edges = [e for e in edges if 0 <= e < width - 1]
    inside = np.ones(width - 1, bool)
    inside[edges] = False
    return grad[:, edges].mean() / max(grad[:, inside].mean(), 1e-9), grad.max()


def test_smooth_tiles_give_seamless_mosaic(tmp_path):
    ratio, steepest = _seam_ratio(tmp_path, 64, "blend")
    # Taper confined to the 64 px overlap: tile edges are no steeper than the rest, and no step jumps out.
    assert ratio < 1.5 and steepest < 15
    # Control: without overlap the same tiles leave visible seams, so the measure can fail.
    ratio_hard, steepest_hard = _seam_ratio(tmp_path, 0, "hard")
    assert ratio_hard > 5 and steepest_hard > 30


def test_nodata_tiles_skipped_and_written_as_nodata(tmp_path):
    data = np.random.default_rng(2).integers(1, 12000, (12, 700, 700)).astype(np.int16)
    data[:, :400, :400] = 0  # tiles at rows/cols 0 and 160 are entirely nodata
    data[:, 600:, 650:] = 0
    seen = []

    def tile_fn(batch):
        assert batch.valid.reshape(len(batch), -1).any(axis=1).all()
        assert all(np.isfinite(a).all() for a in batch.arrays.values())
        seen.extend(zip(batch.rows.tolist(), batch.cols.tolist()))
        return _identity(batch)

    out = tmp_path / "out.tif"
    with _scene(tmp_path, data, nodata=0) as scene:
        summary = run_scene(scene, tile_fn, [OutputSpec("out", out, "continuous", BANDS, "float32")], progress=False)
    assert summary.skipped == 4 and summary.processed == summary.tiles - 4 == len(seen)
    assert not {(0, 0), (0, 160), (160, 0), (160, 160)} & set(seen)
    with rasterio.open(out) as dst:
        got = dst.read()
    nodata = data == 0
    assert np.isnan(got[nodata]).all() and np.array_equal(got[~nodata], data[~nodata].astype(np.float32))


def test_nodata_filled_with_pretraining_mean(tmp_path):
    data = np.full((12, 40, 40), 500, np.int16)
    data[:, :10] = 0
    means = np.asarray(MODALITIES["S2L2A"].mean, np.float32)

    def tile_fn(batch):
        arr = batch.arrays["S2L2A"][0]
        assert np.allclose(arr[:, :10, :40], means[:, None, None]) and np.all(arr[:, 10:40, :40] == 500)
        assert not batch.valid[0, :10].any() and batch.valid[0, 10:40, :40].all() and not batch.valid[0, 40:].any()
        return _identity(batch)

    with _scene(tmp_path, data, nodata=0) as scene:
        run_scene(scene, tile_fn, [OutputSpec("out", tmp_path / "o.tif", "continuous", BANDS, "float32")],
                  progress=False)


def _nearest_owner(origins, cell):
    centre = cell * 16 + 8
    covering = [i for i, o in enumerate(origins) if o <= cell * 16 < o + 224]
    return min(covering, key=lambda i: (abs(centre - (origins[i] + 112)), i))


def test_grid_outputs_owned_by_nearest_tile_and_scaled_transform(tmp_path):
    height, width = 530, 700
    data = np.random.default_rng(4).integers(1, 12000, (12, height, width)).astype(np.int16)

    def tile_fn(batch):
        b = len(batch)
        ids = (batch.tile_rows * 100 + batch.tile_cols).astype(np.int32)
        owner = np.broadcast_to(ids[:, None, None, None], (b, 1, 14, 14))
        i, j = np.mgrid[0:14, 0:14]
        cell = ((batch.rows[:, None, None] // 16 + i) * 1000 + batch.cols[:, None, None] // 16 + j)[:, None]
        return {"owner": owner, "cell": cell.astype(np.int32)}

    outputs = [OutputSpec("owner", tmp_path / "owner.tif", "grid", ["tile"], "int32"),
               OutputSpec("cell", tmp_path / "cell.tif", "grid", ["cell"], "int32")]
    with _scene(tmp_path, data) as scene:
        run_scene(scene, tile_fn, outputs, progress=False, batch_size=5)
    plan = plan_tiles(height, width)
    with rasterio.open(tmp_path / "owner.tif") as dst:
        owners = dst.read(1)
        assert dst.transform == ORIGIN * rasterio.Affine.scale(16)
        assert dst.shape == (-(-height // 16), -(-width // 16))
    expected = np.array([[_nearest_owner(plan.ys, i) * 100 + _nearest_owner(plan.xs, j)
                          for j in range(owners.shape[1])] for i in range(owners.shape[0])])
    assert np.array_equal(owners, expected)
    with rasterio.open(tmp_path / "cell.tif") as dst:
        i, j = np.mgrid[0:owners.shape[0], 0:owners.shape[1]]
        assert np.array_equal(dst.read(1), i * 1000 + j)  # every cell holds its own global index: no shift


def test_class_outputs_blend_probabilities_then_argmax(tmp_path):
    height, width = 600, 610
    data = np.ones((12, height, width), np.int16)
    data[:, 500:, :100] = 0
    names = ["water", "trees", "crops"]

    def global_probs(rows, cols):
        """Class probabilities as a smooth function of the global pixel position (the same in every tile)."""
        y, x = np.mgrid[0:224, 0:224]
        y, x = y + rows[:, None, None], x + cols[:, None, None]
        logits = np.stack([np.sin(x / 80.0), np.cos(y / 60.0), 0.3 * np.ones_like(x, dtype=float)], axis=1)
        e = np.exp(logits)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def tile_fn(batch):
        probs = global_probs(batch.rows, batch.cols)
        # Tile-dependent disagreement that blending must average out: sharpen odd tiles, flatten even ones.
        k = np.where((batch.tile_cols % 2) == 1, 1.2, 0.8)[:, None, None, None]
        probs = probs ** k
        return {"lulc": probs / probs.sum(axis=1, keepdims=True)}

    spec = OutputSpec("lulc", tmp_path / "lulc.tif", "classes", ["LULC"], "uint8", nodata=255, class_names=names,
                      colormap={0: (0, 0, 255), 1: (0, 128, 0), 2: (255, 255, 0)}, probabilities=True, confidence=True)
    with _scene(tmp_path, data, nodata=0) as scene:
        summary = run_scene(scene, tile_fn, [spec], progress=False)
    assert len(summary.outputs) == 3
    truth = global_probs(np.array([0]), np.array([0]))  # only for the top-left tile region
    with rasterio.open(tmp_path / "lulc.tif") as dst:
        classes = dst.read(1)
        assert dst.colormap(1)[1][:3] == (0, 128, 0) and json.loads(dst.tags()["CLASS_NAMES"]) == names
        assert dst.nodata == 255 and dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and dst.overviews(1)
    with rasterio.open(spec.sidecar("probabilities")) as dst:
        probs = dst.read()
        assert list(dst.descriptions) == names
    with rasterio.open(spec.sidecar("confidence")) as dst:
        confidence = dst.read(1)
    nodata = data[0] == 0
    assert (classes[nodata] == 255).all() and np.isnan(probs[:, nodata]).all()
    valid = ~nodata
    assert np.allclose(probs[:, valid].sum(axis=0), 1, atol=1e-5)
    assert np.array_equal(classes[valid], np.argmax(probs, axis=0)[valid])  # argmax of the blended probabilities
    assert np.allclose(confidence[valid], probs.max(axis=0)[valid])
    # Where only the first tile contributes (flat weight), the probabilities are that tile's, sharpened by 0.8.
    first = truth[0] ** 0.8
    first /= first.sum(axis=0)
    assert np.allclose(probs[:, :150, :150], first[:, :150, :150], atol=1e-5)
    assert set(np.unique(classes[valid])) == {0, 1, 2}


def test_real_sen1floods11_chip_identity_and_reprojection(shared_data, tmp_path):
    s1 = shared_data / "sen1floods11/Spain_7370579_S1Hand.tif"
    s2 = shared_data / "sen1floods11/Spain_7370579_S2Hand.tif"
    bands = list(MODALITIES["S2L1C"].band_ids)
    out = tmp_path / "s2.tif"
    with open_scene([SourceSpec([s2]), SourceSpec([s1])]) as scene:
        run_scene(scene, lambda b: {"s2": b.arrays["S2L1C"], "s1": b.arrays["S1GRD"]},
                  [OutputSpec("s2", out, "continuous", bands, "int16", nodata=0),
                   OutputSpec("s1", tmp_path / "s1.tif", "continuous", ["VV", "VH"], "float32")], progress=False)
    with rasterio.open(out) as dst, rasterio.open(s2) as src:
        assert np.array_equal(dst.read(), src.read()) and dst.transform == src.transform and dst.crs == src.crs
    with rasterio.open(tmp_path / "s1.tif") as dst, rasterio.open(s1) as src:
        assert np.array_equal(dst.read(), src.read())
    # The same chip on a UTM grid: corners outside the footprint come out as nodata, the rest has data.
    warped = tmp_path / "utm.tif"
    with open_scene([SourceSpec([s2])], crs="EPSG:32630", resolution=10.0) as scene:
        summary = run_scene(scene, lambda b: {"s2": b.arrays["S2L1C"]},
                            [OutputSpec("s2", warped, "continuous", bands, "float32")], progress=False)
        expected = scene.read(0, scene.grid.height, 0, scene.grid.width)["S2L1C"]
    with rasterio.open(warped) as dst:
        got = dst.read()
        assert dst.crs.to_epsg() == 32630
    assert np.array_equal(np.isnan(got), np.isnan(expected)) and 0.01 < np.isnan(got[0]).mean() < 0.5
    assert np.array_equal(got[~np.isnan(got)], expected[~np.isnan(expected)]) and summary.km2 > 0


def test_failure_mid_run_leaves_no_output(tmp_path):
    data = np.ones((12, 700, 700), np.int16)
    calls = []

    def failing(batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return _identity(batch)

    out = tmp_path / "out.tif"
    with _scene(tmp_path, data) as scene:
        with pytest.raises(RuntimeError, match="boom"):
            run_scene(scene, failing, [OutputSpec("out", out, "continuous", BANDS, "float32")], progress=False,
                      batch_size=2)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]
    # An existing output is refused without overwrite, and kept intact when an overwrite run fails.
    out.write_bytes(b"previous")
    with _scene(tmp_path, data) as scene:
        with pytest.raises(OutputError, match="already exists"):
            run_scene(scene, _identity, [OutputSpec("out", out, "continuous", BANDS, "float32")], progress=False)
        calls.clear()
        with pytest.raises(RuntimeError):
            run_scene(scene, failing, [OutputSpec("out", out, "continuous", BANDS, "float32")], progress=False,
                      overwrite=True, batch_size=2)
    assert out.read_bytes() == b"previous" and len(list(tmp_path.iterdir())) == 2


def test_cog_metadata_scale_offset_and_summary(tmp_path):
    data = smooth_field(12, 700, 650).astype(np.int16)
    out, summary_path = tmp_path / "out.tif", tmp_path / "run.json"
    spec = OutputSpec("out", out, "continuous", BANDS, "uint16", scale=0.5, offset=100.0)
    with _scene(tmp_path, data) as scene:
        summary = run_scene(scene, _identity, [spec], progress=False, summary_path=summary_path)
    with rasterio.open(out) as dst:
        assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and dst.overviews(1) == [2]
        assert dst.scales == (0.5,) * 12 and dst.offsets == (100.0,) * 12 and dst.nodata == 0
        assert np.abs(dst.read().astype(np.float64) * 0.5 + 100 - data).max() <= 0.25
    saved = json.loads(summary_path.read_text())
    assert saved["tiles"] == summary.tiles == 16 and saved["outputs"] == [str(out)]
    assert saved["seconds"] > 0 and saved["peak_rss_mb"] > 0


# Stitching and writing run in a background thread (write_behind); these check its ordering and failure handling.


def test_write_behind_gives_the_same_bytes_as_writing_in_the_calling_thread(tmp_path):
    data = smooth_field(12, 517, 389).astype(np.int16)
    threads = set()

    def tile_fn(batch):
        return {"out": batch.arrays["S2L2A"][:, :3] * 0.5, "grid": batch.arrays["S2L2A"][:, :2, ::16, ::16]}

    import geomind_cli.engine.runner as runner

    original = runner._Outputs.flush

    def spy(self, next_tile_row):
        threads.add(threading.current_thread().name)
        return original(self, next_tile_row)

    results = []
    for depth in (0, 1, 3):
        folder = tmp_path / f"depth{depth}"
        folder.mkdir()
        specs = [OutputSpec("out", folder / "out.tif", "continuous", BANDS[:3], "float32"),
                 OutputSpec("grid", folder / "grid.tif", "grid", ["a", "b"], "float32")]
        with _scene(folder, data) as scene:
            runner._Outputs.flush = spy
            try:
                run_scene(scene, tile_fn, specs, progress=False, batch_size=2, write_behind=depth)
            finally:
                runner._Outputs.flush = original
        results.append([(folder / name).read_bytes() for name in ("out.tif", "grid.tif")])
    assert results[0] == results[1] == results[2]
    assert "geomind-writer" in threads and threading.current_thread().name in threads


def test_error_in_the_writer_thread_surfaces_and_leaves_no_output(tmp_path, monkeypatch):
    from geomind_cli.engine.writer import RasterWriter

    data = np.ones((12, 900, 700), np.int16)
    where, calls = [], []
    original = RasterWriter.write_rows

    def failing_write(self, row0, rows):
        where.append(threading.current_thread().name)
        if len(where) == 2:
            raise OSError("disk full")
        return original(self, row0, rows)

    def tile_fn(batch):
        calls.append(1)
        return _identity(batch)

    monkeypatch.setattr(RasterWriter, "write_rows", failing_write)
    out = tmp_path / "out.tif"
    with _scene(tmp_path, data) as scene:
        with pytest.raises(OSError, match="disk full"):
            run_scene(scene, tile_fn, [OutputSpec("out", out, "continuous", BANDS, "float32")], progress=False,
                      batch_size=2, write_behind=1)
    assert where == ["geomind-writer"] * 2
    assert len(calls) < len(plan_tiles(900, 700)) / 2  # the run stopped soon after, not at the end of the scene
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]
    assert not any(t.name == "geomind-writer" and t.is_alive() for t in threading.enumerate())


def test_interrupt_while_the_writer_thread_works_leaves_no_output(tmp_path):
    data = np.ones((12, 700, 700), np.int16)
    calls = []

    def interrupted(batch):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return _identity(batch)

    out = tmp_path / "out.tif"
    with _scene(tmp_path, data) as scene:
        with pytest.raises(KeyboardInterrupt):
            run_scene(scene, interrupted, [OutputSpec("out", out, "continuous", BANDS, "float32")], progress=False,
                      batch_size=2, write_behind=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]
    assert not any(t.name == "geomind-writer" and t.is_alive() for t in threading.enumerate())


def test_progress_covers_the_tiles_then_the_finishing_of_every_cog(tmp_path, monkeypatch):
    """The bar (on a terminal) hears of every tile, then shows each COG as it is built: the finishing phase is not
    silent. A recorder with the rich Progress calls the runner makes stands in for the terminal bar."""
    from geomind_cli.engine import runner

    events = []

    class Recorder:
        tasks = ["tiles"]

        def add_task(self, description, total=None, **fields):
            self.tasks.append(description)
            events.append(("add", description))
            return len(self.tasks) - 1

        def update(self, task, completed=None, **fields):
            events.append((self.tasks[task], completed))

        def stop(self):
            events.append(("stop", None))

    monkeypatch.setattr(runner, "_progress", lambda enabled, total: Recorder() if enabled else None)
    data = smooth_field(12, 300, 300).astype(np.int16)
    spec = OutputSpec("cls", tmp_path / "cls.tif", "classes", ["class"], "uint8", class_names=["a", "b"],
                      confidence=True)

    def two_classes(batch):
        low = (batch.arrays["S2L2A"][:, :1] < 3000).astype(np.float32)
        return {"cls": np.concatenate([low, 1 - low], axis=1)}

    with _scene(tmp_path, data) as scene:
        summary = run_scene(scene, two_classes, [spec], batch_size=2)
    tiles = [done for name, done in events if name == "tiles"]
    assert tiles == sorted(tiles) and tiles[-1] == summary.tiles == 4
    added = [(i, e[1]) for i, e in enumerate(events) if e[0] == "add"]
    assert [name for _, name in added] == ["finishing cls.tif (MB)", "finishing cls_confidence.tif (MB)"]
    last_tile = max(i for i, e in enumerate(events) if e[0] == "tiles")
    assert added[0][0] > last_tile and events[-1] == ("stop", None)
