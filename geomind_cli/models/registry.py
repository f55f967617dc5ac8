"""Model registry: TerraTorch's names -> our modules, per-size configs, and strict checkpoint loading.

The official files ``TerraMind_v1_{size}.pt`` hold the un-prefixed encoder-decoder state dict for every pre-trained
modality (terramind-spec 3.2). A model built for a subset takes the keys it needs, as the reference's loaders do:
the backbone and TiM's own encoder read them un-prefixed, and the TiM/generation samplers under ``sampler.model.``.
Unlike the reference, a key the model needs that the file lacks, or a wrong shape, is an error, never a silent
random initialisation. Only ``missing_mod_token`` (not pre-trained) and position embeddings of a model built for
another ``img_size`` (fixed sin-cos, recomputed exactly) are not taken from the file.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping

import torch
from torch import nn

from geomind_cli.errors import ConfigError, WeightsMismatchError
from geomind_cli.models import weights as _weights
from geomind_cli.models.backbone import TerraMindViT
from geomind_cli.models.generation import TerraMindGeneration
from geomind_cli.models.layers import TransformerConfig, sincos_2d
from geomind_cli.facts.modalities import HF_ORG, MODALITIES, TOKENIZERS
from geomind_cli.models.tim import TerraMindTiM

SIZES: dict[str, TransformerConfig] = {
    "tiny": TransformerConfig(dim=192, num_heads=3, encoder_depth=12, decoder_depth=4),
    "small": TransformerConfig(dim=384, num_heads=6, encoder_depth=12, decoder_depth=6),
    "base": TransformerConfig(dim=768, num_heads=12, encoder_depth=12, decoder_depth=12, bias=False, gated_mlp=True),
    "large": TransformerConfig(dim=1024, num_heads=16, encoder_depth=24, decoder_depth=24, bias=False,
                               gated_mlp=True),
}
_KINDS: dict[str, type[nn.Module]] = {"": TerraMindViT, "_tim": TerraMindTiM, "_generate": TerraMindGeneration}
MODEL_NAMES = tuple(f"terramind_v1_{size}{kind}" for size in SIZES for kind in _KINDS) + tuple(TOKENIZERS)

# Official-layout keys start with one of these; anything else in such a file is unexpected.
_OFFICIAL_PREFIXES = ("mask_token", "encoder_embeddings.", "decoder_embeddings.", "encoder.", "encoder_norm.",
                      "decoder.", "decoder_norm.", "decoder_proj_context.")
_SAMPLER_PREFIX = "sampler.model."
_COORDS_VOCAB, _COORDS_POSITIONS = 30000, 512


def checkpoint_file(size: str) -> tuple[str, str]:
    """(repo_id, filename) of the official weights of a size."""
    return f"{HF_ORG}/TerraMind-1.0-{size}", f"TerraMind_v1_{size}.pt"


def _parse(name: str) -> tuple[str, type[nn.Module]]:
    for size in SIZES:
        for suffix, cls in _KINDS.items():
            if name == f"terramind_v1_{size}{suffix}":
                return size, cls
    raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def _constructor_kwargs(cls: type[nn.Module], name: str, kwargs: dict) -> dict:
    kwargs = dict(kwargs)
    if kwargs.pop("tim_chained_generations", True) is not True:
        raise ConfigError("tim_chained_generations=False is not supported; TiM modalities are always chained")
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "cfg", "pretrained_tokenizers"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(f"{name} does not take {', '.join(unknown)}; it takes {', '.join(sorted(allowed))}")
    return kwargs


def build_model(name: str, pretrained: bool = False, weights: str | os.PathLike | None = None, **kwargs) -> nn.Module:
    """Build a TerraMind model or tokenizer by its TerraTorch registry name, in eval mode.

    ``weights=PATH``: a local .pt/.safetensors, either the official un-prefixed encoder-decoder layout (tokenizers
    then come from the Hugging Face cache) or this model's own ``state_dict()`` (tokenizers included).
    ``pretrained=True``: the official file through the Hugging Face cache (``HF_HOME``, ``HF_HUB_OFFLINE`` work).
    Neither: random weights (tests only). Loading is strict (WeightsMismatchError names the keys).
    """
    if name in TOKENIZERS:
        if kwargs:
            raise ConfigError(f"tokenizer {name} takes no options, got {', '.join(sorted(kwargs))}")
        from geomind_cli.models.tokenizers import build_tokenizer

        return build_tokenizer(name, pretrained=pretrained, weights=weights)
    size, cls = _parse(name)
    if weights is None:
        weights = kwargs.pop("ckpt_path", None)  # TerraTorch's name for a local checkpoint
    kwargs = _constructor_kwargs(cls, name, kwargs)
    state, source = None, None
    if weights is not None:
        state, source = _weights.read_state_dict(weights), str(weights)
    elif pretrained:
        repo_id, filename = checkpoint_file(size)
        state, source = _weights.read_state_dict(_weights.hub_file(repo_id, filename)), f"{filename} from {repo_id}"
    official = state is not None and is_official_layout(state)
    model = cls(SIZES[size], pretrained_tokenizers=official, **kwargs)
    if state is not None:
        load_checkpoint(model, state, source=source)
    return model.eval()


def is_official_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """The official files are un-prefixed encoder-decoders; only they have a top-level ``mask_token``."""
    return "mask_token" in state


def load_checkpoint(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``model``: the model's own layout strictly, or the official layout as described above."""
    if not is_official_layout(state):
        _weights.load_strict(model, state, source=source)
        return
    unknown = [k for k in state if not k.startswith(_OFFICIAL_PREFIXES)]
    mapped, missing, wrong = {}, [], []
    for key, tensor in model.state_dict().items():
        if key.startswith("tokenizer.") or key == "missing_mod_token":
            continue  # tokenizers load from their own files; missing_mod_token is not pre-trained
        src = key.removeprefix(_SAMPLER_PREFIX)
        if src not in state:
            missing.append(src)
        elif state[src].shape != tensor.shape:
            if not key.endswith(".pos_emb"):  # another img_size keeps its exact fixed sin-cos
                wrong.append(f"{src} {tuple(state[src].shape)} != {tuple(tensor.shape)}")
        else:
            mapped[key] = state[src]
    problems = [f"{what}: {_listed(keys)}" for what, keys in
                (("missing keys", missing), ("unexpected keys", unknown), ("wrong shapes", wrong)) if keys]
    if problems:
        raise WeightsMismatchError(f"{source} does not match the model; " + "; ".join(problems))
    model.load_state_dict(mapped, strict=False)


def _listed(keys, limit: int = 8) -> str:
    keys = sorted(set(keys))
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def official_key_shapes(size: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official un-prefixed checkpoint of a size: all v1 image modalities and coords."""
    cfg = SIZES[size]
    d, shapes = cfg.dim, {"mask_token": (1, 1, cfg.dim)}
    grid = (1, 196, d)
    raw = [m for m in MODALITIES.values() if m.raw_key]
    tok = [m for m in MODALITIES.values() if m.token_key]
    for m in raw:
        shapes.update({f"encoder_embeddings.{m.raw_key}.mod_emb": (1, 1, d),
                       f"encoder_embeddings.{m.raw_key}.pos_emb": grid,
                       f"encoder_embeddings.{m.raw_key}.proj.weight": (d, 256 * m.num_channels)})
    for m in tok:
        shapes.update({f"encoder_embeddings.{m.token_key}.mod_emb": (1, 1, d),
                       f"encoder_embeddings.{m.token_key}.pos_emb": grid,
                       f"encoder_embeddings.{m.token_key}.token_emb.weight": (m.tokenizer.vocab_size, d)})
    shapes.update({"encoder_embeddings.coords.mod_emb": (1, 1, d),
                   "encoder_embeddings.coords.pos_emb": (1, _COORDS_POSITIONS, d),
                   "encoder_embeddings.coords.token_emb.weight": (_COORDS_VOCAB, d)})
    for key, vocab, positions in [(m.token_key, m.tokenizer.vocab_size, grid) for m in tok] + [
        ("coords", _COORDS_VOCAB, (1, _COORDS_POSITIONS, d))
    ]:
        shapes.update({f"decoder_embeddings.{key}.mod_emb": (1, 1, d), f"decoder_embeddings.{key}.pos_emb": positions,
                       f"decoder_embeddings.{key}.token_emb.weight": (vocab, d),
                       f"decoder_embeddings.{key}.to_logits.weight": (vocab, d)})
    hidden, bias = cfg.mlp_hidden, cfg.bias
    mlp = {"fc1": (hidden, d), "fc2": (d, hidden)} | ({"fc3": (hidden, d)} if cfg.gated_mlp else {})

    def block(prefix: str, attn: dict[str, tuple[int, int]], norms: tuple[str, ...]) -> None:
        for norm in norms:
            shapes.update({f"{prefix}.{norm}.weight": (d,), f"{prefix}.{norm}.bias": (d,)})
        for name, shape in {**attn, **{f"mlp.{k}": v for k, v in mlp.items()}}.items():
            shapes[f"{prefix}.{name}.weight"] = shape
            if bias:
                shapes[f"{prefix}.{name}.bias"] = (shape[0],)

    for i in range(cfg.encoder_depth):
        block(f"encoder.{i}", {"attn.qkv": (3 * d, d), "attn.proj": (d, d)}, ("norm1", "norm2"))
    shapes.update({"encoder_norm.weight": (d,), "encoder_norm.bias": (d,),
                   "decoder_proj_context.weight": (d, d), "decoder_proj_context.bias": (d,)})
    for i in range(cfg.decoder_depth):
        block(f"decoder.{i}", {"self_attn.qkv": (3 * d, d), "self_attn.proj": (d, d), "cross_attn.q": (d, d),
                               "cross_attn.kv": (2 * d, d), "cross_attn.proj": (d, d)},
              ("norm1", "query_norm", "context_norm", "norm2"))
    shapes.update({"decoder_norm.weight": (d,), "decoder_norm.bias": (d,)})
    return shapes


def official_state_dict(size: str, *, seed: int = 0, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Random weights in the official layout of ``size`` (tests, benchmarks). Tied entries are the same tensor:
    decoder ``to_logits`` = decoder ``token_emb``, decoder ``mod_emb`` = encoder ``mod_emb``. Norm biases are zero
    (they are fixed buffers) and image ``pos_emb`` the real sin-cos. ``device="meta"`` gives shapes only."""
    if size not in SIZES:
        raise ConfigError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    gen = torch.Generator().manual_seed(seed)
    meta = torch.device(device).type == "meta"
    sincos = sincos_2d(14, 14, SIZES[size].dim)
    state: dict[str, torch.Tensor] = {}
    for key, shape in official_key_shapes(size).items():
        if meta:
            state[key] = torch.empty(shape, device="meta")
            continue
        tied = key.replace(".to_logits.", ".token_emb.") if key.endswith("to_logits.weight") else None
        if key.startswith("decoder_embeddings.") and key.endswith(".mod_emb"):
            tied = key.replace("decoder_embeddings.", "encoder_embeddings.")
        if tied is not None and tied in state:
            state[key] = state[tied]
        elif key.endswith("norm1.bias") or key.endswith("norm2.bias") or key.endswith("norm.bias"):
            state[key] = torch.zeros(shape)
        elif key.endswith("norm.weight") or key.endswith(("norm1.weight", "norm2.weight")):
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith(".pos_emb") and shape[1] == 196:
            state[key] = sincos.clone()
        elif len(shape) == 2 and "attn." in key:
            # Peaky attention (large q/k) so that decoder outputs, hence sampled ids, vary with position and input.
            gain = 1.0 if key.endswith("proj.weight") else 3.0
            state[key] = torch.randn(shape, generator=gen) * gain * shape[1] ** -0.5
        else:
            state[key] = 0.02 * torch.randn(shape, generator=gen)
        state[key] = state[key].to(device)
    return state
