"""From the command line's scene arguments to an aligned Scene."""

from __future__ import annotations

from pathlib import Path

from geomind_cli.engine import Scene, SourceSpec, open_scene
from geomind_cli.errors import InputError
from geomind_cli.models.modalities import get_modality


def open_inputs(scenes: list[str], from_modalities: list[str] | None = None, **grid_options) -> Scene:
    """Parse ``FILE`` / ``FILE:MODALITY`` arguments; ``from_modalities`` names, in order, the inputs given without one."""
    if not scenes:
        raise InputError("no input scene given")
    specs = [SourceSpec.parse(text) for text in scenes]
    if from_modalities:
        unnamed = [i for i, spec in enumerate(specs) if spec.modality is None]
        if len(from_modalities) != len(unnamed):
            raise InputError(
                f"--from names {len(from_modalities)} modalities for {len(unnamed)} inputs without one; give one each"
            )
        for i, name in zip(unnamed, from_modalities):
            specs[i] = SourceSpec(paths=specs[i].paths, modality=get_modality(name).name, bands=specs[i].bands,
                                  nodata=specs[i].nodata, s1_units=specs[i].s1_units)
    return open_scene(specs, **grid_options)


def output_stem(scenes: list[str]) -> str:
    """Output file stem: the first input's name without modality suffix or extension."""
    return Path(scenes[0].split(":")[0] if ":" in scenes[0][2:] else scenes[0]).stem


def split_targets(args: list[str], targets: list[str]) -> tuple[list[str], list[str]]:
    """Let ``--to S1GRD LULC`` work as users type it: option parsers give ``--to`` one value, so bare modality
    names among the positional arguments (that are not files) are targets too; ``--to S1GRD,LULC`` works as well."""
    from geomind_cli.models.modalities import GENERATABLE

    names = [t for item in targets for t in item.split(",") if t]
    scenes = []
    for arg in args:
        if arg.upper() in GENERATABLE and not Path(arg).exists():
            names.append(arg.upper())
        else:
            scenes.append(arg)
    return scenes, names
