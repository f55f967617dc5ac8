"""Blocks of tile rows on a 2-worker LocalCluster give the single-process engine's outputs bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from geomind_cli.engine import OutputSpec, SourceSpec, open_scene, plan_tiles, run_scene
from geomind_cli.engine.blocks import plan_blocks
from geomind_cli.engine.distributed import run_scene_distributed


def _dem(path, height=610, width=333):
    rng = np.random.default_rng(7)
    data = (rng.normal(500, 200, (height, width))).astype(np.float32)
    data[:150, :200] = -9999  # a nodata corner: whole tiles are skipped, which shifts the global batches
    data[400:420, 50:80] = -9999
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="float32",
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 4000000), nodata=-9999) as dst:
        dst.write(data, 1)
    return path


def _tile_fn():
    def tile_fn(batch):
        x = batch.arrays["DEM"].astype(np.float64)  # [B, 1, T, T]
        # A term that depends on the whole batch: outputs match only if the batches are the very same ones.
        jitter = float(x.mean()) * 1e-7
        cont = np.concatenate([np.sin(x / 97.0) + jitter, np.cos(x / 41.0)], axis=1).astype(np.float32)
        logits = np.concatenate([np.sin(x / (29.0 * k)) + jitter * k for k in (1, 2, 3)], axis=1)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        grid = (x[:, :, 8::16, 8::16] / 10.0 + jitter).astype(np.float32)
        return {"c": cont, "k": probs.astype(np.float32), "g": grid}
    return tile_fn


def _specs(folder):
    return [OutputSpec("c", folder / "c.tif", "continuous", ["a", "b"], "float32"),
            OutputSpec("k", folder / "k.tif", "classes", ["k"], "uint8", class_names=["x", "y", "z"],
                       probabilities=True, confidence=True),
            OutputSpec("g", folder / "g.tif", "grid", ["g"], "float32", scale=16)]


def _read_all(folder):
    out = {}
    for name in ("c", "k", "k_probabilities", "k_confidence", "g"):
        with rasterio.open(folder / f"{name}.tif") as src:
            out[name] = (src.read(), src.transform, src.tags().get("GEOMIND_OUTPUT"))
    return out


@pytest.mark.parametrize("rows_per_block,batch_size", [(1, 4), (3, 5)])
def test_blocks_on_two_workers_equal_single_process(client, tmp_path, rows_per_block, batch_size):
    source = _dem(tmp_path / "dem.tif")
    options = dict(tile_size=64, overlap=32, batch_size=batch_size)
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    with open_scene([SourceSpec([source], modality="DEM")]) as scene:
        single = run_scene(scene, _tile_fn(), _specs(tmp_path / "one"), progress=False, **options)
        spread = run_scene_distributed(scene, _tile_fn(), _specs(tmp_path / "many"), client=client,
                                       rows_per_block=rows_per_block, progress=False, **options)
    plan = plan_tiles(610, 333, tile_size=64, overlap=32)
    assert len(plan_blocks(plan, rows_per_block)) > 3
    assert (spread.processed, spread.skipped) == (single.processed, single.skipped) and single.skipped > 0
    one, many = _read_all(tmp_path / "one"), _read_all(tmp_path / "many")
    for name, (data, transform, tag) in one.items():
        assert many[name][1] == transform and many[name][2] == tag
        np.testing.assert_array_equal(many[name][0], data, err_msg=name)
    assert np.isnan(one["c"][0][0, :100, :150]).all()  # the nodata corner stayed nodata
    assert not [p for p in (tmp_path / "many").iterdir() if p.name.startswith(".")]  # staging removed


def test_batch_dependent_tile_function_differs_with_other_batches(tmp_path):
    """The check above can fail: other batch compositions change the jittered outputs."""
    source = _dem(tmp_path / "dem.tif")
    results = []
    for batch_size in (4, 5):
        folder = tmp_path / str(batch_size)
        folder.mkdir()
        with open_scene([SourceSpec([source], modality="DEM")]) as scene:
            run_scene(scene, _tile_fn(), _specs(folder), progress=False, tile_size=64, overlap=32,
                      batch_size=batch_size)
        results.append(_read_all(folder)["c"][0])
    assert not np.array_equal(results[0], results[1], equal_nan=True)
