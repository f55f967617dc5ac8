"""Seam metrics (synthetic rasters, hand-computed cases) and seamless, reproducible generation on a tiny random model.

The model tests run the generate task with random official-layout weights (TerraMind tiny, DEM tokenizer) from an
offline cache, 1 diffusion step, on a 96 x 96 crop of the Sen1Floods11 S2L1C sample cut into 2 x 2 tiles of 64 px
(overlap 32): small tiles keep the diffusion UNet affordable on 2 CPU cores.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geomind_cli.engine import TileBatch, plan_tiles
from hub_cache import HubCache
from geomind_cli.seams import TileOutput, TileRecorder, overlap_disagreement, seam_lines, seam_score

ROOT = Path(__file__).resolve().parents[1]
FLOOD_S2 = ROOT / "samples" / "sen1floods11" / "Spain_7370579_S2Hand.tif"
TILE, OVERLAP, CROP = 64, 32, 96


def _bench():
    """benchmarks/bench_seams.py as a module (benchmarks/ is not a package)."""
    if "bench_seams" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_seams", ROOT / "benchmarks" / "bench_seams.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_seams"] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules["bench_seams"]


# ---------------------------------------------------------------- metrics on synthetic rasters


def test_seam_lines_of_a_hand_drawn_plan():
    # 64 px scene, tiles of 32 with overlap 16: origins 0, 16, 32 (tiles 0-32, 16-48, 32-64).
    plan = plan_tiles(64, 64, tile_size=32, overlap=16)
    assert plan.xs.tolist() == [0, 16, 32]
    assert seam_lines(plan, 1, "edges").tolist() == [16, 32, 48]  # left edges 16, 32; right edges 32, 48
    assert seam_lines(plan, 0, "middles").tolist() == [24, 40]  # middles of overlaps 16-32 and 32-48


def test_smooth_raster_scores_about_one_and_steps_at_tile_edges_score_high():
    plan = plan_tiles(512, 512)  # origins 0, 160, 288
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:512, 0:512]
    smooth = np.sin(x / 37.0) + np.cos(y / 23.0) + 0.05 * rng.normal(size=(512, 512))
    for lines in ("edges", "middles"):
        assert 0.9 < seam_score(smooth, plan, lines=lines) < 1.1
    stepped = smooth.copy()
    for p in seam_lines(plan, 1, "edges"):
        stepped[:, p:] += 0.3  # a jump of 0.3 across every vertical tile edge
    assert seam_score(stepped, plan) > 5
    assert 0.9 < seam_score(stepped, plan, lines="middles") < 1.1  # the steps are not on the middles
    # NaN pixels (nodata) are left out instead of poisoning the score
    holed = smooth.copy()
    holed[100:120, :] = np.nan
    assert 0.9 < seam_score(holed[None], plan) < 1.1


def test_class_map_seam_score_counts_class_changes():
    plan = plan_tiles(512, 512)
    rng = np.random.default_rng(1)
    edges_x = seam_lines(plan, 1, "edges")
    # classes constant between vertical tile edges, plus 5% salt: changes concentrate on the edges
    region = np.searchsorted(edges_x, np.arange(512), side="right")
    classes = np.broadcast_to(1 + region % 3, (512, 512)).copy()
    salt = rng.random((512, 512)) < 0.05
    classes[salt] = rng.integers(1, 9, salt.sum())
    assert seam_score(classes, plan, categorical=True) > 3
    noise = rng.integers(1, 9, (512, 512))
    assert 0.95 < seam_score(noise, plan, categorical=True) < 1.05
    # pairs touching the nodata class are left out: a nodata stripe along an edge changes nothing
    striped = noise.copy()
    striped[:, edges_x[0]] = 0
    assert 0.95 < seam_score(striped, plan, categorical=True, nodata=0) < 1.05


def test_overlap_disagreement_by_hand():
    a = TileOutput(0, 0, np.zeros((2, 4, 4)))
    b = TileOutput(0, 2, np.ones((2, 4, 4)))  # overlaps a in columns 2-3
    b.data[1] = 3.0
    far = TileOutput(10, 10, np.zeros((2, 4, 4)))
    found = overlap_disagreement([a, b, far])
    # channel 0 differs by 1, channel 1 by 3, over 4 x 2 pixels each
    assert found.pairs == 1 and found.samples == 16 and found.mean == pytest.approx(2.0)
    # clipped to a scene 3 columns wide: only column 2 is compared
    assert overlap_disagreement([a, b], width=3).samples == 8
    # corner neighbours count too
    assert overlap_disagreement([a, TileOutput(3, 3, np.zeros((2, 4, 4)))]).samples == 2
    assert np.isnan(overlap_disagreement([a]).mean)


def test_overlap_disagreement_of_classes_compares_argmax():
    left = np.zeros((3, 4, 4))
    left[1] = 1.0  # class 1 everywhere
    right = np.zeros((3, 4, 4))
    right[1, :2] = 1.0  # class 1 in the top half ...
    right[2, 2:] = 1.0  # ... class 2 in the bottom half
    found = overlap_disagreement([TileOutput(0, 0, left), TileOutput(0, 0, right)], categorical=True)
    assert found.mean == pytest.approx(0.5) and found.samples == 16


# ---------------------------------------------------------------- tiny random model


@pytest.fixture(scope="module")
def offline_models(tmp_path_factory):
    """Random official-layout checkpoints (TerraMind tiny, DEM tokenizer) in an offline cache for this module."""
    hub = HubCache(tmp_path_factory.mktemp("hf-home"))
    hub.place_random_official("tiny", ["DEM"])
    with hub.active():
        yield _bench()


@pytest.fixture(scope="module")
def crop(tmp_path_factory) -> Path:
    """The top-left 96 x 96 pixels of the S2L1C sample, georeferenced, as its own GeoTIFF."""
    path = tmp_path_factory.mktemp("crop") / "crop_S2Hand.tif"
    with rasterio.open(FLOOD_S2) as src:
        window = Window(0, 0, CROP, CROP)
        profile = src.profile | dict(width=CROP, height=CROP, transform=src.window_transform(window))
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    return path


def _task(noise: str, tmp: Path):
    from geomind_cli.tasks.generate import GenerateOptions, generate_task
    from geomind_cli.tasks.runtime import Runtime

    runtime = Runtime.resolve(device="cpu", precision="fp32", compile=False)
    options = GenerateOptions(targets=("DEM",), size="tiny", timesteps=1, seed=11, noise=noise)
    return generate_task(["S2L1C"], options, runtime, tmp, noise, overwrite=True)


@pytest.fixture(scope="module")
def tiles(offline_models, crop):
    """The crop's four 64 px tiles, one TileBatch each, in plan order (row-major)."""
    from geomind_cli.engine.batches import produce
    from geomind_cli.tasks.inputs import open_inputs

    scene = open_inputs([str(crop)])
    plan = plan_tiles(CROP, CROP, tile_size=TILE, overlap=OVERLAP)
    items = produce(scene, plan, batch_size=1, skip_nodata=False, valid_rule="all", pin=False)
    batches = [item.batch for item in items if item.batch is not None]
    assert len(batches) == 4
    return batches


def _merge(batches: list[TileBatch]) -> TileBatch:
    cat = np.concatenate
    return TileBatch(
        arrays={k: cat([b.arrays[k] for b in batches]) for k in batches[0].arrays},
        valid=cat([b.valid for b in batches]), rows=cat([b.rows for b in batches]), cols=cat([b.cols for b in batches]),
        tile_rows=cat([b.tile_rows for b in batches]), tile_cols=cat([b.tile_cols for b in batches]),
    )


def _per_tile(task, batches: list[TileBatch]) -> dict[tuple[int, int], np.ndarray]:
    recorder = TileRecorder(task.tile_fn)
    for batch in batches:
        recorder(batch)
    return {(t.row, t.col): t.data for t in recorder.tiles["DEM"]}


def test_generation_is_the_same_whatever_batch_size_and_tile_order(tiles, tmp_path):
    task = _task("world", tmp_path)
    # batches of 3 + 1 in the engine's order, against single tiles in reverse order
    in_threes = _per_tile(task, [_merge(tiles[:3]), tiles[3]])
    reversed_singles = _per_tile(task, tiles[::-1])
    assert in_threes.keys() == reversed_singles.keys() and len(in_threes) == 4
    for key, expected in reversed_singles.items():
        # Token draws are exact functions of place; the float32 UNet may round differently for another batch shape
        # (BLAS/oneDNN pick kernels by shape, and pick other ones on AMD than on Intel). Rounding scales with the
        # field, not with each value: a height near 0 m in a field of ~800 m carries the same absolute error (seen
        # on an AMD EPYC: 0.0023 m). 1e-5 of the field's largest value is far below any seam (outputs vary ~100 m).
        atol = 1e-5 * float(np.abs(expected).max())
        np.testing.assert_allclose(in_threes[key], expected, rtol=1e-4, atol=atol)
    last = (int(tiles[3].rows[0]), int(tiles[3].cols[0]))
    assert np.array_equal(in_threes[last], reversed_singles[last])  # alone in both runs: bit-identical


@pytest.fixture(scope="module")
def measured(offline_models, crop, tmp_path_factory):
    """The benchmark's measurement on the crop, world and tile noise, recording every noise draw of the task."""
    import geomind_cli.tasks.generate as generate

    out = tmp_path_factory.mktemp("seams")
    drawn = {"gaussian": [], "keys": []}

    def spy(kind, real):
        def draw(seed, stream, origins, size, *args):
            values = real(seed, stream, origins, size, *args)
            drawn[kind].extend((noise, tuple(o), v) for o, v in zip(origins, values))
            return values
        return draw

    rows = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generate, "tile_gaussian", spy("gaussian", generate.tile_gaussian))
        mp.setattr(generate, "tile_token_keys", spy("keys", generate.tile_token_keys))
        for noise in ("world", "tile"):
            (rows[noise],) = offline_models.measure(crop, noise=noise, out_dir=out, size="tiny", targets=["DEM"],
                                                    timesteps=1, overlap=OVERLAP, batch_size=4, seed=11,
                                                    device="cpu", tile_size=TILE)
    print(offline_models.table(list(rows.values())))
    return rows, drawn, out


def test_seam_measurement_runs_and_world_noise_disagrees_less(measured):
    rows, _, out = measured
    for noise, row in rows.items():
        assert row.pairs == 6 and row.samples == 4 * 64 * 32 + 2 * 32 * 32  # 4 side pairs, 2 corner pairs
        assert np.isfinite([row.disagreement, row.seam_edges, row.seam_middles]).all()
        assert (out / f"crop_S2Hand_{noise}_DEM.tif").is_file()
    # Shared starting noise brings the diffusion outputs of overlapping tiles closer (measured 0.50x with these
    # 64 px tiles, 0.29x with 224 px tiles); the rest comes from tokens and the decoder's tile-wide context.
    assert rows["world"].disagreement < 0.75 * rows["tile"].disagreement


def test_world_noise_is_identical_in_overlaps_and_tile_noise_is_not(measured):
    _, drawn, _ = measured
    for noise in ("world", "tile"):
        gaussian = {origin: v for mode, origin, v in drawn["gaussian"] if mode == noise}
        keys = {origin: v.reshape(4, 4) for mode, origin, v in drawn["keys"] if mode == noise}
        assert set(gaussian) == set(keys) == {(0, 0), (0, 32), (32, 0), (32, 32)}
        # tiles (0, 0) and (0, 32) share columns 32-63 (token column 2-3); (0, 0) and (32, 32) rows/cols 32-63
        pairs = [
            (gaussian[0, 0][:, :, 32:], gaussian[0, 32][:, :, :32]),
            (gaussian[0, 0][:, 32:, 32:], gaussian[32, 32][:, :32, :32]),
            (keys[0, 0][:, 2:], keys[0, 32][:, :2]),
            (keys[0, 0][2:, 2:], keys[32, 32][:2, :2]),
        ]
        for a, b in pairs:
            if noise == "world":
                np.testing.assert_array_equal(a, b)
            else:
                assert not np.any(a == b)
