"""Run a task over a scene (or many) with the engine, in this process or on a Dask cluster; then the finishing
touches (quick-looks, summary).

Resume: with ``resume=True`` an output whose files are already complete (:func:`geomind_cli.engine.resume.is_complete`)
is left alone and dropped from the run, and a scene with nothing left to write is skipped; hidden staging files left
by a killed run are removed first. Batch mode (:func:`run_batch`) resumes by default, so re-running an interrupted
batch command finishes what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import shutil
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from geomind_cli import engine
from geomind_cli.engine import OutputSpec, RunSummary, Scene, run_scene
from geomind_cli.engine.resume import is_complete, leftovers, remove
from geomind_cli.tasks.base import Task, release_models


def check_outputs(outputs: list[OutputSpec], *, overwrite: bool) -> None:
    """Create the output folders, then fail before any model work if an output may not be written."""
    for spec in outputs:
        Path(spec.path).parent.mkdir(parents=True, exist_ok=True)
    engine.check_outputs(outputs, overwrite=overwrite)


def pending_outputs(scene: Scene, task: Task, *, resume: bool, overwrite: bool) -> Task | None:
    """The task restricted to the outputs still to write (None if none), checked writable.

    With ``resume`` (and not ``overwrite``), complete outputs are dropped and stale staging files of the others removed.
    """
    outputs = list(task.outputs)
    if resume and not overwrite:
        for spec in outputs:
            Path(spec.path).parent.mkdir(parents=True, exist_ok=True)
        outputs = [spec for spec in outputs if not is_complete(spec, scene.grid)]
        for spec in outputs:
            for stale in leftovers(spec):
                remove(stale)
    if not outputs:
        return None
    check_outputs(outputs, overwrite=overwrite)
    return dataclasses.replace(task, outputs=outputs)


def _engine_options(batch_size: int, overlap: int | None, overwrite: bool) -> dict:
    options = {"batch_size": batch_size, "overwrite": overwrite}
    if overlap is not None:
        options["overlap"] = overlap
    return options


def _finish(task: Task, summary: RunSummary, *, quiet: bool, preview: bool) -> RunSummary:
    if preview:
        from geomind_cli.preview import write_preview

        for spec in task.outputs:
            write_preview(Path(spec.path), spec.name)
    if not quiet:
        print(json.dumps(json.loads(summary.to_json())), file=sys.stderr)
    return summary


def _skipped(task: Task, quiet: bool) -> None:
    if not quiet:
        names = ", ".join(str(spec.path) for spec in task.outputs)
        print(f"geomind: skipped (already complete): {names}", file=sys.stderr)


def connect(*, scheduler: str | None = None, cluster: str | None = None, workers: int | None = None):
    """Context manager yielding a Dask client for the ``--scheduler``/``--cluster``/``--workers`` options, or None."""
    if workers is not None and not cluster:
        from geomind_cli.errors import ConfigError

        raise ConfigError("--workers sizes the cluster started by --cluster local; add --cluster local.")
    if not (scheduler or cluster):  # dask.distributed is imported only when a cluster is asked for
        return contextlib.nullcontext(None)
    from geomind_cli.engine.cluster import ClusterOptions, open_client

    return open_client(ClusterOptions(scheduler=scheduler, cluster=cluster, workers=workers))


def run_task(scene: Scene, task: Task, *, batch_size: int = 8, overlap: int | None = None, overwrite: bool = False,
             quiet: bool = False, preview: bool = False, summary_path: Path | None = None, client=None,
             resume: bool = False, rows_per_block: int | None = None, scheduler: str | None = None,
             cluster: str | None = None, workers: int | None = None) -> RunSummary | None:
    """Run ``task`` over ``scene``: on a Dask cluster (``client``, or one :func:`connect` opens for ``scheduler`` /
    ``cluster`` / ``workers``), else in this process. Returns None when ``resume`` found every output complete."""
    todo = pending_outputs(scene, task, resume=resume, overwrite=overwrite)
    if todo is None:
        _skipped(task, quiet)
        return None
    if client is None and (scheduler or cluster):
        with connect(scheduler=scheduler, cluster=cluster, workers=workers) as opened:
            return run_task(scene, todo, batch_size=batch_size, overlap=overlap, overwrite=overwrite, quiet=quiet,
                            preview=preview, summary_path=summary_path, client=opened, rows_per_block=rows_per_block)
    options = _engine_options(batch_size, overlap, overwrite)
    if client is None:
        summary = run_scene(scene, todo.tile_fn, todo.outputs, progress=not quiet, summary_path=summary_path,
                            **options)
    else:
        from geomind_cli.engine.distributed import run_scene_distributed

        release_models()  # built here only to check the weights early; the workers hold the replicas
        summary = run_scene_distributed(scene, todo.tile_fn, todo.outputs, client=client, progress=not quiet,
                                        summary_path=summary_path, rows_per_block=rows_per_block, **options)
    return _finish(todo, summary, quiet=quiet, preview=preview)


def run_batch(items: Iterable[tuple[Scene, Task]], *, batch_size: int = 8, overlap: int | None = None,
              overwrite: bool = False, quiet: bool = False, preview: bool = False, client=None, resume: bool = True,
              rows_per_block: int | None = None, scenes_in_flight: int | None = None) -> list[RunSummary | None]:
    """Run one task per scene, resuming by default. ``items`` may be a generator (scenes are opened lazily).

    Without a client, scenes run one after the other in this process. With one, the blocks of up to
    ``scenes_in_flight`` scenes (default: twice the workers) are queued on the cluster at once, so small scenes run
    in parallel, while the client writes the COGs of the oldest scene.
    """
    summaries: list[RunSummary | None] = []
    if client is None:
        for scene, task in items:
            with scene:
                summaries.append(run_task(scene, task, batch_size=batch_size, overlap=overlap, overwrite=overwrite,
                                          quiet=quiet, preview=preview, resume=resume))
        return summaries

    from geomind_cli.engine.distributed import _workers, assemble, submit_scene

    window = scenes_in_flight or 2 * _workers(client)
    options = _engine_options(batch_size, overlap, overwrite)
    queue: deque = deque()

    def finish_oldest():
        index, scene, todo, pending = queue.popleft()
        try:
            summaries[index] = _finish(todo, assemble(pending, batch_size=batch_size), quiet=quiet, preview=preview)
        finally:
            scene.close()

    try:
        for scene, task in items:
            summaries.append(None)
            todo = pending_outputs(scene, task, resume=resume, overwrite=overwrite)
            if todo is None:
                _skipped(task, quiet)
                scene.close()
                continue
            pending = submit_scene(client, scene, todo.tile_fn, todo.outputs, rows_per_block=rows_per_block,
                                   **options)
            queue.append((len(summaries) - 1, scene, todo, pending))
            while len(queue) >= window:
                finish_oldest()
        while queue:
            finish_oldest()
    finally:
        for _, scene, _, pending in queue:  # an error: drop what was queued, leave no staging behind
            for future in pending.futures:
                future.cancel()
            shutil.rmtree(pending.staging, ignore_errors=True)
            scene.close()
    return summaries


def execute(items: Iterable[tuple[Scene, Task]], *, batch: bool, batch_size: int = 8, overlap: int | None = None,
            overwrite: bool = False, quiet: bool = False, preview: bool = False, resume: bool = False,
            scheduler: str | None = None, cluster: str | None = None, workers: int | None = None,
            summary_path: Path | None = None) -> list[RunSummary | None]:
    """What every command does with its (scene, task) pairs: connect to the cluster if asked, then one scene
    (:func:`run_task`) or a batch (:func:`run_batch`, which always resumes)."""
    with connect(scheduler=scheduler, cluster=cluster, workers=workers) as client:
        if batch:
            return run_batch(items, batch_size=batch_size, overlap=overlap, overwrite=overwrite, quiet=quiet,
                             preview=preview, client=client, resume=True)
        (scene, task), = items
        with scene:
            return [run_task(scene, task, batch_size=batch_size, overlap=overlap, overwrite=overwrite, quiet=quiet,
                             preview=preview, client=client, resume=resume, summary_path=summary_path)]
