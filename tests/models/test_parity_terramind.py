"""Parity with the reference (terratorch 1.2.13): random weights in the official layout, both sides pretrained=True.

The checkpoints live in one offline Hugging Face cache for the module: the tiny and small TerraMind files from
``official_state_dict`` and full-size tokenizers built by the reference's own builders (stored as float16 to halve
the disk traffic; both sides load the very same values into float32 modules).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hub_cache import HubCache
from reference import load_reference

from geomind_cli.models import build_model, official_state_dict
from geomind_cli.models.registry import checkpoint_file

TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """(backbones, full models) of the reference, with an offline cache holding every file the tests need."""
    cache = HubCache(tmp_path_factory.mktemp("hf-parity"))
    with cache.active():
        backbones, full, tokenizers = load_reference()
        for size, seed in (("tiny", 1), ("small", 2)):
            cache.place(*checkpoint_file(size), official_state_dict(size, seed=seed))
        torch.manual_seed(0)
        for short in ("LULC", "S1GRD"):
            state = tokenizers[f"terramind_v1_tokenizer_{short.lower()}"](pretrained=False).state_dict()
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
            cache.place(f"ibm-esa-geospatial/TerraMind-1.0-Tokenizer-{short}", f"TerraMind_Tokenizer_{short}.pt", state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield backbones, full


class _Unused(torch.nn.Module):
    """Stands in for a reference tokenizer that the compared computation never calls (saves building it)."""

    patch_size = 16  # read by the reference generation before decoding

    def __init__(self, pretrained: bool = False):
        super().__init__()


def _skip_reference_tokenizers(monkeypatch, *keys):
    import sys

    registry = sys.modules["terratorch.models.backbones.terramind.model.terramind_register"]
    for key in keys:
        monkeypatch.setitem(registry.tokenizer_dict["v1"], key, _Unused)


def _inputs(shape=(224, 224), batch=2, seed=0, mods=("S2L2A", "S1GRD")):
    g = torch.Generator().manual_seed(seed)
    channels = {"S2L2A": 12, "S2L1C": 13, "RGB": 3, "S1GRD": 2, "S1RTC": 2, "DEM": 1}
    x = {m: torch.randn(batch, channels[m], *shape, generator=g) for m in mods if m in channels}
    if "LULC" in mods:
        x["LULC"] = torch.randint(0, 10, (batch, *shape), generator=g)
    return x


def _assert_layers_close(ours, theirs, *, extra_keys=()):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        if isinstance(b, dict):
            assert set(a) == set(b) | set(extra_keys)
            for key in b:
                torch.testing.assert_close(a[key], b[key], **TOL)
        else:
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("merge", ["mean", "max", "concat", "dict", None])
def test_backbone_every_merge_method(ref, merge):
    backbones, _ = ref
    mods = ["S2L2A", "S1GRD", "DEM"]  # DEM absent from the input: concat fills it with missing_mod_token
    theirs = backbones["terramind_v1_tiny"](pretrained=True, modalities=mods, merge_method=merge).eval()
    ours = build_model("terramind_v1_tiny", pretrained=True, modalities=mods, merge_method=merge)
    if merge == "concat":  # the reference leaves it uninitialised: give it ours
        theirs.missing_mod_token.data.copy_(ours.missing_mod_token.data)
    x = _inputs()
    with torch.no_grad():
        _assert_layers_close(ours(x), theirs(dict(x)))


@pytest.mark.parametrize(
    "size, mods, shape, img_size",
    [
        ("small", ("S2L2A", "S1GRD"), (224, 256), 224),  # non-square: interpolated position embeddings
        ("tiny", ("S2L1C", "RGB", "S1RTC"), (256, 256), 224),
        ("tiny", ("S2L2A", "DEM"), (256, 256), 256),  # built for 256: exact 16x16 sin-cos, file's 14x14 skipped
    ],
)
def test_backbone_sizes_and_combinations(ref, size, mods, shape, img_size):
    backbones, _ = ref
    theirs = backbones[f"terramind_v1_{size}"](pretrained=True, modalities=list(mods), img_size=img_size).eval()
    ours = build_model(f"terramind_v1_{size}", pretrained=True, modalities=list(mods), img_size=img_size)
    x = _inputs(shape, mods=mods)
    with torch.no_grad():
        _assert_layers_close(ours(x), theirs(dict(x)))


def test_backbone_lulc_token_input(ref):
    backbones, _ = ref
    mods = ["S2L2A", "LULC"]
    theirs = backbones["terramind_v1_tiny"](pretrained=True, modalities=mods, merge_method="dict").eval()
    ours = build_model("terramind_v1_tiny", pretrained=True, modalities=mods, merge_method="dict")
    x = _inputs(mods=mods)
    with torch.no_grad():
        _assert_layers_close(ours(x), theirs(dict(x)))


@pytest.mark.parametrize(
    "size, tim, merge", [("tiny", ["S1GRD", "LULC"], "mean"), ("small", ["LULC"], "dict")]
)
def test_tim_greedy(ref, monkeypatch, size, tim, merge):
    backbones, _ = ref
    _skip_reference_tokenizers(monkeypatch, "tok_sen1grd@224", "tok_lulc@224")  # TiM targets: never tokenized
    kwargs = dict(modalities=["S2L2A", "S1GRD"] if "S1GRD" not in tim else ["S2L2A"], tim_modalities=tim,
                  tim_temps=0.0, merge_method=merge)
    theirs = backbones[f"terramind_v1_{size}_tim"](pretrained=True, **kwargs).eval()
    ours = build_model(f"terramind_v1_{size}_tim", pretrained=True, **kwargs)
    x = _inputs(mods=kwargs["modalities"])
    with torch.no_grad():
        # The reference drops TiM outputs from "dict" (spec 9); ours keeps them on top of the same entries.
        _assert_layers_close(ours(x), theirs(dict(x)), extra_keys=tim if merge == "dict" else ())


def test_generation_greedy_tokens_and_lulc_logits(ref, monkeypatch):
    _, full = ref
    _skip_reference_tokenizers(monkeypatch, "tok_sen1grd@224")  # only its decode is called, and we intercept it
    kwargs = dict(modalities=["S2L2A"], output_modalities=["S1GRD", "LULC"], temps=0.0, timesteps=1)
    theirs = full["terramind_v1_tiny_generate"](pretrained=True, **kwargs).eval()
    seen = {}

    def capture(key, decode):
        def wrapped(tokens, **kw):
            seen[key] = tokens.clone()
            if key == "tok_sen1grd@224":  # skip the reference's diffusion decode: we compare its tokens
                return torch.zeros(tokens.shape[0], 2, tokens.shape[1] * 16, tokens.shape[2] * 16)
            return decode(tokens, **kw)
        return wrapped

    for key, tokenizer in theirs.tokenizer.items():
        tokenizer.decode_tokens = capture(key, getattr(tokenizer, "decode_tokens", None))
    ours = build_model("terramind_v1_tiny_generate", pretrained=True, **kwargs)
    x = _inputs(mods=["S2L2A"])
    with torch.no_grad():
        expected = theirs(dict(x))
        tokens = ours.generate_tokens(x)
        logits = ours.decode({"LULC": tokens["LULC"]})["LULC"]
    assert torch.equal(tokens["S1GRD"], seen["tok_sen1grd@224"])
    assert torch.equal(tokens["LULC"], seen["tok_lulc@224"])  # chained: conditioned on the S1GRD tokens
    assert (tokens["S1GRD"][0] != tokens["S1GRD"][1]).any(), "degenerate random weights make this test weak"
    assert logits.shape == (2, 10, 224, 224)
    torch.testing.assert_close(logits, expected["LULC"], **TOL)


def test_generation_decoder_logits_match_reference_modules(ref, monkeypatch):
    """Raw logits of one enc-dec pass (the sampler of a TiM model), against the reference modules composed as its
    ROAR step composes them."""
    backbones, _ = ref
    _skip_reference_tokenizers(monkeypatch, "tok_lulc@224")
    kwargs = dict(modalities=["S2L2A"], tim_modalities=["LULC"])
    theirs = backbones["terramind_v1_small_tim"](pretrained=True, **kwargs).eval().sampler.model
    ours = build_model("terramind_v1_small_tim", pretrained=True, **kwargs).sampler.model
    image = _inputs(mods=["S2L2A"])["S2L2A"]
    with torch.no_grad():
        enc = theirs.encoder_embeddings["untok_sen2l2a@224"]({"tensor": image})
        mask = torch.zeros(2, 1, enc["x"].shape[1], dtype=torch.bool)
        h = theirs.forward_encoder(enc["x"] + enc["emb"], mask)
        context = theirs.decoder_proj_context(h) + enc["emb"]
        dec = theirs.decoder_embeddings["tok_lulc@224"].forward_embed({"tensor": torch.zeros(2, 196, dtype=torch.long)})
        y = theirs.forward_decoder(theirs.mask_token + dec["emb"], context, mask, None)
        expected = theirs.decoder_embeddings["tok_lulc@224"].forward_logits(y)
        x, emb = ours.encoder_embeddings["untok_sen2l2a@224"](image)
        query = ours.decoder_embeddings["tok_lulc@224"].embedding((14, 14))
        logits = ours.predict(x, emb.expand(2, -1, -1), "tok_lulc@224", query)
    torch.testing.assert_close(logits, expected, **TOL)
