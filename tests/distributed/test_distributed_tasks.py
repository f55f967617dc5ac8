"""Real tasks (tiny random-weight TerraMind, full-size tokenizers) on a 2-worker LocalCluster: the same bytes as one
process, also when a worker process is killed in the middle of the run."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import rasterio

from geomind_cli.tasks.generate import GenerateOptions, generate_task
from geomind_cli.tasks.inputs import open_inputs
from geomind_cli.tasks.options import RunOptions
from geomind_cli.tasks.run import run_task
from geomind_cli.tasks.runtime import Runtime
from geomind_cli.tasks.tokenize import tokenize_task

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "sen1floods11"
S2, S1 = SAMPLES / "Spain_7370579_S2Hand.tif", SAMPLES / "Spain_7370579_S1Hand.tif"
CPU = Runtime.resolve(device="cpu", precision="fp32", compile=False, weights=None)
# 512 px with 224 px tiles: 3 x 3 tiles; one tile row per block gives 3 blocks, batches of 2 cross rows.
RUN = RunOptions(batch_size=2, overlap=32, quiet=True)


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.transform, src.tags()


def _same(a, b):
    (x, tx, gx), (y, ty, gy) = _read(a), _read(b)
    np.testing.assert_array_equal(x, y)
    assert tx == ty and gx == gy


def test_tokenize_and_generate_on_two_workers_equal_one_process(client, tmp_path, one_thread):
    with open_inputs([f"{S1}:S1GRD"]) as scene:
        for where in ("one", "many"):
            task = tokenize_task("S1GRD", CPU, tmp_path / where / "tokens.tif")
            run_task(scene, task, RUN, client=client if where == "many" else None, rows_per_block=1)
    _same(tmp_path / "one" / "tokens.tif", tmp_path / "many" / "tokens.tif")
    assert len(np.unique(_read(tmp_path / "one" / "tokens.tif")[0])) > 10

    options = GenerateOptions(targets=("LULC",), size="tiny", timesteps=1, seed=4)
    with open_inputs([str(S2), str(S1)]) as scene:
        for where in ("one", "many"):
            task = generate_task(list(scene.band_counts), options, CPU, tmp_path / where, "flood")
            summary = run_task(scene, task, RUN, client=client if where == "many" else None, rows_per_block=1)
            assert summary.tiles == 9 and summary.processed + summary.skipped == 9
    _same(tmp_path / "one" / "flood_LULC.tif", tmp_path / "many" / "flood_LULC.tif")
    assert len(np.unique(_read(tmp_path / "one" / "flood_LULC.tif")[0])) > 1


def _killing_first_call(tile_fn, marker: Path):
    """The first call anywhere kills its own worker process (SIGKILL: no clean-up, as an OOM kill or a lost node)."""
    def tile_fn_or_die(batch):
        try:
            marker.open("x").close()
        except FileExistsError:
            return tile_fn(batch)
        os.kill(os.getpid(), signal.SIGKILL)
    return tile_fn_or_die


def test_killed_worker_loses_nothing(client, tmp_path, one_thread):
    marker = tmp_path / "killed"
    with open_inputs([f"{S1}:S1GRD"]) as scene:
        for where in ("one", "many"):
            task = tokenize_task("S1GRD", CPU, tmp_path / where / "tokens.tif")
            if where == "many":
                task.tile_fn = _killing_first_call(task.tile_fn, marker)
            run_task(scene, task, RUN, client=client if where == "many" else None, rows_per_block=1)
    assert marker.exists()  # a worker really died
    _same(tmp_path / "one" / "tokens.tif", tmp_path / "many" / "tokens.tif")
    assert not [p.name for p in (tmp_path / "many").iterdir() if p.name.startswith(".")]
