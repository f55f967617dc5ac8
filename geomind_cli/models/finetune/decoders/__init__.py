"""Decoders of TerraTorch fine-tunes, by the names configs use (``model_args.decoder``)."""

from __future__ import annotations

from torch import nn

from geomind_cli.errors import ConfigError
from geomind_cli.models.finetune.decoders.aspp import ASPPRegressionHead, ASPPSegmentationHead
from geomind_cli.models.finetune.decoders.simple import FCNDecoder, IdentityDecoder, LinearDecoder, MLPDecoder
from geomind_cli.models.finetune.decoders.unet import UNetDecoder
from geomind_cli.models.finetune.decoders.upernet import UperNetDecoder

DECODERS = {cls.__name__: cls for cls in (UNetDecoder, UperNetDecoder, FCNDecoder, IdentityDecoder, MLPDecoder,
                                          LinearDecoder, ASPPRegressionHead, ASPPSegmentationHead)}


def decoder_class(name: str) -> type[nn.Module]:
    cls = DECODERS.get(name.rsplit(".", 1)[-1])
    if cls is None:
        raise ConfigError(f"decoder {name} is not supported; use {', '.join(DECODERS)}")
    return cls


def includes_head(name: str) -> bool:
    """Whether the decoder ends in its own output layer (the model then adds no head and the decoder gets
    ``num_classes``), as TerraTorch's ``includes_head`` class attribute says."""
    return bool(getattr(decoder_class(name), "includes_head", False))


def build_decoder(name: str, channels: list[int], options: dict) -> nn.Module:
    """Decoder ``name`` over feature maps with ``channels``; ``options`` are the config's ``decoder_*`` values."""
    cls = decoder_class(name)
    try:
        return cls(list(channels), **options)
    except TypeError as exc:
        raise ConfigError(f"decoder {name}: {exc}") from None


__all__ = ["ASPPRegressionHead", "DECODERS", "FCNDecoder", "IdentityDecoder", "LinearDecoder", "MLPDecoder",
           "UNetDecoder", "UperNetDecoder", "build_decoder", "decoder_class", "includes_head"]
