"""`geomind segment` / `classify` in batch mode: one output per scene in a folder, resume that leaves complete outputs
untouched, and a LocalCluster run of two workers that writes the same values as one process.

Scenes: two overlapping crops of the Sen1Floods11 S1GRD chip (different content, different georeferencing). The
fine-tunes are tiny random-weight S1GRD models whose checkpoints record their settings (no --config given).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from finetune_helpers import (NECKS, config_dict, randomize_norms, read, recorded_hparams, run_main,
                              write_checkpoint)
from rasterio.windows import Window

from geomind_cli.models.finetune import build_finetuned
from geomind_cli.models.finetune.config import config_from_dict

S1 = Path(__file__).resolve().parents[2] / "samples" / "sen1floods11" / "Spain_7370579_S1Hand.tif"
FAST = ["--device", "cpu", "--quiet", "--batch-size", "3", "--overlap", "32"]
CROPS = {"a": Window(0, 0, 512, 288), "b": Window(0, 224, 512, 288)}  # rows 0-288 and 224-512


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("scenes")
    out = {}
    with rasterio.open(S1) as src:
        for name, window in CROPS.items():
            profile = {**src.profile, "height": window.height, "width": window.width,
                       "transform": src.window_transform(window)}
            with rasterio.open(tmp / f"{name}.tif", "w", **profile) as dst:
                dst.write(src.read(window=window))
            out[name] = tmp / f"{name}.tif"
    return out


def _checkpoint(tmp: Path, name: str, config: dict, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_finetuned(config_from_dict(config))
    randomize_norms(model, seed)
    return write_checkpoint(tmp / f"{name}.ckpt", model.state_dict(),
                            extra=recorded_hparams(config, cli=True, data=True))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ckpt")
    segmenter = config_dict({"backbone": "terramind_v1_tiny", "backbone_modalities": ["S1GRD"], "necks": NECKS,
                             "decoder": "UNetDecoder", "decoder_channels": [16, 8, 8, 8], "num_classes": 3},
                            class_names=["Land", "Water", "Cloud"])
    classifier = config_dict({"backbone": "terramind_v1_tiny", "backbone_modalities": ["S1GRD"],
                              "necks": NECKS[1:2], "decoder": "IdentityDecoder", "num_classes": 3},
                             task="classification", class_names=["Crop", "Forest", "Urban"])
    return {"segment": _checkpoint(tmp, "segment", segmenter, 7), "classify": _checkpoint(tmp, "classify", classifier, 8)}


@pytest.fixture
def one_thread(monkeypatch):
    """This process and the cluster's workers compute with one torch thread each, so their sums round alike."""
    from geomind_cli.engine import cluster

    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(cluster, "_cores", lambda: 2)  # two workers of one thread each, on any machine
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_segment_batch_resume_and_cluster(scenes, checkpoints, tmp_path, capsys, monkeypatch, one_thread):
    batch = ["segment", f"{scenes['a']}:S1GRD", f"{scenes['b']}:S1GRD", "--checkpoint", checkpoints["segment"],
             "--probabilities", *FAST]
    code, err = run_main(capsys, monkeypatch, *batch, "-o", tmp_path / "maps")
    assert code == 0, err
    maps = {name: tmp_path / "maps" / f"{name}_segmentation.tif" for name in scenes}
    results = {}
    for name, path in maps.items():
        classes, meta = read(path)
        with rasterio.open(scenes[name]) as src:
            assert (meta["crs"], meta["transform"], meta["shape"]) == (src.crs, src.transform, (288, 512))
        assert json.loads(meta["tags"]["CLASS_NAMES"]) == ["Land", "Water", "Cloud"]
        results[name] = (classes, read(path.with_name(f"{name}_segmentation_probabilities.tif"))[0])
    # The crops share rows 224-288 of the chip, but each map is its own scene's (context differs near the edges).
    assert not np.array_equal(results["a"][1][:, 224:], results["b"][1][:, :64])
    # Random weights give one class almost everywhere; the probabilities still vary, and they are compared below.
    assert results["a"][1].std(axis=(1, 2)).min() > 1e-5

    # One scene alone (its own command) gives the same map as in the batch.
    single = tmp_path / "single.tif"
    code, err = run_main(capsys, monkeypatch, "segment", f"{scenes['a']}:S1GRD", "--checkpoint",
                         checkpoints["segment"], "-o", single, "--probabilities", *FAST)
    assert code == 0, err
    np.testing.assert_array_equal(read(single)[0], results["a"][0])
    np.testing.assert_array_equal(read(tmp_path / "single_probabilities.tif")[0], results["a"][1])
    # Existing output: refused in one line, unless --resume (then left alone) or --overwrite.
    code, err = run_main(capsys, monkeypatch, "segment", f"{scenes['a']}:S1GRD", "--checkpoint",
                         checkpoints["segment"], "-o", single, *FAST)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--overwrite" in err, err
    before = single.stat().st_mtime_ns
    code, err = run_main(capsys, monkeypatch, "segment", f"{scenes['a']}:S1GRD", "--checkpoint",
                         checkpoints["segment"], "-o", single, "--probabilities", "--resume", *FAST)
    assert code == 0 and single.stat().st_mtime_ns == before, err

    # A batch interrupted before b was written (the engine writes an output's files only at its end). Re-running
    # the command writes b and leaves a's files untouched.
    kept = {p: p.stat().st_mtime_ns for p in (tmp_path / "maps").glob("a_*")}
    assert len(kept) == 2
    for path in (tmp_path / "maps").glob("b_*"):
        path.unlink()
    code, err = run_main(capsys, monkeypatch, *batch, "-o", tmp_path / "maps")
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    np.testing.assert_array_equal(read(maps["b"])[0], results["b"][0])

    # Two workers of a local cluster: the same maps and probabilities as one process.
    code, err = run_main(capsys, monkeypatch, *batch, "-o", tmp_path / "cluster", "--cluster", "local",
                         "--workers", "2")
    assert code == 0, err
    for name in scenes:
        path = tmp_path / "cluster" / f"{name}_segmentation.tif"
        np.testing.assert_array_equal(read(path)[0], results[name][0])
        np.testing.assert_array_equal(read(path.with_name(f"{name}_segmentation_probabilities.tif"))[0],
                                      results[name][1])


def test_classify_batch(scenes, checkpoints, tmp_path, capsys, monkeypatch):
    """classify takes several scenes too: one coarse class grid each, named after its scene."""
    code, err = run_main(capsys, monkeypatch, "classify", f"{scenes['a']}:S1GRD", f"{scenes['b']}:S1GRD",
                         "--checkpoint", checkpoints["classify"], "-o", tmp_path / "grids", *FAST)
    assert code == 0, err
    for name in scenes:
        labels, meta = read(tmp_path / "grids" / f"{name}_classes.tif")
        with rasterio.open(scenes[name]) as src:
            assert meta["transform"] == src.transform * rasterio.Affine.scale(16) and meta["shape"] == (18, 32)
        assert json.loads(meta["tags"]["CLASS_NAMES"]) == ["Crop", "Forest", "Urban"]
        assert set(np.unique(labels)) <= {0, 1, 2}
