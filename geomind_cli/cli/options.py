"""Options shared by several commands, declared once (typer ``Annotated`` aliases).

The run options (device, batch size, overwrite, Dask ...) are the fields of
:class:`~geomind_cli.tasks.options.RunOptions`; ``RUN_OPTIONS`` gives each field its Typer option, and the
``@run_options`` decorator adds them to a command and hands it one ``run: RunOptions``. A new run option is one
field there plus one line here. Another group of options (e.g. how inputs are read) can be added the same way with
:func:`option_group`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from geomind_cli.tasks.options import InputOptions, RunOptions

RUN = "Run options"  # the --help panel of the options every run command shares
INPUT = "Input options"  # how inputs are read: units the metadata cannot settle, the area to process

Scenes = Annotated[
    list[str],
    typer.Argument(
        help="Inputs: rasters (one file per modality or per band; local, http(s)://, s3://, gs://, az:// or /vsi... "
        "paths), Sentinel-2/Sentinel-1 SAFE products (folder or .zip), STAC items or item collections (JSON file or "
        "URL; ITEMS.json#ID picks one). Modalities are detected; name one explicitly as INPUT:MODALITY.",
        show_default=False,
    ),
]
OutputDir = Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for the outputs.")]
Model = Annotated[str, typer.Option("--model", help="TerraMind size: tiny, small, base or large.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same output.")]

# The run options: one Typer option per RunOptions field, shown in their own --help panel.
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.", rich_help_panel=RUN)]
Precision = Annotated[
    str, typer.Option("--precision", help="auto, bf16, fp16 or fp32 (auto: bf16 on GPU, fp32 on CPU).",
                      rich_help_panel=RUN),
]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Tiles per model call.", rich_help_panel=RUN)]
Compile = Annotated[
    Optional[bool],
    typer.Option("--compile/--no-compile", help="torch.compile the model (default: on for CUDA).", rich_help_panel=RUN),
]
Weights = Annotated[
    Optional[str],
    typer.Option("--weights", help="Checkpoint file (.pt/.safetensors) for the TerraMind model, or 'random' (smoke "
                 "tests and benchmarks only). Default: the official weights through the Hugging Face cache.",
                 rich_help_panel=RUN),
]
Overlap = Annotated[
    Optional[int],
    typer.Option("--overlap", min=0, help="Tile overlap in pixels, a multiple of 16 (default: engine's).",
                 rich_help_panel=RUN),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace outputs that already exist.", rich_help_panel=RUN),
]
Resume = Annotated[
    bool,
    typer.Option("--resume", help="Skip outputs that are already complete (always on with several scenes).",
                 rich_help_panel=RUN),
]
Preview = Annotated[
    bool, typer.Option("--preview", help="Write a PNG quick-look next to each output.", rich_help_panel=RUN),
]
Each = Annotated[
    Optional[bool],
    typer.Option("--each/--together", help="Treat every input as its own scene (batch) / all inputs as one scene. "
                 "Default: several inputs of one modality are separate scenes, others one scene.", rich_help_panel=RUN),
]
Scheduler = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="Run on an existing Dask cluster: scheduler address (tcp://host:8786) or "
                 "scheduler file (.json). Workers must see the inputs and the output folder.", rich_help_panel=RUN),
]
Cluster = Annotated[
    Optional[str],
    typer.Option("--cluster", help="'local': start a Dask cluster here, one worker per GPU (or per group of CPU "
                 "cores; see --workers).", rich_help_panel=RUN),
]
Workers = Annotated[
    Optional[int], typer.Option("--workers", min=1, help="Workers of --cluster local.", rich_help_panel=RUN),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing but errors and geomind's warnings (no progress bar, no "
                       "report).", rich_help_panel=RUN),
]
Json = Annotated[
    bool, typer.Option("--json", help="Print the run summary as one JSON object on stdout (for scripts) instead of "
                       "the report for people.", rich_help_panel=RUN),
]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also show the libraries' warnings (GDAL, Hugging Face, Dask) and "
                       "geomind's progress notes.", rich_help_panel=RUN),
]

S2Offset = Annotated[
    str,
    typer.Option("--s2-offset", help="Sentinel-2 baseline offset in digital numbers: auto (from the product, STAC "
                 "item or file metadata; `geomind info` says what it decided), none, or a number such as -1000.",
                 rich_help_panel=INPUT),
]
S1Units = Annotated[
    str,
    typer.Option("--s1-units", help="Sentinel-1 values as stored: auto (from the product, else from the values), "
                 "db, linear (power) or amplitude.", rich_help_panel=INPUT),
]
Mask = Annotated[
    Optional[str],
    typer.Option("--mask", help="'clouds': Sentinel-2 L2A pixels the scene classification marks as cloud, cloud "
                 "shadow, cirrus or saturated are nodata (their tiles are skipped or blended out).",
                 rich_help_panel=INPUT),
]
BBox = Annotated[
    Optional[tuple[float, float, float, float]],
    typer.Option("--bbox", help="Process only this box: minx miny maxx maxy, in the scene grid's CRS (or "
                 "--bbox-crs). Only the blocks under it are read.", rich_help_panel=INPUT, show_default=False),
]
BBoxCrs = Annotated[
    Optional[str], typer.Option("--bbox-crs", help="CRS of --bbox, e.g. EPSG:4326.", rich_help_panel=INPUT),
]
Aoi = Annotated[
    Optional[str],
    typer.Option("--aoi", help="Process only the bounding box of this GeoJSON file (EPSG:4326).",
                 rich_help_panel=INPUT),
]


def option_group(cls: type, options: dict[str, Any], *, into: str, only: tuple[str, ...] = (),
                 exclude: tuple[str, ...] = (), prepare: Callable[[Any], None] | None = None) -> Callable:
    """Decorator: add the Typer ``options`` (field name -> ``Annotated`` type) of the frozen dataclass ``cls`` to a
    command, and call the command with one ``cls`` instance as keyword ``into`` instead of one argument each.

    ``only``/``exclude`` pick the fields this command offers; the others keep the dataclass defaults. The
    parameters come after the command's own in ``--help``. ``prepare(obj)`` runs before the command.
    """
    defaults = {field.name: field.default for field in dataclasses.fields(cls)}
    unknown = (set(only) | set(exclude)) - set(defaults)
    if set(options) != set(defaults) or unknown:  # one Typer option per field, no stray names
        raise TypeError(f"{cls.__name__}: options and fields differ, or unknown names {sorted(unknown)}")
    names = [name for name in options if (not only or name in only) and name not in exclude]

    def decorate(command: Callable) -> Callable:
        own = inspect.signature(command, eval_str=True)  # the module's `from __future__ import annotations`
        params = [p for p in own.parameters.values() if p.name != into]
        params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=options[name],
                                     default=defaults[name]) for name in names]

        @functools.wraps(command)
        def with_group(*args, **kwargs):
            group = cls(**{name: kwargs.pop(name) for name in names})
            if prepare is not None:
                prepare(group)
            return command(*args, **kwargs, **{into: group})

        # Typer reads the parameters from the signature and their types from __annotations__.
        with_group.__signature__ = own.replace(parameters=params)
        with_group.__annotations__ = {p.name: p.annotation for p in params}
        return with_group

    return decorate


RUN_OPTIONS = {
    "device": Device, "precision": Precision, "batch_size": BatchSize, "compile": Compile, "weights": Weights,
    "overlap": Overlap, "overwrite": Overwrite, "resume": Resume, "preview": Preview, "each": Each,
    "scheduler": Scheduler, "cluster": Cluster, "workers": Workers, "quiet": Quiet, "json": Json, "verbose": Verbose,
}


def run_options(*, only: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> Callable:
    """Decorator: the command gets the run options (all, ``only`` some, or all but ``exclude``) as ``run``; logging
    follows its --quiet / --verbose."""
    return option_group(RunOptions, RUN_OPTIONS, into="run", only=only, exclude=exclude, prepare=_log_as_asked)


def _log_as_asked(run: RunOptions) -> None:
    from geomind_cli.cli.logs import setup_logging

    setup_logging(verbose=run.verbose, quiet=run.quiet)


def examples(*commands: str) -> str:
    """A command's ``--help`` epilog: real examples (run from the repository, they use the shipped samples), shown
    as one code block after the options, as ``rio`` and ``gdal`` do."""
    return "**Examples**\n\n```\n" + "\n".join(commands) + "\n```"


INPUT_OPTIONS = {"s2_offset": S2Offset, "s1_units": S1Units, "mask": Mask, "bbox": BBox, "bbox_crs": BBoxCrs,
                 "aoi": Aoi}


def input_options() -> Callable:
    """Decorator: the command gets the input options as ``inputs`` (an :class:`InputOptions`)."""
    return option_group(InputOptions, INPUT_OPTIONS, into="inputs")
