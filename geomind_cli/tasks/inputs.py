"""From the command line's scene arguments to an aligned Scene."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from geomind_cli.engine import Scene, SourceSpec, detect_modality, open_scene
from geomind_cli.errors import GeomindError, InputError
from geomind_cli.facts.modalities import get_modality


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
    from geomind_cli.facts.modalities import GENERATABLE

    names = [t for item in targets for t in item.split(",") if t]
    scenes = []
    for arg in args:
        if arg.upper() in GENERATABLE and not Path(arg).exists():
            names.append(arg.upper())
        else:
            scenes.append(arg)
    return scenes, names


@dataclass(frozen=True)
class SceneInputs:
    """The source arguments of one scene and the stem its outputs are named after."""

    sources: list[str]
    stem: str


def names_modality(text: str) -> bool:
    """True when an input argument names its modality (``FILE:MODALITY``)."""
    return SourceSpec.parse(text).modality is not None


def _modality_of(text: str) -> str | None:
    spec = SourceSpec.parse(text)
    if spec.modality is not None:
        return spec.modality
    try:
        return detect_modality(spec.paths[0])
    except GeomindError:
        return None


def _canonical_or_own(name: str) -> str:
    """A modality's canonical name, or the name itself when only a model knows it (a fine-tune's new modality)."""
    try:
        return get_modality(name).name
    except GeomindError:
        return name


def group_scenes(args: list[str], *, modality: str | None = None, each: bool | None = None) -> list[SceneInputs]:
    """Split the input arguments into scenes (batch mode) or keep them as one multi-source scene.

    Rule (``each=None``): several inputs that all carry the same modality (given as ``FILE:MOD``, as ``modality``
    for inputs without one, or detected) are separate scenes, one output set each (``scenes/*.tif``); anything else
    is one scene whose inputs are its modalities. ``each=True``/``False`` forces one scene per input / one scene.
    """
    if not args:
        raise InputError("no input scene given")
    if each is None:
        names = [_modality_of(a) if modality is None or names_modality(a) else _canonical_or_own(modality)
                 for a in args]
        each = len(args) > 1 and names[0] is not None and len(set(names)) == 1
    if not each:
        return [SceneInputs(list(args), output_stem(args))]
    scenes = [SceneInputs([a], output_stem([a])) for a in args]
    stems = [s.stem for s in scenes]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise InputError(f"several input scenes are named {clashes[0]!r}, so their outputs would collide; "
                         "rename them or run them into separate output folders")
    return scenes


def batch_output(output: Path | None, count: int, name: str) -> Path:
    """Where one scene's single output goes: ``output`` itself for one scene (``name`` in the current folder if None),
    ``output/name`` in batch mode, where ``-o`` must be a folder."""
    if count == 1:
        return Path(output) if output is not None else Path(name)
    if output is None:
        return Path(name)
    if output.suffix and not output.is_dir():
        raise InputError(f"-o {output}: several scenes were given, so -o must be a folder (it is created if needed)")
    return Path(output) / name
