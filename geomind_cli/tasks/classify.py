"""Scene classification with a TerraTorch ``ClassificationTask`` fine-tune: one label per tile position.

A classification model gives one label per image. Run over a scene, each tile is one image, so the result is a
coarse class grid. It is written on the engine's 16 px grid (kind ``grid``, transform scaled by 16): every 16 px
cell takes the label of the tile whose centre is nearest, so each tile owns a block of about one tile stride
(tile size minus overlap) around its centre. The raster is thus georeferenced like the scene, one block per tile
position, with no blending of labels; probabilities (optional) are the winning tile's softmax.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from geomind_cli.engine import OutputSpec, TileBatch
from geomind_cli.errors import InputError
from geomind_cli.tasks.base import Task, to_numpy
from geomind_cli.tasks.run import check_outputs
from geomind_cli.tasks.runtime import Runtime
from geomind_cli.tasks.segment import (SegmentOptions, check_inputs, class_dtype, class_names, class_palette,
                                       finetune_handle, run_finetuned)

CELL = 16


def output_specs(names: list[str], out_path: Path, options: SegmentOptions) -> list[OutputSpec]:
    out_path = Path(out_path)
    # One band of labels; the names go to the CLASS_NAMES tag and the colour table, as for segment's class maps.
    specs = [OutputSpec(name="classes", path=out_path, kind="grid", bands=["class"], dtype=class_dtype(len(names)),
                        class_names=list(names), colormap=class_palette(len(names)))]
    def side(what: str) -> Path:  # no str.format on a user's path: it may hold braces
        return out_path.with_name(f"{out_path.stem}_{what}{out_path.suffix or '.tif'}")

    if options.probabilities:
        specs.append(OutputSpec(name="probabilities", path=side("probabilities"), kind="grid",
                                bands=list(names), dtype="float32", nodata=math.nan))
    if options.confidence:
        specs.append(OutputSpec(name="confidence", path=side("confidence"), kind="grid",
                                bands=["confidence"], dtype="float32", nodata=math.nan))
    return specs


def classify_task(inputs: list[str], config: str | Path | None, checkpoint: str | Path, options: SegmentOptions,
                  runtime: Runtime, out_path: Path, *, overwrite: bool = False) -> Task:
    """Tile function: scene tiles -> per tile class [B, 1, T/16, T/16] (and probabilities [B, K, T/16, T/16]).

    ``config`` and ``overwrite`` as in :func:`geomind_cli.tasks.segment.segment_task`.
    """
    handle = finetune_handle(config, checkpoint, runtime, options.tim)
    cfg = handle.settings()
    if cfg.task != "classification":
        raise InputError(f"this checkpoint is a {cfg.task} model (a value per pixel); use `geomind segment`")
    check_inputs(cfg, inputs)
    names = class_names(cfg)
    outputs = output_specs(names, out_path, options)
    check_outputs(outputs, overwrite=overwrite)
    handle()  # build now: a bad checkpoint fails before any tile is read

    def tile_fn(batch: TileBatch) -> dict[str, np.ndarray]:
        probs = torch.softmax(run_finetuned(handle, cfg, batch, options.seed, runtime), dim=1)  # [B, K]
        cells = next(iter(batch.arrays.values())).shape[-1] // CELL
        grid = probs[:, :, None, None].expand(-1, -1, cells, cells)
        result = {"classes": to_numpy(probs.argmax(dim=1)[:, None, None, None].expand(-1, 1, cells, cells))}
        if options.probabilities:
            result["probabilities"] = to_numpy(grid)
        if options.confidence:
            result["confidence"] = to_numpy(grid.max(dim=1, keepdim=True).values)
        return result

    return Task(outputs=outputs, tile_fn=tile_fn,
                description=f"classify with {cfg.backbone} on {', '.join(cfg.modalities)}",
                made_by={"command": "classify", "inputs": list(inputs), "config": config, "checkpoint": checkpoint,
                         "options": options, "runtime": runtime})
