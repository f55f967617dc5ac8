"""Runs without --config: the settings come from the hyper_parameters Lightning stores in the checkpoint, in both
layouts (terratorch fit / LightningCLI, and a task built in Python); missing statistics ask for --config in one line."""

from __future__ import annotations

import pytest
import torch
from finetune_helpers import NECKS, config_dict, recorded_hparams, write_checkpoint, write_config

from geomind_cli.errors import ConfigError
from geomind_cli.models.finetune import build_finetuned, finetune_settings, load_finetuned, parse_config
from geomind_cli.models.finetune.hparams import config_from_checkpoint

SEGMENT = config_dict({"backbone": "terramind_v1_tiny_tim", "backbone_modalities": ["S2L1C", "S1GRD"],
                       "backbone_tim_modalities": ["LULC"], "necks": NECKS, "decoder": "UNetDecoder",
                       "decoder_channels": [32, 16, 16, 8], "head_dropout": 0.1, "num_classes": 2},
                      class_names=["Others", "Flood"])
CLASSIFY = config_dict({"backbone": "terramind_v1_tiny", "backbone_modalities": ["S1GRD"], "necks": NECKS[1:2],
                        "decoder": "IdentityDecoder", "num_classes": 4}, task="classification")
REGRESS = config_dict({"backbone": "terramind_v1_tiny", "backbone_modalities": ["S1GRD"], "necks": NECKS[1:2],
                       "decoder": "FCNDecoder", "decoder_channels": 8}, task="regression")

OPTIONS = config_dict({"backbone": "terramind_v1_tiny", "backbone_modalities": ["S2L1C", {"NDWI": 1}],
                       "backbone_bands": {"S2L1C": ["BLUE", "GREEN"]}, "necks": NECKS[1:2], "decoder": "LinearDecoder",
                       "decoder_upsampling_size": 16, "num_classes": 2,
                       "peft_config": {"method": "LORA", "peft_config_kwargs": {"target_modules": ["qkv"], "r": 2}}},
                      means={"S2L1C": [0.0, 0.0], "NDWI": [0.0]}, stds={"S2L1C": [1.0, 1.0], "NDWI": [1.0]})


@pytest.mark.parametrize("cli", [True, False], ids=["lightning-cli", "python"])
@pytest.mark.parametrize("config", [SEGMENT, CLASSIFY, REGRESS, OPTIONS],
                         ids=["segment", "classify", "regress", "subset-new-modality-lora"])
def test_settings_from_checkpoint_equal_the_config(tmp_path, config, cli):
    expected = parse_config(write_config(tmp_path / "c.yaml", config))
    got = config_from_checkpoint(recorded_hparams(config, cli=cli, data=True), source="--checkpoint m.ckpt")
    assert got == expected
    assert got.task == {"SemanticSegmentationTask": "segmentation", "ClassificationTask": "classification",
                        "PixelwiseRegressionTask": "regression"}[config["model"]["class_path"].rsplit(".", 1)[-1]]


def test_load_without_config(tmp_path):
    """The network rebuilt from the checkpoint alone is the one the config gives, with its weights; --tim checks
    the recorded TiM modalities."""
    cfg = parse_config(write_config(tmp_path / "c.yaml", SEGMENT))
    torch.manual_seed(0)
    state = build_finetuned(cfg).state_dict()
    ckpt = write_checkpoint(tmp_path / "m.ckpt", state, extra=recorded_hparams(SEGMENT, cli=True, data=True))
    model, got = load_finetuned(None, ckpt, tim=["LULC"])
    assert got == cfg and got.class_names == ("Others", "Flood") and got.tim_modalities == ("LULC",)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    with pytest.raises(ConfigError, match="differs from the TiM modalities"):
        finetune_settings(None, ckpt, tim=["NDVI"])


@pytest.mark.parametrize("case, words", [
    ("no data records", ["means/stds", "pass --config"]),
    ("no hyper_parameters", ["records no model_args", "pass --config"]),
    ("custom model", ["custom model", "--config"]),
    ("unknown task", ["which TerraTorch task", "pass --config"]),
])
def test_missing_facts_ask_for_config(case, words):
    records = recorded_hparams(SEGMENT, cli=False, data=case != "no data records")
    if case == "no hyper_parameters":
        records.pop("hyper_parameters")
    elif case == "custom model":
        records["hyper_parameters"].update(model_factory=None, model="<a torch module>")
    elif case == "unknown task":
        records["hyper_parameters"].pop("task")
    with pytest.raises(ConfigError) as exc:
        config_from_checkpoint(records, source="--checkpoint m.ckpt")
    text = str(exc.value)
    assert "\n" not in text and text.startswith("--checkpoint m.ckpt ") and all(w in text for w in words), text


def test_partial_statistics_name_the_modality():
    records = recorded_hparams(SEGMENT, cli=True, data=True)
    for key in ("means", "stds"):
        records["datamodule_hyper_parameters"][key] = {"S2L1C": SEGMENT["data"]["init_args"][key]["S2L1C"]}
    with pytest.raises(ConfigError, match="no statistics for S1GRD; pass --config"):
        config_from_checkpoint(records, source="--checkpoint m.ckpt")


def test_cli_without_config_or_statistics_is_one_line(tmp_path, capsys, monkeypatch):
    """A checkpoint from `terratorch fit` records no data statistics: the command says to pass --config, in one
    line, before any tile is read or anything written."""
    import sys
    from pathlib import Path

    from geomind_cli.cli.app import main

    cfg = parse_config(write_config(tmp_path / "c.yaml", CLASSIFY))
    ckpt = write_checkpoint(tmp_path / "m.ckpt", build_finetuned(cfg).state_dict(),
                            extra=recorded_hparams(CLASSIFY, cli=True, data=False))
    s1 = Path(__file__).resolve().parents[2] / "samples" / "sen1floods11" / "Spain_7370579_S1Hand.tif"
    out = tmp_path / "out" / "grid.tif"
    monkeypatch.setattr(sys, "argv", ["geomind", "classify", f"{s1}:S1GRD", "--checkpoint", str(ckpt), "-o", str(out),
                                      "--device", "cpu", "--quiet"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exc.value.code == 1 and len(lines) == 1, err
    assert lines[0].startswith("geomind: error: --checkpoint ") and "pass --config" in lines[0], err
    assert not out.exists()
