"""Checkpoint layout and loading: key dumps of the reference, offline Hugging Face cache, strict errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geomind_cli.errors import WeightsMismatchError, WeightsNotFoundError
from geomind_cli.models import build_model, official_state_dict
from geomind_cli.models.registry import checkpoint_file

KEYS = Path(__file__).resolve().parents[3] / "shared" / "terramind-keys"


def _dump(name: str) -> dict[str, tuple[int, ...]]:
    rows = (line.split("\t") for line in (KEYS / name).read_text().splitlines() if not line.startswith("#"))
    return {key: tuple(int(n) for n in shape.strip("[]").split(",") if n.strip()) for key, shape, _ in rows}


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_official_layout_of_base_matches_the_dump():
    ours = {k: tuple(v.shape) for k, v in official_state_dict("base", device="meta").items()}
    assert ours == _dump("keys_terramind_v1_base_encdec_layout.txt")


@pytest.mark.parametrize(
    "dump, name, kwargs",
    [
        ("keys_terramind_v1_base_vit_rawonly.txt", "terramind_v1_base",
         dict(modalities=["S2L2A", "S2L1C", "RGB", "S1GRD", "S1RTC", "DEM"])),
        ("keys_terramind_v1_large_vit.txt", "terramind_v1_large", dict(modalities=["S2L2A", "S1GRD"])),
        ("keys_terramind_v1_base_tim.txt", "terramind_v1_base_tim", dict(modalities=["S2L2A"], tim_modalities=["LULC"])),
        ("keys_terramind_v1_base_generate.txt", "terramind_v1_base_generate",
         dict(modalities=["S2L2A"], output_modalities=["S1GRD", "DEM", "LULC", "NDVI"])),
        ("keys_terramind_v1_base_vit.txt", "terramind_v1_base",
         dict(modalities=["S2L2A", "S2L1C", "RGB", "S1GRD", "S1RTC", "DEM", "LULC", "NDVI"])),
    ],
)
def test_model_keys_and_shapes_match_the_reference_dumps(dump, name, kwargs):
    with torch.device("meta"):
        model = build_model(name, **kwargs)
    expected = _dump(dump)
    if name.endswith("_tim"):  # TiM targets are generated as tokens: we build no tokenizer for them (documented)
        expected = {k: v for k, v in expected.items() if not k.startswith("tokenizer.")}
    assert _shapes(model) == expected


@pytest.fixture
def tiny_file(hub_cache):
    state = official_state_dict("tiny", seed=4)
    hub_cache.place(*checkpoint_file("tiny"), state)
    return state


def test_pretrained_loads_offline_from_the_cache(tiny_file):
    model = build_model("terramind_v1_tiny_tim", pretrained=True, modalities=["S2L2A"], tim_modalities=["LULC"])
    params = model.state_dict()
    qkv = "encoder.3.attn.qkv.weight"
    assert torch.equal(params[qkv], tiny_file[qkv])  # TiM's own encoder ...
    assert torch.equal(params["sampler.model." + qkv], tiny_file[qkv])  # ... and its generator, both from the file
    assert torch.equal(params["sampler.model.decoder_embeddings.tok_lulc@224.to_logits.weight"],
                       tiny_file["decoder_embeddings.tok_lulc@224.token_emb.weight"])


def test_missing_file_names_repository_and_file(hub_cache):
    with pytest.raises(WeightsNotFoundError) as error:
        build_model("terramind_v1_small", pretrained=True, modalities=["S2L2A"])
    assert "ibm-esa-geospatial/TerraMind-1.0-small" in str(error.value)
    assert "TerraMind_v1_small.pt" in str(error.value)


def test_local_files_official_and_own_layout(tmp_path, tiny_file):
    from safetensors.torch import save_file

    official = tmp_path / "official.pt"
    torch.save(tiny_file, official)
    model = build_model("terramind_v1_tiny", weights=official, modalities=["S1GRD"], merge_method="concat")
    own = tmp_path / "own.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, own)
    again = build_model("terramind_v1_tiny", weights=own, modalities=["S1GRD"], merge_method="concat")
    x = torch.randn(1, 2, 32, 32)
    torch.testing.assert_close(again(x)[-1], model(x)[-1])  # missing_mod_token travels in the own layout


def test_strict_errors_name_the_keys(tmp_path, tiny_file):
    broken = dict(tiny_file)
    del broken["encoder.5.mlp.fc1.weight"]
    broken["decoder_norm.weight"] = torch.ones(7)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(WeightsMismatchError, match=r"missing keys: encoder\.5\.mlp\.fc1\.weight") as error:
        build_model("terramind_v1_tiny_tim", weights=tmp_path / "broken.pt", modalities=["S2L2A"],
                    tim_modalities=["LULC"])
    assert "decoder_norm.weight" in str(error.value)  # wrong shape, named too
    model = build_model("terramind_v1_tiny", modalities=["DEM"])
    own = dict(model.state_dict(), surprise=torch.zeros(1))
    torch.save(own, tmp_path / "own.pt")
    with pytest.raises(WeightsMismatchError, match="unexpected keys: surprise"):
        build_model("terramind_v1_tiny", weights=tmp_path / "own.pt", modalities=["DEM"])
