"""Test-only: terratorch 1.2.13's EncoderDecoderFactory (the reference) without lightning, timm or torchvision.

Builds on tests/reference.py (the TerraMind sub-package with a registry stub). Adds: registries with the
``build``/``find_class`` methods the factory calls, parent packages for terratorch.models.decoders/heads and for
segmentation_models_pytorch so that only the needed files are imported (their package ``__init__`` files pull
timm), a torchvision.ops module whose FeaturePyramidNetwork is a stand-in (see TorchvisionFPN), and empty
detection modules that the factory's imports name but never use here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections import OrderedDict
from pathlib import Path

import torch

from reference import _package, load_reference


class _Registry:
    """The subset of terratorch's registry API that the factory uses, over name -> builder dicts."""

    def __init__(self, *tables: dict):
        self.tables = tables

    def find_class(self, name):
        for table in self.tables:
            if name in table:
                return table[name]
        raise KeyError(name)

    find_registry = find_class

    def build(self, name, *args, **kwargs):
        return self.find_class(name)(*args, **kwargs)

    def register(self, obj):
        self.tables[0][obj.__name__] = obj
        return obj

    def __contains__(self, name):
        return any(name in t for t in self.tables)


class TorchvisionFPN(torch.nn.Module):
    """Stands in for ``torchvision.ops.FeaturePyramidNetwork`` (torchvision is not installed: it is not allowed in
    this project's environment), written from torchvision's documented behaviour without extra blocks: an
    OrderedDict of maps, finest first, in; 1x1 "inner" convs, top-down nearest up-sampling and sums, 3x3 "layer"
    convs; an OrderedDict with the same keys out. Module layout as torchvision >= 0.13 (convs inside
    Conv2dNormActivation, a Sequential). TerraTorch's FeaturePyramidNetworkNeck around it is the real one."""

    def __init__(self, in_channels_list, out_channels, extra_blocks=None, norm_layer=None):
        super().__init__()
        assert extra_blocks is None and norm_layer is None
        conv = torch.nn.Conv2d
        self.inner_blocks = torch.nn.ModuleList(torch.nn.Sequential(conv(c, out_channels, 1)) for c in in_channels_list)
        self.layer_blocks = torch.nn.ModuleList(torch.nn.Sequential(conv(out_channels, out_channels, 3, padding=1))
                                                for _ in in_channels_list)

    def forward(self, x):
        names, maps = list(x.keys()), list(x.values())
        last = self.inner_blocks[-1](maps[-1])
        results = [self.layer_blocks[-1](last)]
        for idx in range(len(maps) - 2, -1, -1):
            lateral = self.inner_blocks[idx](maps[idx])
            last = lateral + torch.nn.functional.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.layer_blocks[idx](last))
        return OrderedDict(zip(names, results))


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def _import_peft() -> None:
    """Import PEFT (TerraTorch's factory imports it when installed) with the torchvision stubs hidden: PEFT imports
    transformers, which asks importlib whether torchvision exists and fails on a stub without a module spec. The
    answer (no torchvision) is cached by transformers, so the stubs can come back afterwards."""
    hidden = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "torchvision" or k.startswith("torchvision.")}
    try:
        importlib.import_module("peft.mapping")
        importlib.import_module("peft.mapping_func")
    except ModuleNotFoundError:
        pass  # without PEFT, TerraTorch's factory builds everything but peft_config models
    finally:
        sys.modules.update(hidden)


def load_factory():
    """Return terratorch's ``EncoderDecoderFactory`` class (imports it once)."""
    if "terratorch.models.encoder_decoder_factory" in sys.modules:
        return sys.modules["terratorch.models.encoder_decoder_factory"].EncoderDecoderFactory
    load_reference()
    _import_peft()
    registry = sys.modules["terratorch.registry"]
    registry.BACKBONE_REGISTRY = _Registry(registry.TERRATORCH_BACKBONE_REGISTRY)
    registry.DECODER_REGISTRY = _Registry(registry.TERRATORCH_DECODER_REGISTRY)
    registry.NECK_REGISTRY = _Registry(registry.TERRATORCH_NECK_REGISTRY)
    registry.MODEL_FACTORY_REGISTRY = _Registry({})

    class _Unused:
        def __init__(self, *args, **kwargs):
            raise NotImplementedError("torchvision is not installed")

    tv = sys.modules["torchvision"]
    tv.ops = _module("torchvision.ops", FeaturePyramidNetwork=TorchvisionFPN)
    _package("torchvision.models", None)
    _package("torchvision.models.detection", None)
    _module("torchvision.models.detection.image_list", ImageList=_Unused)
    _module("torchvision.models.detection.transform", GeneralizedRCNNTransform=_Unused)

    smp_root = Path(list(importlib.util.find_spec("segmentation_models_pytorch").submodule_search_locations)[0])
    _package("segmentation_models_pytorch", smp_root)
    _package("segmentation_models_pytorch.decoders", smp_root / "decoders")
    _package("segmentation_models_pytorch.decoders.unet", smp_root / "decoders" / "unet")
    importlib.import_module("segmentation_models_pytorch.base")

    tt_root = Path(sys.modules["terratorch"].__path__[0]) / "models"
    _package("terratorch.models.decoders", tt_root / "decoders")
    for name in ("unet_decoder", "upernet_decoder", "fcn_decoder", "identity_decoder", "mlp_decoder", "linear_decoder",
                 "aspp_head"):
        importlib.import_module(f"terratorch.models.decoders.{name}")
    return importlib.import_module("terratorch.models.encoder_decoder_factory").EncoderDecoderFactory
