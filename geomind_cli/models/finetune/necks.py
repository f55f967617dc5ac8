"""Necks between the TerraMind backbone and a decoder, as TerraTorch's ``model_args.necks`` builds them.

Each neck maps a list of feature tensors to another list and knows how it changes the channel list. Attribute names
equal TerraTorch's (``neck.<i>.fpn1.0.weight`` ...) so fine-tuned checkpoints load strictly.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from geomind_cli.errors import ConfigError
from geomind_cli.models.finetune.config import NeckSpec


class SelectIndices(nn.Module):
    """Keep the backbone layers ``indices`` (e.g. [2, 5, 8, 11]) in that order."""

    def __init__(self, channels: list[int], *, indices: list[int]):
        super().__init__()
        if not indices:
            raise ConfigError("neck SelectIndices needs indices")
        try:
            self.out_channels = [channels[i] for i in indices]
        except IndexError:
            raise ConfigError(f"neck SelectIndices indices {indices} do not fit a backbone of {len(channels)} "
                              "layers") from None
        self.indices = list(indices)

    def forward(self, features: list, *, image_size: tuple[int, int]) -> list:
        return [features[i] for i in self.indices]


class ReshapeTokensToImage(nn.Module):
    """Tokens [B, N, D] -> images [B, D, h, w]; TerraMind has no CLS token (configs set remove_cls_token False).

    The grid is square when N is a square; otherwise it follows the input's aspect (``image_size``), as TerraTorch.
    """

    def __init__(self, channels: list[int], *, remove_cls_token: bool = True, effective_time_dim: int = 1,
                 h: int | None = None):
        super().__init__()
        if effective_time_dim != 1:
            raise ConfigError("neck ReshapeTokensToImage with effective_time_dim != 1 (multi-temporal) is not supported")
        self.remove_cls_token = remove_cls_token
        self.h = h
        self.out_channels = list(channels)

    @staticmethod
    def _patch(tokens: int, image_size: tuple[int, int]) -> float:
        return math.sqrt(image_size[0] * image_size[1] / tokens)

    def _is_grid(self, tokens: int, image_size: tuple[int, int]) -> bool:
        return bool(self.h) or math.isqrt(tokens) ** 2 == tokens or self._patch(tokens, image_size) % 1 == 0

    def _rows(self, tokens: int, image_size: tuple[int, int]) -> int:
        if self.h:
            return self.h
        side = math.isqrt(tokens)
        if side * side == tokens:
            return side
        return int(image_size[0] // self._patch(tokens, image_size))

    def forward(self, features: list, *, image_size: tuple[int, int]) -> list:
        out = []
        for x in features:
            if x.dim() >= 4:
                out.append(x)
                continue
            # As TerraTorch: the first token is dropped only if the rest still form a patch grid.
            drop = self.remove_cls_token and self._is_grid(x.shape[1] - 1, image_size)
            tokens = x[:, 1:] if drop else x
            if not self._is_grid(tokens.shape[1], image_size):
                raise ValueError(f"{tokens.shape[1]} tokens do not form a grid for an image of {image_size}")
            h = self._rows(tokens.shape[1], image_size)
            out.append(tokens.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, tokens.shape[1] // h))
        return out


class LearnedInterpolateToPyramidal(nn.Module):
    """Four same-scale feature maps -> a pyramid at 4x, 2x, 1x and 1/2x with learned up-sampling."""

    def __init__(self, channels: list[int]):
        super().__init__()
        if len(channels) != 4:
            raise ConfigError(f"neck LearnedInterpolateToPyramidal needs exactly 4 feature maps, got {len(channels)}; "
                              "select 4 layers with SelectIndices first")
        c0, c1 = channels[0], channels[1]
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(c0, c0 // 2, 2, 2), nn.BatchNorm2d(c0 // 2), nn.GELU(),
                                  nn.ConvTranspose2d(c0 // 2, c0 // 4, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(c1, c1 // 2, 2, 2))
        self.fpn3 = nn.Sequential(nn.Identity())
        self.fpn4 = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2))
        self.out_channels = [c0 // 4, c1 // 2, channels[2], channels[3]]

    def forward(self, features: list, *, image_size: tuple[int, int]) -> list:
        return [self.fpn1(features[0]), self.fpn2(features[1]), self.fpn3(features[2]), self.fpn4(features[3])]


class InterpolateToPyramidal(nn.Module):
    """Fixed interpolation: feature i of n is scaled by ``scale_factor ** (n - i)``."""

    def __init__(self, channels: list[int], *, scale_factor: int = 2, mode: str = "nearest"):
        super().__init__()
        self.scale_factor, self.mode = scale_factor, mode
        self.out_channels = list(channels)

    def forward(self, features: list, *, image_size: tuple[int, int]) -> list:
        n = len(features)
        return [F.interpolate(x, scale_factor=self.scale_factor ** (n - i), mode=self.mode)
                for i, x in enumerate(features)]


class MaxpoolToPyramidal(nn.Module):
    """Fixed down-sampling: feature i is max-pooled by ``kernel_size ** i``."""

    def __init__(self, channels: list[int], *, kernel_size: int = 2):
        super().__init__()
        self.kernel_size = kernel_size
        self.out_channels = list(channels)

    def forward(self, features: list, *, image_size: tuple[int, int]) -> list:
        return [x if i == 0 else F.max_pool2d(x, kernel_size=self.kernel_size ** i) for i, x in enumerate(features)]


class PermuteDims(nn.Module):
    def __init__(self, channels: list[int], *, new_order: list[int]):
        super().__init__()
        self.new_order = list(new_order)
        self.out_channels = list(channels)

    def forward(self, features: list, *, image_size: tuple[int, int]) -> list:
        return [x.permute(*self.new_order).contiguous() for x in features]


class AddBottleneckLayer(nn.Module):
    """Append a 1x1-conv half-width copy of the last feature map (for decoders that want one more level)."""

    def __init__(self, channels: list[int]):
        super().__init__()
        self.bottleneck = nn.Conv2d(channels[-1], channels[-1] // 2, kernel_size=1)
        self.out_channels = [*channels, channels[-1] // 2]

    def forward(self, features: list, *, image_size: tuple[int, int]) -> list:
        return [*features, self.bottleneck(features[-1])]


class AggregateTokens(nn.Module):
    """Pool each selected layer's tokens [B, N, D] (or maps [B, D, h, w]) to one vector [B, D]."""

    def __init__(self, channels: list[int], *, pooling: str = "mean", indices=None, index: int | None = -1,
                 drop_cls: bool = False):
        super().__init__()
        indices = indices if indices is not None else index
        self.indices = [indices] if isinstance(indices, int) else list(indices)
        pooling = str(pooling).lower()
        if pooling not in ("mean", "max", "min", "cls"):
            raise ConfigError(f"neck AggregateTokens pooling {pooling!r} is not supported; use mean, max, min or CLS")
        if pooling == "cls" and drop_cls:
            raise ConfigError("neck AggregateTokens drop_cls cannot be used with pooling CLS")
        self.pooling, self.drop_cls = pooling, drop_cls
        self.out_channels = list(channels)

    def forward(self, features: list, *, image_size: tuple[int, int]) -> list:
        out = []
        for index in self.indices:
            x = features[index] if len(features) > 1 else features[0]
            if x.dim() == 4:
                x = x.flatten(2).transpose(1, 2)
            if self.drop_cls:
                x = x[:, 1:]
            out.append({"mean": lambda t: t.mean(dim=1), "max": lambda t: t.max(dim=1).values,
                        "min": lambda t: t.min(dim=1).values, "cls": lambda t: t[:, 0]}[self.pooling](x))
        return out


class FeaturePyramid(nn.Module):
    """A feature pyramid network (Lin et al. 2017) as torchvision's ``ops.FeaturePyramidNetwork`` computes it,
    without extra blocks: maps finest first, each projected to ``out_channels`` by a 1x1 conv, the coarser sum
    up-sampled (nearest) onto each finer one, each sum smoothed by a 3x3 conv. Keys ``inner_blocks.<i>.0.*`` and
    ``layer_blocks.<i>.0.*`` (each conv inside a one-element Sequential, as torchvision builds it)."""

    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        if any(c == 0 for c in in_channels):
            raise ConfigError("neck FeaturePyramidNetworkNeck cannot take a map with 0 channels")
        self.inner_blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(c, out_channels, 1)) for c in in_channels)
        self.layer_blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1))
                                          for _ in in_channels)

    def forward(self, features: list) -> list:
        top = self.inner_blocks[-1](features[-1])
        out = [self.layer_blocks[-1](top)]
        for i in range(len(features) - 2, -1, -1):
            lateral = self.inner_blocks[i](features[i])
            top = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
            out.insert(0, self.layer_blocks[i](top))
        return out


class FeaturePyramidNetworkNeck(nn.Module):
    """TerraTorch's wrapper of the FPN above (keys ``fpn.*``): n maps -> n maps of ``out_channel`` channels.

    ``output_ordered_dict`` (TerraTorch's default True) returns a dict that no decoder can take (TerraTorch's models
    fail on it), so a trained model had it False; both give the list of maps here.
    """

    def __init__(self, channels: list[int], *, out_channel: int = 256, output_ordered_dict: bool = True):
        super().__init__()
        self.fpn = FeaturePyramid(list(channels), out_channel)
        self.out_channels = [out_channel] * len(channels)

    def forward(self, features: list, *, image_size: tuple[int, int]) -> list:
        return self.fpn(list(features))


NECKS = {cls.__name__: cls for cls in (SelectIndices, ReshapeTokensToImage, LearnedInterpolateToPyramidal,
                                       InterpolateToPyramidal, MaxpoolToPyramidal, PermuteDims, AddBottleneckLayer,
                                       AggregateTokens, FeaturePyramidNetworkNeck)}


class NeckSequential(nn.Sequential):
    """The necks in order; state keys ``neck.<i>.*`` as TerraTorch's."""

    def forward(self, features: list, *, image_size: tuple[int, int]) -> list:
        for neck in self:
            features = neck(features, image_size=image_size)
        return features


def build_necks(specs: tuple[NeckSpec, ...], channels: list[int]) -> tuple[NeckSequential | None, list[int]]:
    """Necks for ``specs`` on a backbone with per-layer ``channels``; returns (necks or None, decoder channels)."""
    modules = []
    for spec in specs:
        cls = NECKS.get(spec.name.rsplit(".", 1)[-1])
        if cls is None:
            raise ConfigError(f"neck {spec.name} is not supported; use {', '.join(NECKS)}")
        try:
            neck = cls(channels, **spec.options)
        except TypeError as exc:
            raise ConfigError(f"neck {spec.name}: {exc}") from None
        channels = neck.out_channels
        modules.append(neck)
    return (NeckSequential(*modules) if modules else None), list(channels)
