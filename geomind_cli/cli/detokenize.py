"""``geomind detokenize``: reconstruct a modality from a token raster written by ``geomind tokenize``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geomind_cli.cli import options as o
from geomind_cli.tasks.options import RunOptions

EXAMPLES = o.examples(
    "geomind detokenize dem_tokens.tif --modality DEM -o dem_decoded.tif",
    "geomind detokenize tokens/*.tif --modality S1RTC -o decoded/   # one output per token raster",
)


@o.run_options(exclude=("compile", "each"))
def detokenize(
    tokens: Annotated[list[Path], typer.Argument(help="Token raster(s) from `geomind tokenize` (several: one scene each).", show_default=False)],
    modality: Annotated[str, typer.Option("--modality", "-m", help="S2L2A, S1GRD, S1RTC, DEM, LULC or NDVI.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output raster (default: <tokens>_decoded.tif).")] = None,
    timesteps: Annotated[int, typer.Option("--timesteps", min=1, help="Diffusion steps (not used for LULC).")] = 50,
    seed: o.Seed = 0,
    *,
    run: RunOptions,
) -> None:
    """Decode token ids back into the modality's raster at full resolution (physical units)."""
    from geomind_cli.facts.modalities import get_modality
    from geomind_cli.tasks.inputs import batch_output
    from geomind_cli.tasks.run import execute
    from geomind_cli.tasks.tokenize import detokenize_task, token_scene

    name = get_modality(modality).name
    runtime = run.runtime(compile=False)
    batch = len(tokens) > 1

    def items():
        for path in tokens:
            default = path.with_name(f"{path.stem}_decoded.tif")
            out = default if output is None else batch_output(output, len(tokens), default.name)
            task = detokenize_task(name, runtime, out, timesteps=timesteps, seed=seed,
                                   overwrite=run.task_overwrite(batch))
            yield token_scene(path, name), task

    execute(items(), run, batch=batch)
