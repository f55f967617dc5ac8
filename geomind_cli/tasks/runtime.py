"""Where and how a model runs: device, precision, compilation, and which weights it gets.

Speed settings live here so that every task gets them from ``Runtime.prepare``: all usable cores on the CPU;
TF32 matmuls and cuDNN autotuning on CUDA; ``torch.compile`` of the hot regions (each transformer block, each
diffusion UNet) with static shapes, its artefacts cached under the user cache between runs; channels_last UNets on
CUDA.
"""

from __future__ import annotations

import contextlib
import logging
import os
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
    cuda_graphs: bool = False  # compiled UNets replay CUDA graphs (torch.compile mode "reduce-overhead")

    @classmethod
    def resolve(cls, *, device: str = "auto", precision: Precision = "auto", compile: bool | None = None,
                weights: str | None = None, cuda_graphs: bool = False) -> Runtime:
        dev = resolve_device(device)
        configure_backend(dev)
        return cls(
            device=dev,
            dtype=resolve_precision(precision, dev),
            compile=dev.type == "cuda" if compile is None else compile,
            weights=_check_weights(weights),
            cuda_graphs=cuda_graphs and dev.type == "cuda",
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
        """Move to the device in eval mode; on CUDA, UNets go channels_last; with ``compile``, hot regions compile.

        Compilation is regional and in place (``nn.Module.compile``): every transformer block and every diffusion
        UNet, not the whole model, so the Python sampling loops around them stay eager and identical blocks share
        one compiled graph. The module keeps its type and attributes.
        """
        module = module.to(self.device).eval()
        unets, blocks = _hot_regions(module)
        if self.device.type == "cuda":
            for unet in unets:
                unet.use_channels_last()
        if self.compile:
            configure_compile_cache()
            for block in blocks:
                block.compile(dynamic=False)
            mode = "reduce-overhead" if self.cuda_graphs else None
            for unet in unets:
                unet.compile(dynamic=False, mode=mode)
        return module


def _hot_regions(module: torch.nn.Module) -> tuple[list, list]:
    """(diffusion UNets, transformer blocks) inside ``module``: where nearly all of its FLOPs are."""
    from geomind_cli.models.layers import Block, DecoderBlock
    from geomind_cli.models.tokenizers.unet import PatchedUNet
    from geomind_cli.models.tokenizers.vit import Block as TokenizerBlock

    unets = [m for m in module.modules() if isinstance(m, PatchedUNet)]
    blocks = [m for m in module.modules() if isinstance(m, (Block, DecoderBlock, TokenizerBlock))]
    return unets, blocks


def usable_cores() -> int:
    """CPUs this process may run on (affinity), capped by a cgroup CPU quota when one is set (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def configure_backend(device: torch.device) -> None:
    """Process-wide speed settings for ``device``; explicit user settings (OMP_NUM_THREADS) win."""
    if device.type == "cpu":
        if "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() < usable_cores():
            torch.set_num_threads(usable_cores())
    elif device.type == "cuda":
        # Fixed tile shapes: let cuDNN pick its fastest kernels once; TF32 for any float32 matmul left.
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def compile_cache_dir() -> Path:
    """Where compiled artefacts persist: $GEOMIND_CACHE_DIR, else $XDG_CACHE_HOME/geomind, else ~/.cache/geomind."""
    root = os.environ.get("GEOMIND_CACHE_DIR")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "geomind"
    return Path(root) / "torchinductor"


def configure_compile_cache() -> None:
    """Point TorchInductor's on-disk caches (FX graphs, kernels, autotuning) at our cache, unless the user did.

    A second run of the same command and shapes then loads its kernels instead of compiling them again.
    """
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        path = compile_cache_dir()
        path.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)


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
