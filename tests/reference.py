"""Import terratorch 1.2.13's TerraMind sub-package (the reference) without the rest of terratorch.

Test-only. terratorch's top-level package pulls lightning, torchgeo and more; the TerraMind code itself needs only
torch, einops, diffusers and huggingface_hub. We register empty parent packages pointing at the installed files,
a registry stub whose ``register`` keeps builders by name, and a torchvision stub (used by an unused helper).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path


class _Registry(dict):
    def register(self, fn):
        self[fn.__name__] = fn
        return fn


def _package(name: str, path: Path | None) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)] if path else []
    sys.modules[name] = module
    return module


def load_reference():
    """Return ``(backbones, full_models, tokenizers)``: dicts of the reference builders by registry name."""
    if "terratorch.registry" not in sys.modules:
        spec = importlib.util.find_spec("terratorch")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("terratorch 1.2.13 is not installed (make install-test)")
        root = Path(list(spec.submodule_search_locations)[0])
        # Imported before the torchvision stub below: diffusers' UNet blocks import PEFT and transformers when they
        # are installed, and transformers asks importlib whether torchvision exists, which fails on a stub without
        # a module spec; asked now, the answer (no torchvision) is cached.
        import diffusers  # noqa: F401
        import diffusers.models.unets.unet_2d_blocks  # noqa: F401

        _package("terratorch", root)
        _package("terratorch.models", root / "models")
        _package("terratorch.models.backbones", root / "models" / "backbones")
        registry = types.ModuleType("terratorch.registry")
        registry.TERRATORCH_BACKBONE_REGISTRY = _Registry()
        registry.TERRATORCH_FULL_MODEL_REGISTRY = _Registry()
        registry.TERRATORCH_DECODER_REGISTRY = _Registry()
        registry.TERRATORCH_NECK_REGISTRY = _Registry()
        sys.modules["terratorch.registry"] = registry
        if "torchvision" not in sys.modules:
            tv = _package("torchvision", None)
            transforms = _package("torchvision.transforms", None)
            functional = types.ModuleType("torchvision.transforms.functional")
            functional.normalize = lambda tensor, mean, std, inplace=False: tensor
            sys.modules["torchvision.transforms.functional"] = functional
            tv.transforms = transforms
            transforms.functional = functional
        importlib.import_module("terratorch.models.backbones.terramind")
    registry = sys.modules["terratorch.registry"]
    backbones = registry.TERRATORCH_BACKBONE_REGISTRY
    full = registry.TERRATORCH_FULL_MODEL_REGISTRY
    tokenizers = {k: v for k, v in full.items() if "tokenizer" in k}
    return backbones, full, tokenizers
