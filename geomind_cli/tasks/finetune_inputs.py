"""Which input file feeds which input of a fine-tune, and with which bands.

A fine-tune takes the bands it was trained on (``backbone_bands``), possibly fewer than a pre-trained modality's
or under a new modality's name (``FILE:NAME``). Each input is given as ``FILE:NAME`` or detected: a file the
engine recognises as one of the model's modalities feeds it; otherwise a file whose band count equals exactly one
remaining input's feeds that one (a six-band file for a six-band Sentinel-2 subset). Within a file, bands are found
by description or file-name suffix, else by order (:func:`geomind_cli.engine.sources.resolve_source`).
"""

from __future__ import annotations

import dataclasses

import rasterio

from geomind_cli.engine import Scene, SourceSpec, detect_modality, open_scene
from geomind_cli.engine.remote import display_name
from geomind_cli.errors import GeomindError, InputError
from geomind_cli.facts.layouts import BandLayout
from geomind_cli.facts.modalities import MODALITIES, get_modality
from geomind_cli.tasks.inputs import name_unnamed


def _band_count(spec: SourceSpec) -> int | None:
    try:
        total = 0
        for path in spec.paths:
            with rasterio.open(path) as dataset:
                total += dataset.count
        return total
    except rasterio.errors.RasterioIOError:
        return None  # the engine names the unreadable file


def _detected(spec: SourceSpec) -> str | None:
    if len(spec.paths) != 1:
        return None
    try:
        return detect_modality(spec.paths[0])
    except GeomindError:
        return None


def _named(name: str, layouts: dict[str, BandLayout]) -> BandLayout | None:
    if name in layouts:
        return layouts[name]
    try:
        return layouts.get(get_modality(name).name)
    except GeomindError:
        return None


def assign_layouts(specs: list[SourceSpec], layouts: dict[str, BandLayout]) -> list[SourceSpec]:
    """Give each source the layout of the model input it feeds (see the module docstring); sources that feed none
    keep their own modality (the task then says which input is missing)."""
    out = list(specs)
    used = {s.layout.name for s in out if s.layout is not None}
    for i, spec in enumerate(out):
        if spec.layout is None and spec.modality is not None:
            layout = _named(spec.modality, layouts)
            if layout is not None and layout.name not in used:
                out[i] = dataclasses.replace(spec, modality=None, layout=layout)
                used.add(layout.name)
    for i, spec in enumerate(out):
        if spec.layout is not None or spec.modality is not None:
            continue
        detected, count = _detected(spec), _band_count(spec)
        layout = layouts.get(detected) if detected else None
        if layout is None or layout.name in used:
            fits = [lay for name, lay in layouts.items() if name not in used and lay.num_channels == count]
            layout = fits[0] if len(fits) == 1 else None
        if layout is not None:
            out[i] = dataclasses.replace(spec, layout=layout)
            used.add(layout.name)
        elif detected is None and count is not None:  # (an unreadable file is named by the engine)
            raise InputError(f"{_files(spec)} ({count} bands) feeds none of the model's inputs "
                             f"({describe_inputs(layouts)}); give it as FILE:NAME")
    for spec in out:  # a pre-trained modality the model does not take is read and left unused, as before
        if spec.layout is None and spec.modality is not None and spec.modality not in MODALITIES:
            raise InputError(f"the model has no input {spec.modality} ({_files(spec)}); its inputs are "
                             f"{describe_inputs(layouts)}")
    return out


def describe_inputs(layouts: dict[str, BandLayout]) -> str:
    """``S2L2A: BLUE, GREEN, ...; NDVI: NDVI`` for messages."""
    return "; ".join(f"{name}: {', '.join(layout.bands)}" for name, layout in layouts.items())


def _files(spec: SourceSpec) -> str:
    first = display_name(spec.paths[0])
    return first if len(spec.paths) == 1 else f"{first} and {len(spec.paths) - 1} more"


def open_finetune_inputs(sources: list[str], layouts: dict[str, BandLayout],
                         from_modalities: list[str] | None = None, **grid_options) -> Scene:
    """``FILE`` / ``FILE:NAME`` arguments -> a Scene holding each model input's bands, in model order.
    ``from_modalities`` names, in order, the inputs given without a name."""
    if not sources:
        raise InputError("no input scene given")
    def name_one(spec: SourceSpec, name: str) -> SourceSpec:
        layout = _named(name, layouts)
        return (dataclasses.replace(spec, layout=layout) if layout is not None
                else dataclasses.replace(spec, modality=get_modality(name).name))

    specs = name_unnamed([SourceSpec.parse(text, layouts) for text in sources], from_modalities, name_one)
    return open_scene(assign_layouts(specs, layouts), **grid_options)
