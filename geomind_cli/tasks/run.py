"""Run a task over a scene (or many) with the engine, in this process or on a Dask cluster; then the finishing
touches (quick-looks, summary).

Resume: with ``resume=True`` an output whose files are already complete and made by the same work
(:func:`geomind_cli.engine.resume.why_incomplete`: grid and fingerprint) is left alone and dropped from the run, and a scene with nothing left to write is skipped; hidden staging files left
by a killed run are removed first. Batch mode (:func:`run_batch`) resumes by default, so re-running an interrupted
batch command finishes what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from geomind_cli import engine
from geomind_cli.engine import OutputSpec, RunSummary, Scene, run_scene
from geomind_cli.engine.resume import leftovers, remove, why_incomplete
from geomind_cli.errors import InputError, OutputError
from geomind_cli.tasks.base import Task, release_models
from geomind_cli.tasks.options import RunOptions
from geomind_cli.tasks.report import Report


def check_outputs(outputs: list[OutputSpec], *, overwrite: bool) -> None:
    """Create the output folders, then fail before any model work if an output may not be written."""
    for spec in outputs:
        Path(spec.path).parent.mkdir(parents=True, exist_ok=True)
    engine.check_outputs(outputs, overwrite=overwrite)


def pending_outputs(scene: Scene, task: Task, *, resume: bool, overwrite: bool,
                    report: Report | None = None) -> Task | None:
    """The task restricted to the outputs still to write (None if none), checked writable.

    Hidden files that a killed run left next to the outputs are removed first (those of a run still going are kept,
    see :func:`geomind_cli.engine.resume.leftovers`). With ``resume`` (and not ``overwrite``), complete outputs made
    by the same work (fingerprint) are dropped; an existing output that is not (another model, options, weights,
    scene, or a file of someone else) is an error that says why, rather than silently kept or replaced. The
    outputs skipped are told to ``report``.
    """
    if task.made_by is not None:  # the reading options (offsets, units, mask) made the outputs too
        task = dataclasses.replace(task, made_by={**task.made_by, "reading": scene.conversions()})
    outputs = list(task.outputs)
    for spec in outputs:
        Path(spec.path).parent.mkdir(parents=True, exist_ok=True)
        for stale in leftovers(spec):
            remove(stale)
    if resume and not overwrite:
        todo = []
        for spec in outputs:
            reason = why_incomplete(spec, scene.grid)
            if reason is None:
                continue
            if reason != "it does not exist":
                raise OutputError(f"{spec.path} exists but {reason}, so it is not resumed; pass --overwrite to "
                                  "replace it or choose another output folder")
            todo.append(spec)
        if report is not None and len(todo) < len(outputs):
            report.skipped([spec.path for spec in outputs if spec not in todo])
        outputs = todo
    if not outputs:
        return None
    check_outputs(outputs, overwrite=overwrite)
    return dataclasses.replace(task, outputs=outputs)


def _engine_options(options: RunOptions) -> dict:
    """The keyword arguments of the engine's run_scene/submit_scene that come from the run options."""
    engine_options = {"batch_size": options.batch_size, "overwrite": options.overwrite}
    if options.overlap is not None:
        engine_options["overlap"] = options.overlap
    return engine_options


def _finish(task: Task, summary: RunSummary, options: RunOptions, report: Report) -> RunSummary:
    if options.preview:
        from geomind_cli.preview import write_preview

        for spec in task.outputs:
            write_preview(Path(spec.path), spec.name)
    report.done(summary)
    return summary


def connect(options: RunOptions):
    """Context manager yielding a Dask client for the ``--scheduler``/``--cluster``/``--workers`` options, or None."""
    if options.workers is not None and not options.cluster:
        from geomind_cli.errors import ConfigError

        raise ConfigError("--workers sizes the cluster started by --cluster local; add --cluster local.")
    if not (options.scheduler or options.cluster):  # dask.distributed is imported only when a cluster is asked for
        return contextlib.nullcontext(None)
    from geomind_cli.engine.cluster import ClusterOptions, open_client

    return open_client(ClusterOptions(scheduler=options.scheduler, cluster=options.cluster, workers=options.workers))


def run_task(scene: Scene, task: Task, options: RunOptions = RunOptions(), *, client=None,
             summary_path: Path | None = None, rows_per_block: int | None = None,
             report: Report | None = None) -> RunSummary | None:
    """Run ``task`` over ``scene``: on a Dask cluster (``client``, or one :func:`connect` opens for the options'
    scheduler / cluster), else in this process. Returns None when ``options.resume`` found every output complete.

    ``report`` hears of the result (default: a report of this one scene, printed as the options say)."""
    if report is None:
        report = Report(options)
        summary = run_task(scene, task, options, client=client, summary_path=summary_path,
                           rows_per_block=rows_per_block, report=report)
        report.close()
        return summary
    todo = pending_outputs(scene, task, resume=options.resume, overwrite=options.overwrite, report=report)
    if todo is None:
        return None
    if client is None and (options.scheduler or options.cluster):
        with connect(options) as opened:
            return run_task(scene, todo, dataclasses.replace(options, resume=False), client=opened,
                            summary_path=summary_path, rows_per_block=rows_per_block, report=report)
    if client is None:
        summary = run_scene(scene, todo.tile_fn, todo.outputs, progress=not options.quiet, summary_path=summary_path,
                            **_engine_options(options))
    else:
        from geomind_cli.engine.distributed import run_scene_distributed

        release_models()  # built here only to check the weights early; the workers hold the replicas
        summary = run_scene_distributed(scene, todo.tile_fn, todo.outputs, client=client, progress=not options.quiet,
                                        summary_path=summary_path, rows_per_block=rows_per_block,
                                        **_engine_options(options))
    return _finish(todo, summary, options, report)


def run_batch(items: Iterable[tuple[Scene, Task]], options: RunOptions = RunOptions(), *, client=None,
              rows_per_block: int | None = None, scenes_in_flight: int | None = None,
              report: Report | None = None) -> list[RunSummary | None]:
    """Run one task per scene, always resuming (``options.resume`` is taken as True). ``items`` may be a generator
    (scenes are opened lazily).

    Without a client, scenes run one after the other in this process. With one, the blocks of up to
    ``scenes_in_flight`` scenes (default: twice the workers) are queued on the cluster at once, so small scenes run
    in parallel, while the client writes the COGs of the oldest scene.
    """
    options = dataclasses.replace(options, resume=True)
    if report is None:
        report = Report(options, batch=True)
        summaries = run_batch(items, options, client=client, rows_per_block=rows_per_block,
                              scenes_in_flight=scenes_in_flight, report=report)
        report.close()
        return summaries
    summaries: list[RunSummary | None] = []
    if client is None:
        for scene, task in items:
            with scene:
                summaries.append(run_task(scene, task, options, report=report))
        return summaries

    from geomind_cli.engine.distributed import _workers, assemble, submit_scene

    window = scenes_in_flight or 2 * _workers(client)
    queue: deque = deque()

    def finish_oldest():
        index, scene, todo, pending = queue.popleft()
        try:
            summaries[index] = _finish(todo, assemble(pending, batch_size=options.batch_size), options, report)
        finally:
            scene.close()

    try:
        for scene, task in items:
            summaries.append(None)
            todo = pending_outputs(scene, task, resume=True, overwrite=options.overwrite, report=report)
            if todo is None:
                scene.close()
                continue
            pending = submit_scene(client, scene, todo.tile_fn, todo.outputs, rows_per_block=rows_per_block,
                                   **_engine_options(options))
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


def check_overlap(overlap: int | None, tile_size: int = 224) -> None:
    """``--overlap`` checked before any model is built: a multiple of 16 px, smaller than the tile."""
    if overlap is not None and (overlap % 16 or not 0 <= overlap < tile_size):
        raise InputError(f"--overlap {overlap}: give a multiple of 16 px from 0 to {tile_size - 16} (e.g. 64)")


def execute(items: Iterable[tuple[Scene, Task]], options: RunOptions, *, batch: bool,
            summary_path: Path | None = None) -> list[RunSummary | None]:
    """What every command does with its (scene, task) pairs: connect to the cluster if asked, then one scene
    (:func:`run_task`) or a batch (:func:`run_batch`, which always resumes)."""
    check_overlap(options.overlap)
    report = Report(options, batch=batch)
    with connect(options) as client:
        if batch:
            summaries = run_batch(items, options, client=client, report=report)
        else:
            (scene, task), = items
            with scene:
                summaries = [run_task(scene, task, options, client=client, summary_path=summary_path, report=report)]
    report.close()
    return summaries
