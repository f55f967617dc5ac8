"""Sentinel-1 GRD SAFE products (folder or zip): VV and VH measurements, warped with their GCPs, in sigma0 dB.

A GRD measurement stores amplitude digital numbers in radar geometry, georeferenced by ground control points.
Calibration to backscatter is sigma0 = DN^2 / A^2 with A the ``sigmaNought`` look-up table of
``annotation/calibration/calibration-*.xml`` (ESA, Sentinel-1 Level-1 product specification). geomind applies the
table's mean as one constant per polarisation: across an IW swath the table varies by a few tenths of a dB, which
:func:`calibration_constant` reports. Thermal noise is not removed. ``--s1-units`` overrides the units.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np

from geomind_cli.engine.products.detect import safe_archive
from geomind_cli.engine.remote import open_raster
from geomind_cli.engine.sources import (DB_FACTOR, FileBands, ReadOptions, ResolvedSource, SourceSpec, file_info,
                                        s1_decision)
from geomind_cli.errors import InputError
from geomind_cli.facts.modalities import MODALITIES


def calibration_constant(xml: bytes) -> tuple[float, float]:
    """(mean sigmaNought, its spread in dB: 20 log10(max / min)) of a Sentinel-1 calibration annotation."""
    root = ET.fromstring(xml)
    values = []
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "sigmaNought" and el.text:
            values.extend(float(v) for v in el.text.split())
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        raise InputError("the calibration annotation holds no sigmaNought values.")
    return float(values.mean()), float(20 * math.log10(values.max() / values.min()))


def open_sentinel1_safe(spec: SourceSpec, options: ReadOptions) -> ResolvedSource:
    archive = safe_archive(spec.paths[0])
    name = archive.name
    if "_SLC_" in name.upper():
        raise InputError(f"{name} is a Sentinel-1 SLC product; geomind reads GRD (ground range detected) products.")
    measurements = {}
    for member in archive.find(r"^measurement/.*\.tiff?$"):
        match = re.search(r"-(vv|vh|hh|hv)-", member.rsplit("/", 1)[-1].lower())
        if match:
            measurements[match.group(1).upper()] = member
    modality = spec.modality or "S1GRD"
    if modality not in ("S1GRD", "S1RTC"):
        raise InputError(f"{name} is a Sentinel-1 product, not {modality}.")
    m = MODALITIES[modality]
    missing = [p for p in m.bands if p not in measurements]
    if missing:
        raise InputError(f"{name} has {', '.join(sorted(measurements)) or 'no'} measurement(s); TerraMind's "
                         f"{modality} needs {', '.join(m.bands)} (a dual-polarisation VV+VH product, 1SDV).")
    files, infos, notes = [], [], []
    for target, polarisation in enumerate(m.bands):
        member = measurements[polarisation]
        path = archive.gdal(member)
        with open_raster(path) as dataset:
            gcps = dataset.crs is None and bool(dataset.gcps[0])
            infos.append(file_info(path, dataset, 0))
        stem = member.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        calibration = archive.find(rf"^annotation/calibration/calibration-{re.escape(stem)}\.xml$")
        scale = 1.0
        if calibration:
            constant, spread = calibration_constant(archive.read(calibration[0]))
            scale = 1.0 / constant
            notes.append(f"{polarisation}: sigma0 calibration, mean sigmaNought {constant:.4g} (the table spans "
                         f"{spread:.2f} dB across the swath), no thermal noise removal")
        else:
            notes.append(f"{polarisation}: no calibration annotation in the product: values uncalibrated")
        files.append(FileBands(path, (1,), (target,), 0.0, (0.0,), (scale,), origin=member.rsplit("/", 1)[-1],
                               gcps=gcps))
    units, why = s1_decision(files, options, spec.s1_units, "amplitude", "GRD measurement: amplitude numbers")
    notes.append(f"Sentinel-1 values are {units} ({why})" + ("" if units == "db" else ", converted to dB"))
    files = [FileBands(fb.path, fb.file_bands, fb.targets, fb.nodata, fb.offsets, fb.scales, DB_FACTOR[units],
                       fb.origin, fb.gcps) for fb in files]
    return ResolvedSource(spec, modality, tuple(files), False, infos, tuple(notes), m.unit,
                          product=f"Sentinel-1 GRD SAFE{' zip' if archive.is_zip else ''}")
