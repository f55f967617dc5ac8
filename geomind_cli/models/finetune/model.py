"""The fine-tuned network: our TerraMind backbone (or TiM) + necks + decoder + head, as TerraTorch assembles it.

``PixelWiseModel`` (segmentation, pixel-wise regression) and ``ScalarOutputModel`` (classification) keep
TerraTorch's attribute names (``encoder``, ``neck``, ``decoder``, ``head``) so that a Lightning checkpoint's
``model.*`` entries load into them strictly. Inputs are padded (reflect) to a multiple of 32 px as TerraTorch does
for TerraMind (twice its 16 px patch, so pyramid levels halve evenly), and pixel outputs are cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geomind_cli.errors import ConfigError
from geomind_cli.models.finetune.config import FinetuneConfig
from geomind_cli.models.finetune.decoders import build_decoder, includes_head
from geomind_cli.models.finetune.heads import build_head
from geomind_cli.models.finetune.necks import build_necks

PAD_MULTIPLE = 32


def pad_inputs(x: dict[str, torch.Tensor], multiple: int = PAD_MULTIPLE) -> dict[str, torch.Tensor]:
    """Reflect-pad each [B, C, H, W] to a multiple of ``multiple``, split evenly (the extra pixel after)."""
    out = {}
    for name, t in x.items():
        h, w = t.shape[-2:]
        ph, pw = -h % multiple, -w % multiple
        out[name] = F.pad(t, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect") if ph or pw else t
    return out


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    top, left = max((x.shape[-2] - size[0]) // 2, 0), max((x.shape[-1] - size[1]) // 2, 0)
    return x[..., top:top + size[0], left:left + size[1]]


def _image_size(x: dict[str, torch.Tensor]) -> tuple[int, int]:
    sizes = sorted({tuple(t.shape[-2:]) for t in x.values()}, key=lambda s: s[0] * s[1], reverse=True)
    return sizes[0]


class _EncoderDecoder(nn.Module):
    def __init__(self, encoder: nn.Module, neck: nn.Module | None, decoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        if neck is not None:  # TerraTorch has no neck module (no keys) when the config lists none
            self.neck = neck
        else:
            self.neck = None
        self.decoder = decoder
        self.head = head

    def features(self, x: dict[str, torch.Tensor], **backbone_kwargs) -> torch.Tensor:
        size = _image_size(x)
        features = self.encoder(x, **backbone_kwargs)
        if self.neck is not None:
            features = self.neck(features, image_size=size)
        return self.decoder(list(features))


class PixelWiseModel(_EncoderDecoder):
    """x: {modality: standardized [B, C, H, W]} -> [B, K, H, W] (class logits or regression values)."""

    def __init__(self, encoder, neck, decoder, head, *, rescale: bool = True):
        super().__init__(encoder, neck, decoder, head)
        self.rescale = rescale

    def forward(self, x: dict[str, torch.Tensor], **backbone_kwargs) -> torch.Tensor:
        size = _image_size(x)
        padded = pad_inputs(x)
        padded_size = _image_size(padded)
        out = self.head(self.features(padded, **backbone_kwargs))
        if self.rescale and tuple(out.shape[-2:]) != padded_size:
            out = F.interpolate(out, size=padded_size, mode="bilinear")
        out = center_crop(out, size)
        if tuple(out.shape[-2:]) != tuple(size):
            raise ConfigError(f"the model predicts {tuple(out.shape[-2:])} px for {tuple(size)} px inputs (rescale is "
                              "off); set model_args.rescale: true to predict every pixel")
        return out


class ScalarOutputModel(_EncoderDecoder):
    """x: {modality: standardized [B, C, H, W]} -> [B, K] class logits."""

    def forward(self, x: dict[str, torch.Tensor], **backbone_kwargs) -> torch.Tensor:
        return self.head(self.features(pad_inputs(x), **backbone_kwargs))


def _backbone(cfg: FinetuneConfig) -> nn.Module:
    from geomind_cli.facts.modalities import input_key
    from geomind_cli.models import build_model

    kwargs = dict(cfg.backbone_options)
    if cfg.tim:
        kwargs["tim_modalities"] = list(cfg.tim_modalities) or None
    # Random weights: the fine-tuned checkpoint holds every backbone weight, so nothing is downloaded.
    encoder = build_model(cfg.backbone, pretrained=False, modalities=[s.backbone_entry for s in cfg.inputs], **kwargs)
    for spec in cfg.inputs:
        embedding = encoder.encoder_embeddings[spec.modality if spec.new else input_key(spec.modality)]
        if not spec.new and len(spec.bands) != embedding.num_channels:
            # backbone_bands: TerraTorch rebuilds the patch projection for the listed bands (a subset, or other
            # bands on the reused embedding); the checkpoint holds its fine-tuned weights.
            pixels = embedding.proj.in_features // embedding.num_channels
            embedding.proj = nn.Linear(pixels * len(spec.bands), embedding.proj.out_features, bias=False)
            embedding.num_channels = len(spec.bands)
    return encoder


def build_finetuned(cfg: FinetuneConfig) -> nn.Module:
    """The network of ``cfg`` with random weights, in eval mode (load a checkpoint with :mod:`.checkpoint`)."""
    encoder = _backbone(cfg)
    neck, channels = build_necks(cfg.necks, list(encoder.out_channels))
    if includes_head(cfg.decoder):
        # TerraTorch gives such a decoder the output count as num_classes and puts no head after it.
        if cfg.head_options:
            raise ConfigError(f"decoder {cfg.decoder} includes its head, so head_* options "
                              f"({', '.join('head_' + k for k in cfg.head_options)}) do not apply; remove them")
        outputs = cfg.num_outputs or cfg.num_classes
        if outputs is None:
            raise ConfigError(f"decoder {cfg.decoder} needs num_outputs (regression) or num_classes")
        decoder = build_decoder(cfg.decoder, channels, {**cfg.decoder_options, "num_classes": outputs})
        head = nn.Identity()
    else:
        decoder = build_decoder(cfg.decoder, channels, cfg.decoder_options)
        head = build_head(cfg.task, decoder.out_channels, cfg.head_options, num_classes=cfg.num_classes,
                          num_outputs=cfg.num_outputs)
    if cfg.task == "classification":
        return ScalarOutputModel(encoder, neck, decoder, head).eval()
    return PixelWiseModel(encoder, neck, decoder, head, rescale=cfg.rescale).eval()
