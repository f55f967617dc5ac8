"""Token sampling, randomness hooks and generation behaviour (random tiny weights, no reference, no files)."""

from __future__ import annotations

import pytest
import torch

from geomind_cli.errors import ConfigError
from geomind_cli.models import build_model
from geomind_cli.facts.modalities import statistics
from geomind_cli.models.registry import load_checkpoint, official_state_dict
from geomind_cli.models.sampling import filter_logits, linear_schedule, sample_tokens


@pytest.fixture(scope="module")
def weights():
    return official_state_dict("tiny", seed=3)


@pytest.fixture(scope="module")
def generator_model(weights):
    """Tiny S2L2A -> [S1GRD, LULC] with (random) tokenizers, built once: tokenizers are the expensive part."""
    return _model("terramind_v1_tiny_generate", weights, modalities=["S2L2A"], output_modalities=["S1GRD", "LULC"],
                  timesteps=1)


@pytest.fixture
def token_only(monkeypatch):
    """Generation models without tokenizers, for tests of generate_tokens only (they are never called there)."""
    monkeypatch.setattr("geomind_cli.models.generation.build_tokenizers", lambda *a, **k: torch.nn.ModuleDict())


def _model(name, weights, **kwargs):
    model = build_model(name, **kwargs)
    load_checkpoint(model, weights, source="random official weights")
    return model


def _x(batch=3, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"S2L2A": torch.randn(batch, 12, size, size, generator=g)}


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_top_p_keeps_the_crossing_token():
    logits = torch.tensor([[0.5, 0.25, 0.15, 0.1]]).log()
    kept = torch.isfinite(filter_logits(logits, top_p=0.8))
    assert kept.tolist() == [[True, True, True, False]]


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[True, False, True, False]]


def test_inverse_cdf_draws_follow_the_tempered_distribution():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().expand(1, 1000, 4)
    uniforms = ((torch.arange(1000) + 0.5) / 1000)[None]  # evenly spread: counts are exactly 1000 * p
    ids = sample_tokens(logits, temperature=1.0, uniforms=uniforms)
    assert torch.bincount(ids[0], minlength=4).tolist() == [100, 200, 300, 400]
    # temperature 0.5 squares the probabilities before renormalising
    ids = sample_tokens(logits, temperature=0.5, uniforms=uniforms)
    expected = (probs**2 / (probs**2).sum() * 1000).round().long()
    assert (torch.bincount(ids[0], minlength=4) - expected).abs().max() <= 1


def test_greedy_is_argmax_and_needs_no_randomness():
    logits = torch.randn(2, 5, 7)
    assert torch.equal(sample_tokens(logits, temperature=0.0), logits.argmax(-1))


def test_linear_schedule_matches_reference_examples():
    assert linear_schedule(1, 196) == [196]
    assert linear_schedule(2, 196) == [98, 98]
    assert linear_schedule(3, 196) == [66, 65, 65]


def test_generated_tokens_do_not_depend_on_the_batch(generator_model):
    model = generator_model
    x = _x()
    batch = model.generate_tokens(x, generator=_gens(10, 11, 12))
    alone = model.generate_tokens({"S2L2A": x["S2L2A"][1:2]}, generator=_gens(11))
    for name in ("S1GRD", "LULC"):
        assert torch.equal(batch[name][1:2], alone[name])
    assert not torch.equal(batch["S1GRD"][0], batch["S1GRD"][1])


def test_token_uniforms_replace_random_draws(weights):
    model = _model("terramind_v1_tiny_tim", weights, modalities=["S2L2A"], tim_modalities=["LULC"],
                   merge_method="dict")
    x = _x(batch=2)
    same = {"LULC": torch.rand(2, 16, generator=torch.Generator().manual_seed(5))}
    first = model(x, token_uniforms=same, generator=_gens(1, 2))
    second = model(x, token_uniforms=same, generator=_gens(3, 4))  # generators unused: uniforms decide
    torch.testing.assert_close(first[-1]["LULC"], second[-1]["LULC"])
    other = model(x, token_uniforms={"LULC": torch.rand(2, 16, generator=torch.Generator().manual_seed(6))})
    assert not torch.allclose(first[-1]["LULC"], other[-1]["LULC"])
    with pytest.raises(ValueError, match="token_uniforms"):
        model(x, token_uniforms={"LULC": torch.rand(2, 15)})


def test_tim_result_of_a_tile_is_the_same_alone_or_in_a_batch(weights):
    model = _model("terramind_v1_tiny_tim", weights, modalities=["S2L2A"], tim_modalities=["S1GRD", "LULC"])
    x = _x()
    batch = model(x, generator=_gens(7, 8, 9))
    alone = model({"S2L2A": x["S2L2A"][2:]}, generator=_gens(9))
    torch.testing.assert_close(batch[-1][2:], alone[-1], rtol=1e-4, atol=1e-5)


def test_multi_step_decoding_and_per_modality_temperatures(weights, token_only):
    kwargs = dict(modalities=["S2L2A"], output_modalities=["S1GRD", "LULC"])
    x = _x(batch=2)
    greedy = _model("terramind_v1_tiny_generate", weights, temps=0.0, **kwargs).generate_tokens(x)
    stepped = _model("terramind_v1_tiny_generate", weights, temps=0.0, decoding_steps=[1, 3], **kwargs)
    a, b = stepped.generate_tokens(x, generator=_gens(1, 2)), stepped.generate_tokens(x, generator=_gens(1, 2))
    assert torch.equal(a["LULC"], b["LULC"]) and a["LULC"].shape == (2, 4, 4)
    assert torch.equal(a["S1GRD"], greedy["S1GRD"])  # one step for S1GRD: unchanged
    assert int(a["LULC"].max()) < 4375
    mixed = _model("terramind_v1_tiny_generate", weights, temps=[0.0, 50.0], **kwargs)
    out = mixed.generate_tokens(x, generator=_gens(3, 4))
    assert torch.equal(out["S1GRD"], greedy["S1GRD"])  # the first temperature is honoured ...
    assert not torch.equal(out["LULC"], greedy["LULC"])  # ... and so is the second
    with pytest.raises(ConfigError, match="temps"):
        _model("terramind_v1_tiny_generate", weights, temps=[0.0], **kwargs)
    tim = _model("terramind_v1_tiny_tim", weights, modalities=["S2L2A"], tim_decoding_steps=2)
    assert len(tim(x, generator=_gens(1, 2))) == 12


def test_inputs_are_not_modified(weights):
    model = _model("terramind_v1_tiny_tim", weights, modalities=["S2L2A"], tim_modalities=["LULC"])
    x = _x(batch=1)
    before = dict(x)
    x["unknown"] = torch.zeros(1)
    with pytest.warns(UserWarning, match="unknown"):
        model(x, generator=_gens(1))
    assert set(x) == {"S2L2A", "unknown"} and x["S2L2A"] is before["S2L2A"]


def test_decode_uses_the_given_noise_and_standardizes(generator_model):
    model = generator_model
    g = torch.Generator().manual_seed(1)
    tokens = {"S1GRD": torch.randint(0, 15360, (2, 2, 2), generator=g), "LULC": torch.randint(0, 4375, (2, 2, 2))}
    noise = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    first = model.decode(tokens, diffusion_noise={"S1GRD": noise})
    again = model.decode(tokens, diffusion_noise={"S1GRD": noise.clone()})
    assert torch.equal(first["S1GRD"], again["S1GRD"]) and first["LULC"].shape == (2, 10, 32, 32)
    other = model.decode(tokens, diffusion_noise={"S1GRD": torch.randn(2, 2, 32, 32)})
    assert not torch.equal(first["S1GRD"], other["S1GRD"])
    physical = model.decode(tokens, diffusion_noise={"S1GRD": noise}, standardize=True)
    mean, std = (torch.tensor(v)[None, :, None, None] for v in statistics("S1GRD"))
    torch.testing.assert_close(physical["S1GRD"], first["S1GRD"] * std + mean)
    torch.testing.assert_close(physical["LULC"], first["LULC"])  # class logits are never de-standardized
    per_sample = model.decode({"S1GRD": tokens["S1GRD"]}, generator=_gens(4, 5))
    alone = model.decode({"S1GRD": tokens["S1GRD"][1:]}, generator=_gens(5))
    torch.testing.assert_close(per_sample["S1GRD"][1:], alone["S1GRD"], rtol=1e-4, atol=1e-5)
