"""``geomind segment``: a TerraTorch fine-tune of TerraMind (config + Lightning checkpoint) over whole scenes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geomind_cli.cli import options as o
from geomind_cli.tasks.options import InputOptions, RunOptions

Checkpoint = Annotated[Path, typer.Option("--checkpoint", help="Lightning checkpoint (.ckpt) from `terratorch fit`.")]
Config = Annotated[
    Optional[Path],
    typer.Option("--config", help="The TerraTorch YAML config the model was fine-tuned with (default: the settings "
                 "recorded in the checkpoint, when it records the data means/stds too)."),
]
Tim = Annotated[
    Optional[list[str]],
    typer.Option("--tim", help="TiM modalities (e.g. LULC): set them for a *_tim backbone, or check them."),
]
From = Annotated[Optional[list[str]], typer.Option("--from", help="Modalities of inputs that cannot be detected, in order.")]

EXAMPLES = o.examples(
    "geomind segment samples/sen1floods11/Spain_7370579_S2Hand.tif samples/sen1floods11/Spain_7370579_S1Hand.tif:S1GRD --config samples/terratorch/sen1floods11_tim.yaml --checkpoint best.ckpt -o flood.tif",
    "geomind segment scenes/*.tif --checkpoint best.ckpt --config flood.yaml -o maps/ --probabilities",
)


@o.run_options(exclude=("weights",))
@o.input_options()
def segment(
    scenes: o.Scenes,
    checkpoint: Checkpoint,
    config: Config = None,
    tim: Tim = None,
    from_: From = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output raster (default: <scene>_segmentation.tif); with several scenes, a folder.")] = None,
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Also write the blended class probabilities (<output>_probabilities.tif).")] = False,
    confidence: Annotated[bool, typer.Option("--confidence", help="Also write the top class probability (<output>_confidence.tif).")] = False,
    seed: o.Seed = 0,
    *,
    run: RunOptions,
    inputs: InputOptions,
) -> None:
    """Write a class map (with colour table and class names) or, for a regression fine-tune, a float raster.

    With several scenes, one map per scene in the `-o` folder; a re-run skips the maps already complete.
    """
    from geomind_cli.tasks.inputs import batch_output, group_scenes
    from geomind_cli.tasks.run import execute
    from geomind_cli.tasks.segment import SegmentOptions, finetune_scene, segment_task

    groups = group_scenes(scenes, modality=from_[0] if from_ and len(from_) == 1 else None, each=run.each)
    runtime = run.runtime()
    opts = SegmentOptions(tim=tuple(tim or ()), probabilities=probabilities, confidence=confidence, seed=seed)
    batch = len(groups) > 1

    def items():
        for group in groups:
            scene = finetune_scene(group.sources, from_, config, checkpoint, runtime, opts.tim, inputs=inputs)
            out = batch_output(output, len(groups), f"{group.stem}_segmentation.tif")
            yield scene, segment_task(list(scene.band_counts), config, checkpoint, opts, runtime, out,
                                      overwrite=run.task_overwrite(batch))

    execute(items(), run, batch=batch)
