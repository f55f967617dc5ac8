"""TerraTorch's ``UNetDecoder``: a U-Net decoder over a feature pyramid (finest first), written for inference.

TerraTorch wraps segmentation_models_pytorch's ``UnetDecoder`` and feeds it the finest map twice, because that
decoder drops its first input. The result: every pyramid level is used, the coarsest is the head, each block
up-samples (nearest) to the next finer level, concatenates it, and applies two conv-norm-ReLU layers; the last block
has no skip and stays at the finest level. State keys: ``decoder.blocks.<i>.conv{1,2}.{0,1}.*`` and, with
``attention_type: scse``, ``decoder.blocks.<i>.attention{1,2}.attention.{cSE,sSE}.*``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geomind_cli.errors import ConfigError


def _norm(use_norm, channels: int) -> nn.Module:
    kind = {True: "batchnorm", False: "identity"}.get(use_norm, use_norm)
    if isinstance(kind, str):
        kind = kind.lower()
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "identity":
        return nn.Identity()
    if kind == "instancenorm":
        return nn.InstanceNorm2d(channels)
    raise ConfigError(f"UNetDecoder use_batchnorm={use_norm!r} is not supported; use batchnorm, identity or "
                      "instancenorm")


class ConvNormReLU(nn.Sequential):
    """3x3 conv (bias only without a norm), norm, ReLU: keys ``0.weight``, ``1.*``."""

    def __init__(self, in_channels: int, out_channels: int, use_norm):
        norm = _norm(use_norm, out_channels)
        conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=isinstance(norm, nn.Identity))
        super().__init__(conv, norm, nn.ReLU(inplace=True))


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-and-excitation (``attention_type: scse``)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.cSE = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels // reduction, 1),
                                 nn.ReLU(inplace=True), nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())
        self.sSE = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cSE(x) + x * self.sSE(x)


class Attention(nn.Module):
    def __init__(self, kind: str | None, channels: int):
        super().__init__()
        if kind is None:
            self.attention = nn.Identity()
        elif kind == "scse":
            self.attention = SCSE(channels)
        else:
            raise ConfigError(f"UNetDecoder attention_type {kind!r} is not supported; use scse or none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x)


class UNetBlock(nn.Module):
    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, use_norm, attention_type):
        super().__init__()
        self.conv1 = ConvNormReLU(in_channels + skip_channels, out_channels, use_norm)
        self.attention1 = Attention(attention_type, in_channels + skip_channels)
        self.conv2 = ConvNormReLU(out_channels, out_channels, use_norm)
        self.attention2 = Attention(attention_type, out_channels)

    def forward(self, x: torch.Tensor, size: tuple[int, int], skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = self.attention1(torch.cat([x, skip], dim=1))
        return self.attention2(self.conv2(self.conv1(x)))


class UNetBlocks(nn.Module):
    """The block stack (TerraTorch's inner ``decoder``)."""

    def __init__(self, embed_dim: list[int], channels: list[int], use_norm, attention_type):
        super().__init__()
        coarse_to_fine = list(reversed(embed_dim))
        ins = [coarse_to_fine[0], *channels[:-1]]
        skips = [*coarse_to_fine[1:], 0]
        self.center = nn.Identity()
        self.blocks = nn.ModuleList(UNetBlock(i, s, o, use_norm, attention_type)
                                    for i, s, o in zip(ins, skips, channels))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        coarse_to_fine = list(reversed(features))
        sizes = [f.shape[-2:] for f in coarse_to_fine[1:]] + [features[0].shape[-2:]]
        x = self.center(coarse_to_fine[0])
        for i, block in enumerate(self.blocks):
            skip = coarse_to_fine[i + 1] if i + 1 < len(coarse_to_fine) else None
            x = block(x, tuple(sizes[i]), skip)
        return x


class UNetDecoder(nn.Module):
    """features: list of [B, C_i, H_i, W_i], finest first -> [B, channels[-1], H_0, W_0]."""

    def __init__(self, embed_dim: list[int], *, channels: list[int], use_batchnorm="batchnorm",
                 attention_type: str | None = None):
        super().__init__()
        if len(embed_dim) != len(channels):
            raise ConfigError(f"UNetDecoder decoder_channels has {len(channels)} entries for {len(embed_dim)} "
                              "feature maps; give one per map")
        self.decoder = UNetBlocks(list(embed_dim), list(channels), use_batchnorm, attention_type)
        self.out_channels = channels[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.decoder(features)
