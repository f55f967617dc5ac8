"""Backbone shapes and behaviour for every merge method (random tiny weights, no files)."""

from __future__ import annotations

import pytest
import torch

from geomind_cli.errors import ConfigError
from geomind_cli.models import build_model


def _x(batch=2, h=64, w=64):
    return {"S2L2A": torch.randn(batch, 12, h, w), "S1GRD": torch.randn(batch, 2, h, w)}


@pytest.mark.parametrize(
    "merge, shape",
    [("mean", (2, 12, 192)), ("max", (2, 12, 192)), ("concat", (2, 12, 3 * 192)), (None, (2, 24, 192))],
)
def test_every_merge_method_gives_one_output_per_layer(merge, shape):
    model = build_model("terramind_v1_tiny", modalities=["S2L2A", "S1GRD", "DEM"], merge_method=merge)
    out = model(_x(h=48, w=64))  # non-square: 3 x 4 patches
    assert len(out) == 12 and all(layer.shape == shape for layer in out)
    assert model.out_channels == [shape[-1] if merge == "concat" else 192] * 12


def test_concat_fills_absent_modalities_with_the_initialised_token():
    model = build_model("terramind_v1_tiny", modalities=["S2L2A", "S1GRD", "DEM"], merge_method="concat")
    token = model.missing_mod_token
    assert torch.isfinite(token).all() and token.abs().sum() > 0
    last = model(_x())[-1]
    torch.testing.assert_close(last[..., 2 * 192:], token.detach().expand(2, 16, 192))


def test_dict_merge_keys_and_last_layer_norm():
    model = build_model("terramind_v1_tiny", modalities=["S2L2A", "S1GRD"], merge_method="dict")
    out = model(_x())
    assert set(out[-1]) == {"S2L2A", "S1GRD"} and out[-1]["S1GRD"].shape == (2, 16, 192)
    # only the last layer is normalised: zero mean per token there, not before
    assert out[-1]["S2L2A"].mean(-1).abs().max() < 1e-4
    assert out[-2]["S2L2A"].mean(-1).abs().max() > 1e-3


def test_tensor_input_aliases_and_no_mutation():
    model = build_model("terramind_v1_tiny", modalities=["S2L2A", "S1GRD"])
    x = _x()
    original = dict(x)
    by_name = model(x)[-1]
    assert x.keys() == original.keys() and all(x[k] is original[k] for k in x)
    torch.testing.assert_close(model({"s2l2a": x["S2L2A"], "S1": x["S1GRD"]})[-1], by_name)  # TerraTorch aliases
    assert model(x["S2L2A"])[-1].shape == (2, 16, 192)  # a tensor is the first modality


def test_configuration_errors_are_clear():
    with pytest.raises(ConfigError, match="merge_method"):
        build_model("terramind_v1_tiny", modalities=["S2L2A"], merge_method="sum")
    with pytest.raises(ConfigError, match="modalities"):
        build_model("terramind_v1_tiny")
    with pytest.raises(ConfigError, match="does not take"):
        build_model("terramind_v1_tiny", modalities=["S2L2A"], bands={"S2L2A": ["RED"]})
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("terramind_v1_huge")


def test_bf16_autocast_keeps_norms_in_float32():
    model = build_model("terramind_v1_tiny", modalities=["S2L2A"], merge_method=None)
    x = torch.randn(1, 12, 32, 32)
    reference = model(x)[-1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)[-1]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), reference, rtol=0.1, atol=0.1)
