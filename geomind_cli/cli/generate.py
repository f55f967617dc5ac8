"""``geomind generate``: any-to-any generation of missing modalities over a whole scene (or many)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geomind_cli.cli import options as o
from geomind_cli.tasks.options import InputOptions, RunOptions

EXAMPLES = o.examples(
    "geomind generate samples/terramind/282D_485L_3_3_S2L2A.tif --to S1GRD LULC -o out/ --preview",
    "geomind generate samples/sen1floods11/Spain_7370579_S2Hand.tif samples/sen1floods11/Spain_7370579_S1Hand.tif:S1GRD --to LULC -o out/",
    "geomind generate scenes/*.tif --to LULC -o out/ --cluster local   # many scenes; a re-run resumes",
)


@o.run_options()
@o.input_options()
def generate(
    scenes: o.Scenes,
    to: Annotated[list[str], typer.Option("--to", help="Modalities to generate: S2L2A S1GRD S1RTC DEM NDVI LULC.")],
    from_: Annotated[Optional[list[str]], typer.Option("--from", help="Modalities of inputs that cannot be detected, in order.")] = None,
    output_dir: o.OutputDir = Path("."),
    model: o.Model = "base",
    timesteps: Annotated[int, typer.Option("--timesteps", min=1, help="Diffusion steps for S2/S1/DEM/NDVI.")] = 50,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Token sampling temperature (0: greedy).")] = 1.0,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling threshold.")] = 0.8,
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Keep the k most likely tokens (0: off).")] = 0,
    seed: o.Seed = 0,
    noise: Annotated[str, typer.Option("--noise", help="world: noise keyed by place (seamless); tile: per tile.")] = "world",
    *,
    run: RunOptions,
    inputs: InputOptions,
) -> None:
    """Generate missing modalities (one COG each, physical units) from the input scene.

    With several scenes (`scenes/*.tif`), one set of outputs per scene; a re-run skips the outputs already complete.
    """
    from geomind_cli.errors import InputError
    from geomind_cli.tasks.generate import GenerateOptions, generate_task
    from geomind_cli.tasks.inputs import group_scenes, names_modality, open_inputs, split_targets
    from geomind_cli.tasks.run import execute

    scenes, to = split_targets(scenes, to)
    if noise not in ("world", "tile"):
        raise InputError(f"--noise {noise}: use world or tile")
    runtime = run.runtime()
    opts = GenerateOptions(targets=tuple(to), size=model, timesteps=timesteps, temperature=temperature, top_p=top_p,
                           top_k=top_k, seed=seed, noise=noise)
    groups = group_scenes(scenes, modality=from_[0] if from_ and len(from_) == 1 else None, each=run.each)
    batch = len(groups) > 1

    def items():
        for group in groups:
            # In batch mode --from names the modality of every scene, unless an input names its own.
            explicit = batch and names_modality(group.sources[0])
            scene = open_inputs(group.sources, None if explicit else from_, inputs=inputs)
            task = generate_task(list(scene.band_counts), opts, runtime, output_dir, group.stem,
                                 overwrite=run.task_overwrite(batch))
            yield scene, task

    execute(items(), run, batch=batch)
