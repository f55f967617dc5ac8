"""Tokenizer base (ViT encoder + FSQ) and the LULC VQVAE with its ViT decoder (terramind-spec 6.3, 7).

``Tokenizer`` holds what every TerraMind tokenizer shares: ``encoder`` (ViT-B), ``quant_proj`` (1x1 conv 768 -> 5)
and the FSQ quantizer. Subclasses add a decoder and implement ``decode_tokens``.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from geomind_cli.errors import InputError
from geomind_cli.facts.modalities import MODALITIES, TokenizerInfo
from geomind_cli.models.tokenizers.fsq import FSQ
from geomind_cli.models.tokenizers.vit import ViTDecoder, ViTEncoder

PATCH_SIZE = 16
RESOLUTION = 256  # training resolution: sets the stored 16x16 positional tables
LATENT_DIM = 5


def _is_categorical(info: TokenizerInfo) -> bool:
    return any(m.tokenizer is info and m.categorical for m in MODALITIES.values())


class Tokenizer(nn.Module):
    """Common encoder side: image [B, C, H, W] (standardized; H, W multiples of 16) -> token ids [B, H/16, W/16]."""

    def __init__(self, info: TokenizerInfo):
        super().__init__()
        self.info = info
        self.in_channels = info.in_channels
        self.patch_size = PATCH_SIZE
        self.categorical = _is_categorical(info)
        self.encoder = ViTEncoder(info.in_channels, patch_size=PATCH_SIZE, resolution=RESOLUTION)
        self.quant_proj = nn.Conv2d(self.encoder.dim, LATENT_DIM, 1)
        self.fsq = FSQ(info.fsq_levels)

    @property
    def vocab_size(self) -> int:
        return self.fsq.vocab_size

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Validate ``x`` and bring it to [B, C, H, W] in the encoder's dtype.

        Categorical tokenizers (LULC) also take class indices [B, H, W] or [B, 1, H, W], turned into one-hot maps.
        The one-hot is built by comparison so it needs no device sync; indices outside 0..C-1 give all-zero pixels.
        """
        if self.categorical and (x.ndim == 3 or (x.ndim == 4 and x.shape[1] == 1 and self.in_channels != 1)):
            labels = (x[:, 0] if x.ndim == 4 else x).long()
            classes = torch.arange(self.in_channels, device=x.device).view(1, -1, 1, 1)
            x = (labels[:, None] == classes).float()
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            extra = " or class indices [B, H, W]" if self.categorical else ""
            raise InputError(
                f"{self.info.name} expects an input of shape [B, {self.in_channels}, H, W]{extra}, "
                f"got {list(x.shape)}; pass the bands of the modality in the pre-training order"
            )
        if x.shape[-2] % PATCH_SIZE or x.shape[-1] % PATCH_SIZE:
            raise InputError(
                f"{self.info.name} needs height and width that are multiples of {PATCH_SIZE}, got "
                f"{x.shape[-2]}x{x.shape[-1]}; crop or pad the tile"
            )
        return x.to(self.encoder.proj.weight.dtype)

    # Token ids are decided by rounding the latent, so the encoder ignores autocast unless this is set (tests and
    # benchmarks/bench_precision.py set it to measure what bf16 would do). Measured on the sample scenes: with a
    # bf16 encoder 1-2% of the ids change even when every other step is right, and on CPUs with AMX, oneDNN's
    # bf16 16x16/stride-16 patch convolution with an even number (>= 4) of input channels returns wrong values
    # (torch 2.13), which changed 99% of the S2L2A ids. Tokenizing is I/O-bound, so float32 costs little.
    autocast_encoder = False

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> pre-quantization latent [B, 5, H/16, W/16], float32 (see ``autocast_encoder``)."""
        keep = contextlib.nullcontext() if self.autocast_encoder else torch.autocast(x.device.type, enabled=False)
        with keep:
            h = self.encoder(self.prepare_input(x))
        # The 1x1 projection to the 5 latent channels stays float32 in any case: it decides the ids.
        with torch.autocast(device_type=h.device.type, enabled=False):
            return self.quant_proj(h.to(self.quant_proj.weight.dtype)).float()

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> quantized codes [B, 5, H/16, W/16] in [0, 1] (what the decoders consume)."""
        return self.fsq(self.encode_latent(x))[0]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, C, H, W] (or LULC class indices) -> token ids [B, H/16, W/16] int64."""
        return self.fsq(self.encode_latent(x))[1]

    def indices_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [B, h, w] -> codes [B, 5, h, w] float32."""
        return self.fsq.indices_to_codes(tokens)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, 5, h, w] -> token ids [B, h, w] int64."""
        return self.fsq.codes_to_indices(codes)

    def decode_tokens(self, tokens: torch.Tensor, *, image_size: int | tuple[int, int] | None = None,
                      timesteps: int = 50, noise: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.ndim != 3 or tokens.dtype.is_floating_point:
            raise InputError(f"{self.info.name} decodes integer token ids of shape [B, h, w], got "
                             f"{tokens.dtype} {list(tokens.shape)}; reshape the token sequence to its grid")


class VQVAE(Tokenizer):
    """LULC tokenizer: tokens [B, h, w] -> 10 class logits [B, 10, 16h, 16w] through a ViT-B decoder."""

    def __init__(self, info: TokenizerInfo):
        super().__init__(info)
        self.decoder = ViTDecoder(info.in_channels, patch_size=PATCH_SIZE, resolution=RESOLUTION)
        self.post_quant_proj = nn.Conv2d(LATENT_DIM, self.decoder.dim, 1)

    def decode_quant(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, 5, h, w] -> logits [B, 10, 16h, 16w]."""
        return self.decoder(self.post_quant_proj(codes.to(self.post_quant_proj.weight.dtype)))

    def decode_tokens(self, tokens: torch.Tensor, *, image_size: int | tuple[int, int] | None = None,
                      timesteps: int = 50, noise: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Token ids [B, h, w] -> class logits [B, 10, 16h, 16w] (no softmax; argmax over dim 1 gives classes).

        ``image_size``, ``timesteps``, ``noise`` and ``generator`` exist for a uniform API and are ignored: the
        output size is always 16 pixels per token, as in the reference.
        """
        self._check_tokens(tokens)
        return self.decode_quant(self.indices_to_codes(tokens))
