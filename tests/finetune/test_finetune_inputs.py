"""Which file feeds which fine-tune input, with which bands (band subsets, new modalities), and that a
``backbone_pretrained: true`` config never reaches for the Hugging Face Hub when the checkpoint holds the weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from finetune_helpers import config_dict, read, run_main, write_checkpoint, write_config, write_like

from geomind_cli.errors import InputError
from geomind_cli.facts.layouts import BandLayout
from geomind_cli.models.finetune import build_finetuned
from geomind_cli.models.finetune.config import config_from_dict
from geomind_cli.tasks.finetune_inputs import open_finetune_inputs

ROOT = Path(__file__).resolve().parents[2]
S2L2A = ROOT / "samples" / "terramind" / "282D_485L_3_3_S2L2A.tif"  # 12 unnamed bands, L2A order
S1RTC = ROOT / "samples" / "terramind" / "282D_485L_3_3_S1RTC.tif"
SIX = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")
SIX_IN_L2A = [1, 2, 3, 8, 10, 11]  # their positions among the twelve L2A bands


def _write(path: Path, data: np.ndarray, descriptions=None) -> Path:
    return write_like(path, data, S2L2A, descriptions)


@pytest.fixture(scope="module")
def l2a() -> np.ndarray:
    with rasterio.open(S2L2A) as src:
        return src.read().astype(np.float32)


def test_subset_from_a_full_unnamed_file(l2a):
    """An unnamed twelve-band L2A file feeds a six-band subset: the bands are taken by their L2A positions."""
    layouts = {"S2L2A": BandLayout("S2L2A", SIX, "S2L2A")}
    with open_finetune_inputs([str(S2L2A)], layouts) as scene:
        assert scene.band_counts == {"S2L2A": 6}
        np.testing.assert_array_equal(scene.read(0, 224, 0, 224)["S2L2A"], l2a[SIX_IN_L2A])
        assert list(scene.modalities["S2L2A"].band.values) == list(SIX)


def test_inputs_assigned_by_name_detection_and_band_count(tmp_path, l2a):
    """A six-band unnamed file feeds the only six-band input; a new modality is named FILE:NAME; S1 is detected."""
    six = _write(tmp_path / "six.tif", l2a[SIX_IN_L2A].astype(np.int16))
    index = _write(tmp_path / "index.tif", l2a[:1] / 10000)
    layouts = {"S2L2A": BandLayout("S2L2A", SIX, "S2L2A"), "NDWI": BandLayout("NDWI", ("NDWI",)),
               "S1RTC": BandLayout("S1RTC", ("VV", "VH"), "S1RTC")}
    with open_finetune_inputs([str(six), f"{index}:NDWI", f"{S1RTC}:S1RTC"], layouts) as scene:
        assert scene.band_counts == {"S2L2A": 6, "NDWI": 1, "S1RTC": 2}
        window = scene.read(0, 224, 0, 224)
        np.testing.assert_array_equal(window["S2L2A"], l2a[SIX_IN_L2A])
        np.testing.assert_allclose(window["NDWI"], l2a[:1] / 10000, rtol=1e-6)


def test_missing_band_is_one_clear_error(tmp_path, l2a):
    """Named bands that lack one of the model's: the error names the band and what the file has."""
    five = _write(tmp_path / "five.tif", l2a[SIX_IN_L2A[:5]].astype(np.int16), ["B02", "B03", "B04", "B8A", "B11"])
    layouts = {"S2L2A": BandLayout("S2L2A", SIX, "S2L2A")}
    with pytest.raises(InputError) as exc:
        open_finetune_inputs([f"{five}:S2L2A"], layouts)
    message = str(exc.value)
    assert "S2L2A needs bands B12" in message and "B02, B03, B04, B8A, B11" in message and "\n" not in message


def test_pretrained_config_never_downloads(tmp_path, capsys, monkeypatch):
    """backbone_pretrained: true with band subsets and a new modality: the checkpoint holds every weight, so the
    run never asks the Hub for the TerraMind file (any attempt fails the test)."""
    from geomind_cli.models import weights

    def no_download(*args, **kwargs):
        raise AssertionError(f"tried to fetch {args} from the Hub")

    monkeypatch.setattr(weights, "hub_file", no_download)
    args = {"backbone": "terramind_v1_tiny", "backbone_pretrained": True, "backbone_modalities": ["S2L2A",
            {"NDWI": 1}], "backbone_bands": {"S2L2A": list(SIX)},
            "necks": [{"name": "ReshapeTokensToImage", "remove_cls_token": False}], "decoder": "FCNDecoder",
            "decoder_channels": 8, "num_classes": 2}
    config = config_dict(args, means={"S2L2A": [1000.0] * 6, "NDWI": [0.0]},
                         stds={"S2L2A": [1000.0] * 6, "NDWI": [1.0]})
    cfg = write_config(tmp_path / "pretrained.yaml", config)
    torch.manual_seed(0)
    ckpt = write_checkpoint(tmp_path / "pretrained.ckpt", build_finetuned(config_from_dict(config)).state_dict())
    with rasterio.open(S2L2A) as src:
        data = src.read().astype(np.float32)
    six = _write(tmp_path / "six.tif", data[SIX_IN_L2A].astype(np.int16))
    index = _write(tmp_path / "ndwi.tif", (data[2:3] - data[8:9]) / (data[2:3] + data[8:9] + 1))
    out = tmp_path / "map.tif"
    code, err = run_main(capsys, monkeypatch, "segment", six, f"{index}:NDWI", "--checkpoint", ckpt, "--config", cfg,
                         "-o", out, "--device", "cpu", "--quiet")
    assert code == 0, err
    classes, meta = read(out)
    assert meta["shape"] == (224, 224) and classes.max() <= 1


def test_batch_of_subset_files_with_from(tmp_path, capsys, monkeypatch, l2a):
    """Batch mode: several unnamed six-band files, ``--from S2L2A`` says each is one scene of that input; one map
    per scene, each equal to the run on that file alone."""
    args = {"backbone": "terramind_v1_tiny", "backbone_modalities": [], "backbone_in_chans": 6,
            "necks": [{"name": "ReshapeTokensToImage", "remove_cls_token": False}], "decoder": "LinearDecoder",
            "decoder_upsampling_size": 16, "num_classes": 3}
    config = config_dict(args, means=[1000.0] * 6, stds=[1000.0] * 6)
    cfg = write_config(tmp_path / "image.yaml", config)
    torch.manual_seed(1)
    ckpt = write_checkpoint(tmp_path / "image.ckpt", build_finetuned(config_from_dict(config)).state_dict())
    scenes = [_write(tmp_path / f"scene_{i}.tif", l2a[SIX_IN_L2A if i == 0 else SIX_IN_L2A[::-1]].astype(np.int16))
              for i in range(2)]
    common = ["--checkpoint", ckpt, "--config", cfg, "--device", "cpu", "--quiet", "--probabilities"]
    code, err = run_main(capsys, monkeypatch, "segment", *scenes, "--from", "image", "-o", tmp_path / "maps", *common)
    assert code == 0, err
    code, err = run_main(capsys, monkeypatch, "segment", f"{scenes[1]}:image", "-o", tmp_path / "alone.tif", *common)
    assert code == 0, err
    first, _ = read(tmp_path / "maps" / "scene_0_segmentation_probabilities.tif")
    second, _ = read(tmp_path / "maps" / "scene_1_segmentation_probabilities.tif")
    alone, _ = read(tmp_path / "alone_probabilities.tif")
    np.testing.assert_array_equal(second, alone)
    assert np.abs(first - second).max() > 1e-3  # two scenes, two maps


def test_nodata_of_a_subset_is_filled_with_its_bands_means():
    """Nodata pixels of a band subset take the pre-training mean of each of its bands (as full inputs do)."""
    from geomind_cli.engine.batches import _fill_values
    from geomind_cli.facts.modalities import MODALITIES

    s2 = MODALITIES["S2L2A"]
    fill = _fill_values("S2L2A", 6, list(SIX))
    np.testing.assert_allclose(fill, [s2.mean[s2.bands.index(b)] for b in SIX])
    assert not np.any(_fill_values("NDWI", 1, ["NDWI"]))  # a new modality: 0


@pytest.mark.parametrize("case", ["unmatched band count", "unknown name"])
def test_a_file_feeding_no_input_is_one_clear_error(tmp_path, l2a, case):
    """A file that fits none of the model's inputs, or names one it does not have: one line listing the inputs."""
    layouts = {"S2L2A": BandLayout("S2L2A", SIX, "S2L2A"), "NDWI": BandLayout("NDWI", ("NDWI",))}
    seven = _write(tmp_path / "seven.tif", l2a[:7].astype(np.int16))
    source = str(seven) if case == "unmatched band count" else f"{seven}:NDWX"
    with pytest.raises(InputError) as exc:
        open_finetune_inputs([source], layouts)
    message = str(exc.value)
    assert "seven.tif" in message and "S2L2A: BLUE, GREEN" in message and "NDWI: NDWI" in message
    assert ("feeds none" if case == "unmatched band count" else "no input NDWX") in message and "\n" not in message
