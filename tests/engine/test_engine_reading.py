"""The tile reader: decoded windows converted straight into the row bands, tiles cut from them into batches."""

import os
import threading

import numpy as np
import pytest

from geomind_cli.engine import OutputSpec, SourceSpec, open_scene, run_scene
from geomind_cli.engine.batches import BACKGROUND_NICENESS, DECODE_NICENESS, Prefetcher, produce
from geomind_cli.engine.grid import FetchedWindow
from geomind_cli.engine.scene import Scene
from geomind_cli.engine.tiling import plan_tiles
from geomind_cli.facts.modalities import MODALITIES
from engine_rasters import ORIGIN, write_raster

MEANS = np.asarray(MODALITIES["S2L2A"].mean, np.float32)[:, None, None]


def _digital_numbers(height: int, width: int, *, seed: int) -> np.ndarray:
    data = np.random.default_rng(seed).integers(1, 12000, (12, height, width)).astype(np.uint16)
    data[:, 5:9, 10:30] = 0  # every band missing
    data[3, 20:25, :] = 0  # one band missing: the pixel is invalid, the other bands keep their values
    return data


@pytest.mark.parametrize("scale_offset", [None, (1e-4, -0.1)])
def test_integer_windows_convert_to_the_values_read_gives_with_nodata_filled(tmp_path, scale_offset):
    data = _digital_numbers(60, 70, seed=1)
    path = write_raster(tmp_path / "s2.tif", data, nodata=0)
    if scale_offset:
        import rasterio

        with rasterio.open(path, "r+") as dst:
            dst.scales, dst.offsets = (scale_offset[0],) * 12, (scale_offset[1],) * 12
    with open_scene([SourceSpec([path], modality="S2L2A")]) as scene:
        fetched = scene.fetch(3, 50, 2, 66)
        assert all(window.fb is not None for _, _, window in fetched)  # raw integers, converted once
        out = {"S2L2A": np.full((12, 47, 64), -1.0, np.float32)}
        valid = scene.fill_into(fetched, out, {"S2L2A": MEANS})
        expected = scene.read(3, 50, 2, 66)["S2L2A"]
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(valid["S2L2A"], finite.all(axis=0))
    np.testing.assert_array_equal(out["S2L2A"], np.where(finite, expected, MEANS))  # bit for bit
    assert not valid["S2L2A"][20 - 3].any()
    if scale_offset:  # the file's scale and offset applied (S2L2A's unit: reflectance x 10000)
        np.testing.assert_allclose(expected[5, 10, 20], (data[5, 13, 22] * 1e-4 - 0.1) * 1e4, atol=0.01)


def test_float_and_partly_outside_windows_take_the_general_road(tmp_path):
    data = _digital_numbers(40, 40, seed=2).astype(np.float32)
    data[0, 0, 0] = np.inf  # not only NaN is filled: inf would spread through attention
    path = write_raster(tmp_path / "s2.tif", data, nodata=0)
    left, top = ORIGIN.c, ORIGIN.f
    # A grid 10 px larger on the right: the last columns are outside the file.
    with open_scene([SourceSpec([path], modality="S2L2A")], bounds=(left, top - 400, left + 500, top)) as scene:
        fetched = scene.fetch(0, 40, 0, 50)
        assert all(window.fb is None for _, _, window in fetched)
        out = {"S2L2A": np.empty((12, 40, 50), np.float32)}
        valid = scene.fill_into(fetched, out, {"S2L2A": MEANS})["S2L2A"]
    assert not valid[:, 40:].any() and not valid[0, 0] and valid[30, 35]
    np.testing.assert_array_equal(out["S2L2A"][:, :, 40:], np.broadcast_to(MEANS, (12, 40, 10)))
    assert out["S2L2A"][0, 0, 0] == MEANS[0, 0, 0] and out["S2L2A"][1, 0, 0] == data[1, 0, 0]


def test_bands_from_several_files_land_in_their_places():
    # Band positions (0, 2) from one window and (1,) from another, as per-band files of a product give them.
    a = np.stack([np.full((4, 5), 1.0), np.full((4, 5), 3.0)]).astype(np.float32)
    b = np.full((1, 4, 5), 2.0, np.float32)
    b[0, 1, 1] = np.nan
    fetched = [("M", (0, 2), FetchedWindow(a)), ("M", (1,), FetchedWindow(b))]
    out = {"M": np.zeros((3, 4, 5), np.float32)}
    valid = Scene.fill_into(fetched, out, {"M": np.asarray([10, 20, 30], np.float32)[:, None, None]})["M"]
    assert out["M"][:, 0, 0].tolist() == [1, 2, 3] and out["M"][:, 1, 1].tolist() == [1, 20, 3]
    assert valid.sum() == 19 and not valid[1, 1]


def test_sparse_scene_batches_spanning_many_tile_rows_hold_their_own_tiles(tmp_path):
    # Data only in a strip on the left: one tile per tile row, so a batch of 8 spans 8 tile rows; every tile must
    # still hold its own pixels once later row bands have been read (the bands are reused buffers).
    data = np.zeros((12, 1500, 900), np.uint16)
    data[:, :, :100] = _digital_numbers(1500, 100, seed=3)
    path = write_raster(tmp_path / "s2.tif", data, nodata=0)
    with open_scene([SourceSpec([path], modality="S2L2A")]) as scene:
        assert "S2L2A" in scene.raw_modalities()  # row bands of raw integers, converted as tiles are copied
        plan = plan_tiles(scene.grid.height, scene.grid.width, tile_size=224, overlap=64)
        batches = [item.batch for item in produce(scene, plan, batch_size=8, skip_nodata=True, valid_rule="all",
                                                  pin=False) if item.batch is not None]
        assert len(batches) >= 2 and len(set(batches[0].tile_rows.tolist())) == 8
        for batch in batches:  # checked after the whole scene was read
            for i in range(len(batch)):
                y, x = int(batch.rows[i]), int(batch.cols[i])
                h, w = min(224, 1500 - y), min(224, 900 - x)
                window = scene.read(y, y + h, x, x + w)["S2L2A"]
                finite = np.isfinite(window)
                np.testing.assert_array_equal(batch.arrays["S2L2A"][i][:, :h, :w], np.where(finite, window, MEANS))
                np.testing.assert_array_equal(batch.valid[i][:h, :w], finite.all(axis=0))


def _items(scene, plan, valid_rule):
    return [item for item in produce(scene, plan, batch_size=6, skip_nodata=True, valid_rule=valid_rule, pin=False)]


@pytest.mark.parametrize("valid_rule", ["all", "any"])
def test_tiles_cut_piece_by_piece_equal_tiles_cut_from_whole_rows(tmp_path, monkeypatch, valid_rule):
    # Tile rows are decoded in pieces of columns and tiles cut as soon as their columns are final: whatever the
    # piece width (pieces narrower than a tile, not aligned with tiles or blocks), every batch, mask and item must be
    # those of whole-row reading. A raw-integer S2 (with nodata) and a float DEM (NaN) whose sizes are not multiples
    # of 16, so bottom and right padding land in the last pieces.
    import geomind_cli.engine.batches as batches

    s2 = _digital_numbers(610, 777, seed=7)
    s2[:, 300:420, 500:] = 0
    dem = np.random.default_rng(8).uniform(0, 900, (1, 610, 777)).astype(np.float32)
    dem[0, :90, 100:400] = np.nan
    sources = [SourceSpec([write_raster(tmp_path / "s2.tif", s2, nodata=0)], modality="S2L2A"),
               SourceSpec([write_raster(tmp_path / "dem.tif", dem, nodata=float("nan"))], modality="DEM")]
    monkeypatch.setenv("GEOMIND_DECODE_THREADS", "1")
    results = {}
    with open_scene(sources) as scene:
        plan = plan_tiles(scene.grid.height, scene.grid.width, tile_size=224, overlap=64)
        for piece in (37, 300, 10_000):
            monkeypatch.setattr(batches, "PIECE_COLUMNS", piece)
            assert len(batches.RowBands(scene, plan, {}).pieces(1)) == -(-777 // piece)
            results[piece] = _items(scene, plan, valid_rule)
        whole = results.pop(10_000)
        assert sum(len(i.batch) for i in whole if i.batch is not None) > 12
        # Whole rows against the reference: each tile's window read alone, reflect-padded by np.pad, nodata filled.
        fills = {"S2L2A": MEANS, "DEM": np.asarray(MODALITIES["DEM"].mean, np.float32)[:, None, None]}
        for item in whole:
            for i in range(len(item.batch) if item.batch is not None else 0):
                y, x = int(item.batch.rows[i]), int(item.batch.cols[i])
                h, w = min(224, 610 - y), min(224, 777 - x)
                for name, window in scene.read(y, y + h, x, x + w).items():
                    padded = np.pad(window, ((0, 0), (0, 224 - h), (0, 224 - w)), mode="reflect")
                    want = np.where(np.isfinite(padded), padded, fills[name])
                    np.testing.assert_array_equal(item.batch.arrays[name][i], want)
    for piece, items in results.items():
        assert [(i.next_tile_row, i.skipped, i.batch is None) for i in items] == \
               [(i.next_tile_row, i.skipped, i.batch is None) for i in whole], piece
        for got, want in zip(items, whole):
            if want.batch is None:
                continue
            for field in ("valid", "rows", "cols", "tile_rows", "tile_cols"):
                np.testing.assert_array_equal(getattr(got.batch, field), getattr(want.batch, field))
            for name in ("S2L2A", "DEM"):
                np.testing.assert_array_equal(got.batch.arrays[name], want.batch.arrays[name])
                np.testing.assert_array_equal(got.batch.valid_by_modality[name], want.batch.valid_by_modality[name])


def test_decoded_pieces_queue_four_tile_rows_ahead_unless_that_is_too_many_bytes(tmp_path, monkeypatch):
    import geomind_cli.engine.batches as batches

    path = write_raster(tmp_path / "s2.tif", _digital_numbers(500, 2100, seed=1))
    with open_scene([SourceSpec([path], modality="S2L2A")]) as scene:
        plan = plan_tiles(scene.grid.height, scene.grid.width, tile_size=224, overlap=32)
        bands = batches.RowBands(scene, plan, {}, piece=512)
        assert len(bands.pieces(0)) == 5
        assert bands.read_ahead() == 4 * 5
        # One tile row's new rows: 12 bands x 192 rows x 2,100 columns of raw uint16 = 9.7 MB.
        monkeypatch.setattr(batches, "READ_AHEAD_BYTES", 30 * 2**20)
        assert bands.read_ahead() == 3 * 5
        monkeypatch.setattr(batches, "READ_AHEAD_BYTES", 2**20)
        assert bands.read_ahead() == 2 * 5


def _bytes_read_by_this_process() -> int:
    with open("/proc/self/io") as f:  # every thread's read() calls, GDAL's included
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux's per-process I/O counters")
@pytest.mark.parametrize("threads", ["1", "2"])
def test_each_block_is_read_from_disk_once_with_the_block_cache_the_scene_asks_for(tmp_path, monkeypatch, threads):
    # Tile rows straddle block rows and are read piece by piece: with the GDAL block cache the scene asks for, no
    # block is evicted before its last piece, so the file is read once (a block decoded twice is read twice: GDAL
    # keeps no compressed bytes). Incompressible pixels make the file's size the bytes of its blocks.
    import rasterio

    import geomind_cli.engine.batches as batches

    pixels = np.random.default_rng(3).integers(1, 10_000, (12, 1100, 2048), dtype=np.uint16)
    path = tmp_path / "s2.tif"
    with rasterio.open(path, "w", driver="GTiff", width=2048, height=1100, count=12, dtype="uint16", crs="EPSG:32632",
                       transform=ORIGIN, tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.write(pixels)
    monkeypatch.setenv("GEOMIND_DECODE_THREADS", threads)  # GDAL decodes a read's blocks in parallel from 2
    monkeypatch.setattr(batches, "PIECE_COLUMNS", 256)
    with open_scene([SourceSpec([path], modality="S2L2A")]) as scene:
        plan = plan_tiles(scene.grid.height, scene.grid.width, tile_size=224, overlap=32)
        with rasterio.Env(GDAL_CACHEMAX=scene.read_cache_bytes()):
            before = _bytes_read_by_this_process()
            tiles = sum(len(i.batch) for i in produce(scene, plan, batch_size=16, skip_nodata=False,
                                                       valid_rule="all", pin=False) if i.batch is not None)
            read = _bytes_read_by_this_process() - before
    assert tiles == len(plan)
    assert 0.9 < read / path.stat().st_size < 1.15


def test_identity_through_the_engine_on_a_sparse_scene(tmp_path):
    data = np.zeros((12, 1100, 700), np.uint16)
    data[:, :, 300:380] = _digital_numbers(1100, 80, seed=4)
    path = write_raster(tmp_path / "s2.tif", data, nodata=0)
    out = tmp_path / "out.tif"
    spec = OutputSpec("out", out, "continuous", list(MODALITIES["S2L2A"].bands), "float32")
    with open_scene([SourceSpec([path], modality="S2L2A")]) as scene:
        run_scene(scene, lambda batch: {"out": batch.arrays["S2L2A"]}, [spec], batch_size=5, progress=False)
    import rasterio

    with rasterio.open(out) as dst:
        got = dst.read()
    valid = (data != 0).all(axis=0)
    np.testing.assert_array_equal(got[:, valid], data[:, valid].astype(np.float32))
    assert np.isnan(got[:, ~valid]).all()


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="thread niceness is a Linux feature")
def test_background_threads_run_at_a_lower_priority_than_the_model():
    def niceness():
        yield os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    (background,) = list(Prefetcher(niceness(), 1))
    (decoding,) = list(Prefetcher(niceness(), 1, niceness=DECODE_NICENESS))
    assert background == min(19, mine + BACKGROUND_NICENESS) > mine
    assert decoding == min(19, mine + DECODE_NICENESS) and mine < decoding <= background
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # the caller's is untouched


def test_batch_arrays_are_reused_once_nothing_refers_to_them(tmp_path):
    path = write_raster(tmp_path / "s2.tif", _digital_numbers(700, 700, seed=5), nodata=0)
    with open_scene([SourceSpec([path], modality="S2L2A")]) as scene:
        plan = plan_tiles(scene.grid.height, scene.grid.width, tile_size=224, overlap=64)
        owners, kept = [], []
        for i, item in enumerate(produce(scene, plan, batch_size=2, skip_nodata=True, valid_rule="all", pin=False)):
            if item.batch is None:
                continue
            owners.append(id(item.batch.arrays["S2L2A"].base))
            if i == 0:
                kept.append((item.batch, item.batch.arrays["S2L2A"].copy()))  # still referred to: never reused
    assert len(owners) == 8 and len(set(owners)) < len(owners)
    assert owners.count(owners[0]) == 1
    np.testing.assert_array_equal(kept[0][0].arrays["S2L2A"], kept[0][1])


def test_the_writer_gets_placements_without_the_inputs(tmp_path, monkeypatch):
    # Results wait for the writer thread; the 40 MB input arrays of their batches must not wait with them.
    import geomind_cli.engine.runner as runner

    seen = []
    submit = runner._WriteBehind.submit

    def spy(self, batch, arrays, next_tile_row):
        if batch is not None:
            seen.append((batch.arrays, len(batch), batch.valid.shape))
        return submit(self, batch, arrays, next_tile_row)

    monkeypatch.setattr(runner._WriteBehind, "submit", spy)
    path = write_raster(tmp_path / "s2.tif", _digital_numbers(500, 500, seed=6), nodata=0)
    spec = OutputSpec("out", tmp_path / "out.tif", "grid", ["a"], "float32")
    with open_scene([SourceSpec([path], modality="S2L2A")]) as scene:
        run_scene(scene, lambda b: {"out": b.arrays["S2L2A"][:, :1, ::16, ::16].copy()}, [spec], batch_size=4,
                  progress=False)
    assert seen and all(arrays == {} and valid == (n, 224, 224) for arrays, n, valid in seen)
