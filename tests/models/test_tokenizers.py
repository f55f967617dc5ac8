"""Unit tests of the tokenizers: checkpoint layout, FSQ, DDIM facts, inputs, loading, batch independence, precision."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from geomind_cli.errors import ConfigError, InputError, WeightsMismatchError, WeightsNotFoundError
from geomind_cli.facts.modalities import TOKENIZERS
from geomind_cli.models.tokenizers import FSQ, DiVAE, Tokenizer, VQVAE, build_tokenizer, ddim_schedule
from geomind_cli.models.tokenizers.ddim import alphas_cumprod, ddim_sample, ddim_step, trailing_timesteps

KEYS = Path(__file__).resolve().parents[3] / "shared" / "terramind-keys"


def _key_dump(name: str) -> dict[str, list[int]]:
    entries = {}
    for line in (KEYS / f"keys_{name}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape, _dtype = line.split("\t")
            entries[key] = ast.literal_eval(shape)
    return entries


pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.fixture(scope="module")
def s1grd() -> DiVAE:
    torch.manual_seed(0)
    return build_tokenizer("terramind_v1_tokenizer_s1grd")


@pytest.fixture(scope="module")
def lulc() -> VQVAE:
    torch.manual_seed(0)
    return build_tokenizer("terramind_v1_tokenizer_lulc")


# --- checkpoint layout ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_state_dict_keys_and_shapes_equal_the_checkpoint(name):
    with torch.device("meta"):
        model = build_tokenizer(name)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == _key_dump(name)
    assert isinstance(model, Tokenizer) and model.info is TOKENIZERS[name]
    assert model.in_channels == TOKENIZERS[name].in_channels
    assert not model.encoder.pos_emb.requires_grad and isinstance(model.encoder.pos_emb, torch.nn.Parameter)
    assert model.vocab_size == TOKENIZERS[name].vocab_size


def test_unknown_name_is_a_config_error():
    with pytest.raises(ConfigError, match="terramind_v1_tokenizer_s2l2a"):
        build_tokenizer("terramind_v1_tokenizer_rgb")


def test_weights_file_is_loaded_strictly(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"encoder.proj.weight": torch.zeros(768, 1, 16, 16), "extra.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsMismatchError) as error:
        build_tokenizer("terramind_v1_tokenizer_dem", weights=path)
    message = str(error.value)
    assert "missing keys" in message and "unexpected keys: extra.weight" in message


def test_pretrained_offline_without_cache_names_repository_and_file(hub_cache):
    with pytest.raises(WeightsNotFoundError, match="TerraMind_Tokenizer_NDVI.pt from ibm-esa-geospatial/"
                                                   "TerraMind-1.0-Tokenizer-NDVI"):
        build_tokenizer("terramind_v1_tokenizer_ndvi", pretrained=True)


def test_weights_file_round_trip(tmp_path, lulc):
    path = tmp_path / "lulc.pt"
    torch.save(lulc.state_dict(), path)
    loaded = build_tokenizer("terramind_v1_tokenizer_lulc", weights=path)
    assert not loaded.encoder.pos_emb.requires_grad and not loaded.decoder.pos_emb.requires_grad
    x = torch.randint(0, 10, (1, 32, 32))
    assert torch.equal(loaded.encode(x), lulc.encode(x))


# --- FSQ -----------------------------------------------------------------------------------------------------------

def test_fsq_vocabulary_sizes_from_the_spec():
    assert FSQ((8, 8, 8, 6, 5)).vocab_size == 15360
    assert FSQ((7, 5, 5, 5, 5)).vocab_size == 4375


@pytest.mark.parametrize("levels", [(8, 8, 8, 6, 5), (7, 5, 5, 5, 5)])
def test_fsq_round_trip_over_the_whole_vocabulary(levels):
    fsq = FSQ(levels)
    ids = torch.arange(fsq.vocab_size).view(1, 1, -1)
    codes = fsq.indices_to_codes(ids)
    assert codes.shape == (1, 5, 1, fsq.vocab_size)
    assert codes.min() == 0 and codes.max() == 1
    assert torch.equal(fsq.codes_to_indices(codes), ids)
    # A latent whose sigmoid lands on the codes quantizes back to the same ids.
    latent = torch.logit(codes.clamp(1e-4, 1 - 1e-4))
    quant, indices = fsq(latent)
    assert torch.equal(indices, ids) and torch.allclose(quant, codes)


def test_fsq_digit_order_channel_zero_least_significant():
    fsq = FSQ((8, 8, 8, 6, 5))
    # digits (d0..d4) = (3, 0, 0, 0, 0) -> 3; (0, 1, 0, 0, 0) -> 8; (0, 0, 0, 0, 4) -> 4 * 3072
    for digits, expected in [((3, 0, 0, 0, 0), 3), ((0, 1, 0, 0, 0), 8), ((0, 0, 0, 0, 4), 12288),
                             ((7, 7, 7, 5, 4), 15359)]:
        codes = torch.tensor([d / (level - 1) for d, level in zip(digits, fsq.levels)]).view(1, 5, 1, 1)
        assert fsq.codes_to_indices(codes).item() == expected
        assert torch.allclose(fsq.indices_to_codes(torch.tensor([[[expected]]])), codes)


# --- DDIM ----------------------------------------------------------------------------------------------------------

def test_trailing_timesteps_for_50_steps():
    assert trailing_timesteps(50) == tuple(range(999, 0, -20))
    assert trailing_timesteps(50)[:3] == (999, 979, 959) and trailing_timesteps(50)[-1] == 19
    assert ddim_schedule(1).timesteps == (999,)
    assert ddim_schedule(2).timesteps == (999, 499)


def test_zero_terminal_snr_schedule():
    bar = alphas_cumprod()
    assert bar.dtype == torch.float32 and bar.shape == (1000,)
    assert bar[-1] == 0.0
    assert abs(float(bar[0]) - 0.9999) < 1e-6
    assert torch.all(bar[1:] <= bar[:-1])


def test_last_step_returns_the_clamped_prediction():
    last = ddim_schedule(50).steps[-1]
    assert last.a == 1.0 and last.b == 0.0
    model_output = torch.linspace(-3, 3, 24).view(1, 2, 3, 4)
    out = ddim_step(last, model_output, torch.randn(1, 2, 3, 4))
    assert torch.equal(out, model_output.clamp(-1, 1))
    # The first step ignores x_T's signal part (alpha_bar = 0): x_prev depends on x_T only through the noise term.
    first = ddim_schedule(50).steps[0]
    assert first.c == 0.0


def test_sampler_output_is_clamped_and_deterministic():
    calls = []

    def denoise(x, index):
        calls.append(index)
        return 3.0 * x  # overshoots [-1, 1]

    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    out = ddim_sample(denoise, noise, ddim_schedule(5))
    assert calls == list(range(5))
    assert out.abs().max() <= 1.0 and out.dtype == torch.float32


# --- encoding inputs -----------------------------------------------------------------------------------------------

def test_lulc_accepts_class_indices_and_one_hot(lulc):
    labels = torch.randint(0, 10, (2, 32, 48), generator=torch.Generator().manual_seed(0))
    one_hot = torch.nn.functional.one_hot(labels, 10).permute(0, 3, 1, 2).float()
    tokens = lulc.encode(one_hot)
    assert tokens.shape == (2, 2, 3) and tokens.dtype == torch.int64
    assert torch.equal(lulc.encode(labels), tokens)
    assert torch.equal(lulc.encode(labels[:, None]), tokens)
    assert int(tokens.max()) < 4375


def test_lulc_decode_gives_class_logits(lulc):
    tokens = torch.tensor([[[0, 4374], [17, 999]]])
    logits = lulc.decode_tokens(tokens)
    assert logits.shape == (1, 10, 32, 32) and torch.isfinite(logits).all()


def test_encode_rejects_wrong_inputs(s1grd):
    with pytest.raises(InputError, match=r"\[B, 2, H, W\]"):
        s1grd.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputError, match="multiples of 16"):
        s1grd.encode(torch.zeros(1, 2, 40, 32))
    with pytest.raises(InputError, match="token ids"):
        s1grd.decode_tokens(torch.zeros(1, 2, 2))


def test_encode_quantize_agree(s1grd):
    x = torch.randn(1, 2, 32, 32)
    assert torch.equal(s1grd.codes_to_indices(s1grd.quantize(x)), s1grd.encode(x))


# --- diffusion decoding --------------------------------------------------------------------------------------------

def test_tile_alone_equals_tile_in_batch(s1grd):
    tokens = torch.randint(0, 15360, (2, 2, 2), generator=torch.Generator().manual_seed(1))
    noise = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(2))
    batch = s1grd.decode_tokens(tokens, timesteps=2, noise=noise)
    alone = s1grd.decode_tokens(tokens[1:2], timesteps=2, noise=noise[1:2])
    assert batch.shape == (2, 2, 32, 32) and batch.abs().max() <= 1.0
    torch.testing.assert_close(alone, batch[1:2], rtol=1e-5, atol=1e-5)
    # Different tiles really decode differently (the check above is not vacuous).
    assert not torch.allclose(batch[0], batch[1], atol=1e-3)


def test_generator_makes_decoding_reproducible_without_touching_the_global_rng(s1grd):
    tokens = torch.randint(0, 15360, (1, 2, 2), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(99)
    state = torch.get_rng_state()
    first = s1grd.decode_tokens(tokens, timesteps=1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    second = s1grd.decode_tokens(tokens, timesteps=1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, second)
    expected_noise = torch.randn(1, 2, 32, 32, generator=torch.Generator().manual_seed(5))
    assert torch.equal(s1grd.decode_tokens(tokens, timesteps=1, noise=expected_noise), first)
    with pytest.raises(InputError, match="starting noise"):
        s1grd.decode_tokens(tokens, timesteps=1, noise=torch.zeros(1, 2, 64, 64))


def test_image_size_and_size_checks(s1grd):
    tokens = torch.zeros(1, 2, 2, dtype=torch.int64)
    out = s1grd.decode_tokens(tokens, timesteps=1, image_size=(64, 32), generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 2, 64, 32)
    with pytest.raises(InputError, match="multiples of 32"):
        s1grd.decode_tokens(tokens, timesteps=1, image_size=48)


def test_unet_under_bf16_autocast_and_channels_last(s1grd):
    tokens = torch.randint(0, 15360, (1, 2, 2), generator=torch.Generator().manual_seed(4))
    noise = torch.randn(1, 2, 32, 32, generator=torch.Generator().manual_seed(6))
    codes = s1grd.indices_to_codes(tokens)
    t = torch.tensor([999.0])
    with torch.no_grad():
        reference = s1grd.decoder(noise, t, codes)
        s1grd.decoder.to(memory_format=torch.channels_last)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                fast = s1grd.decoder(noise.contiguous(memory_format=torch.channels_last), t, codes)
                decoded = s1grd.decode_tokens(tokens, timesteps=2, noise=noise)
        finally:
            s1grd.decoder.to(memory_format=torch.contiguous_format)
    assert fast.dtype == torch.bfloat16 and torch.isfinite(fast.float()).all()
    relative = (fast.float() - reference).norm() / reference.norm()
    assert relative < 0.05  # bf16 matmuls, float32 norms and softmax: close to the float32 result
    assert decoded.dtype == torch.float32 and decoded.abs().max() <= 1.0
