"""STAC Items and ItemCollections (JSON files or URLs), read with pystac.

The modality comes from the collection (``sentinel-2-l2a``, ``sentinel-2-c1-l2a``, ``sentinel-2-l1c``,
``sentinel-1-grd``, ``sentinel-1-rtc``, ``cop-dem-glo-30``/``-90``) or the item's properties (``s2:product_type``,
``sar:product_type``). Assets are chosen by their ``eo:bands`` names (``B04``), by the band id as asset key
(Planetary Computer) or by Earth Search's common-name keys (``red``, ``nir08``); COGs before JP2s. Each asset's
``raster:bands`` scale/offset/nodata turn digital numbers into physical values, except where publishers are known
to contradict their own metadata (see :func:`_s2_offset_policy` and the README section "Your data").

An ItemCollection gives one scene per modality: one item, or several items of the same collection, CRS and date
mosaicked into one (adjacent tiles of one pass). ``collection.json#ITEM_ID`` picks one item.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from urllib.parse import urljoin

from geomind_cli.engine.remote import display_name, gdal_path, is_url, open_raster, read_bytes
from geomind_cli.engine.sources import (S1_MODALITIES, S2_MODALITIES, FileBands, ReadOptions, ResolvedSource,
                                        SourceSpec, file_info, normalise_band_name, s1_decision, s2_conversion,
                                        DB_FACTOR)
from geomind_cli.engine.products.sentinel2_safe import SCL_MASKED
from geomind_cli.errors import InputError
from geomind_cli.facts.modalities import MODALITIES

COLLECTION_MODALITY = {
    "sentinel-2-l2a": "S2L2A", "sentinel-2-c1-l2a": "S2L2A", "sentinel-2-l1c": "S2L1C", "sentinel-2-c1-l1c": "S2L1C",
    "sentinel-1-grd": "S1GRD", "sentinel-1-rtc": "S1RTC", "cop-dem-glo-30": "DEM", "cop-dem-glo-90": "DEM",
    "nasadem": "DEM", "esa-worldcover": "LULC", "io-lulc-annual-v02": "LULC",
}
# Earth Search asset keys (common names) of the Sentinel-2 bands.
EARTH_SEARCH_KEYS = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
                     "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
                     "B10": "cirrus", "B11": "swir16", "B12": "swir22"}
S2_BASELINE_WITH_OFFSET = (4, 0)  # processing baseline 04.00 (2022-01-25) introduced the -1000 offset


def _split(path: str) -> tuple[str, str | None]:
    """``file.json#ITEM`` -> (``file.json``, ``ITEM``)."""
    if "#" in path:
        location, item_id = path.rsplit("#", 1)
        return location, item_id or None
    return path, None


def _href_base(location: str) -> str:
    return location if is_url(location) else os.path.abspath(location)


def load_items(path: str):
    """The pystac Items of a STAC Item, ItemCollection (FeatureCollection) or JSON array of items."""
    import pystac

    location, item_id = _split(path)
    try:
        data = json.loads(read_bytes(location))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{display_name(location)} is not a STAC JSON document ({error}).")
    if isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features", [])
    elif isinstance(data, list):
        features = data
    else:
        raise InputError(f"{display_name(location)} is neither a STAC Item nor an ItemCollection.")
    try:
        items = [pystac.Item.from_dict(f, href=_href_base(location), preserve_dict=False) for f in features]
    except Exception as error:  # pystac raises several kinds on malformed items
        raise InputError(f"{display_name(location)}: not a valid STAC item ({str(error).splitlines()[0]}).")
    if item_id is not None:
        items = [i for i in items if i.id == item_id]
        if not items:
            raise InputError(f"{display_name(location)} holds no item {item_id!r}.")
    if not items:
        raise InputError(f"{display_name(location)} holds no STAC items.")
    return items


def item_modality(item) -> str | None:
    props = item.properties
    if item.collection_id in COLLECTION_MODALITY:
        return COLLECTION_MODALITY[item.collection_id]
    product_type = str(props.get("s2:product_type", "")).upper()
    if product_type in ("S2MSI2A", "S2MSI1C"):
        return "S2L2A" if product_type == "S2MSI2A" else "S2L1C"
    if str(props.get("sar:product_type", "")).upper() == "GRD":
        return "S1GRD"
    if str(props.get("sar:product_type", "")).upper() == "RTC":
        return "S1RTC"
    return None


def stac_modality(path: str) -> str | None:
    found = {item_modality(i) for i in load_items(path)}
    return found.pop() if len(found) == 1 else None


def _band_names(asset) -> list[str]:
    bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    return [normalise_band_name(b.get("name") or b.get("eo:common_name") or "") for b in bands]


def _is_data(asset) -> bool:
    roles = asset.roles or []
    return not roles or "data" in roles


def _rank(key: str, asset) -> tuple:
    """COGs first, then other GeoTIFFs, then JP2s."""
    media = (asset.media_type or "").lower()
    return ("cloud-optimized" not in media, "tiff" not in media and not asset.href.endswith((".tif", ".tiff")),
            key.endswith("-jp2"), key)


def _find_asset(item, band: str, modality: str):
    """(key, asset) of the single-band asset holding ``band`` (a band id like B04, or VV/VH/DEM)."""
    candidates = []
    for key, asset in item.assets.items():
        if not _is_data(asset):
            continue
        names = _band_names(asset)
        if names == [band] or normalise_band_name(key) == band or EARTH_SEARCH_KEYS.get(band) == key \
                or key.lower() == band.lower():
            candidates.append((key, asset))
    if not candidates and modality == "DEM":
        candidates = [(k, a) for k, a in item.assets.items() if k in ("data", "elevation", "dem") and _is_data(a)]
    if not candidates:
        return None
    return min(candidates, key=lambda ka: _rank(*ka))


def _raster_band(asset) -> dict:
    bands = asset.extra_fields.get("raster:bands") or asset.extra_fields.get("bands") or [{}]
    first = bands[0] if bands else {}
    return {
        "scale": first.get("scale", first.get("raster:scale")),
        "offset": first.get("offset", first.get("raster:offset")),
        "nodata": first.get("nodata", asset.extra_fields.get("nodata")),
    }


def _baseline(item) -> tuple[int, int] | None:
    value = item.properties.get("s2:processing_baseline") or item.properties.get("processing:version")
    try:
        major, minor = str(value).split(".")[:2]
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return None


def _is_earth_search_l2a(item) -> bool:
    return item.collection_id == "sentinel-2-l2a" and (
        "earthsearch:boa_offset_applied" in item.properties
        or any("sentinel-cogs" in a.href for a in item.assets.values()))


def _s2_offset_policy(item, key: str, stated_scale, stated_offset) -> tuple[float, float, float | None, str]:
    """(scale, offset, baseline offset in DN or None, why) to use for one Sentinel-2 asset.

    - Earth Search ``sentinel-2-l2a`` COGs: the publisher removed the offset from the pixels of every product of
      baseline 04.00 and later ("harmonised"), whatever ``earthsearch:boa_offset_applied`` says (it is wrong on
      some items) and although ``raster:bands`` states -0.1: applying it would subtract 1000 twice
      (Element84/earth-search#66, #71, cirrus-geo/cirrus-earth-search#33). Its ``-jp2`` assets are ESA's files,
      where the stated offset is right.
    - Items stating ``raster:bands`` scale/offset (Earth Search ``sentinel-2-c1-l2a``, ``sentinel-2-l1c``,
      stactools): as stated.
    - Items stating nothing (Planetary Computer): ESA's files as published, so -1000 from processing baseline
      04.00 (microsoft/PlanetaryComputer#134), none before.
    """
    baseline = _baseline(item)
    shown = "%02d.%02d" % baseline if baseline else "unknown"
    if _is_earth_search_l2a(item) and not key.endswith("-jp2"):
        flag = item.properties.get("earthsearch:boa_offset_applied")
        return (float(stated_scale or 1.0), 0.0, None,
                f"Earth Search sentinel-2-l2a COG (baseline {shown}, boa_offset_applied {flag}): pixels already "
                "harmonised, the stated offset is not applied")
    if stated_scale is not None or stated_offset is not None:
        return float(stated_scale or 1.0), float(stated_offset or 0.0), None, "STAC raster:bands"
    if baseline is None:
        return 1.0, 0.0, None, "no raster:bands and no s2:processing_baseline"
    dn_offset = -1000.0 if baseline >= S2_BASELINE_WITH_OFFSET else 0.0
    return 1.0, 0.0, dn_offset, f"no raster:bands; s2:processing_baseline {shown}"


def _open_item(item, spec: SourceSpec, options: ReadOptions) -> ResolvedSource:
    modality = spec.modality or item_modality(item)
    if modality is None:
        raise InputError(f"STAC item {item.id}: cannot tell its modality from collection {item.collection_id!r}; "
                         "add it as ITEM.json:MODALITY.")
    m = MODALITIES[modality]
    wanted = m.band_ids or m.bands
    files, infos, notes, missing = [], [], [], []
    for target, band in enumerate(wanted):
        found = _find_asset(item, band.upper(), modality)
        if found is None:
            missing.append(band)
            continue
        key, asset = found
        href = asset.get_absolute_href() or asset.href
        stated = _raster_band(asset)
        with open_raster(href) as dataset:
            nodata = stated["nodata"] if stated["nodata"] is not None else dataset.nodata
            infos.append(file_info(href, dataset, nodata) | {"asset": key})
            gcps = dataset.crs is None and bool(dataset.gcps[0])
        scale = float(stated["scale"]) if stated["scale"] is not None else 1.0
        offset = float(stated["offset"]) if stated["offset"] is not None else 0.0
        if modality in S2_MODALITIES:
            scale, offset, dn_offset, why = _s2_offset_policy(item, key, stated["scale"], stated["offset"])
            scales, offsets, band_notes = s2_conversion(
                modality, [scale], [offset], options,
                metadata_offsets=None if dn_offset is None else [dn_offset], source=f" ({why})")
            if target == 0:
                notes.extend(band_notes)
            scale, offset = scales[0], offsets[0]
        files.append(FileBands(gdal_path(href), (1,), (target,), nodata, (offset,), (scale,), origin=key,
                               gcps=gcps))
    if missing:
        raise InputError(f"STAC item {item.id} has no asset for {', '.join(missing)} (assets: "
                         f"{', '.join(item.assets)}); {modality} needs them.")
    if modality in S1_MODALITIES and _s1_units(item, files)[0] == "amplitude":
        files = [_calibrated(item, fb, wanted[fb.targets[0]], notes) for fb in files]
    if modality in S1_MODALITIES:
        product_units, why = _s1_units(item, files)
        units, why = s1_decision(files, options, spec.s1_units, product_units, why)
        notes.append(f"Sentinel-1 values are {units} ({why})" + ("" if units == "db" else ", converted to dB"))
        files = [FileBands(fb.path, fb.file_bands, fb.targets, fb.nodata, fb.offsets, fb.scales, DB_FACTOR[units],
                           fb.origin, fb.gcps) for fb in files]
    mask = _scene_classification(item, modality, options, notes)
    return ResolvedSource(spec, modality, tuple(files), modality in ("LULC",) or m.categorical, infos,
                          tuple(notes), m.unit, product=f"STAC item {item.id} ({item.collection_id})",
                          mask=mask, mask_values=SCL_MASKED if mask is not None else ())


def _scene_classification(item, modality: str, options: ReadOptions, notes: list[str]) -> FileBands | None:
    """The SCL asset as a cloud mask (``--mask clouds``), None when not asked for."""
    if not options.cloud_mask:
        return None
    found = [(k, a) for k, a in item.assets.items() if k.lower() in ("scl", "scl-jp2")]
    if modality != "S2L2A" or not found:
        raise InputError(f"STAC item {item.id}: --mask clouds needs the scene classification (SCL asset) of a "
                         "Sentinel-2 L2A item.")
    key, asset = min(found, key=lambda ka: _rank(*ka))
    href = asset.get_absolute_href() or asset.href
    notes.append(f"--mask clouds: SCL classes {', '.join(map(str, SCL_MASKED))} (saturated, cloud shadow, cloud "
                 f"medium/high, cirrus) of asset {key} are nodata")
    return FileBands(gdal_path(href), (1,), (0,), None, (0.0,), origin=key)


def _calibrated(item, fb: FileBands, polarisation: str, notes: list[str]) -> FileBands:
    """A GRD measurement asset scaled by 1 / mean sigmaNought of its ``schema-calibration-*`` asset, when readable."""
    from geomind_cli.engine.products.sentinel1_safe import calibration_constant

    asset = item.assets.get(f"schema-calibration-{polarisation.lower()}")
    if asset is None:
        notes.append(f"{polarisation}: no calibration asset: values uncalibrated")
        return fb
    href = asset.get_absolute_href() or asset.href
    try:
        constant, spread = calibration_constant(read_bytes(href))
    except InputError as error:
        notes.append(f"{polarisation}: calibration asset unreadable ({error}): values uncalibrated")
        return fb
    notes.append(f"{polarisation}: sigma0 calibration, mean sigmaNought {constant:.4g} (the table spans "
                 f"{spread:.2f} dB across the swath), no thermal noise removal")
    return FileBands(fb.path, fb.file_bands, fb.targets, fb.nodata, fb.offsets, (1.0 / constant,), fb.db_factor,
                     fb.origin, fb.gcps)


def _s1_units(item, files: list[FileBands]) -> tuple[str | None, str]:
    """Sentinel-1 units the collection states: RTC is gamma0 linear power, GRD digital numbers are amplitude."""
    if item.collection_id == "sentinel-1-rtc":
        return "linear", "sentinel-1-rtc: gamma0 linear power"
    if item.collection_id == "sentinel-1-grd" or str(item.properties.get("sar:product_type")).upper() == "GRD":
        return "amplitude", "GRD digital numbers: amplitude, uncalibrated"
    return None, ""


def _crs_of(item) -> str | None:
    props = item.properties
    return props.get("proj:code") or (f"EPSG:{props['proj:epsg']}" if props.get("proj:epsg") else None)


def mergeable(items) -> bool:
    """Items that make one scene together: one collection, one acquisition date, one CRS (adjacent tiles or
    slices of one pass)."""
    dates = {(i.datetime or i.common_metadata.start_datetime).date() for i in items}
    return len({i.collection_id for i in items}) == 1 and len(dates) == 1 and len({_crs_of(i) for i in items}) == 1


def _mosaic(parts: list[tuple[FileBands, dict]]) -> tuple[str, dict]:
    """A GDAL VRT (XML text, opened by GDAL as a dataset name) placing one band of several files of one pixel grid
    side by side; and its `info`."""
    from affine import Affine

    with open_raster(parts[0][0].path) as first:
        res_x, res_y, crs, dtype = first.transform.a, first.transform.e, first.crs, first.dtypes[0]
    boxes = []
    for fb, _ in parts:
        with open_raster(fb.path) as dataset:
            t = dataset.transform
            if dataset.crs != crs or abs(t.a - res_x) > 1e-9 * abs(res_x) or abs(t.e - res_y) > 1e-9 * abs(res_y):
                raise InputError("the items share a date but not a pixel grid; pick one as ITEMS.json#ITEM_ID.")
            boxes.append((fb, t.c, t.f, dataset.width, dataset.height))
    left, top = min(b[1] for b in boxes), max(b[2] for b in boxes)
    right = max(b[1] + res_x * b[3] for b in boxes)
    bottom = min(b[2] + res_y * b[4] for b in boxes)
    width, height = round((right - left) / res_x), round((bottom - top) / res_y)
    gdal_type = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
                 "float32": "Float32", "float64": "Float64"}[dtype]
    nodata = parts[0][0].nodata
    sources = []
    for fb, c, f, w, h in boxes:
        x_off, y_off = (c - left) / res_x, (f - top) / res_y
        if abs(x_off - round(x_off)) > 1e-6 or abs(y_off - round(y_off)) > 1e-6:
            raise InputError("the items share a date but not a pixel lattice; pick one as ITEMS.json#ITEM_ID.")
        sources.append(f'<ComplexSource><SourceFilename relativeToVRT="0">{_xml(fb.path)}</SourceFilename>'
                       f"<SourceBand>{fb.file_bands[0]}</SourceBand>"
                       + (f"<NODATA>{nodata!r}</NODATA>" if nodata is not None else "")
                       + f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                       f'<DstRect xOff="{round(x_off)}" yOff="{round(y_off)}" xSize="{w}" ySize="{h}"/>'
                       "</ComplexSource>")
    transform = Affine(res_x, 0, left, 0, res_y, top)
    xml = (f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{_xml(crs.to_wkt())}</SRS>'
           f"<GeoTransform>{', '.join(repr(v) for v in transform.to_gdal())}</GeoTransform>"
           f'<VRTRasterBand dataType="{gdal_type}" band="1">'
           + (f"<NoDataValue>{nodata!r}</NoDataValue>" if nodata is not None else "")
           + "".join(sources) + "</VRTRasterBand></VRTDataset>")
    info = {**parts[0][1], "path": " + ".join(fb.path for fb, _ in parts), "size": [width, height],
            "asset": f"{parts[0][1].get('asset')} x {len(parts)} items"}
    return xml, info


def _xml(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text)


def _merge(sources: list[ResolvedSource], items) -> ResolvedSource:
    """One source from the same modality of several items on one pixel grid (a VRT mosaic per band)."""
    first = sources[0]
    files, infos = [], []
    for b, fb in enumerate(first.files):
        parts = [(s.files[b], s.info[b]) for s in sources]
        if len({(p.scales, p.offsets, p.db_factor, p.nodata) for p, _ in parts}) != 1:
            raise InputError("the items convert their values differently (scale, offset, units or nodata); pick one "
                             "as ITEMS.json#ITEM_ID.")
        xml, info = _mosaic(parts)
        files.append(FileBands(xml, (1,), fb.targets, fb.nodata, fb.offsets, fb.scales, fb.db_factor,
                               origin=info["asset"]))
        infos.append(info)
    ids = ", ".join(i.id for i in items)
    return ResolvedSource(first.spec, first.modality, tuple(files), first.categorical, infos,
                          first.notes + (f"mosaic of {len(items)} items of one date and grid: {ids}",), first.units,
                          product=f"STAC items {ids} ({items[0].collection_id})")


def open_stac(spec: SourceSpec, options: ReadOptions, *, categorical: set[str]) -> list[ResolvedSource]:
    """One resolved source per modality of the item(s); several items of one modality are mosaicked when they share
    a collection, a date and a pixel grid (a VRT per band), and refused otherwise."""
    items = load_items(spec.paths[0])
    by_modality: dict[str | None, list] = {}
    for item in items:
        by_modality.setdefault(spec.modality or item_modality(item), []).append(item)
    sources = []
    for modality, group in by_modality.items():
        if len(group) > 1 and not mergeable(group):
            ids = ", ".join(i.id for i in group[:4]) + (" ..." if len(group) > 4 else "")
            raise InputError(f"{display_name(spec.paths[0])} holds {len(group)} {modality or 'unknown'} items "
                             f"of different dates, collections or grids ({ids}); pick one as "
                             f"{display_name(_split(spec.paths[0])[0])}#ITEM_ID.")
        resolved = [_open_item(item, spec, options) for item in group]
        sources.append(resolved[0] if len(resolved) == 1 else _merge(resolved, group))
    return sources
