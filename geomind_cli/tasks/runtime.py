"""Where and how a model runs: device, precision, compilation, and which weights it gets."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from geomind_cli.errors import DeviceError, InputError

log = logging.getLogger("geomind")

Precision = Literal["auto", "bf16", "fp16", "fp32"]
RANDOM_WEIGHTS_WARNING = (
    "RANDOM WEIGHTS: outputs are noise, for smoke tests and benchmarks only. Use the official weights "
    "(default) or --weights PATH for real results."
)


@dataclass(frozen=True)
class Runtime:
    """Resolved execution settings shared by every task."""

    device: torch.device
    dtype: torch.dtype  # autocast dtype; float32 means no autocast
    compile: bool = False
    weights: str | None = None  # None: official weights; "random": random init (loud); else a local file

    @classmethod
    def resolve(cls, *, device: str = "auto", precision: Precision = "auto", compile: bool | None = None,
                weights: str | None = None) -> Runtime:
        dev = resolve_device(device)
        return cls(
            device=dev,
            dtype=resolve_precision(precision, dev),
            compile=dev.type == "cuda" if compile is None else compile,
            weights=_check_weights(weights),
        )

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"

    def model_kwargs(self) -> dict:
        """``pretrained``/``weights`` arguments for build_model."""
        if self.weights is None:
            return {"pretrained": True}
        if self.random_weights:
            log.warning(RANDOM_WEIGHTS_WARNING)
            return {"pretrained": False}
        return {"pretrained": False, "weights": self.weights}

    def autocast(self):
        """Mixed precision context for the model's forward; a no-op in float32."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move to the device in eval mode."""
        return module.to(self.device).eval()

    def maybe_compile(self, fn):
        """torch.compile a hot module or function when asked; static batch shapes keep it to one compilation."""
        if not self.compile:
            return fn
        return torch.compile(fn, dynamic=False)


def resolve_device(name: str) -> torch.device:
    name = name.lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {name!r}; use auto, cpu or cuda")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    precision = precision.lower()
    if precision == "auto":
        # bf16 on GPUs that support it; the CPU runs float32, where bf16 autocast is rarely faster.
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else torch.float32
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if precision not in table:
        raise InputError(f"unknown precision {precision!r}; use auto, bf16, fp16 or fp32")
    if precision == "fp16" and device.type == "cpu":
        raise DeviceError("--precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
    return table[precision]


def _check_weights(weights: str | None) -> str | None:
    if weights is None or weights == "random":
        return weights
    if not Path(weights).is_file():
        raise InputError(f"--weights {weights}: no such file; give a .pt or .safetensors checkpoint, or omit it")
    return weights
