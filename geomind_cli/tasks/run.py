"""Run a task over a scene with the engine, then the finishing touches (quick-looks, summary)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from geomind_cli import engine
from geomind_cli.engine import OutputSpec, RunSummary, Scene, run_scene
from geomind_cli.tasks.base import Task


def check_outputs(outputs: list[OutputSpec], *, overwrite: bool) -> None:
    """Create the output folders, then fail before any model work if an output may not be written."""
    for spec in outputs:
        Path(spec.path).parent.mkdir(parents=True, exist_ok=True)
    engine.check_outputs(outputs, overwrite=overwrite)


def run_task(scene: Scene, task: Task, *, batch_size: int = 8, overlap: int | None = None, overwrite: bool = False,
             quiet: bool = False, preview: bool = False, summary_path: Path | None = None) -> RunSummary:
    check_outputs(task.outputs, overwrite=overwrite)
    options = {} if overlap is None else {"overlap": overlap}
    summary = run_scene(scene, task.tile_fn, task.outputs, batch_size=batch_size, overwrite=overwrite,
                        progress=not quiet, summary_path=summary_path, **options)
    if preview:
        from geomind_cli.preview import write_preview

        for spec in task.outputs:
            write_preview(Path(spec.path), spec.name)
    if not quiet:
        print(json.dumps(json.loads(summary.to_json())), file=sys.stderr)
    return summary
