"""``geomind tokenize``: TerraMind token ids of a scene, one pixel per 16 x 16 patch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geomind_cli.cli import options as o


def tokenize(
    scenes: o.Scenes,
    modality: Annotated[str, typer.Option("--modality", "-m", help="S2L2A, S1GRD, S1RTC, DEM, LULC or NDVI.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output raster (default: <scene>_<MOD>_tokens.tif).")] = None,
    device: o.Device = "auto",
    precision: o.Precision = "auto",
    batch_size: o.BatchSize = 8,
    overlap: o.Overlap = None,
    weights: o.Weights = None,
    overwrite: o.Overwrite = False,
    quiet: o.Quiet = False,
) -> None:
    """Write the token ids of one modality (uint16, transform scaled by 16).

    Example: `geomind tokenize dem.tif --modality DEM` then `geomind detokenize dem_DEM_tokens.tif --modality DEM`
    """
    from geomind_cli.models.modalities import get_modality
    from geomind_cli.tasks.inputs import open_inputs, output_stem
    from geomind_cli.tasks.run import run_task
    from geomind_cli.tasks.runtime import Runtime
    from geomind_cli.tasks.tokenize import tokenize_task

    name = get_modality(modality).name
    scene = open_inputs(scenes, [name] if len(scenes) == 1 and ":" not in scenes[0][2:] else None)
    out = output or Path(f"{output_stem(scenes)}_{name}_tokens.tif")
    runtime = Runtime.resolve(device=device, precision=precision, compile=False, weights=weights)
    task = tokenize_task(name, runtime, out, overwrite=overwrite)
    run_task(scene, task, batch_size=batch_size, overlap=overlap, overwrite=overwrite, quiet=quiet)
