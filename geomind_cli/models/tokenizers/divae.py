"""DiVAE tokenizers (S2L2A, S1GRD, S1RTC, DEM, NDVI): ViT encoder + FSQ, diffusion UNet decoder (spec 6.3).

Decoding draws x_T (or takes it from the caller), then runs the DDIM schedule over the UNet conditioned on the FSQ
codes. The whole batch is denoised together; every operation is per sample, so a tile gives the same result alone
or inside a batch when it gets the same slice of starting noise.
"""

from __future__ import annotations

import torch

from geomind_cli.errors import InputError
from geomind_cli.facts.modalities import TokenizerInfo
from geomind_cli.models.tokenizers.ddim import ddim_sample, ddim_schedule
from geomind_cli.models.tokenizers.unet import PatchedUNet, UNetConfig
from geomind_cli.models.tokenizers.vqvae import LATENT_DIM, Tokenizer

_SIZE_MULTIPLE = 32  # 4x4 patches, then three stride-2 levels in the UNet


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class DiVAE(Tokenizer):
    """Diffusion-decoded tokenizer: tokens [B, h, w] -> standardized image [B, C, H, W] clamped to [-1, 1]."""

    def __init__(self, info: TokenizerInfo):
        super().__init__(info)
        self.decoder = PatchedUNet(UNetConfig(channels=info.in_channels, cond_channels=LATENT_DIM))

    def output_size(self, tokens: torch.Tensor, image_size: int | tuple[int, int] | None) -> tuple[int, int]:
        """(H, W) of the decoded image: ``image_size`` or 16 pixels per token."""
        height, width = _pair(image_size) if image_size is not None else (
            tokens.shape[-2] * self.patch_size, tokens.shape[-1] * self.patch_size)
        if height % _SIZE_MULTIPLE or width % _SIZE_MULTIPLE:
            raise InputError(f"{self.info.name} decodes images whose sides are multiples of {_SIZE_MULTIPLE}, "
                             f"got {height}x{width}; use tiles of 224 or 256 pixels")
        return height, width

    def decode_quant(self, codes: torch.Tensor, noise: torch.Tensor, *, timesteps: int = 50) -> torch.Tensor:
        """Codes [B, 5, h, w] and x_T ``noise`` [B, C, H, W] -> x_0 [B, C, H, W] float32 in [-1, 1].

        The DDIM state stays float32; the UNet input is cast to the UNet's parameter dtype so that a model held in
        bf16/fp16 also works without autocast.
        """
        schedule = ddim_schedule(timesteps)
        dtype = self.decoder.time_embed[0].weight.dtype
        # One device tensor of all timesteps, sliced per step: no host-to-device copy inside the loop.
        times = torch.tensor(schedule.timesteps, dtype=torch.float32, device=noise.device)
        cond = codes.to(device=noise.device, dtype=dtype)

        def denoise(x: torch.Tensor, index: int) -> torch.Tensor:
            return self.decoder(x.to(dtype), times[index:index + 1], cond)

        return ddim_sample(denoise, noise, schedule)

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor, *, image_size: int | tuple[int, int] | None = None,
                      timesteps: int = 50, noise: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Token ids [B, h, w] -> reconstruction [B, C, H, W], float32, standardized units, clamped to [-1, 1].

        ``noise`` is x_T (float32 [B, C, H, W]); with it the result is exactly reproducible. Without it x_T is drawn
        with ``torch.randn`` on the tokens' device from ``generator`` (which must live on that device), or from the
        global RNG when no generator is given. ``timesteps`` is the number of DDIM steps (50 as published).
        """
        self._check_tokens(tokens)
        height, width = self.output_size(tokens, image_size)
        shape = (tokens.shape[0], self.in_channels, height, width)
        if noise is None:
            noise = torch.randn(shape, generator=generator, device=tokens.device, dtype=torch.float32)
        elif tuple(noise.shape) != shape:
            raise InputError(f"the starting noise must have shape {list(shape)}, got {list(noise.shape)}")
        return self.decode_quant(self.indices_to_codes(tokens), noise.to(tokens.device), timesteps=timesteps)
