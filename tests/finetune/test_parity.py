"""Parity with terratorch 1.2.13's EncoderDecoderFactory on random weights (tiny TerraMind).

The reference builds the model from the same model_args a config holds; its state dict is saved as a Lightning
checkpoint next to a config YAML; geomind rebuilds the network from those two files only and must give the same
logits. Norm statistics are randomized first so that batch norms at inference are covered too.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from finetune_helpers import NECKS, config_dict, randomize_norms, write_checkpoint, write_config

from geomind_cli.models.finetune import load_finetuned

TOL = dict(rtol=1e-4, atol=1e-4)


class _TokenizerStandIn(torch.nn.Module):
    """Stands in for the reference's TiM-target tokenizer (built by TerraTorch, never called at inference); it has
    a weight so that the checkpoint holds ``encoder.tokenizer.tok_lulc@224.*`` entries as real ones do."""

    patch_size = 16

    def __init__(self, pretrained: bool = False):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)


@pytest.fixture(scope="module")
def factory():
    from reference_factory import load_factory

    factory_cls = load_factory()
    import sys

    register = sys.modules["terratorch.models.backbones.terramind.model.terramind_register"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(register.tokenizer_dict["v1"], "tok_lulc@224", _TokenizerStandIn)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield factory_cls()


def _reference(factory, task: str, model_args: dict, seed: int) -> torch.nn.Module:
    args = dict(model_args)
    torch.manual_seed(seed)
    model = factory.build_model(task, backbone=args.pop("backbone"), decoder=args.pop("decoder"),
                                necks=args.pop("necks", None), num_classes=args.pop("num_classes", None),
                                **args).eval()
    randomize_norms(model, seed)
    return model


def _inputs(batch: int = 1, size=(224, 224), seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"S2L1C": torch.randn(batch, 13, *size, generator=g), "S1GRD": torch.randn(batch, 2, *size, generator=g)}


def _compare(factory, tmp_path, model_args: dict, *, task: str = "segmentation", seed: int = 0, size=(224, 224)):
    ref = _reference(factory, "classification" if task == "classification" else task, model_args, seed)
    cfg = write_config(tmp_path / "config.yaml", config_dict(model_args, task=task))
    ckpt = write_checkpoint(tmp_path / "model.ckpt", ref.state_dict())
    ours, _ = load_finetuned(cfg, ckpt)
    x = _inputs(size=size, seed=seed)
    with torch.no_grad():
        theirs = ref(dict(x)).output
        mine = ours(x)
    if theirs.ndim == mine.ndim - 1:  # TerraTorch squeezes a single output channel
        theirs = theirs.unsqueeze(1)
    assert mine.shape == theirs.shape
    assert mine.std() > 1e-3, "degenerate outputs would make the comparison meaningless"
    torch.testing.assert_close(mine, theirs, **TOL)
    return mine


def _args(decoder: str, *, tim: bool, **extra) -> dict:
    args = {"backbone": "terramind_v1_tiny_tim" if tim else "terramind_v1_tiny", "backbone_pretrained": False,
            "backbone_modalities": ["S2L1C", "S1GRD"], "backbone_merge_method": "mean", "necks": NECKS,
            "decoder": decoder, "head_dropout": 0.1, "num_classes": 2}
    if tim:  # greedy TiM: the reference reseeds its sampler at random, so only greedy tokens are comparable
        args.update(backbone_tim_modalities=["LULC"], backbone_tim_temps=0.0)
    args.update(extra)
    return args


@pytest.mark.parametrize("tim", [False, True], ids=["plain", "tim"])
def test_unet(factory, tmp_path, tim):
    _compare(factory, tmp_path, _args("UNetDecoder", tim=tim, decoder_channels=[64, 32, 16, 8]))


@pytest.mark.parametrize("tim", [False, True], ids=["plain", "tim"])
def test_upernet(factory, tmp_path, tim):
    _compare(factory, tmp_path, _args("UperNetDecoder", tim=tim, decoder_channels=32), seed=1)


def test_padding_non_square_and_head_layers(factory, tmp_path):
    """240 x 208 px: padded to 256 x 224 (reflect), non-square token grid, cropped back; head conv layers."""
    _compare(factory, tmp_path, _args("UNetDecoder", tim=False, decoder_channels=[32, 16, 16, 8],
                                      head_channel_list=[8]), seed=2, size=(240, 208))


def test_fcn_regression_with_band_subset(factory, tmp_path):
    """PixelwiseRegressionTask, FCN decoder, backbone_bands (patch embedding rebuilt for 4 of 13 S2 bands)."""
    bands = {"S2L1C": ["BLUE", "GREEN", "RED", "NIR_NARROW"]}
    args = _args("FCNDecoder", tim=False, decoder_channels=16, decoder_num_convs=4, backbone_bands=bands,
                 necks=NECKS[1:2], head_channel_list=[8])
    args.pop("num_classes")
    args.pop("head_dropout")
    ref = _reference(factory, "regression", args, 3)
    config = config_dict(args, task="regression",
                         means={"S2L1C": [1.0, 2.0, 3.0, 4.0], "S1GRD": [0.0, 0.0]},
                         stds={"S2L1C": [1.0] * 4, "S1GRD": [1.0, 1.0]})
    cfg = write_config(tmp_path / "config.yaml", config)
    ours, parsed = load_finetuned(cfg, write_checkpoint(tmp_path / "model.ckpt", ref.state_dict()))
    assert parsed.inputs[0].bands == tuple(bands["S2L1C"])
    x = _inputs(seed=3)
    x["S2L1C"] = x["S2L1C"][:, :4]
    with torch.no_grad():
        theirs, mine = ref(dict(x)).output, ours(x)
    assert mine.shape == (1, 1, 224, 224) and mine.std() > 1e-3
    torch.testing.assert_close(mine, theirs.unsqueeze(1), **TOL)


@pytest.mark.parametrize("tim", [False, True], ids=["plain", "tim"])
def test_classification(factory, tmp_path, tim):
    """ClassificationTask: tokens as an image, identity decoder, MLP head averaged over positions."""
    args = _args("IdentityDecoder", tim=tim, necks=NECKS[1:2], head_dim_list=[16], num_classes=5)
    logits = _compare(factory, tmp_path, args, task="classification", seed=4)
    assert logits.shape == (1, 5)
