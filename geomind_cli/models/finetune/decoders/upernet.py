"""TerraTorch's ``UperNetDecoder`` (UPerNet as in MMSegmentation): a pooling pyramid on the coarsest map, a top-down
FPN over the others, all fused at the finest resolution. State keys as TerraTorch's: ``psp_modules.<i>.1.*``,
``bottleneck.*``, ``lateral_convs.<i>.*``, ``fpn_convs.<i>.*``, ``fpn_bottleneck.*``, each a conv-BN-ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvModule(nn.Module):
    """Bias-free conv, batch norm, ReLU (keys ``conv.weight``, ``norm.*``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, padding: int = 0, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class PoolingPyramid(nn.ModuleList):
    """Adaptive average pooling to each scale, 1x1 conv, back to the input size (bilinear)."""

    def __init__(self, pool_scales, in_channels: int, channels: int, align_corners: bool):
        super().__init__(nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(in_channels, channels, 1))
                         for s in pool_scales)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.interpolate(branch(x), size=x.shape[2:], mode="bilinear", align_corners=self.align_corners)
                for branch in self]


class UperNetDecoder(nn.Module):
    """features: list of [B, C_i, H_i, W_i], finest first -> [B, channels, H_0, W_0]."""

    def __init__(self, embed_dim: list[int], *, pool_scales=(1, 2, 3, 6), channels: int = 256,
                 align_corners: bool = True):
        super().__init__()
        self.out_channels = channels
        self.align_corners = align_corners
        self.psp_modules = PoolingPyramid(pool_scales, embed_dim[-1], channels, align_corners)
        self.bottleneck = ConvModule(embed_dim[-1] + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in embed_dim[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, padding=1) for _ in embed_dim[:-1])
        self.fpn_bottleneck = ConvModule(len(embed_dim) * channels, channels, 3, padding=1)

    def _resize(self, x: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        top = features[-1]
        laterals = [conv(features[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):  # top-down: add each coarser level to the next finer one
            laterals[i - 1] = laterals[i - 1] + self._resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        size = outs[0].shape[2:]
        outs = [outs[0]] + [self._resize(x, size) for x in outs[1:]]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))
