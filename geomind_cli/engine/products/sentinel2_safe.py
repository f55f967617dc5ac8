"""Sentinel-2 L1C and L2A SAFE products (ESA PSD 14), as a folder or a zip.

The product metadata (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``) lists every band file (``IMAGE_FILE``, without the
``.jp2`` extension), the product type (which TerraMind modality), the quantification value and, from processing
baseline 04.00, the per-band offset (``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET``, indexed by ``band_id``: 0..12 for
B1, B2, B3, B4, B5, B6, B7, B8, B8A, B9, B10, B11, B12). Reflectance = (DN + offset) / quantification; TerraMind
wants reflectance x 10000. Each band is read at its native resolution (10, 20 or 60 m) and aligned on the 10 m grid
by the engine. For L2A, the scene classification layer (SCL, 20 m) can mask clouds.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from geomind_cli.engine.products.detect import SafeArchive, safe_archive
from geomind_cli.engine.remote import open_raster
from geomind_cli.engine.sources import (FileBands, ReadOptions, ResolvedSource, SourceSpec, file_info,
                                        s2_conversion)
from geomind_cli.errors import InputError
from geomind_cli.facts.modalities import MODALITIES

# band_id of the offset lists: the position in this list (ESA PSD 14).
BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
NATIVE_RESOLUTION = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20, "B8A": 20,
                     "B11": 20, "B12": 20, "B01": 60, "B09": 60, "B10": 60}
PRODUCT_MODALITY = {"S2MSI1C": "S2L1C", "S2MSI2A": "S2L2A", "S2MSI2AP": "S2L2A"}
# Scene classification classes that --mask clouds makes nodata: saturated or defective (1), cloud shadows (3),
# cloud medium (8) and high probability (9), thin cirrus (10).
SCL_MASKED = (1, 3, 8, 9, 10)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _texts(root, name: str) -> list:
    return [el for el in root.iter() if _local(el.tag) == name]


def _metadata(archive: SafeArchive) -> tuple[str, ET.Element]:
    found = archive.find(r"^MTD_MSIL(1C|2A)\.xml$")
    if not found:
        raise InputError(f"{archive.name}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml; is this a Sentinel-2 SAFE product?")
    try:
        return found[0], ET.fromstring(archive.read(found[0]))
    except ET.ParseError as error:
        raise InputError(f"{archive.name}: {found[0]} is not valid XML ({error}).")


def _product_modality(root, name: str) -> str:
    types = [el.text.strip() for el in _texts(root, "PRODUCT_TYPE") if el.text]
    if not types or types[0] not in PRODUCT_MODALITY:
        raise InputError(f"{name}: product type {types[0] if types else 'missing'} is not Sentinel-2 L1C or L2A.")
    return PRODUCT_MODALITY[types[0]]


def safe_modality(path: str) -> str:
    archive = safe_archive(path)
    return _product_modality(_metadata(archive)[1], archive.name)


def _band_files(archive: SafeArchive, root) -> dict[str, str]:
    """Band id -> member path of the band file at its native resolution."""
    files = {}
    for el in _texts(root, "IMAGE_FILE"):
        stem = (el.text or "").strip()
        match = re.search(r"_(B\d[\dA])(?:_(\d+)m)?$", stem)
        if not match:
            continue
        band, res = match.group(1), match.group(2)
        if res is not None and int(res) != NATIVE_RESOLUTION.get(band):
            continue  # L2A also ships resampled copies (B02 at 20 and 60 m): take the native one
        files[band] = stem
    return files


def _resolve_member(archive: SafeArchive, stem: str) -> str:
    """The member path of an IMAGE_FILE entry (given without extension; JP2 in ESA products)."""
    for suffix in (".jp2", ".tif", ""):
        if stem + suffix in archive.names:
            return stem + suffix
    raise InputError(f"{archive.name}: band file {stem}.jp2 that the metadata lists is missing; the product is "
                     "incomplete (re-download it).")


def _per_band(root, names: tuple[str, ...]) -> dict[int, float]:
    out = {}
    for name in names:
        for el in _texts(root, name):
            if el.get("band_id") is not None and el.text:
                out[int(el.get("band_id"))] = float(el.text)
    return out


def _quantification(root, modality: str) -> float:
    names = ("BOA_QUANTIFICATION_VALUE",) if modality == "S2L2A" else ("QUANTIFICATION_VALUE",)
    for name in names:
        for el in _texts(root, name):
            if el.text:
                return float(el.text)
    return 10000.0


def open_sentinel2_safe(spec: SourceSpec, options: ReadOptions) -> ResolvedSource:
    """The TerraMind bands of a Sentinel-2 SAFE product, with the product's own offset and quantification."""
    archive = safe_archive(spec.paths[0])
    mtd_name, root = _metadata(archive)
    modality = _product_modality(root, archive.name)
    if spec.modality is not None and spec.modality != modality:
        raise InputError(f"{archive.name} is a {modality} product, not {spec.modality}; drop the :{spec.modality} "
                         "suffix.")
    baseline = next((el.text.strip() for el in _texts(root, "PROCESSING_BASELINE") if el.text), "unknown")
    quantification = _quantification(root, modality)
    offsets_by_id = _per_band(root, ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET"))
    band_files = _band_files(archive, root)
    m = MODALITIES[modality]
    missing = [b for b in m.band_ids if b not in band_files]
    if missing:
        raise InputError(f"{archive.name}: the metadata lists no file for {', '.join(missing)}.")
    files, infos, notes = [], [], []
    where = f" ({mtd_name}, baseline {baseline})"
    for target, band in enumerate(m.band_ids):
        member = _resolve_member(archive, band_files[band])
        path = archive.gdal(member)
        with open_raster(path) as dataset:
            infos.append(file_info(path, dataset, 0))
        dn_offset = offsets_by_id.get(BAND_IDS.index(band), 0.0)
        scale = 10000.0 / quantification
        scales, offsets, band_notes = s2_conversion(modality, [scale], [0.0], options,
                                                    metadata_offsets=[dn_offset * scale], source=where)
        if target == 0:
            notes.extend(band_notes)
        files.append(FileBands(path, (1,), (target,), 0.0, offsets, scales, origin=member.rsplit("/", 1)[-1]))
    if not offsets_by_id:
        notes.append(f"baseline {baseline} lists no offset: none applied")
    if quantification != 10000:
        notes.append(f"quantification value {quantification:g}: scale {10000 / quantification:g}")
    mask = None
    if options.cloud_mask:
        if modality != "S2L2A":
            raise InputError(f"{archive.name}: --mask clouds needs the scene classification of an L2A product; "
                             "this is L1C.")
        scl = [el.text.strip() for el in _texts(root, "IMAGE_FILE") if el.text and el.text.strip().endswith("_SCL_20m")]
        if not scl:
            raise InputError(f"{archive.name}: no SCL_20m scene classification listed; cannot mask clouds.")
        member = _resolve_member(archive, scl[0])
        mask = FileBands(archive.gdal(member), (1,), (0,), None, (0.0,), origin=member.rsplit("/", 1)[-1])
        notes.append(f"--mask clouds: SCL classes {', '.join(map(str, SCL_MASKED))} (saturated, cloud shadow, "
                     "cloud medium/high, cirrus) are nodata")
    return ResolvedSource(spec, modality, tuple(files), False, infos, tuple(notes), m.unit,
                          product=f"Sentinel-2 {modality[2:]} SAFE{' zip' if archive.is_zip else ''}",
                          mask=mask, mask_values=SCL_MASKED if mask is not None else ())
