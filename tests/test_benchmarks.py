"""The benchmark script runs on CPU in CI-sized form and writes every documented field (no timing assertions)."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    try:  # not find_spec: other test modules may have put a stub terratorch package in sys.modules
        importlib.metadata.version("terratorch")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the reference side needs the test extra (make install-test)")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import run_all

        path = tmp_path_factory.mktemp("bench") / "bench.json"
        # The cheapest command on a 240 px scene: 2 x 2 tiles of 224 px, so the reference really tiles too.
        code = run_all.main(["--quick", "--commands", "embed", "--scene-size", "240", "--batch-sizes", "4",
                             "--json", str(path)])
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert code == 0
    return json.loads(path.read_text())


def test_header_describes_run_and_machine(result):
    assert result["date"] and "--quick" in result["command"]
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    assert result["machine"]["gpu"] == "none" or result["settings"]["device"].startswith("cuda")
    assert result["versions"]["torch"] and result["versions"]["terratorch"] == "1.2.13"
    settings = result["settings"]
    assert (settings["model"], settings["tile_size"], settings["stride"], settings["scene_px"]) == ("tiny", 224, 160, 240)


def test_every_command_has_model_only_end_to_end_and_reference(result):
    assert [row["command"] for row in result["results"]] == ["embed"]
    for row in result["results"]:
        assert row["flops_per_tile"] > 1e9  # a tiny encoder over 196 patches: a few GFLOP
        model_only = row["model_only"]
        assert model_only["best_batch"] == 4 and model_only["tiles_per_s"] > 0 and model_only["flops_per_s"] > 0
        assert model_only["mfu"] is None  # no GPU peak on a CPU
        e2e = row["end_to_end"]
        assert e2e["tiles"] == 4 and e2e["batch"] == 4
        for key in ("wall_s", "read_s", "model_s", "stitch_write_s", "tiles_per_s", "km2_per_s", "peak_rss_mb"):
            assert e2e[key] > 0, key
        # Stitching and writing overlap the model (writer thread), so each part, not their sum, fits in the wall time.
        assert e2e["model_s"] <= e2e["wall_s"] and e2e["stitch_write_s"] <= e2e["wall_s"]
        assert e2e["km2_per_s"] == pytest.approx(result["settings"]["scene_km2"] / e2e["wall_s"], rel=0.01)
        reference = row["reference"]["end_to_end"]
        assert reference["tiles"] >= 4 and reference["wall_s"] > 0 and reference["model_s"] > 0
        assert row["ratio"]["end_to_end_km2_per_s"] == pytest.approx(e2e["km2_per_s"] / reference["km2_per_s"],
                                                                     rel=0.01)


# Speed settings must not change results.


def test_static_batches_pad_short_batches_and_trim_results():
    import numpy as np

    from geomind_cli.engine.batches import TileBatch, static_batches

    seen = []

    def tile_fn(batch):
        seen.append(len(batch))
        return {"out": batch.arrays["S2L2A"][:, :1] * 2.0}

    rng = np.random.default_rng(0)
    batch = TileBatch(arrays={"S2L2A": rng.random((3, 12, 32, 32), dtype=np.float32)},
                      valid=np.ones((3, 32, 32), bool), rows=np.array([0, 0, 16]), cols=np.array([0, 16, 0]),
                      tile_rows=np.array([0, 0, 1]), tile_cols=np.array([0, 1, 0]))
    padded = static_batches(tile_fn, 8, static=True)(batch)
    assert seen == [8] and padded["out"].shape == (3, 1, 32, 32)
    np.testing.assert_array_equal(padded["out"], batch.arrays["S2L2A"][:, :1] * 2.0)
    grown = batch.padded(8)
    assert len(grown) == 8 and (grown.rows[3:] == 16).all() and (grown.tile_cols[3:] == 0).all()
    assert static_batches(tile_fn, 8, static=False) is tile_fn


def test_channels_last_unet_gives_the_same_prediction():
    import copy

    import torch

    from geomind_cli.models.tokenizers.unet import PatchedUNet, UNetConfig

    torch.manual_seed(0)
    unet = PatchedUNet(UNetConfig(channels=2, model_channels=32, num_res_blocks=1)).eval()
    fast = copy.deepcopy(unet).use_channels_last()
    assert fast.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    x, cond = torch.randn(2, 2, 64, 64), torch.randn(2, 5, 4, 4)
    t = torch.tensor([500.0])
    with torch.no_grad():
        torch.testing.assert_close(fast(x, t, cond), unet(x, t, cond), rtol=1e-4, atol=1e-5)


def test_precision_benchmark_reports_exact_token_ids_under_bf16(tmp_path):
    """benchmarks/bench_precision.py in its smallest form: tokenize the two 224 px chips, float32 vs bf16 autocast."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_precision

        path = tmp_path / "precision.json"
        code = bench_precision.main(["--weights", "random", "--quick", "--checks", "tokenize", "--json", str(path)])
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert code == 0
    result = json.loads(path.read_text())
    assert result["command"].startswith("python benchmarks/bench_precision.py") and result["machine"]["cores"] >= 1
    assert result["settings"]["weights"] == "random" and any("RANDOM WEIGHTS" in n for n in result["notes"])
    rows = result["results"]
    assert [(r["check"], r["precision"]) for r in rows] == [("tokenize", "bf16")] * 2
    assert {r["sample"].split("(")[-1] for r in rows} == {"S2L2A)", "DEM)"}
    for row in rows:  # the tokenizer encoder ignores autocast, so the ids are exact
        assert row["value"] == 1.0 and row["passed"] and row["tiles"] == 1
        assert 0.0 <= row["details"]["encoder_under_autocast_agreement"] <= 1.0


def test_scene_throughput_benchmark_reports_each_ratio_with_its_pairs(tmp_path):
    # The engine and finishing parts at toy sizes (the embed part needs random weights: run_all covers it above).
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_scene_throughput

        out = tmp_path / "scene.json"
        code = bench_scene_throughput.main(["--sizes", "512", "--band-files", "480", "--skip", "embed", "--finish",
                                            "64x8", "--repeats", "2", "--min-seconds", "0", "--finish-repeats", "2",
                                            "--data", str(tmp_path), "--out", str(out)])
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert code == 0
    result = json.loads(out.read_text())
    assert result["command"] and result["date"] and result["machine"]["cores"] >= 1
    engine = [r for r in result["results"] if r["case"].startswith("engine 512 px")]
    assert engine and all(len(r["all_raw_s"]) == len(r["all_engine_s"]) == 2 for r in engine)
    from geomind_cli.engine.tiling import plan_tiles

    tiles = len(plan_tiles(512, 512, tile_size=224, overlap=64))
    assert all(r["tiles"] == tiles and r["ratio"] > 0 and r["peak_rss_mb"] > 0 for r in engine)
    bands = [r for r in result["results"] if r["case"].startswith("engine 480 px from 12 band files")]
    assert bands and all(len(r["all_raw_s"]) == len(r["all_engine_s"]) == 2 for r in bands)
    assert all(r["tiles"] == len(plan_tiles(480, 480, tile_size=224, overlap=64)) and r["speedup_over_warper"] > 0
               for r in bands)
    (finish,) = [r for r in result["results"] if r["case"] == "finish 64 x 64 x 8 float32"]
    assert len(finish["all_finish_s"]) == 2 and finish["ratio"] > 0 and finish["target"] == "<= 2"


def test_pairs_run_at_least_repeats_times_and_on_until_the_time_budget_is_spent():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from bench_scene_throughput import alternate
    finally:
        sys.path.remove(str(BENCHMARKS))
    now = [0.0]

    def pair(seconds):  # a pair of runs taking ``seconds`` on a fake clock
        def run():
            now[0] += seconds
            return now[0]
        return run

    clock = lambda: now[0]  # noqa: E731
    assert len(alternate(pair(10), 5, 0, clock=clock)) == 5  # no budget: exactly the repeats
    now[0] = 0.0
    assert len(alternate(pair(10), 5, 120, clock=clock)) == 12  # short pairs: on until 120 s have passed
    now[0] = 0.0
    assert len(alternate(pair(40), 5, 120, clock=clock)) == 5  # long pairs: the repeats already take longer
    now[0] = 0.0
    assert len(alternate(pair(1), 5, 120, clock=clock)) == 20  # never more than 4 x the repeats
    now[0] = 0.0
    assert alternate(pair(1), 3, 0, clock=clock) == [1.0, 2.0, 3.0]  # results in the order they ran
