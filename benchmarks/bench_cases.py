"""The benchmarked commands: for each, geomind's model and task, and the reference's model and forward.

Every model has random weights (timing only). Model-only calls take standardized device tensors; the tasks read the
scene in physical units and standardize themselves, as the CLI does. ``segment`` is a stand-in: geomind's segment
task needs a fine-tuning config and checkpoint, which a timing run does not have, so both sides run the TerraMind
backbone plus the same small UNet-like convolutional head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench_reference import ReferenceOutput

TILE = 224
PATCH = 16
SEGMENT_CLASSES = ("background", "water")


@dataclass(frozen=True)
class Command:
    """One benchmarked command. ``timesteps`` only for diffusion outputs (S1GRD)."""

    name: str
    kind: str  # embed | tokenize | tim | generate | segment
    modality: str  # input modality (a file of the synthetic scene)
    target: str | None = None
    timesteps: int | None = None
    reference_output: ReferenceOutput = field(default_factory=lambda: ReferenceOutput("grid"))


def commands(*, steps: tuple[int, ...]) -> dict[str, Command]:
    out = {
        "embed": Command("embed", "embed", "S2L2A"),
        "tokenize": Command("tokenize", "tokenize", "DEM"),
        "tim": Command("tim", "tim", "S2L2A", target="LULC"),
        "generate_lulc": Command("generate_lulc", "generate", "S2L2A", target="LULC",
                                 reference_output=ReferenceOutput("classes")),
    }
    for n in steps:
        out[f"generate_s1grd_{n}"] = Command(f"generate_s1grd_{n}", "generate", "S2L2A", target="S1GRD", timesteps=n,
                                             reference_output=ReferenceOutput("continuous"))
    out["segment"] = Command("segment", "segment", "S2L2A", reference_output=ReferenceOutput("classes"))
    return out


class ConvHead(nn.Module):
    """Stand-in segmentation head: patch features [B, D, h, w] -> class logits [B, K, 16h, 16w].

    A 3x3 conv, then four (x2 upsample, 3x3 conv, ReLU) stages 256 -> 128 -> 64 -> 32 -> 16, then a 1x1 conv; about
    the size of a light UNet decoder without skips.
    """

    def __init__(self, dim: int, classes: int = len(SEGMENT_CLASSES)):
        super().__init__()
        widths = (256, 128, 64, 32, 16)
        layers: list[nn.Module] = [nn.Conv2d(dim, widths[0], 3, padding=1), nn.ReLU()]
        for cin, cout in zip(widths, widths[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(widths[-1], classes, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """[B, N, D] patch tokens of a square tile -> [B, D, sqrt(N), sqrt(N)]."""
    b, n, d = tokens.shape
    side = int(round(n**0.5))
    return tokens.transpose(1, 2).reshape(b, d, side, side)


# ---------------------------------------------------------------- geomind


@dataclass
class Ours:
    """geomind's side: ``call(batch)`` -> a zero-argument model call on standardized device tensors."""

    call: Callable[[int], Callable[[], object]]
    modules: list[nn.Module]


def our_model(cmd: Command, runtime, size: str) -> Ours:
    from geomind_cli.models import build_model

    def inputs(batch: int) -> torch.Tensor:
        channels = 1 if cmd.modality == "DEM" else 12
        return torch.randn(batch, channels, TILE, TILE, device=runtime.device)

    def wrap(fn):
        def call(batch: int):
            x = inputs(batch)

            def run():
                with torch.inference_mode(), runtime.autocast():
                    return fn(x)

            return run

        return call

    if cmd.kind == "tokenize":
        tokenizer = runtime.prepare(build_model("terramind_v1_tokenizer_dem"))
        return Ours(wrap(tokenizer.encode), [tokenizer])
    if cmd.kind == "generate":
        model = runtime.prepare(build_model(f"terramind_v1_{size}_generate", modalities=["S2L2A"],
                                            output_modalities=[cmd.target], temps=1.0, top_p=0.8,
                                            timesteps=cmd.timesteps or 50))
        return Ours(wrap(lambda x: model({"S2L2A": x})), [model])
    if cmd.kind == "tim":
        model = runtime.prepare(build_model(f"terramind_v1_{size}_tim", modalities=["S2L2A"], tim_modalities=["LULC"]))
        return Ours(wrap(lambda x: model({"S2L2A": x})[-1]), [model])
    model = runtime.prepare(build_model(f"terramind_v1_{size}", modalities=["S2L2A"]))
    if cmd.kind == "segment":
        head = runtime.prepare(ConvHead(model.out_channels[-1]))
        return Ours(wrap(lambda x: head(tokens_to_grid(model({"S2L2A": x})[-1]))), [model, head])
    return Ours(wrap(lambda x: model({"S2L2A": x})[-1]), [model])


def our_task(cmd: Command, runtime, size: str, out_dir: Path):
    """The geomind Task the CLI would run for this command (TiM and the segment stand-in: built here alike)."""
    from geomind_cli.models.normalize import standardize
    from geomind_cli.tasks.base import Task, build, model_name, to_numpy, to_tensors

    if cmd.kind == "embed":
        from geomind_cli.tasks.embed import EmbedOptions, embed_task

        return embed_task(["S2L2A"], EmbedOptions(size=size), runtime, out_dir / "embed.tif", overwrite=True)
    if cmd.kind == "tokenize":
        from geomind_cli.tasks.tokenize import tokenize_task

        return tokenize_task("DEM", runtime, out_dir / "tokens.tif", overwrite=True)
    if cmd.kind == "generate":
        from geomind_cli.tasks.generate import GenerateOptions, generate_task

        options = GenerateOptions(targets=(cmd.target,), size=size, timesteps=cmd.timesteps or 50)
        return generate_task(["S2L2A"], options, runtime, out_dir, "scene", overwrite=True)
    from geomind_cli.engine import OutputSpec

    if cmd.kind == "tim":
        model = build(model_name(size, "_tim"), runtime, modalities=["S2L2A"], tim_modalities=["LULC"])
        head = None
        dim = model.out_channels[-1]
        spec = OutputSpec("embedding", out_dir / "tim.tif", "grid", [f"feature_{i}" for i in range(dim)], "float32",
                          nodata=float("nan"))
    else:
        model = build(model_name(size), runtime, modalities=["S2L2A"])
        head = runtime.prepare(ConvHead(model.out_channels[-1]))
        spec = OutputSpec("segment", out_dir / "segment.tif", "classes", ["segment"], "uint8", nodata=255,
                          class_names=list(SEGMENT_CLASSES))

    def tile_fn(batch) -> dict[str, np.ndarray]:
        x = {name: standardize(name, t) for name, t in to_tensors(batch.arrays, runtime).items()}
        with torch.inference_mode(), runtime.autocast():
            grid = tokens_to_grid(model(x)[-1])
            if head is None:
                return {spec.name: to_numpy(grid)}
            return {spec.name: to_numpy(torch.softmax(head(grid).float(), dim=1))}

    return Task(outputs=[spec], tile_fn=tile_fn, description=cmd.name)


# ---------------------------------------------------------------- reference


@dataclass
class Reference:
    """The reference's side: ``forward(x [B,C,T,T] standardized, on device) -> [B,K,T,T]`` per-pixel output."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    modules: list[nn.Module]


def reference_model(cmd: Command, device: torch.device, size: str) -> Reference:
    from bench_reference import load_reference

    backbones, full, tokenizers = load_reference()

    def pixels(grid: torch.Tensor) -> torch.Tensor:
        # tiled_inference blends per-pixel maps only: a per-patch output is repeated over its 16 x 16 pixels.
        return grid.repeat_interleave(PATCH, dim=-2).repeat_interleave(PATCH, dim=-1)

    if cmd.kind == "tokenize":
        tokenizer = tokenizers["terramind_v1_tokenizer_dem"](pretrained=False).eval().to(device)
        return Reference(lambda x: pixels(tokenizer.tokenize(x)[:, None].float()), [tokenizer])
    if cmd.kind == "generate":
        model = full[f"terramind_v1_{size}_generate"](
            pretrained=False, modalities=["S2L2A"], output_modalities=[cmd.target], temps=1.0, top_p=0.8,
            timesteps=cmd.timesteps or 50).eval().to(device)
        return Reference(lambda x: model({"S2L2A": x})[cmd.target].float(), [model])
    if cmd.kind == "tim":
        model = backbones[f"terramind_v1_{size}_tim"](pretrained=False, modalities=["S2L2A"],
                                                      tim_modalities=["LULC"]).eval().to(device)
        return Reference(lambda x: pixels(tokens_to_grid(model({"S2L2A": x})[-1])), [model])
    model = backbones[f"terramind_v1_{size}"](pretrained=False, modalities=["S2L2A"]).eval().to(device)
    if cmd.kind == "segment":
        head = ConvHead(model.out_channels[-1]).eval().to(device)
        return Reference(lambda x: head(tokens_to_grid(model({"S2L2A": x})[-1])), [model, head])
    return Reference(lambda x: pixels(tokens_to_grid(model({"S2L2A": x})[-1])), [model])
