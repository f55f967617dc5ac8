"""From the command line's scene arguments to an aligned Scene."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geomind_cli.engine import Scene, SourceSpec, detect_modality, open_scene
from geomind_cli.engine.remote import display_name
from geomind_cli.errors import GeomindError, InputError
from geomind_cli.facts.modalities import get_modality
from geomind_cli.tasks.options import InputOptions


def open_inputs(scenes: list[str], from_modalities: list[str] | None = None, *,
                inputs: InputOptions = InputOptions(), **grid_options) -> Scene:
    """Parse ``INPUT`` / ``INPUT:MODALITY`` arguments (files, URLs, SAFE products, STAC items); ``from_modalities``
    names, in order, the inputs given without one; ``inputs`` says how they are read and which area to keep."""
    if not scenes:
        raise InputError("no input scene given")
    specs = name_unnamed([SourceSpec.parse(text) for text in scenes], from_modalities)
    return open_scene(specs, read=inputs.read(), area=inputs.area(), **grid_options)


def name_unnamed(specs: list[SourceSpec], from_modalities: list[str] | None,
                 name_one: Callable[[SourceSpec, str], SourceSpec] | None = None) -> list[SourceSpec]:
    """``--from``: name, in order, the sources given without a modality (``name_one(spec, name)``, default: the
    registry's modality of that name); one name per such source."""
    if not from_modalities:
        return specs
    unnamed = [i for i, spec in enumerate(specs) if spec.modality is None]
    if len(from_modalities) != len(unnamed):
        raise InputError(
            f"--from names {len(from_modalities)} modalities for {len(unnamed)} inputs without one; give one each"
        )
    name_one = name_one or (lambda spec, name: dataclasses.replace(spec, modality=get_modality(name).name))
    specs = list(specs)
    for i, name in zip(unnamed, from_modalities):
        specs[i] = name_one(specs[i], name)
    return specs


def output_stem(scenes: list[str]) -> str:
    """Output file stem: the first input's name without modality suffix, extension, ``.SAFE``/``.zip`` or query
    string; a STAC item picked as ``ITEMS.json#ID`` is named by its id."""
    path = SourceSpec.parse(scenes[0]).paths[0]
    if "#" in path:
        return path.rsplit("#", 1)[1]
    name = display_name(path)
    for suffix in (".zip", ".SAFE", ".json", ".geojson"):
        if name.lower().endswith(suffix.lower()):
            name = name[: -len(suffix)]
    return Path(name).stem if "." in name else name


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
    args = expand_collections(args)
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


def expand_collections(args: list[str]) -> list[str]:
    """A STAC ItemCollection (or JSON array of items) whose items of one modality cannot be mosaicked (different
    dates or grids) becomes one ``COLLECTION#ITEM_ID`` argument per item, so that the grouping rule applies to items:
    items of one modality are separate scenes, items of different modalities one scene."""
    from geomind_cli.engine.products.detect import product_kind
    from geomind_cli.engine.products.stac import item_modality, load_items, mergeable

    out = []
    for arg in args:
        spec = SourceSpec.parse(arg)
        path = spec.paths[0]
        if len(spec.paths) == 1 and "#" not in path and product_kind(path) == "stac":
            items = load_items(path)
            by_modality: dict = {}
            for item in items:
                by_modality.setdefault(spec.modality or item_modality(item), []).append(item)
            if len(items) > 1 and not all(len(g) == 1 or mergeable(g) for g in by_modality.values()):
                suffix = f":{spec.modality}" if spec.modality else ""
                out.extend(f"{path}#{item.id}{suffix}" for item in items)
                continue
        out.append(arg)
    return out


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
