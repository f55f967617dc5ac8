"""Parity through the CLI for TerraTorch's fine-tuning options: band subsets, embeddings reused by prefix, new
modalities, MLP / linear / ASPP decoders, the FPN neck, LoRA.

Each model is built by terratorch 1.2.13's own EncoderDecoderFactory (tiny TerraMind, random weights, randomized
norm statistics), saved as a Lightning checkpoint next to its config; ``geomind segment``/``classify`` then maps a
real sample raster holding exactly the bands the model was trained on. The scenes are 224 px, one tile, so the
reference sees the same standardized pixels: classes must equal the reference's argmax, probabilities and
regression values must agree at 1e-4.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from finetune_helpers import (config_dict, randomize_norms, read, run_main, write_checkpoint, write_config,
                              write_like)

ROOT = Path(__file__).resolve().parents[2]
S2L2A = ROOT / "samples" / "terramind" / "282D_485L_3_3_S2L2A.tif"  # 12 bands B01..B12 without B10, 224 px
S2L1C = ROOT / "samples" / "sen1floods11" / "Spain_7370579_S2Hand.tif"  # 13 bands, 512 px
S2_BANDS = ["COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3", "NIR_BROAD",
            "NIR_NARROW", "WATER_VAPOR", "SWIR_1", "SWIR_2"]
S2_MEAN = [1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234, 3132.22, 3162.988, 2424.884,
           1857.648]
S2_STD = [2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829, 1797.379,
          1434.261, 1334.311]
LUCAS_BANDS = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]
TOKENS_TO_IMAGE = [{"name": "ReshapeTokensToImage", "remove_cls_token": False}]
FAST = ["--device", "cpu", "--quiet", "--batch-size", "1"]
TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def factory():
    from reference_factory import load_factory

    factory_cls = load_factory()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield factory_cls()


def _stats(bands: list[str]) -> tuple[list[float], list[float]]:
    return [S2_MEAN[S2_BANDS.index(b)] for b in bands], [S2_STD[S2_BANDS.index(b)] for b in bands]


def _bands(path: Path, names: list[str], size: int = 224) -> np.ndarray:
    """The named bands of a Sentinel-2 sample (L2A order, or L1C with B10), top-left size x size, float32."""
    order = S2_BANDS if "L2A" in path.name else S2_BANDS[:10] + ["CIRRUS"] + S2_BANDS[10:]
    with rasterio.open(path) as src:
        data = src.read([order.index(n) + 1 for n in names], window=((0, size), (0, size)))
    return data.astype(np.float32)


def _save(factory, tmp: Path, name: str, task: str, model_args: dict, means, stds, seed: int, **config):
    """The reference model (eval, randomized norms) and its config + checkpoint on disk."""
    args = dict(model_args)
    torch.manual_seed(seed)
    ref = factory.build_model("classification" if task == "classification" else task,
                              backbone=args.pop("backbone"), decoder=args.pop("decoder"),
                              necks=args.pop("necks", None), num_classes=args.pop("num_classes", None),
                              **args).eval()
    randomize_norms(ref, seed)
    cfg = write_config(tmp / f"{name}.yaml", config_dict(model_args, task=task, means=means, stds=stds, **config))
    return ref, cfg, write_checkpoint(tmp / f"{name}.ckpt", ref.state_dict())


def _reference(ref, inputs: dict[str, np.ndarray], means: dict, stds: dict) -> torch.Tensor:
    x = {name: torch.from_numpy((a - np.asarray(means[name], np.float32)[:, None, None])
                                / np.asarray(stds[name], np.float32)[:, None, None])[None]
         for name, a in inputs.items()}
    with torch.no_grad():
        out = ref(x).output
    return out.unsqueeze(1) if out.ndim == 3 else out


def _run(capsys, monkeypatch, command: str, sources: list, cfg: Path, ckpt: Path, out: Path, *extra):
    code, err = run_main(capsys, monkeypatch, command, *sources, "--checkpoint", ckpt, "--config", cfg, "-o", out,
                         *extra, *FAST)
    assert code == 0, err


def _check_classes(out: Path, logits: torch.Tensor):
    """The class map equals the reference argmax wherever the top two classes are not a near-tie, and the
    probabilities sidecar equals the reference softmax."""
    classes, _ = read(out)
    probs, _ = read(out.with_name(f"{out.stem}_probabilities.tif"))
    expected = torch.softmax(logits[0], 0).numpy()
    np.testing.assert_allclose(probs, expected, **TOL)
    top2 = np.sort(expected, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-3
    assert clear.mean() > 0.9 and len(np.unique(expected.argmax(0))) > 1, "a degenerate map proves nothing"
    assert np.array_equal(classes[0][clear], expected.argmax(0)[clear])


@pytest.mark.parametrize("necks", ["maps", "pooled"])
def test_lucas_classifier_six_band_subset(factory, tmp_path, capsys, monkeypatch, necks):
    """LUCAS-style: backbone_bands picks six S2L2A bands, MLPDecoder, ten classes. The input file holds those six
    bands in another order, named by their band ids: matched by description; one label per tile position."""
    mean, std = _stats(LUCAS_BANDS)
    neck = ([{"name": "SelectIndices", "indices": [5, 11]}, *TOKENS_TO_IMAGE] if necks == "maps"
            else [{"name": "SelectIndices", "indices": [11]}, {"name": "AggregateTokens", "pooling": "max"}])
    args = {"backbone": "terramind_v1_tiny", "backbone_pretrained": False, "backbone_modalities": ["S2L2A"],
            "backbone_bands": {"S2L2A": LUCAS_BANDS}, "necks": neck, "decoder": "MLPDecoder",
            "decoder_activation": "GELU", "head_dim_list": [32], "num_classes": 10}
    ref, cfg, ckpt = _save(factory, tmp_path, "lucas", "classification", args, {"S2L2A": mean}, {"S2L2A": std}, 7)
    bands = _bands(S2L2A, LUCAS_BANDS)
    shuffled = [5, 0, 3, 1, 4, 2]
    ids = ["B02", "B03", "B04", "B8A", "B11", "B12"]
    scene = write_like(tmp_path / "lucas_s2.tif", bands[shuffled].astype(np.int16), S2L2A,
                       [ids[i] for i in shuffled])
    out = tmp_path / "labels.tif"
    _run(capsys, monkeypatch, "classify", [scene], cfg, ckpt, out, "--probabilities")
    logits = _reference(ref, {"S2L2A": bands}, {"S2L2A": mean}, {"S2L2A": std})
    labels, meta = read(out)
    probs, _ = read(out.with_name("labels_probabilities.tif"))
    assert meta["shape"] == (14, 14) and logits.shape == (1, 10)
    assert np.all(labels == int(logits.argmax()))
    np.testing.assert_allclose(probs[:, 0, 0], torch.softmax(logits[0], 0).numpy(), **TOL)


def test_landsat_bands_on_reused_embedding_linear_decoder(factory, tmp_path, capsys, monkeypatch):
    """S2L1C_L8: the S2L1C patch embedding reused by prefix for seven bands, one of which (THERMAL) it was never
    trained on; LinearDecoder (its own head). An unnamed seven-band file given as FILE:S2L1C_L8, matched by order."""
    bands = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2", "THERMAL"]
    data = _bands(S2L1C, bands[:-1] + ["CIRRUS"])  # a stand-in for the thermal band: real values, another band
    mean, std = [*_stats(bands[:-1])[0], 1000.0], [*_stats(bands[:-1])[1], 500.0]
    args = {"backbone": "terramind_v1_tiny", "backbone_modalities": ["S2L1C_L8"],
            "backbone_bands": {"S2L1C_L8": bands}, "necks": TOKENS_TO_IMAGE, "decoder": "LinearDecoder",
            "decoder_upsampling_size": 16, "num_classes": 4}
    ref, cfg, ckpt = _save(factory, tmp_path, "l8", "segmentation", args, {"S2L1C_L8": mean}, {"S2L1C_L8": std}, 8)
    scene = write_like(tmp_path / "landsat.tif", data.astype(np.int16), S2L1C)
    out = tmp_path / "l8_map.tif"
    _run(capsys, monkeypatch, "segment", [f"{scene}:S2L1C_L8"], cfg, ckpt, out, "--probabilities")
    _check_classes(out, _reference(ref, {"S2L1C_L8": data}, {"S2L1C_L8": mean}, {"S2L1C_L8": std}))


def _ndvi(path: Path) -> np.ndarray:
    red, nir = _bands(path, ["RED", "NIR_BROAD"])
    return ((nir - red) / (nir + red + 1e-6))[None].astype(np.float32)


def test_new_modality_beside_s2(factory, tmp_path, capsys, monkeypatch):
    """backbone_modalities [S2L2A, {NDVI: 1}]: a fresh patch embedding for an index TerraMind never took raw;
    the NDVI file given as FILE:NDVI, the twelve-band S2L2A file detected. UperNet over a feature pyramid."""
    necks = [{"name": "SelectIndices", "indices": [2, 5, 8, 11]}, *TOKENS_TO_IMAGE,
             {"name": "LearnedInterpolateToPyramidal"}]
    args = {"backbone": "terramind_v1_tiny", "backbone_modalities": ["S2L2A", {"NDVI": 1}], "necks": necks,
            "decoder": "UperNetDecoder", "decoder_channels": 16, "num_classes": 3}
    means, stds = {"S2L2A": S2_MEAN, "NDVI": [0.3]}, {"S2L2A": S2_STD, "NDVI": [0.25]}
    ref, cfg, ckpt = _save(factory, tmp_path, "ndvi", "segmentation", args, means, stds, 9)
    ndvi = write_like(tmp_path / "index.tif", _ndvi(S2L2A), S2L2A)
    out = tmp_path / "ndvi_map.tif"
    _run(capsys, monkeypatch, "segment", [S2L2A, f"{ndvi}:NDVI"], cfg, ckpt, out, "--probabilities")
    _check_classes(out, _reference(ref, {"S2L2A": _bands(S2L2A, S2_BANDS), "NDVI": _ndvi(S2L2A)}, means, stds))


def test_image_modality_aspp_regression(factory, tmp_path, capsys, monkeypatch):
    """backbone_modalities: [] with backbone_in_chans 4: one new modality named ``image`` (FILE:image), pixel-wise
    regression with ASPPRegressionHead (dilations, image pooling, BN) then TerraTorch's regression head."""
    bands = ["BLUE", "GREEN", "RED", "NIR_BROAD"]
    mean, std = _stats(bands)
    args = {"backbone": "terramind_v1_tiny", "backbone_modalities": [], "backbone_in_chans": 4,
            "necks": [{"name": "SelectIndices", "indices": [-1]}, *TOKENS_TO_IMAGE], "decoder": "ASPPRegressionHead",
            "decoder_channels": 16, "decoder_in_channels": 192, "decoder_dilations": [1, 2, 3],
            "head_channel_list": [8]}
    ref, cfg, ckpt = _save(factory, tmp_path, "image", "regression", args, {"image": mean}, {"image": std}, 10)
    data = _bands(S2L2A, bands)
    scene = write_like(tmp_path / "rgbn.tif", data.astype(np.int16), S2L2A)
    out = tmp_path / "values.tif"
    _run(capsys, monkeypatch, "segment", [f"{scene}:image"], cfg, ckpt, out)
    values, meta = read(out)
    expected = _reference(ref, {"image": data}, {"image": mean}, {"image": std})[0].numpy()
    assert meta["dtype"] == "float32" and expected.std() > 1e-3
    np.testing.assert_allclose(values, expected, **TOL)


def test_aspp_segmentation_head_is_refused_as_terratorch_cannot_build_it(factory, tmp_path, capsys, monkeypatch):
    args = {"backbone": "terramind_v1_tiny", "backbone_modalities": ["S2L2A"], "necks": TOKENS_TO_IMAGE,
            "decoder": "ASPPSegmentationHead", "decoder_channels": 16, "decoder_in_channels": 192, "num_classes": 3}
    with pytest.raises(AttributeError, match="out_channels"):
        _save(factory, tmp_path, "aspp", "segmentation", args, {"S2L2A": S2_MEAN}, {"S2L2A": S2_STD}, 0)
    cfg = write_config(tmp_path / "aspp.yaml", config_dict(args, means={"S2L2A": S2_MEAN}, stds={"S2L2A": S2_STD}))
    ckpt = write_checkpoint(tmp_path / "aspp.ckpt", {"decoder.conv_seg.weight": torch.zeros(3, 16, 1, 1)})
    code, err = run_main(capsys, monkeypatch, "segment", S2L2A, "--checkpoint", ckpt, "--config", cfg,
                         "-o", tmp_path / "x.tif", *FAST)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "ASPPSegmentationHead cannot be built" in lines[0], err


def test_feature_pyramid_network_neck(factory, tmp_path, capsys, monkeypatch):
    """FeaturePyramidNetworkNeck after a learned pyramid, then UperNet. TerraTorch's neck class is the real one;
    torchvision's FeaturePyramidNetwork inside it is a test stand-in (reference_factory.TorchvisionFPN)."""
    necks = [{"name": "SelectIndices", "indices": [2, 5, 8, 11]}, *TOKENS_TO_IMAGE,
             {"name": "LearnedInterpolateToPyramidal"},
             {"name": "FeaturePyramidNetworkNeck", "out_channel": 16, "output_ordered_dict": False}]
    args = {"backbone": "terramind_v1_tiny", "backbone_modalities": ["S2L2A"], "necks": necks,
            "decoder": "UperNetDecoder", "decoder_channels": 16, "num_classes": 3}
    means, stds = {"S2L2A": S2_MEAN}, {"S2L2A": S2_STD}
    ref, cfg, ckpt = _save(factory, tmp_path, "fpn", "segmentation", args, means, stds, 11)
    assert any(k.startswith("neck.3.fpn.inner_blocks.0.0.") for k in ref.state_dict())
    out = tmp_path / "fpn_map.tif"
    _run(capsys, monkeypatch, "segment", [S2L2A], cfg, ckpt, out, "--probabilities")
    _check_classes(out, _reference(ref, {"S2L2A": _bands(S2L2A, S2_BANDS)}, means, stds))


@pytest.mark.parametrize("variant", ["split-qkv", "fused-rslora"])
def test_lora_merged_at_load(factory, tmp_path, capsys, monkeypatch, variant):
    """peft_config LoRA built by TerraTorch with PEFT (adapters, and the trained copy of a ``modules_to_save``
    layer, given trained-like random weights): geomind merges them at load, so the network is the plain one (no
    adapter modules), and maps as the adapted reference does."""
    kwargs = ({"target_modules": ["q_linear", "v_linear", "fc1"], "r": 4, "lora_alpha": 8, "alpha_pattern": {"fc1": 2}}
              if variant == "split-qkv" else {"target_modules": ["qkv", "proj"], "r": 2, "lora_alpha": 4,
                                              "use_rslora": True, "modules_to_save": ["encoder_norm"]})
    peft_config = {"method": "LORA", "peft_config_kwargs": kwargs}
    if variant == "split-qkv":
        peft_config["replace_qkv"] = "qkv"
    args = {"backbone": "terramind_v1_tiny", "backbone_pretrained": False, "backbone_modalities": ["S2L2A"],
            "necks": TOKENS_TO_IMAGE, "decoder": "FCNDecoder", "decoder_channels": 16, "num_classes": 3,
            "peft_config": peft_config}
    means, stds = {"S2L2A": S2_MEAN}, {"S2L2A": S2_STD}
    ref, cfg, _ = _save(factory, tmp_path, "lora", "segmentation", args, means, stds, 12)
    g = torch.Generator().manual_seed(12)
    with torch.no_grad():
        adapters = [(n, p) for n, p in ref.named_parameters() if ".lora_" in n or ".modules_to_save." in n]
        assert adapters and all(n.startswith("encoder.base_model.model.") for n, _ in adapters)
        for n, p in adapters:  # a norm's trained weight stays near 1, adapters near 0
            centre = 1.0 if n.endswith("modules_to_save.default.weight") else 0.0
            p.copy_(centre + 0.2 * torch.randn(p.shape, generator=g))
    ckpt = write_checkpoint(tmp_path / "lora.ckpt", ref.state_dict())
    from geomind_cli.models.finetune import load_finetuned

    ours, _ = load_finetuned(cfg, ckpt)
    assert not any("lora" in k or "base_layer" in k or "q_linear" in k for k in ours.state_dict())
    out = tmp_path / "lora_map.tif"
    _run(capsys, monkeypatch, "segment", [S2L2A], cfg, ckpt, out, "--probabilities")
    _check_classes(out, _reference(ref, {"S2L2A": _bands(S2L2A, S2_BANDS)}, means, stds))
