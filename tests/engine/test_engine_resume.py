"""Resume: finished COG and Zarr outputs are recognised as complete on their own grid only; leftovers are found."""

import os
import subprocess
import sys

import numpy as np

from engine_rasters import write_raster
from geomind_cli.engine import OutputSpec, SourceSpec, open_scene, run_scene
from geomind_cli.engine.resume import is_complete, leftovers, owner_token, remove, why_incomplete
from geomind_cli.facts.modalities import MODALITIES

BANDS = list(MODALITIES["S2L2A"].band_ids)


def test_finished_cog_and_zarr_are_complete_on_their_grid_only(tmp_path):
    data = np.random.default_rng(0).integers(1, 9000, (12, 100, 120)).astype(np.int16)
    small = np.ones((12, 64, 64), np.int16)
    specs = [OutputSpec("out", tmp_path / "out.tif", "continuous", ["B04"], "float32"),
             OutputSpec("emb", tmp_path / "emb.zarr", "grid", ["B04"], "float16")]
    with open_scene([SourceSpec([write_raster(tmp_path / "in.tif", data, descriptions=BANDS)])]) as scene:
        grid = scene.grid
        assert not any(is_complete(spec, grid) for spec in specs)  # nothing written yet

        def tile_fn(batch):
            red = batch.arrays["S2L2A"][:, 3:4]
            return {"out": red, "emb": red[:, :, 8::16, 8::16]}

        run_scene(scene, tile_fn, specs, progress=False)
    assert all(is_complete(spec, grid) for spec in specs)
    with open_scene([SourceSpec([write_raster(tmp_path / "other.tif", small, descriptions=BANDS)])]) as other:
        assert not any(is_complete(spec, other.grid) for spec in specs)  # same names, another scene's grid
    renamed = OutputSpec("something_else", tmp_path / "emb.zarr", "grid", ["B04"], "float16")
    assert not is_complete(renamed, grid)

    stale = tmp_path / ".emb.zarr.1234abcd.partial.zarr"  # what a killed run leaves behind
    (stale / "embedding").mkdir(parents=True)
    assert leftovers(specs[1]) == [stale]
    remove(stale)
    assert not stale.exists() and is_complete(specs[1], grid)


def test_an_output_of_other_work_is_not_complete_and_says_why(tmp_path):
    data = np.random.default_rng(0).integers(1, 9000, (12, 64, 64)).astype(np.int16)
    made = OutputSpec("out", tmp_path / "out.tif", "continuous", ["B04"], "float32", fingerprint="tiny-seed-1")
    with open_scene([SourceSpec([write_raster(tmp_path / "in.tif", data, descriptions=BANDS)])]) as scene:
        run_scene(scene, lambda batch: {"out": batch.arrays["S2L2A"][:, 3:4]}, [made], progress=False)
        grid = scene.grid
    assert why_incomplete(made, grid) is None
    again = OutputSpec("out", tmp_path / "out.tif", "continuous", ["B04"], "float32", fingerprint="large-seed-1")
    assert why_incomplete(again, grid) == "it was made by another command, options, model or weights file"
    assert why_incomplete(OutputSpec("out", tmp_path / "no.tif", "continuous", ["B04"], "float32"), grid) \
        == "it does not exist"


def test_leftovers_are_the_hidden_files_of_dead_runs_only(tmp_path):
    spec = OutputSpec("out", tmp_path / "out.tif", "continuous", ["B04"], "float32")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    gone = owner_token().replace(f"-{os.getpid()}-", f"-{dead.pid}-")
    mine = owner_token()
    stale = [tmp_path / f".out.tif.{gone}.partial.tif", tmp_path / f".out.tif.{gone}.cog.tif",
             tmp_path / f".geomind-staging-{gone}", tmp_path / f".out.tif.{gone}.old"]
    live = [tmp_path / f".out.tif.{mine}.partial.tif", tmp_path / f".geomind-staging-{mine}"]
    other_host = tmp_path / f".out.tif.0000beef-{dead.pid}-12345678.partial.tif"
    for path in stale + live + [other_host]:
        (path.mkdir if "staging" in path.name or path.suffix == ".old" else path.touch)()
    assert leftovers(spec) == sorted(stale)
    for path in leftovers(spec):
        remove(path)
    assert sorted(tmp_path.iterdir()) == sorted(live + [other_host])
