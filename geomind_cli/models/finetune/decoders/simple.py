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


class MLPDecoder(nn.Module):
    """All feature maps concatenated on channels, then one linear layer and an activation per position:
    n x [B, C, h, w] (or n x [B, C]) -> [B, C, h, w] (or [B, C]), C = ``embed_dim[out_index]``.

    The layer takes ``C * n`` inputs, so every map must have C channels, as in TerraTorch. ``channels`` and
    ``out_dim`` are accepted because TerraTorch's signature has them; they change nothing (keys ``hidden_layer.*``).
    """

    def __init__(self, embed_dim: list[int], *, channels: int = 100, out_dim: int = 100, activation: str = "ReLU",
                 out_index: int = -1):
        super().__init__()
        act = getattr(nn, str(activation), None)
        if not (isinstance(act, type) and issubclass(act, nn.Module)):
            raise ConfigError(f"MLPDecoder decoder_activation {activation!r} is not a torch.nn activation "
                              "(e.g. ReLU, GELU, SiLU)")
        self.out_channels = embed_dim[out_index]
        self.hidden_layer = nn.Linear(self.out_channels * len(embed_dim), self.out_channels)
        self.activation = act()

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(list(features), dim=1)
        if x.dim() == 2:
            return self.activation(self.hidden_layer(x))
        if x.dim() != 4:
            raise ValueError(f"MLPDecoder takes [B, C] or [B, C, H, W] features, got {tuple(x.shape)}")
        return self.activation(self.hidden_layer(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


class LinearDecoder(nn.Module):
    """features[in_index] [B, C, h, w] -> [B, num_classes, h*k, w*k] by one transposed convolution of kernel and
    stride k = ``upsampling_size`` (key ``conv.*``). It includes its own head: the model adds none after it."""

    includes_head = True

    def __init__(self, embed_dim: list[int], *, num_classes: int, upsampling_size: int, in_index: int = -1):
        super().__init__()
        self.in_index = in_index
        self.out_channels = num_classes
        self.conv = nn.ConvTranspose2d(embed_dim[in_index], num_classes, kernel_size=upsampling_size,
                                       stride=upsampling_size)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.conv(features[self.in_index])
