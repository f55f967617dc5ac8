"""``geomind classify``: a TerraTorch classification fine-tune of TerraMind, one label per tile position."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geomind_cli.cli import options as o
from geomind_cli.cli.segment import Checkpoint, Config, From, Tim


def classify(
    scenes: o.Scenes,
    checkpoint: Checkpoint,
    config: Config,
    tim: Tim = None,
    from_: From = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output raster (default: <scene>_classes.tif).")] = None,
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Also write each tile's class probabilities (<output>_probabilities.tif).")] = False,
    confidence: Annotated[bool, typer.Option("--confidence", help="Also write each tile's top class probability (<output>_confidence.tif).")] = False,
    seed: o.Seed = 0,
    device: o.Device = "auto",
    precision: o.Precision = "auto",
    batch_size: o.BatchSize = 8,
    compile: o.Compile = None,
    overlap: o.Overlap = None,
    overwrite: o.Overwrite = False,
    quiet: o.Quiet = False,
    preview: o.Preview = False,
    scheduler: o.Scheduler = None,
    cluster: o.Cluster = None,
    workers: o.Workers = None,
) -> None:
    """Write a coarse class grid: each tile's label over the 16 px cells nearest its centre (transform scaled by 16).

    Example: `geomind classify s2.tif --checkpoint eurosat.ckpt --config eurosat.yaml -o classes.tif`
    """
    from geomind_cli.tasks.classify import classify_task
    from geomind_cli.tasks.inputs import open_inputs, output_stem
    from geomind_cli.tasks.run import run_task
    from geomind_cli.tasks.runtime import Runtime
    from geomind_cli.tasks.segment import SegmentOptions

    scene = open_inputs(scenes, from_)
    out = output or Path(f"{output_stem(scenes)}_classes.tif")
    runtime = Runtime.resolve(device=device, precision=precision, compile=compile)
    opts = SegmentOptions(tim=tuple(tim or ()), probabilities=probabilities, confidence=confidence, seed=seed)
    task = classify_task(list(scene.band_counts), config, checkpoint, opts, runtime, out, overwrite=overwrite)
    run_task(scene, task, batch_size=batch_size, overlap=overlap, overwrite=overwrite, quiet=quiet, preview=preview,
             scheduler=scheduler, cluster=cluster, workers=workers)
