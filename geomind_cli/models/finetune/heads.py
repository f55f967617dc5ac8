"""Heads of TerraTorch fine-tunes: per-pixel segmentation and regression, and pooled scalar outputs.

Index layouts equal TerraTorch's (``head.<i>.*``): an optional stack of pre-layers, dropout (an inactive placeholder
at inference, but it takes a position), then the final layer. ``head_*`` config options map to the keyword
arguments here.
"""

from __future__ import annotations

import torch
from torch import nn

from geomind_cli.errors import ConfigError


def _dropout(p: float, cls=nn.Dropout) -> nn.Module:
    return nn.Identity() if p == 0 else cls(p)


class SegmentationHead(nn.Module):
    """[B, C, H, W] -> logits [B, num_classes, H, W]: optional 3x3 conv-ReLU layers, dropout, 1x1 conv."""

    def __init__(self, in_channels: int, *, num_classes: int, channel_list: list[int] | None = None,
                 dropout: float = 0.0):
        super().__init__()
        pre = nn.Identity()
        if channel_list:
            dims = [in_channels, *channel_list]
            pre = nn.Sequential(*(nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU())
                                  for a, b in zip(dims[:-1], dims[1:])))
            in_channels = dims[-1]
        self.head = nn.Sequential(pre, _dropout(dropout), nn.Conv2d(in_channels, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class PixelShuffleUpscale(nn.Module):
    """Learned 2x up-sampling: conv to 4x channels, pixel shuffle, BN, ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, kernel_size=3, padding=1)
        self.upscale = nn.PixelShuffle(2)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.upscale(self.conv(x))))


_ACTIVATIONS = {"torch.nn.ReLU": nn.ReLU, "torch.nn.Sigmoid": nn.Sigmoid, "torch.nn.Tanh": nn.Tanh,
                "torch.nn.Softplus": nn.Softplus, "torch.nn.Identity": nn.Identity}


class RegressionHead(nn.Module):
    """[B, C, H, W] -> [B, num_outputs, H', W']: optional pixel-shuffle up-sampling and conv-BN-ReLU layers,
    dropout, 1x1 conv, optional final activation (given as a ``torch.nn`` class path)."""

    def __init__(self, in_channels: int, *, num_outputs: int = 1, final_act: str | None = None,
                 learned_upscale_layers: int = 0, channel_list: list[int] | None = None, batch_norm: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        if final_act is not None and final_act not in _ACTIVATIONS:
            raise ConfigError(f"head_final_act {final_act} is not supported; use one of {', '.join(_ACTIVATIONS)}")
        self.final_act = _ACTIVATIONS[final_act]() if final_act else nn.Identity()
        layers: list[nn.Module] = []
        if learned_upscale_layers:
            layers.append(nn.Sequential(*(PixelShuffleUpscale(in_channels) for _ in range(learned_upscale_layers))))
        if channel_list:
            dims = [in_channels, *channel_list]
            layers.append(nn.Sequential(*(nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False),
                                                        nn.BatchNorm2d(b), nn.ReLU(inplace=True))
                                          for a, b in zip(dims[:-1], dims[1:]))))
            in_channels = dims[-1]
        # TerraTorch always puts a Dropout2d here, even at p=0 (no parameters, but it takes an index).
        self.head = nn.Sequential(*layers, nn.Dropout2d(dropout), nn.Conv2d(in_channels, num_outputs, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_act(self.head(x))


class ScalarHead(nn.Module):
    """Pooled prediction: [B, C, H, W] (or [B, C]) -> [B, num_outputs].

    Positions are flattened to [B, N, C]; the MLP runs per position and is averaged, or (``linear_after_pool``)
    positions are averaged first.
    """

    def __init__(self, in_dim: int, *, num_classes: int | None = None, num_outputs: int | None = None,
                 dim_list: list[int] | None = None, dropout: float = 0.0, linear_after_pool: bool = False):
        super().__init__()
        outputs = num_outputs or num_classes
        if not outputs:
            raise ConfigError("a classification head needs num_classes")
        self.linear_after_pool = linear_after_pool
        pre = nn.Identity()
        if dim_list:
            dims = [in_dim, *dim_list]
            pre = nn.Sequential(*(nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in zip(dims[:-1], dims[1:])))
            in_dim = dims[-1]
        self.head = nn.Sequential(pre, _dropout(dropout), nn.Linear(in_dim, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        if self.linear_after_pool:
            return self.head(x.mean(dim=1))
        return self.head(x).mean(dim=1)


def build_head(task: str, in_channels: int, options: dict, *, num_classes: int | None,
               num_outputs: int | None) -> nn.Module:
    """The head TerraTorch puts after the decoder for ``task``; ``options`` are the config's ``head_*`` values."""
    cls = {"segmentation": SegmentationHead, "regression": RegressionHead, "classification": ScalarHead}[task]
    kwargs = dict(options)
    if task == "regression":
        if num_outputs is not None:
            kwargs["num_outputs"] = num_outputs
    elif num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        return cls(in_channels, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"{task} head: {exc}") from None
