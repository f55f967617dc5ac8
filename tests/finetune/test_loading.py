"""Config parsing and strict checkpoint loading: what loads, what is skipped, and one-line errors for the rest."""

from __future__ import annotations

import pytest
import torch
from finetune_helpers import NECKS, config_dict, randomize_norms, write_checkpoint, write_config

from geomind_cli.errors import ConfigError, WeightsError, WeightsMismatchError
from geomind_cli.models.finetune import build_finetuned, load_finetuned, parse_config
from geomind_cli.models.finetune.config import config_from_dict

ARGS = {"backbone": "terramind_v1_tiny", "backbone_modalities": ["S2L1C", "S1GRD"], "necks": NECKS,
        "decoder": "UNetDecoder", "decoder_channels": [32, 16, 16, 8], "num_classes": 2}


class NotATensor:  # pickled into a checkpoint: torch.load(weights_only=True) refuses it
    pass


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(config path, network state) of a tiny UNet segmentation model with random weights."""
    tmp = tmp_path_factory.mktemp("ft")
    cfg = write_config(tmp / "config.yaml", config_dict(ARGS, class_names=["Others", "Flood"]))
    torch.manual_seed(0)
    model = build_finetuned(parse_config(cfg))
    randomize_norms(model)
    return cfg, model.state_dict()


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.strip()
    return text


def test_loads_and_ignores_training_entries(saved, tmp_path):
    cfg, state = saved
    aux = {"aux_heads.aux.0.weight": torch.zeros(3)}  # auxiliary training heads are not part of prediction
    ckpt = write_checkpoint(tmp_path / "m.ckpt", {**state, **aux}, extra={"hyper_parameters": {"lr": 1e-4}})
    model, parsed = load_finetuned(cfg, ckpt)
    assert parsed.class_names == ("Others", "Flood")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("change, words", [
    (lambda s: s.pop("head.head.2.weight"), ["missing keys", "head.head.2.weight"]),
    (lambda s: s.update({"decoder.extra.weight": torch.zeros(1)}), ["unexpected keys", "decoder.extra.weight"]),
    (lambda s: s.update({"head.head.2.bias": torch.zeros(3)}), ["wrong shapes", "head.head.2.bias (3,) != (2,)"]),
])
def test_mismatch_names_the_keys(saved, tmp_path, change, words):
    cfg, state = saved
    state = dict(state)
    change(state)
    with pytest.raises(WeightsMismatchError) as exc:
        load_finetuned(cfg, write_checkpoint(tmp_path / "m.ckpt", state))
    text = _one_line(exc)
    assert all(w in text for w in words), text


def test_unreadable_checkpoints(saved, tmp_path):
    cfg, state = saved
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError) as exc:
        load_finetuned(cfg, garbage)
    assert "cannot be read" in _one_line(exc)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(1)}, plain)
    with pytest.raises(WeightsError) as exc:
        load_finetuned(cfg, plain)
    assert "no model.* weights" in _one_line(exc)
    pickled = write_checkpoint(tmp_path / "obj.ckpt", state, extra={"hyper_parameters": NotATensor()})
    with pytest.raises(WeightsError) as exc:
        load_finetuned(cfg, pickled)
    assert "GEOMIND_TRUST_CHECKPOINT=1" in _one_line(exc)
    with pytest.raises(WeightsError) as exc:
        load_finetuned(cfg, tmp_path / "missing.ckpt")
    assert "no such file" in _one_line(exc)


def _config(**changes) -> dict:
    args = {**ARGS, **changes}
    return config_dict({k: v for k, v in args.items() if v is not None}, class_names=["Others", "Flood"])


@pytest.mark.parametrize("config, words", [
    (_config(decoder="SegFormerDecoder"), "decoder SegFormerDecoder is not supported"),
    (_config(backbone="prithvi_eo_v2_300"), "backbone prithvi_eo_v2_300 is not supported"),
    (_config(backbone_modalities=["S2L1C", "DEM"]), "no statistics for DEM"),
    (_config(num_classes=3), "class_names has 2 names for num_classes=3"),
    (_config(backbone_tim_modalities=["LULC"]), "has no TiM"),
    (_config(necks=[{"name": "FancyNeck"}]), "neck FancyNeck is not supported"),
    (_config(backbone_use_temporal=True), "backbone_use_temporal"),
    (_config(backbone_bands={"S2L2A": ["RED", "NIR"]}), "backbone_bands names S2L2A, which is not in"),
    (_config(backbone_modalities=["S2L1C", "S2L1C_L8"]), "both use the S2L1C patch embedding"),
    (_config(backbone_modalities=["S2L1C", {"NDWI": 0}]), "new modality NDWI needs its channel count"),
    (_config(backbone_patch_size=8), "backbone_patch_size 8 is not supported"),
    (_config(backbone="terramind_v1_tiny_tim", backbone_modalities=["S2L1C", {"NDWI": 1}]),
     "cannot be used with a TiM backbone"),
    ({"trainer": {}}, "no model.init_args.model_args"),
])
def test_config_errors(config, words):
    with pytest.raises(ConfigError) as exc:
        build_finetuned(config_from_dict(config))
    assert words in _one_line(exc)


def test_tim_option(tmp_path):
    plain = config_from_dict(_config())
    with pytest.raises(ConfigError) as exc:
        plain.with_tim(["LULC"])
    assert "fine-tuned without it" in _one_line(exc)
    tim = config_from_dict(_config(backbone="terramind_v1_tiny_tim"))
    assert tim.tim_modalities == () and tim.with_tim(["lulc"]).tim_modalities == ("LULC",)  # set
    listed = config_from_dict(_config(backbone="terramind_v1_tiny_tim", backbone_tim_modalities=["LULC"]))
    assert listed.with_tim(["LULC"]) == listed  # checked
    with pytest.raises(ConfigError) as exc:
        listed.with_tim(["NDVI"])
    assert "differs from the TiM modalities" in _one_line(exc)


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        parse_config(bad)
    assert "not valid YAML" in _one_line(exc)
    with pytest.raises(ConfigError) as exc:
        parse_config(tmp_path / "none.yaml")
    assert "no such file" in _one_line(exc)


def test_sample_config_parses():
    from pathlib import Path

    cfg = parse_config(Path(__file__).resolve().parents[2] / "samples" / "terratorch" / "sen1floods11_tim.yaml")
    assert (cfg.backbone, cfg.modalities, cfg.tim_modalities) == ("terramind_v1_base_tim", ["S2L1C", "S1GRD"],
                                                                    ("LULC",))
    assert cfg.class_names == ("Others", "Flood") and len(cfg.inputs[0].mean) == 13
