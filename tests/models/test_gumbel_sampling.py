"""Gumbel-max token sampling with place keys: the hash, the distribution, filtering, coupling and batch independence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import geomind_cli.models.sampling as sampling
from geomind_cli.models import build_model
from geomind_cli.models.registry import load_checkpoint, official_state_dict
from geomind_cli.models.sampling import filter_logits, key_order, key_uniforms, sample_tokens

M32 = 0xFFFFFFFF


def _lowbias32_python(x: int) -> int:
    """The published lowbias32 in plain Python integers (the torch version must match it bit for bit)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def test_hash_matches_32_bit_arithmetic_without_overflow():
    values = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, M32] + np.random.default_rng(0).integers(
        0, 1 << 32, 200).tolist()
    x = torch.tensor(values, dtype=torch.int64)
    for c in (0x7FEB352D, 0x846CA68B, M32):
        assert sampling._mul32(x.clone(), c).tolist() == [(v * c) & M32 for v in values]
    assert sampling._lowbias32(x.clone()).tolist() == [_lowbias32_python(v) for v in values]


def test_key_uniforms_are_uniform_independent_and_in_the_open_interval():
    keys = torch.arange(20_000).unsqueeze(-1)  # consecutive keys: a weak hash would show structure here
    u = key_uniforms(keys, torch.arange(64))
    assert u.dtype == torch.float32 and u.shape == (20_000, 64)
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.002 and abs(float(u.var()) - 1 / 12) < 0.001
    counts = torch.histc(u, bins=20, min=0, max=1)
    assert float((counts / u.numel() - 0.05).abs().max()) < 0.002
    # neighbouring keys and neighbouring vocabulary entries are uncorrelated
    assert abs(np.corrcoef(u[:-1].ravel(), u[1:].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]) < 0.01
    extremes = torch.tensor([-(2**63), -1, 0, 2**63 - 1])
    e = key_uniforms(extremes.unsqueeze(-1), torch.arange(1000))
    assert 0 < float(e.min()) and float(e.max()) < 1
    # the high 32 bits of a key matter as much as the low ones
    assert not torch.equal(key_uniforms(torch.tensor([[5]]), torch.arange(8)),
                           key_uniforms(torch.tensor([[5 + (1 << 32)]]), torch.arange(8)))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_gumbel_draws_follow_the_tempered_softmax(temperature):
    logits = torch.tensor([0.3, -1.0, 1.2, 0.0, 2.0, -0.4])
    n = 200_000
    ids = sample_tokens(logits.expand(2, n // 2, 6), temperature=temperature, keys=torch.arange(n).reshape(2, -1))
    freq = torch.bincount(ids.ravel(), minlength=6).double() / n
    probs = torch.softmax(logits.double() / temperature, dim=0)
    assert float((freq - probs).abs().max()) < 0.005  # 3 standard errors at n = 200k
    chi2 = float(((freq - probs) ** 2 / probs).sum() * n)
    assert chi2 < 25  # 5 degrees of freedom: P(chi2 > 25) < 2e-4 for a correct sampler


def test_large_vocabularies_hash_only_the_candidates_and_pick_the_same_ids(monkeypatch):
    g = torch.Generator().manual_seed(1)
    # five live entries among 2000, the rest 40 below: only the live ones can win, and the fast path takes them
    logits = torch.full((3, 500, 2000), -40.0)
    live = torch.randint(0, 2000, (5,), generator=g)
    logits[..., live] = torch.tensor([0.5, 0.0, -0.5, 1.0, 0.2])
    logits += 0.01 * torch.randn(logits.shape, generator=g)
    keys = torch.randint(-(2**63), 2**63 - 1, (3, 500), generator=g)
    seen = []
    real = key_uniforms
    monkeypatch.setattr(sampling, "key_uniforms", lambda k, i: seen.append(i.shape) or real(k, i))
    ids = sample_tokens(logits, temperature=1.0, keys=keys)
    assert all(shape[-1] == 5 for shape in seen)
    brute = (logits + -torch.log(-torch.log(real(keys.unsqueeze(-1), torch.arange(2000))))).argmax(-1)
    assert torch.equal(ids, brute)
    freq = torch.bincount(ids.ravel(), minlength=2000)[live].double() / ids.numel()
    probs = torch.softmax(torch.tensor([0.5, 0.0, -0.5, 1.0, 0.2]).double(), 0)
    assert float((freq - probs).abs().max()) < 0.03  # 1500 draws


def test_greedy_ignores_keys_and_filtering_is_respected():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 300, 50, generator=g)
    keys = torch.arange(1200).reshape(4, 300)
    assert torch.equal(sample_tokens(logits, temperature=0.0, keys=keys), logits.argmax(-1))
    for options in (dict(top_k=5), dict(top_p=0.5), dict(top_k=8, top_p=0.3)):
        ids = sample_tokens(logits, temperature=1.0, keys=keys, **options)
        allowed = torch.isfinite(filter_logits(logits, **options))
        assert bool(allowed.gather(-1, ids.unsqueeze(-1)).all())
        assert not torch.equal(ids, logits.argmax(-1))  # still a random draw inside the kept set


def test_close_logits_keep_their_gumbel_draw_far_more_often_than_their_inverse_cdf_draw():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 2000, 1024, generator=g)
    perturbed = logits + 0.1 * torch.randn(logits.shape, generator=g)  # e.g. two tiles' views of one place
    keys, uniforms = torch.arange(2000).unsqueeze(0), torch.rand(1, 2000, generator=g)
    gumbel = (sample_tokens(logits, temperature=1.0, keys=keys)
              == sample_tokens(perturbed, temperature=1.0, keys=keys)).float().mean()
    cdf = (sample_tokens(logits, temperature=1.0, uniforms=uniforms)
           == sample_tokens(perturbed, temperature=1.0, uniforms=uniforms)).float().mean()
    other_keys = (sample_tokens(logits, temperature=1.0, keys=keys)
                  == sample_tokens(perturbed, temperature=1.0, keys=keys + 7919)).float().mean()
    assert gumbel > 0.88 and cdf < 0.5 and other_keys < 0.05  # measured 0.94, 0.38 and ~0.001


def test_ids_depend_only_on_their_own_logits_and_key(monkeypatch):
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 40, 300, generator=g)
    keys = torch.randint(-(2**63), 2**63 - 1, (3, 40), generator=g)
    batch = sample_tokens(logits, temperature=0.7, keys=keys)
    for b in range(3):
        assert torch.equal(sample_tokens(logits[b:b + 1], temperature=0.7, keys=keys[b:b + 1]), batch[b:b + 1])
    flipped = sample_tokens(logits.flip(0), temperature=0.7, keys=keys.flip(0))
    assert torch.equal(flipped.flip(0), batch)
    monkeypatch.setattr(sampling, "_CHUNK", 700)  # two rows per chunk
    assert torch.equal(sample_tokens(logits, temperature=0.7, keys=keys), batch)


def test_exactly_one_source_of_randomness():
    logits = torch.randn(1, 4, 10)
    with pytest.raises(ValueError, match="exactly one"):
        sample_tokens(logits, temperature=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        sample_tokens(logits, temperature=1.0, keys=torch.zeros(1, 4, dtype=torch.long), uniforms=torch.rand(1, 4))


def test_key_order_is_a_permutation_that_agrees_on_shared_positions():
    keys = torch.randint(-(2**63), 2**63 - 1, (2, 30), generator=torch.Generator().manual_seed(5))
    keys[1, :10] = keys[0, 20:]  # two tiles sharing ten positions
    order = key_order(keys)
    assert sorted(order[0].tolist()) == list(range(30)) and sorted(order[1].tolist()) == list(range(30))
    shared_first = [p - 20 for p in order[0].tolist() if p >= 20]
    shared_second = [p for p in order[1].tolist() if p < 10]
    assert shared_first == shared_second


@pytest.fixture(scope="module")
def lulc_model():
    """Tiny S2L2A -> LULC tokens in two decoding steps, without tokenizers (generate_tokens only)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("geomind_cli.models.generation.build_tokenizers", lambda *a, **k: torch.nn.ModuleDict())
        model = build_model("terramind_v1_tiny_generate", modalities=["S2L2A"], output_modalities=["LULC"],
                            decoding_steps=2)
    load_checkpoint(model, official_state_dict("tiny", seed=3), source="random official weights")
    return model


def test_token_keys_drive_generation_alone(lulc_model):
    x = {"S2L2A": torch.randn(2, 12, 64, 64, generator=torch.Generator().manual_seed(0))}
    keys = {"LULC": torch.randint(-(2**63), 2**63 - 1, (2, 16), generator=torch.Generator().manual_seed(1))}
    gens = lambda *s: [torch.Generator().manual_seed(i) for i in s]  # noqa: E731
    first = lulc_model.generate_tokens(x, token_keys=keys, generator=gens(1, 2))
    second = lulc_model.generate_tokens(x, token_keys=keys, generator=gens(3, 4))  # generators unused: keys decide
    assert torch.equal(first["LULC"], second["LULC"]) and first["LULC"].shape == (2, 4, 4)
    alone = lulc_model.generate_tokens({"S2L2A": x["S2L2A"][1:]}, token_keys={"LULC": keys["LULC"][1:]})
    assert torch.equal(alone["LULC"], first["LULC"][1:])
    other = lulc_model.generate_tokens(x, token_keys={"LULC": keys["LULC"] + 1})
    assert not torch.equal(other["LULC"], first["LULC"])
    with pytest.raises(ValueError, match="both"):
        lulc_model.generate_tokens(x, token_keys=keys, token_uniforms={"LULC": torch.rand(2, 16)})
    with pytest.raises(ValueError, match="int64"):
        lulc_model.generate_tokens(x, token_keys={"LULC": keys["LULC"].int()})
    with pytest.raises(ValueError, match="token_keys"):
        lulc_model.generate_tokens(x, token_keys={"LULC": keys["LULC"][:, :15]})
