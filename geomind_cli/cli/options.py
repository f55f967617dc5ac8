"""Options shared by several commands, declared once (typer ``Annotated`` aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Scenes = Annotated[
    list[str],
    typer.Argument(
        help="Input rasters: one file per modality (or per band), matched to modalities by band count and band "
        "descriptions, or explicitly as FILE:MODALITY (e.g. s1.tif:S1GRD).",
        show_default=False,
    ),
]
OutputDir = Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for the outputs.")]
Model = Annotated[str, typer.Option("--model", help="TerraMind size: tiny, small, base or large.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
Precision = Annotated[str, typer.Option("--precision", help="auto, bf16, fp16 or fp32 (auto: bf16 on GPU, fp32 on CPU).")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Tiles per model call.")]
Compile = Annotated[
    Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the model (default: on for CUDA).")
]
Overlap = Annotated[
    Optional[int], typer.Option("--overlap", min=0, help="Tile overlap in pixels, a multiple of 16 (default: engine's).")
]
Weights = Annotated[
    Optional[str],
    typer.Option(
        "--weights",
        help="Checkpoint file (.pt/.safetensors) for the TerraMind model, or 'random' (smoke tests and benchmarks "
        "only). Default: the official weights through the Hugging Face cache.",
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")]
Preview = Annotated[bool, typer.Option("--preview", help="Write a PNG quick-look next to each output.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same output.")]
Scheduler = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="Run on an existing Dask cluster: scheduler address (tcp://host:8786) or "
                 "scheduler file (.json). Workers must see the inputs and the output folder."),
]
Cluster = Annotated[
    Optional[str],
    typer.Option("--cluster", help="'local': start a Dask cluster here, one worker per GPU (or per group of CPU "
                 "cores; see --workers)."),
]
Workers = Annotated[Optional[int], typer.Option("--workers", min=1, help="Workers of --cluster local.")]
Each = Annotated[
    Optional[bool],
    typer.Option("--each/--together", help="Treat every input as its own scene (batch) / all inputs as one scene. "
                 "Default: several inputs of one modality are separate scenes, others one scene."),
]
Resume = Annotated[
    bool,
    typer.Option("--resume", help="Skip outputs that are already complete (always on with several scenes)."),
]
