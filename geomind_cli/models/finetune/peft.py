"""LoRA fine-tunes (TerraTorch's ``model_args.peft_config``): adapters merged into the plain weights at load time.

TerraTorch wraps the backbone with PEFT's ``get_peft_model``, so its checkpoint keys read
``encoder.base_model.model.<layer>.base_layer.weight`` plus ``<layer>.lora_A.default.weight`` [r, in] and
``<layer>.lora_B.default.weight`` [out, r] for each adapted linear layer. Merging gives the plain layout
(``encoder.<layer>.weight``) with ``W = W0 + s * B @ A``, where ``s = alpha / r`` (``alpha / sqrt(r)`` with
``use_rslora``), ``alpha`` being ``lora_alpha`` or its ``alpha_pattern`` entry and ``r`` the adapter's rank. The
network then runs at the plain model's cost. With ``replace_qkv``, TerraTorch first splits each fused ``qkv``
linear into ``q_linear``/``k_linear``/``v_linear`` (concatenated outputs); they are fused back after merging.

Adapters that do not merge into a linear layer are refused by name (DoRA, LoRA biases, embedding or conv
adapters, other PEFT methods).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from geomind_cli.errors import ConfigError, WeightsError

if TYPE_CHECKING:  # config parsing stays free of torch
    import torch

WRAPPED = "encoder.base_model.model."  # where PEFT's wrapper puts the backbone's own modules
ADAPTER = "default"  # PEFT's adapter name when none is given (TerraTorch gives none)
_LORA_PARTS = (".lora_A.", ".lora_B.", ".base_layer.")
_QKV_PARTS = ("q_linear", "k_linear", "v_linear")
# LoraConfig options that change nothing at inference once merged (training-only or structural defaults).
_INERT = {"r", "lora_alpha", "use_rslora", "alpha_pattern", "rank_pattern", "target_modules", "lora_dropout",
          "bias", "init_lora_weights", "task_type", "inference_mode", "fan_in_fan_out", "exclude_modules",
          "layers_to_transform", "layers_pattern", "modules_to_save"}


@dataclass(frozen=True)
class LoraSettings:
    """What merging needs from a TerraTorch ``peft_config``."""

    lora_alpha: float = 8.0
    use_rslora: bool = False
    alpha_pattern: dict = field(default_factory=dict)
    replace_qkv: str | None = None

    def scaling(self, module: str, rank: int) -> float:
        alpha = self.lora_alpha
        for pattern, value in self.alpha_pattern.items():  # PEFT: the first pattern that ends the module name
            if re.match(rf"(.*\.)?({pattern})$", module):
                alpha = value
                break
        return float(alpha) / (math.sqrt(rank) if self.use_rslora else rank)


def lora_settings(peft_config: Mapping, *, source: str) -> LoraSettings:
    """Check a ``peft_config`` ({method, replace_qkv, peft_config_kwargs}) and keep what merging needs."""
    if not isinstance(peft_config, Mapping):
        raise ConfigError(f"{source}: model_args.peft_config must be a mapping with method and peft_config_kwargs")
    method = str(peft_config.get("method", "")).upper()
    if method != "LORA":
        raise ConfigError(f"{source}: peft_config method {peft_config.get('method')!r} is not supported; geomind "
                          "merges LoRA adapters (method: LORA), the one TerraTorch tests")
    kwargs = dict(peft_config.get("peft_config_kwargs") or {})
    if kwargs.get("use_dora"):
        raise ConfigError(f"{source}: peft_config use_dora (DoRA) is not supported; geomind merges plain LoRA")
    if kwargs.get("lora_bias"):
        raise ConfigError(f"{source}: peft_config lora_bias is not supported; geomind merges bias-free LoRA")
    unknown = sorted(k for k in kwargs if k not in _INERT and kwargs[k] not in (None, False))
    if unknown:
        raise ConfigError(f"{source}: peft_config_kwargs {', '.join(unknown)} are not supported by geomind's LoRA "
                          "merge")
    return LoraSettings(lora_alpha=float(kwargs.get("lora_alpha", 8)), use_rslora=bool(kwargs.get("use_rslora")),
                        alpha_pattern=dict(kwargs.get("alpha_pattern") or {}),
                        replace_qkv=peft_config.get("replace_qkv"))


def _merge_adapters(state: dict[str, torch.Tensor], settings: LoraSettings, *, source: str) -> None:
    """In place: every ``<m>.base_layer.*`` + ``<m>.lora_{A,B}.default.weight`` becomes ``<m>.*`` merged."""
    for key in [k for k in state if k.endswith(".base_layer.weight")]:
        module = key[: -len(".base_layer.weight")]
        down = state.pop(f"{module}.lora_A.{ADAPTER}.weight", None)
        up = state.pop(f"{module}.lora_B.{ADAPTER}.weight", None)
        if down is None or up is None:
            raise WeightsError(f"{source}: LoRA layer {module} lacks its lora_A/lora_B weights")
        if down.ndim != 2 or up.ndim != 2:
            raise WeightsError(f"{source}: LoRA layer {module} is not a linear layer; only linear adapters merge")
        base = state.pop(key)
        relative = module[len(WRAPPED):] if module.startswith(WRAPPED) else module
        scale = settings.scaling(relative, down.shape[0])
        merged = base.float() + scale * (up.float() @ down.float())
        state[f"{module}.weight"] = merged.to(base.dtype)
        bias = state.pop(f"{module}.base_layer.bias", None)
        if bias is not None:
            state[f"{module}.bias"] = bias
    left = sorted(k for k in state if any(part in k for part in _LORA_PARTS) or ".lora_" in k)
    if left:
        raise WeightsError(f"{source}: adapter weights {', '.join(left[:3])} do not merge into a linear layer "
                           "(embedding or conv LoRA, or another adapter name); geomind merges linear LoRA only")


def _fuse_qkv(state: dict[str, torch.Tensor], suffix: str) -> None:
    """In place: TerraTorch's split ``<m>.{q,k,v}_linear.*`` back into the fused ``<m>.weight``/``bias``."""
    import torch

    for key in [k for k in state if k.endswith(f".{suffix}.q_linear.weight")]:
        module = key[: -len(".q_linear.weight")]
        for name in ("weight", "bias"):
            parts = [state.pop(f"{module}.{p}.{name}", None) for p in _QKV_PARTS]
            if all(p is not None for p in parts):
                state[f"{module}.{name}"] = torch.cat(parts, dim=0)


def merge_peft(state: Mapping[str, torch.Tensor], settings: LoraSettings, *, source: str) -> dict[str, torch.Tensor]:
    """A LoRA fine-tune's network state (``model.`` prefix stripped) -> the plain model's state, adapters merged."""
    if not any(k.startswith(WRAPPED) for k in state):
        raise WeightsError(f"{source} holds no PEFT-wrapped backbone ({WRAPPED}*) although the config has a "
                           "peft_config; give the checkpoint trained with that config")
    out = {}
    for key, value in state.items():  # modules_to_save: the trained copy replaces the original module
        if ".original_module." in key:
            continue
        out[key.replace(f".modules_to_save.{ADAPTER}.", ".")] = value
    _merge_adapters(out, settings, source=source)
    if settings.replace_qkv:
        _fuse_qkv(out, settings.replace_qkv)
    return {("encoder." + k[len(WRAPPED):] if k.startswith(WRAPPED) else k): v for k, v in out.items()}
