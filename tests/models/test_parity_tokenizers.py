"""Parity of our tokenizers with the reference (terratorch 1.2.13) on random full-size weights.

Both sides are built with ``pretrained=True`` from the same random checkpoint placed in an offline Hugging Face
cache, so the official loading path (hub lookup, strict load) is exercised for every tokenizer. Decoding is compared
on S2L2A and DEM (diffusion, same starting noise) and LULC (ViT logits); the others are compared on encoding, which
is the only part that differs between them (the input channels).
"""

from __future__ import annotations

import math

import pytest
import torch

from geomind_cli.facts.modalities import TOKENIZERS
from geomind_cli.models.tokenizers import build_tokenizer, ddim_schedule
from geomind_cli.models.tokenizers.ddim import ddim_step
from geomind_cli.models.tokenizers.vit import sincos_pos_emb
from reference import load_reference

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("two_threads")]

DECODED = {"terramind_v1_tokenizer_s2l2a", "terramind_v1_tokenizer_dem", "terramind_v1_tokenizer_lulc"}


def random_state_dict(template: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Random weights with the template's keys and shapes, scaled so activations stay O(1) through the network.

    The reference's own init zeroes the UNet output convolutions (its decode would be all zeros); these weights
    make every layer matter.
    """
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in template.items():
        shape = value.shape
        # Uniform noise of the wanted standard deviation (sampling it is several times faster than normal noise).
        noise = torch.empty(shape).uniform_(-math.sqrt(3.0), math.sqrt(3.0), generator=g)
        if key.endswith("pos_emb"):
            tensor = sincos_pos_emb(shape[2], shape[3], shape[1]) + 0.02 * noise
        elif len(shape) >= 2:
            tensor = noise / math.sqrt(shape[1:].numel())
            if key == "quant_proj.weight":
                tensor = tensor / 4  # the ViT features have a std of about 4: keep the FSQ sigmoid unsaturated
        elif key.endswith("weight"):  # LayerNorm / GroupNorm scales
            tensor = 1.0 + 0.1 * noise
        else:
            tensor = 0.1 * noise
        state[key] = tensor
    return state


@pytest.fixture(scope="module")
def random_weights():
    """Random checkpoint per key layout, reused by tokenizers that share it (S1GRD/S1RTC, DEM/NDVI): saves time."""
    cache: dict[tuple, dict[str, torch.Tensor]] = {}

    def get(template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        layout = tuple((key, tuple(value.shape)) for key, value in template.items())
        if layout not in cache:
            cache.clear()  # keep at most one full-size checkpoint in memory
            cache[layout] = random_state_dict(template, seed=len(layout) + sum(sum(shape) for _, shape in layout))
        return cache[layout]

    return get


@pytest.fixture(scope="module")
def reference_builders():
    return load_reference()[2]




def _relative(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


# Ordered so that tokenizers with the same key layout follow each other (see random_weights).
ORDER = ("s2l2a", "s1grd", "s1rtc", "dem", "ndvi", "lulc")
assert {f"terramind_v1_tokenizer_{short}" for short in ORDER} == set(TOKENIZERS)


@pytest.mark.parametrize("name", [f"terramind_v1_tokenizer_{short}" for short in ORDER])
@torch.no_grad()
def test_tokenizer_matches_reference(name, hub_cache, reference_builders, random_weights):
    info = TOKENIZERS[name]
    with torch.device("meta"):
        template = build_tokenizer(name).state_dict()
    path = hub_cache.place(info.repo_id, info.filename, random_weights(template))
    try:
        ref = reference_builders[name](pretrained=True).eval()
        ours = build_tokenizer(name, pretrained=True)
    finally:
        path.unlink()  # 0.7-1.2 GB each: do not leave them in pytest's kept temporary folders

    assert set(ours.state_dict()) == set(ref.state_dict())
    g = torch.Generator().manual_seed(1)
    if name.endswith("lulc"):
        # Class blocks of 8x8 px: patches then differ from each other (per-pixel noise makes them all alike).
        x = torch.randint(0, info.in_channels, (1, 28, 28), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    else:
        x = torch.randn(1, info.in_channels, 224, 224, generator=g)

    ref_latent = ref.quant_proj(ref.encoder(ref.prepare_input(x)))
    latent = ours.encode_latent(x)
    assert latent.shape == (1, 5, 14, 14)
    assert (latent - ref_latent).abs().max() < 1e-4
    ref_tokens = ref.encode(x)[2]
    tokens = ours.encode(x)
    assert tokens.shape == ref_tokens.shape == (1, 14, 14)
    assert (tokens == ref_tokens).float().mean() >= 0.999
    assert torch.unique(ref_tokens).numel() > 3  # not one constant code (the latent check above is the fine one)
    same_codes = (ours.quantize(x) == ref.encode(x)[0]).all(dim=1)
    assert same_codes.float().mean() >= 0.999

    if name not in DECODED:
        return
    if info.decoder == "vit":
        ref_logits = ref.decode_tokens(ref_tokens)
        logits = ours.decode_tokens(ref_tokens)
        assert logits.shape == (1, 10, 224, 224)
        assert _relative(logits, ref_logits) < 1e-4
        return
    # One full-size step at 224 px, then 1 and 2 steps on a 4x4-token crop (64 px, batch 2): the same code path at
    # a fraction of the cost (a 224 px UNet pass takes seconds on two CPU cores).
    crops = torch.cat([ref_tokens[:, :4, :4], ref_tokens[:, 8:12, 6:10]])  # batch of 2 different tiles
    cases = [(ref_tokens, 1)] if name.endswith("s2l2a") else []
    cases += [(crops, 1), (crops, 2)]
    for tokens_in, steps in cases:
        size = tokens_in.shape[-1] * 16
        shape = (tokens_in.shape[0], info.in_channels, size, size)
        torch.manual_seed(1234)  # the reference draws x_T from the global CPU generator
        ref_image = ref.decode_tokens(tokens_in, timesteps=steps)
        torch.manual_seed(1234)
        image = ours.decode_tokens(tokens_in, timesteps=steps, noise=torch.randn(shape))
        assert image.shape == ref_image.shape == shape
        assert 0.01 < float((image.abs() < 1).float().mean()) < 0.99  # not saturated: the comparison is meaningful
        assert _relative(image, ref_image) < 1e-4, (size, steps)


@pytest.mark.parametrize("num_steps", [50, 3, 1])
def test_ddim_steps_match_reference_scheduler(reference_builders, num_steps):
    """Every step of our sampler against the reference scheduler configured as the DiVAE tokenizers configure it."""
    from terratorch.models.backbones.terramind.tokenizer.scheduling.scheduling_ddim import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, thresholding=True, clip_sample=True, beta_schedule="linear",
                              prediction_type="sample", zero_terminal_snr=True)
    scheduler.set_timesteps(num_steps, mode="trailing")
    schedule = ddim_schedule(num_steps)
    assert list(schedule.timesteps) == scheduler.timesteps.tolist()
    g = torch.Generator().manual_seed(0)
    ref_x = x = torch.randn(2, 3, 8, 8, generator=g)
    for step, t in zip(schedule.steps, scheduler.timesteps):
        model_output = 1.5 * torch.randn(2, 3, 8, 8, generator=g)  # often outside [-1, 1]: exercises the clamp
        ref_x = scheduler.step(model_output, t, ref_x).prev_sample
        x = ddim_step(step, model_output, x)
        torch.testing.assert_close(x, ref_x, rtol=1e-5, atol=1e-5)
