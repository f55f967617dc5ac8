"""How a command runs, as one frozen object: built once from the command line, passed down to the task runner.

The fields (and their defaults) are the run options of every command; ``geomind_cli/cli/options.py`` declares the
Typer option of each field once and builds this object (``@run_options``). No torch here: the CLI imports this
module to build its ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunOptions:
    """Run settings shared by the commands that run a model over scenes."""

    # Where and how the model runs (see tasks/runtime.py).
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 8  # tiles per model call
    compile: bool | None = None  # None: on for CUDA
    weights: str | None = None  # None: official weights; "random"; else a checkpoint file
    # Tiling and outputs.
    overlap: int | None = None  # None: the engine's default
    overwrite: bool = False
    resume: bool = False  # skip outputs already complete (always on with several scenes)
    preview: bool = False  # PNG quick-look next to each output
    each: bool | None = None  # several inputs: separate scenes (True), one scene (False), by modality (None)
    # Dask.
    scheduler: str | None = None
    cluster: str | None = None
    workers: int | None = None
    # What the run prints (see tasks/report.py).
    quiet: bool = False  # nothing but errors and geomind's own warnings (random weights)
    json: bool = False  # the summary as one JSON object on stdout, instead of the lines for people
    verbose: bool = False  # also the libraries' warnings (GDAL, Hugging Face retries) and geomind's info

    def runtime(self, *, compile: bool | None = None):
        """The resolved :class:`~geomind_cli.tasks.runtime.Runtime` (imports torch); ``compile`` overrides."""
        from geomind_cli.tasks.runtime import Runtime

        return Runtime.resolve(device=self.device, precision=self.precision,
                               compile=self.compile if compile is None else compile, weights=self.weights)

    def task_overwrite(self, batch: bool) -> bool:
        """Whether a task may replace existing outputs: also with --resume and in batches, where the runner has
        already dropped the complete outputs and checked the others (:func:`geomind_cli.tasks.run.pending_outputs`)."""
        return self.overwrite or self.resume or batch
