"""TerraTorch's ``FCNDecoder`` (learned 2x up-sampling steps) and ``IdentityDecoder`` (one feature map as is)."""

from __future__ import annotations

import torch
from torch import nn

from geomind_cli.errors import ConfigError


class Norm2d(nn.Module):
    """LayerNorm over channels of [B, C, H, W] (key ``ln.*``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.ln = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


def _upscale_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2),
                         nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1), Norm2d(out_channels),
                         nn.GELU())


class FCNDecoder(nn.Module):
    """features[in_index] [B, C, h, w] -> [B, channels, h * 2**num_convs, w * 2**num_convs] (keys ``convs.<i>.*``)."""

    def __init__(self, embed_dim: list[int], *, channels: int = 256, num_convs: int = 4, in_index: int = -1):
        super().__init__()
        if num_convs < 1:
            raise ConfigError("FCNDecoder decoder_num_convs must be at least 1")
        self.in_index = in_index
        self.out_channels = channels
        self.convs = nn.Sequential(*(_upscale_block(embed_dim[in_index] if i == 0 else channels, channels)
                                     for i in range(num_convs)))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.convs(features[self.in_index])


class IdentityDecoder(nn.Module):
    """features[out_index] unchanged; no parameters."""

    def __init__(self, embed_dim: list[int], *, out_index: int = -1):
        super().__init__()
        self.out_index = out_index
        self.out_channels = embed_dim[out_index]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return features[self.out_index]
