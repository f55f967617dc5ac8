"""TerraTorch's ``ASPPRegressionHead`` (DeepLabV3's atrous spatial pyramid pooling, then a 1x1 output conv).

The feature map is seen at several dilations and as its global average, all concatenated and fused by a 3x3 conv;
dropout, then ``conv_reg``. State keys as TerraTorch's: ``image_pool.1.*``, ``aspp_modules.model_sequence.<i>.*``,
``bottleneck.*`` (conv-BN-ReLU each), ``conv_reg.*``. TerraTorch puts its regression head after it.

``ASPPSegmentationHead`` is refused: TerraTorch 1.2.13's EncoderDecoderFactory cannot build it (the class has no
``out_channels`` for the head the factory adds after every decoder without ``includes_head``), so no fine-tune of it
exists to run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geomind_cli.errors import ConfigError
from geomind_cli.models.finetune.decoders.upernet import ConvModule


class AtrousPyramid(nn.Module):
    """One conv-BN-ReLU branch per dilation: 1x1 for dilation 1, else 3x3 dilated ("same" size)."""

    def __init__(self, dilations, in_channels: int, channels: int):
        super().__init__()
        self.model_sequence = nn.ModuleList(
            ConvModule(in_channels, channels, 1) if d == 1
            else ConvModule(in_channels, channels, 3, padding=d, dilation=d) for d in dilations)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [branch(x) for branch in self.model_sequence]


class ASPPRegressionHead(nn.Module):
    """features -> [B, out_channels, h, w] at the resolution of the selected map.

    ``in_index`` picks the map; with ``input_transform: resize_concat`` it is a list of maps, resized (bilinear) to
    the first one's size and concatenated. ``in_channels`` defaults to the picked channels.
    """

    def __init__(self, embed_dim: list[int], *, dilations=(1, 6, 12, 18), in_channels: int | None = None,
                 channels: int | None = None, out_channels: int = 1, align_corners: bool = False,
                 head_dropout_ratio: float = 0.3, input_transform: str | None = None, in_index=-1):
        super().__init__()
        if input_transform not in (None, "resize_concat"):
            raise ConfigError(f"ASPPRegressionHead decoder_input_transform {input_transform!r} is not supported; "
                              "use none or resize_concat")
        if channels is None:
            raise ConfigError("ASPPRegressionHead needs decoder_channels (its width)")
        if head_dropout_ratio <= 0:
            raise ConfigError("ASPPRegressionHead with decoder_head_dropout_ratio 0 fails in TerraTorch (it then has "
                              "no dropout layer to call), so no such fine-tune exists; check the config")
        if in_channels is None:
            picked = in_index if isinstance(in_index, (list, tuple)) else [in_index]
            in_channels = sum(embed_dim[i] for i in picked)
        self.in_index, self.input_transform, self.align_corners = in_index, input_transform, align_corners
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvModule(in_channels, channels, 1))
        self.aspp_modules = AtrousPyramid(dilations, in_channels, channels)
        self.bottleneck = ConvModule((len(dilations) + 1) * channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(head_dropout_ratio)
        self.conv_reg = nn.Conv2d(channels, out_channels, kernel_size=1)
        self.out_channels = out_channels

    def _select(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.input_transform != "resize_concat":
            return features[self.in_index]
        maps = [features[i] for i in self.in_index]
        size = maps[0].shape[2:]
        return torch.cat([F.interpolate(m, size=size, mode="bilinear", align_corners=self.align_corners)
                          for m in maps], dim=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self._select(features)
        pooled = F.interpolate(self.image_pool(x), size=x.shape[2:], mode="bilinear", align_corners=self.align_corners)
        fused = self.bottleneck(torch.cat([pooled, *self.aspp_modules(x)], dim=1))
        return self.conv_reg(self.dropout(fused))


class ASPPSegmentationHead(nn.Module):
    """Refused with the reason (see the module docstring)."""

    def __init__(self, embed_dim: list[int], **options):
        raise ConfigError("decoder ASPPSegmentationHead cannot be built by TerraTorch 1.2.13's EncoderDecoderFactory "
                          "(the class has no out_channels for the head it adds), so no fine-tune of it exists; "
                          "ASPPRegressionHead, UperNetDecoder and the others are supported")
