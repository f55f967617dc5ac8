"""End to end on the real Sen1Floods11 chip (512 x 512 px S2L1C + S1GRD, EPSG:4326): `geomind segment` and
`geomind classify` with tiny random-weight fine-tunes written as TerraTorch config + Lightning checkpoint.

One run is a real subprocess with an empty offline Hugging Face cache (the checkpoint alone must suffice); the
others call the CLI's ``main`` in this process to save the start-up time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from affine import Affine
from finetune_helpers import NECKS, config_dict, randomize_norms, read, run_main, write_checkpoint, write_config

from geomind_cli.models.finetune import build_finetuned, parse_config

ROOT = Path(__file__).resolve().parents[2]
S2 = ROOT / "samples" / "sen1floods11" / "Spain_7370579_S2Hand.tif"
S1 = ROOT / "samples" / "sen1floods11" / "Spain_7370579_S1Hand.tif"
SCENE = [str(S2), f"{S1}:S1GRD"]
FAST = ["--device", "cpu", "--quiet", "--batch-size", "3"]


def _save(tmp: Path, name: str, config: dict, seed: int) -> tuple[Path, Path]:
    cfg = write_config(tmp / f"{name}.yaml", config)
    torch.manual_seed(seed)
    model = build_finetuned(parse_config(cfg))
    randomize_norms(model, seed)
    return cfg, write_checkpoint(tmp / f"{name}.ckpt", model.state_dict())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{name: (config, checkpoint)}: the sample TiM config at tiny size, a plain UNet, a classifier."""
    tmp = tmp_path_factory.mktemp("finetunes")
    tim = yaml.safe_load((ROOT / "samples" / "terratorch" / "sen1floods11_tim.yaml").read_text())
    tim["model"]["init_args"]["model_args"].update(backbone="terramind_v1_tiny_tim", decoder_channels=[32, 16, 16, 8])
    plain = config_dict({"backbone": "terramind_v1_tiny", "backbone_modalities": ["S2L1C", "S1GRD"],
                         "necks": NECKS, "decoder": "UNetDecoder", "decoder_channels": [32, 16, 16, 8],
                         "num_classes": 3}, class_names=["Land", "Water", "Cloud"])
    classifier = config_dict({"backbone": "terramind_v1_tiny", "backbone_modalities": ["S2L1C", "S1GRD"],
                              "necks": NECKS[1:2], "decoder": "IdentityDecoder", "num_classes": 4},
                             task="classification", class_names=["A", "B", "C", "D"])
    return {"tim": _save(tmp, "tim", tim, 1), "plain": _save(tmp, "plain", plain, 2),
            "classifier": _save(tmp, "classifier", classifier, 3)}





def test_segment_tim_subprocess_offline(models, tmp_path):
    """The sample TiM config: class map + probabilities + confidence, georeferenced as the input, offline."""
    config, ckpt = models["tim"]
    out = tmp_path / "flood.tif"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "empty-hf"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "geomind_cli.cli.app", "segment", *SCENE, "--checkpoint", ckpt,
                           "--config", config, "--tim", "LULC", "-o", out, "--probabilities", "--confidence", *FAST],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    classes, meta = read(out)
    with rasterio.open(S2) as src:
        assert (meta["crs"], meta["transform"], meta["shape"]) == (src.crs, src.transform, (src.height, src.width))
    assert meta["dtype"] == "uint8" and meta["nodata"] == 255
    assert "Others" in meta["tags"]["CLASS_NAMES"] and "Flood" in meta["tags"]["CLASS_NAMES"]
    assert meta["colormap"][0][:3] != meta["colormap"][1][:3]
    probs, pmeta = read(out.with_name("flood_probabilities.tif"))
    conf, _ = read(out.with_name("flood_confidence.tif"))
    assert pmeta["descriptions"] == ("Others", "Flood") and pmeta["transform"] == meta["transform"]
    valid = classes[0] != 255
    assert valid.mean() > 0.9
    np.testing.assert_allclose(probs.sum(0)[valid], 1.0, atol=1e-4)
    np.testing.assert_allclose(conf[0][valid], probs.max(0)[valid], atol=1e-6)
    assert np.array_equal(classes[0][valid], probs.argmax(0)[valid])


@pytest.mark.parametrize("case", ["bad checkpoint", "bad config", "tim on plain"])
def test_errors_are_one_line_and_write_nothing(models, tmp_path, capsys, monkeypatch, case):
    config, ckpt = models["plain"]
    extra = []
    if case == "bad checkpoint":
        ckpt = tmp_path / "bad.ckpt"
        ckpt.write_bytes(b"\x00" * 64)
    elif case == "bad config":
        data = yaml.safe_load(Path(config).read_text())
        data["model"]["init_args"]["model_args"]["decoder"] = "MysteryDecoder"
        config = write_config(tmp_path / "bad.yaml", data)
    else:
        extra = ["--tim", "LULC"]
    out = tmp_path / "out.tif"
    code, err = run_main(capsys, monkeypatch, "segment", *SCENE, "--checkpoint", ckpt, "--config", config, "-o", out,
                         "--probabilities", *extra, *FAST)
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("geomind: error: "), err
    assert list(tmp_path.glob("out*")) == []


def _tile_probabilities(model_cfg, ckpt, window: slice) -> np.ndarray:
    """The model run directly on one 224 px window of the chip (no engine): softmax [K, 224, 224]."""
    from geomind_cli.models.finetune import load_finetuned
    from geomind_cli.tasks.runtime import Runtime
    from geomind_cli.tasks.segment import model_inputs

    model, cfg = load_finetuned(model_cfg, ckpt)
    with rasterio.open(S2) as s2, rasterio.open(S1) as s1:
        arrays = {"S2L1C": s2.read()[None, :, window, window].astype(np.float32),
                  "S1GRD": s1.read()[None, :, window, window].astype(np.float32)}
    with torch.no_grad():
        x = model_inputs(cfg, arrays, Runtime.resolve(device="cpu"))
        return torch.softmax(model(x), dim=1)[0].numpy()


def test_segment_is_seamless(models, tmp_path, capsys, monkeypatch):
    """512 px chip, 3 x 3 tiles of 224 px. Where one tile alone covers a pixel, the map is that tile's own
    output (stitching and georeferencing exact); blending leaves the tile edges no more visible than the rest,
    unlike the same model without overlap."""
    from geomind_cli.engine import plan_tiles
    from geomind_cli.seams import seam_score

    config, ckpt = models["plain"]
    scores = {}
    for overlap in (64, 0):
        out = tmp_path / f"map{overlap}.tif"
        code, err = run_main(capsys, monkeypatch, "segment", *SCENE, "--checkpoint", ckpt, "--config", config,
                             "-o", out, "--probabilities", "--overlap", overlap, *FAST)
        assert code == 0, err
        probs, meta = read(out.with_name(f"map{overlap}_probabilities.tif"))
        assert meta["descriptions"] == ("Land", "Water", "Cloud")
        scores[overlap] = seam_score(probs, plan_tiles(512, 512, overlap=overlap))
        if overlap == 64:
            alone = _tile_probabilities(config, ckpt, slice(0, 224))[:, :160, :160]  # tile (0, 0) only up to 160
            np.testing.assert_allclose(probs[:, :160, :160], alone, atol=1e-5)
    # 1.0: tile edges look like anywhere else. Without overlap the model's per-tile context makes a hard step.
    assert scores[0] > 10 * scores[64], scores
    assert scores[64] < 1.5, scores


def test_classify_grid(models, tmp_path, capsys, monkeypatch):
    """One label per tile position on the 16 px grid, each tile owning the cells nearest its centre."""
    from geomind_cli.engine import plan_tiles
    from geomind_cli.engine.tiling import grid_owners
    from geomind_cli.models.finetune import load_finetuned
    from geomind_cli.tasks.runtime import Runtime
    from geomind_cli.tasks.segment import model_inputs

    config, ckpt = models["classifier"]
    out = tmp_path / "labels.tif"
    code, err = run_main(capsys, monkeypatch, "classify", *SCENE, "--checkpoint", ckpt, "--config", config, "-o", out,
                         "--probabilities", *FAST)
    assert code == 0, err
    labels, meta = read(out)
    probs, _ = read(out.with_name("labels_probabilities.tif"))
    with rasterio.open(S2) as src:
        assert meta["transform"] == src.transform * Affine.scale(16) and meta["shape"] == (32, 32)
        assert meta["crs"] == src.crs
    assert meta["descriptions"] == ("class",) and meta["dtype"] == "uint8" and meta["nodata"] == 255
    assert json.loads(meta["tags"]["CLASS_NAMES"]) == ["A", "B", "C", "D"]
    assert meta["colormap"][1][:3] != meta["colormap"][2][:3]
    plan = plan_tiles(512, 512)
    rows, cols = grid_owners(plan, 0)[:32], grid_owners(plan, 1)[:32]
    model, cfg = load_finetuned(config, ckpt)
    with rasterio.open(S2) as s2, rasterio.open(S1) as s1:
        s2a, s1a = s2.read().astype(np.float32), s1.read().astype(np.float32)
    origins = [(ty, tx, y, x) for ty, y in enumerate(plan.ys) for tx, x in enumerate(plan.xs)]
    arrays = {"S2L1C": np.stack([s2a[:, y:y + 224, x:x + 224] for _, _, y, x in origins]),
              "S1GRD": np.stack([s1a[:, y:y + 224, x:x + 224] for _, _, y, x in origins])}
    with torch.no_grad():  # every tile in one batch, straight through the model
        expected = torch.softmax(model(model_inputs(cfg, arrays, Runtime.resolve(device="cpu"))), 1).numpy()
    for (ty, tx, _, _), p in zip(origins, expected):
        block = np.ix_(rows == ty, cols == tx)
        assert np.all(labels[0][block] == p.argmax()), (ty, tx)
        np.testing.assert_allclose(probs[:, block[0], block[1]], np.broadcast_to(p[:, None, None],
                                   probs[:, block[0], block[1]].shape), atol=1e-5)


def test_regression_float_raster(tmp_path, capsys, monkeypatch):
    """A PixelwiseRegressionTask fine-tune writes a float32 raster (NaN nodata) on the scene's grid; class-only
    options are refused before anything is written."""
    args = {"backbone": "terramind_v1_tiny", "backbone_modalities": ["S1GRD"], "necks": NECKS[1:2],
            "decoder": "FCNDecoder", "decoder_channels": 8, "decoder_num_convs": 4}
    config, ckpt = _save(tmp_path, "regression", config_dict(args, task="regression"), 5)
    out = tmp_path / "depth.tif"
    base = ["segment", f"{S1}:S1GRD", "--checkpoint", ckpt, "--config", config, "-o", out, *FAST]
    code, err = run_main(capsys, monkeypatch, *base, "--confidence")
    assert code == 1 and "regression" in err and not out.exists()
    code, err = run_main(capsys, monkeypatch, *base, "--overlap", "0")
    assert code == 0, err
    values, meta = read(out)
    with rasterio.open(S1) as src:
        assert (meta["crs"], meta["transform"], meta["shape"]) == (src.crs, src.transform, (src.height, src.width))
    assert meta["dtype"] == "float32" and np.isnan(meta["nodata"]) and meta["descriptions"] == ("prediction",)
    assert np.isfinite(values).mean() > 0.9 and np.nanstd(values) > 0


def test_task_travels_to_workers(models):
    """The task holds a handle, not a module: after cloudpickle (as Dask ships it) a fresh process cache rebuilds
    the same model from the files."""
    import cloudpickle

    from geomind_cli.tasks import segment as seg
    from geomind_cli.tasks.base import release_models
    from geomind_cli.tasks.runtime import Runtime

    config, ckpt = models["plain"]
    handle = seg.FinetuneHandle(str(config), str(ckpt), Runtime.resolve(device="cpu"))
    first = handle()
    copy = cloudpickle.loads(cloudpickle.dumps(handle))
    release_models()  # as a fresh worker process: nothing cached
    rebuilt = copy()
    assert rebuilt is not first and copy() is rebuilt
    for (k, a), b in zip(first.state_dict().items(), rebuilt.state_dict().values()):
        assert torch.equal(a, b), k
