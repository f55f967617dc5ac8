"""``geomind tokenize``: TerraMind token ids of a scene, one pixel per 16 x 16 patch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geomind_cli.cli import options as o
from geomind_cli.tasks.options import InputOptions, RunOptions

EXAMPLES = o.examples(
    "geomind tokenize samples/terramind/282D_485L_3_3_DEM.tif --modality DEM -o dem_tokens.tif",
    "geomind tokenize samples/terramind/282D_485L_3_3_S1RTC.tif --modality S1RTC --json   # summary for scripts",
)


@o.run_options(exclude=("compile", "preview"))
@o.input_options()
def tokenize(
    scenes: o.Scenes,
    modality: Annotated[str, typer.Option("--modality", "-m", help="S2L2A, S1GRD, S1RTC, DEM, LULC or NDVI.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output raster (default: <scene>_<MOD>_tokens.tif).")] = None,
    *,
    run: RunOptions,
    inputs: InputOptions,
) -> None:
    """Write the token ids of one modality (uint16, transform scaled by 16)."""
    from geomind_cli.facts.modalities import get_modality
    from geomind_cli.tasks.inputs import batch_output, group_scenes, names_modality, open_inputs
    from geomind_cli.tasks.run import execute
    from geomind_cli.tasks.tokenize import tokenize_task

    name = get_modality(modality).name
    groups = group_scenes(scenes, modality=name, each=run.each)
    runtime = run.runtime(compile=False)
    batch = len(groups) > 1

    def items():
        for group in groups:
            sources = group.sources
            named = len(sources) > 1 or names_modality(sources[0])
            scene = open_inputs(sources, None if named else [name], inputs=inputs)
            out = batch_output(output, len(groups), f"{group.stem}_{name}_tokens.tif")
            yield scene, tokenize_task(name, runtime, out, overwrite=run.task_overwrite(batch))

    execute(items(), run, batch=batch)
