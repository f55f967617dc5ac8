"""``geomind embed``: TerraMind patch embeddings of a scene as a georeferenced raster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geomind_cli.cli import options as o
from geomind_cli.tasks.options import InputOptions, RunOptions

EXAMPLES = o.examples(
    "geomind embed samples/terramind/282D_485L_3_3_S2L2A.tif samples/terramind/282D_485L_3_3_S1RTC.tif --model base -o emb.tif",
    'geomind embed samples/terramind/282D_485L_3_3_S2L2A.tif --dtype float16 -o emb.zarr   # xr.open_zarr(path, decode_coords="all")',
)


@o.run_options(exclude=("preview",))
@o.input_options()
def embed(
    scenes: o.Scenes,
    from_: Annotated[Optional[list[str]], typer.Option("--from", help="Modalities of inputs that cannot be detected, in order.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output: a .tif (COG) or a .zarr store (default: <scene>_embedding.tif).")] = None,
    model: o.Model = "base",
    layer: Annotated[int, typer.Option("--layer", help="Encoder layer (-1: last, layer-normed).")] = -1,
    merge: Annotated[str, typer.Option("--merge", help="How modalities are merged: mean, max or concat.")] = "mean",
    dtype: Annotated[str, typer.Option("--dtype", help="Output data type: float32 or float16 (half the size).")] = "float32",
    *,
    run: RunOptions,
    inputs: InputOptions,
) -> None:
    """Write one feature vector per 16 x 16 patch (one band per feature, transform scaled by 16).

    `-o emb.zarr` writes Zarr: one chunk holds every feature of a square of patches.
    """
    from geomind_cli.tasks.embed import EmbedOptions, embed_task
    from geomind_cli.tasks.inputs import batch_output, group_scenes, open_inputs
    from geomind_cli.tasks.run import execute

    groups = group_scenes(scenes, modality=from_[0] if from_ and len(from_) == 1 else None, each=run.each)
    runtime = run.runtime()
    opts = EmbedOptions(size=model, layer=layer, merge_method=merge, dtype=dtype)
    batch = len(groups) > 1

    def items():
        for group in groups:
            scene = open_inputs(group.sources, from_, inputs=inputs)
            out = batch_output(output, len(groups), f"{group.stem}_embedding.tif")
            yield scene, embed_task(list(scene.band_counts), opts, runtime, out, overwrite=run.task_overwrite(batch))

    execute(items(), run, batch=batch)
