"""``geomind classify``: a TerraTorch classification fine-tune of TerraMind, one label per tile position."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geomind_cli.cli import options as o
from geomind_cli.tasks.options import InputOptions, RunOptions
from geomind_cli.cli.segment import Checkpoint, Config, From, Tim

EXAMPLES = o.examples(
    "geomind classify samples/terramind/282D_485L_3_3_S2L2A.tif --config eurosat.yaml --checkpoint eurosat.ckpt -o classes.tif",
    "geomind classify scenes/*.tif --checkpoint eurosat.ckpt --config eurosat.yaml -o grids/ --confidence",
)


@o.run_options(exclude=("weights",))
@o.input_options()
def classify(
    scenes: o.Scenes,
    checkpoint: Checkpoint,
    config: Config = None,
    tim: Tim = None,
    from_: From = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output raster (default: <scene>_classes.tif); with several scenes, a folder.")] = None,
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Also write each tile's class probabilities (<output>_probabilities.tif).")] = False,
    confidence: Annotated[bool, typer.Option("--confidence", help="Also write each tile's top class probability (<output>_confidence.tif).")] = False,
    seed: o.Seed = 0,
    *,
    run: RunOptions,
    inputs: InputOptions,
) -> None:
    """Write a coarse class grid: each tile's label over the 16 px cells nearest its centre (transform scaled by 16)."""
    from geomind_cli.tasks.classify import classify_task
    from geomind_cli.tasks.inputs import batch_output, group_scenes
    from geomind_cli.tasks.run import execute
    from geomind_cli.tasks.segment import SegmentOptions, finetune_scene

    groups = group_scenes(scenes, modality=from_[0] if from_ and len(from_) == 1 else None, each=run.each)
    runtime = run.runtime()
    opts = SegmentOptions(tim=tuple(tim or ()), probabilities=probabilities, confidence=confidence, seed=seed)
    batch = len(groups) > 1

    def items():
        for group in groups:
            scene = finetune_scene(group.sources, from_, config, checkpoint, runtime, opts.tim, inputs=inputs)
            out = batch_output(output, len(groups), f"{group.stem}_classes.tif")
            yield scene, classify_task(list(scene.band_counts), config, checkpoint, opts, runtime, out,
                                       overwrite=run.task_overwrite(batch))

    execute(items(), run, batch=batch)
