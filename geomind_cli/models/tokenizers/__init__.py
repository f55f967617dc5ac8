"""TerraMind 1.0 tokenizers: ViT encoder + FSQ, with a diffusion (DiVAE) or ViT (LULC VQVAE) decoder.

    from geomind_cli.models.tokenizers import build_tokenizer

    tok = build_tokenizer("terramind_v1_tokenizer_s2l2a", pretrained=True)
    ids = tok.encode(x)                                    # [B, 12, H, W] standardized -> [B, H/16, W/16]
    img = tok.decode_tokens(ids, timesteps=50, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import os

import torch

from geomind_cli.errors import ConfigError
from geomind_cli.models import weights as _weights
from geomind_cli.facts.modalities import TOKENIZERS, TokenizerInfo
from geomind_cli.models.tokenizers.ddim import DDIMSchedule, ddim_schedule, trailing_timesteps
from geomind_cli.models.tokenizers.divae import DiVAE
from geomind_cli.models.tokenizers.fsq import FSQ
from geomind_cli.models.tokenizers.vqvae import VQVAE, Tokenizer

__all__ = [
    "DDIMSchedule", "DiVAE", "FSQ", "TOKENIZER_NAMES", "Tokenizer", "VQVAE", "build_tokenizer", "ddim_schedule",
    "trailing_timesteps",
]

TOKENIZER_NAMES = tuple(TOKENIZERS)


def _tokenizer_info(name: str) -> TokenizerInfo:
    try:
        return TOKENIZERS[name]
    except KeyError:
        raise ConfigError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZER_NAMES)}") from None


def build_tokenizer(name: str, *, pretrained: bool = False, weights: str | os.PathLike | None = None) -> Tokenizer:
    """Build the tokenizer registered as ``name`` (e.g. ``terramind_v1_tokenizer_s2l2a``), in eval mode.

    ``weights=PATH`` loads a local .pt/.safetensors state dict; ``pretrained=True`` resolves the official file through
    the Hugging Face cache (``HF_HOME``, ``HF_HUB_OFFLINE`` honoured). Both load strictly: any missing, unexpected or
    wrongly shaped key is an error. With neither, the weights are randomly initialised, which is only useful for tests.
    """
    info = _tokenizer_info(name)
    if weights is None and not pretrained:
        return _construct(info).eval()
    if weights is not None:
        state, source = _weights.read_state_dict(weights), str(weights)
    else:
        state = _weights.read_state_dict(_weights.hub_file(info.repo_id, info.filename))
        source = f"{info.filename} from {info.repo_id}"
    # Skeleton on the meta device, then adopt the checkpoint tensors: no random init of ~290M parameters that
    # would be overwritten at once, and no second copy of the weights in memory.
    with torch.device("meta"):
        model = _construct(info)
    _weights.check_state_dict(model, state, source=source)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.encoder.pos_emb.requires_grad_(False)
    if isinstance(model, VQVAE):
        model.decoder.pos_emb.requires_grad_(False)
    return model.eval()


def _construct(info: TokenizerInfo) -> Tokenizer:
    return DiVAE(info) if info.decoder == "diffusion" else VQVAE(info)
