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


@dataclass(frozen=True)
class InputOptions:
    """How every input is read: what metadata cannot settle, and the part of the scene to process."""

    s2_offset: str = "auto"  # auto | none | a number of digital numbers such as -1000
    s1_units: str = "auto"  # auto | db | linear | amplitude
    mask: str | None = None  # "clouds": Sentinel-2 L2A scene-classification clouds, shadows, cirrus as nodata
    bbox: tuple[float, float, float, float] | None = None  # minx miny maxx maxy, in the grid's CRS or bbox_crs
    bbox_crs: str | None = None
    aoi: str | None = None  # a GeoJSON file or URL: its bounding box

    def read(self):
        """The engine's :class:`~geomind_cli.engine.sources.ReadOptions` (checked: one-line errors)."""
        from geomind_cli.engine.sources import ReadOptions
        from geomind_cli.errors import InputError

        if self.mask not in (None, "clouds"):
            raise InputError(f"--mask {self.mask}: the only mask is 'clouds' (Sentinel-2 L2A scene classification).")
        return ReadOptions(s2_offset=self.s2_offset, s1_units=self.s1_units, cloud_mask=self.mask == "clouds")

    def area(self):
        """The :class:`~geomind_cli.engine.area.Area` of ``--bbox``/``--aoi``, or None for the whole scene."""
        from geomind_cli.engine.area import Area
        from geomind_cli.errors import InputError

        if self.bbox is not None and self.aoi is not None:
            raise InputError("give --bbox or --aoi, not both")
        if self.bbox_crs is not None and self.bbox is None:
            raise InputError("--bbox-crs needs --bbox")
        if self.aoi is not None:
            return Area.from_geojson(self.aoi)
        if self.bbox is not None:
            return Area(tuple(self.bbox), self.bbox_crs)
        return None
