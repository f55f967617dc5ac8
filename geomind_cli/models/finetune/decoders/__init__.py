"""Decoders of TerraTorch fine-tunes, by the names configs use (``model_args.decoder``)."""

from __future__ import annotations

from torch import nn

from geomind_cli.errors import ConfigError
from geomind_cli.models.finetune.decoders.simple import FCNDecoder, IdentityDecoder
from geomind_cli.models.finetune.decoders.unet import UNetDecoder
from geomind_cli.models.finetune.decoders.upernet import UperNetDecoder

DECODERS = {cls.__name__: cls for cls in (UNetDecoder, UperNetDecoder, FCNDecoder, IdentityDecoder)}


def build_decoder(name: str, channels: list[int], options: dict) -> nn.Module:
    """Decoder ``name`` over feature maps with ``channels``; ``options`` are the config's ``decoder_*`` values."""
    cls = DECODERS.get(name.rsplit(".", 1)[-1])
    if cls is None:
        raise ConfigError(f"decoder {name} is not supported; use {', '.join(DECODERS)}")
    try:
        return cls(list(channels), **options)
    except TypeError as exc:
        raise ConfigError(f"decoder {name}: {exc}") from None


__all__ = ["DECODERS", "FCNDecoder", "IdentityDecoder", "UNetDecoder", "UperNetDecoder", "build_decoder"]
