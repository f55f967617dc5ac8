"""Input sources: what the user named on the command line, and how its bands map onto TerraMind's band order.

A :class:`SourceSpec` is what the user named: a file (all bands), one file per band (Sentinel-2 band files at
10/20/60 m), a URL or GDAL ``/vsi`` path, or a product (Sentinel SAFE folder/zip, STAC item; see
:mod:`geomind_cli.engine.products`). :func:`resolve_sources` turns it into :class:`ResolvedSource` s: which file band
feeds which TerraMind band (band descriptions, then file-name suffixes, then position) and how raw values become
physical ones (:meth:`FileBands.to_physical`: scale/offset from GDAL metadata, the product or the STAC item, the
Sentinel-2 processing-baseline offset, Sentinel-1 linear power or amplitude to dB, non-finite values to NaN).
Reading and alignment live in :mod:`geomind_cli.engine.grid`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from geomind_cli.engine.remote import display_name, gdal_path, is_url, open_raster
from geomind_cli.errors import InputError, ModalityError
from geomind_cli.facts.layouts import BandLayout, pretrained_layout
from geomind_cli.facts.modalities import MODALITIES, get_modality

S1_MODALITIES = ("S1GRD", "S1RTC")
S2_MODALITIES = ("S2L2A", "S2L1C")
# Sentinel-2 from processing baseline 04.00 stores DN = reflectance * 10000 - offset (offset 1000); products carry the
# (negative) offset as BOA_ADD_OFFSET (L2A) or RADIO_ADD_OFFSET (L1C), per band or once.
_OFFSET_TAGS = {"S2L2A": "BOA_ADD_OFFSET", "S2L1C": "RADIO_ADD_OFFSET"}
S2_UNIT_SCALE = 10000.0  # TerraMind's Sentinel-2 unit is reflectance x 10000
S1_UNITS = ("db", "linear", "amplitude")
# Multiplier of log10 that turns each Sentinel-1 unit into dB.
DB_FACTOR = {"db": 0.0, "linear": 10.0, "amplitude": 20.0}


@dataclass(frozen=True)
class ReadOptions:
    """How raw values become physical ones where the metadata cannot settle it (the same for every input).

    ``s2_offset``: ``"auto"`` (product metadata, STAC item or file tags decide), ``"none"`` (values are already
    reflectance x 10000) or a number of digital numbers added to every Sentinel-2 value (``-1000`` for processing
    baseline 04.00 and later). ``s1_units``: ``"auto"`` (from the product, else from the values), ``"db"``,
    ``"linear"`` (power) or ``"amplitude"``. ``cloud_mask``: Sentinel-2 L2A pixels that the scene classification
    marks as cloud, cloud shadow, cirrus or saturated become nodata.
    """

    s2_offset: str | float = "auto"
    s1_units: str = "auto"
    cloud_mask: bool = False

    def __post_init__(self):
        value = self.s2_offset
        if isinstance(value, str) and value.lower() not in ("auto", "none"):
            try:
                value = float(value)
            except ValueError:
                raise InputError(f"--s2-offset must be auto, none or a number such as -1000, not {value!r}.")
        object.__setattr__(self, "s2_offset", value.lower() if isinstance(value, str) else float(value))
        if self.s1_units.lower() not in ("auto", *S1_UNITS):
            raise InputError(f"Sentinel-1 units must be auto, db, linear or amplitude, not {self.s1_units!r}.")
        object.__setattr__(self, "s1_units", self.s1_units.lower())


@dataclass(frozen=True)
class SourceSpec:
    """One input modality: a file, or one file per band, with optional overrides.

    ``paths`` are GDAL paths kept as text (local paths, ``https://``/``s3://``/``gs://``/``az://`` URLs, ``/vsi...``
    paths, SAFE folders or zips, STAC JSON files or URLs); ``pathlib.Path`` values are accepted and stored as text.
    ``bands`` names the file bands in file order (band ids like ``B02`` or TerraMind names like ``BLUE``/``VV``), for
    files without band descriptions. ``nodata`` overrides the files' nodata value. ``s1_units`` says whether
    Sentinel-1 values are dB, linear power or amplitude (default: :class:`ReadOptions`, else detected). ``layout``:
    the bands a model wants from this source when they are not a pre-trained modality's full set (a fine-tune's band
    subset or new modality); it names the source (``modality`` is its name).
    """

    paths: list[str]
    modality: str | None = None
    bands: list[str] | None = None
    nodata: float | None = None
    s1_units: Literal["db", "linear", "amplitude"] | None = None
    layout: BandLayout | None = None

    def __post_init__(self):
        object.__setattr__(self, "paths", [str(p) for p in self.paths])
        if not self.paths:
            raise InputError("An input source needs at least one file.")
        if self.layout is not None:
            object.__setattr__(self, "modality", self.layout.name)
        elif self.modality is not None:
            try:
                object.__setattr__(self, "modality", get_modality(self.modality).name)
            except ModalityError:
                pass  # a name only a model's layout knows (a new modality); resolve_source says if none does
        if self.s1_units not in (None, *S1_UNITS):
            raise InputError(f"Sentinel-1 units must be db, linear or amplitude, not {self.s1_units!r}.")

    @classmethod
    def parse(cls, text: str, layouts: dict[str, BandLayout] | None = None) -> "SourceSpec":
        """Parse the CLI's ``FILE[,FILE...][:MODALITY]`` syntax (``scene.tif``, ``scene.tif:S1GRD``, ``b02.tif,b03.tif:S2L2A``).

        Paths are kept as typed (URLs, ``/vsicurl/https://...``, ``s3://bucket/key``). The suffix after the last colon
        is taken as a modality only when it names one, so colons inside URLs (``https://host:8080/a.tif``, signed
        query strings) stay part of the path. A suffix that names no modality is also taken as one when the local
        files before it exist (a new modality of a fine-tune: ``ndvi.tif:NDVI_S2``). ``layouts``: the inputs a model
        takes, by name; a source named by one of them (exactly, or by a pre-trained modality's alias) gets that
        layout.
        """
        layouts = layouts or {}
        modality = None
        head, sep, tail = text.rpartition(":")
        if sep and tail and "/" not in tail:
            if tail in layouts:
                return cls(paths=_split_paths(head), layout=layouts[tail])
            try:
                modality = get_modality(tail).name
                text = head
            except ModalityError:
                # Only a local path that does not exist gets the "unknown modality" error; URLs keep their colons.
                if is_url(text) or text.startswith("/vsi") or Path(text).exists():
                    pass
                elif tail.replace("_", "").isalnum() and all(Path(p).exists() for p in _split_paths(head)):
                    modality, text = tail, head
                else:
                    raise
        paths = _split_paths(text)
        if modality in layouts:
            return cls(paths=paths, layout=layouts[modality])
        return cls(paths=paths, modality=modality)


def _split_paths(text: str) -> list[str]:
    return [p for p in text.split(",") if p]


@dataclass(frozen=True)
class FileBands:
    """Which bands of one file feed the modality, and how their raw values become the modality's unit.

    ``file_bands[i]`` (1-based) feeds ``targets[i]`` (0-based index into the modality's band list). Physical value:
    ``raw * scales[i] + offsets[i]``, then ``db_factor * log10(...)`` for Sentinel-1 linear power (10) or amplitude
    (20); non-finite results are nodata. ``mask`` (optional) names a classification layer whose ``mask_values``
    make a pixel nodata (Sentinel-2 scene classification for ``--mask clouds``).
    """

    path: str  # a GDAL path
    file_bands: tuple[int, ...]
    targets: tuple[int, ...]
    nodata: float | None
    offsets: tuple[float, ...]
    scales: tuple[float, ...] = ()
    db_factor: float = 0.0
    origin: str = ""  # where the bands come from, for `info`: a file name or a STAC asset key
    gcps: bool = False  # georeferenced by ground control points (Sentinel-1 SAFE measurements): warped with them

    def __post_init__(self):
        object.__setattr__(self, "path", str(self.path))
        if not self.scales:
            object.__setattr__(self, "scales", tuple(1.0 for _ in self.file_bands))
        if not self.origin:
            object.__setattr__(self, "origin", display_name(self.path))

    def to_physical(self, data: np.ndarray) -> np.ndarray:
        """Raw values [c, h, w] (NaN where nodata) -> float32 in the modality's unit, NaN where nodata or non-finite.

        The one place where raw values become physical ones; bilinear warping before it is exact because the scale
        and offset are linear (the dB conversion of Sentinel-1 follows the warp, as TerraMind's data were made).
        """
        data = np.asarray(data, dtype=np.float32)
        if any(s != 1.0 for s in self.scales):
            data = data * np.asarray(self.scales, np.float32)[:, None, None]
        if any(self.offsets):
            data = data + np.asarray(self.offsets, np.float32)[:, None, None]
        if self.db_factor:
            with np.errstate(divide="ignore", invalid="ignore"):
                data = np.where(data > 0, np.float32(self.db_factor) * np.log10(data), np.nan).astype(np.float32)
        if not np.isfinite(data).all():
            data = np.where(np.isfinite(data), data, np.float32(np.nan))
        return data


@dataclass(frozen=True)
class ResolvedSource:
    """A source with its modality decided and every band of its layout located in a file."""

    spec: SourceSpec
    modality: str
    files: tuple[FileBands, ...]
    categorical: bool
    info: list[dict] = field(default_factory=list)  # per file: crs, res, size, nodata, descriptions (for `info`)
    notes: tuple[str, ...] = ()  # what was decided automatically, and why (shown by `geomind info`)
    units: str = ""  # the physical unit the values are in after conversion
    product: str = ""  # the product kind (Sentinel-2 SAFE, STAC item ...), empty for plain rasters
    mask: "FileBands | None" = None  # classification layer whose values in mask_values become nodata
    mask_values: tuple[int, ...] = ()
    bands: tuple[str, ...] = ()  # the layout's band names, in order (band ids for Sentinel-2 when it has them)

    def __post_init__(self):
        if not self.bands and self.modality in MODALITIES:  # products resolve pre-trained modalities' full sets
            object.__setattr__(self, "bands", _layout_band_names(pretrained_layout(self.modality)))

    @property
    def to_db(self) -> bool:
        """Sentinel-1 values are linear power or amplitude and are turned into dB."""
        return any(fb.db_factor for fb in self.files)


def _layout_band_names(layout: BandLayout) -> tuple[str, ...]:
    ids = layout.band_ids()
    return tuple(ids[i] or layout.bands[i] for i in range(layout.num_channels))


def to_physical(fb: FileBands, data: np.ndarray, *, to_db: bool | None = None,
                nodata_mask: np.ndarray | None = None) -> np.ndarray:
    """Values of ``fb``'s bands [c, h, w] as read (float32, or raw file values) -> float32 physical values.

    The one place where file values become what the model sees: nodata becomes NaN (``nodata_mask``, where the
    reader found the file's nodata value; a warped read has already turned it into NaN), then
    :meth:`FileBands.to_physical` (scale and offset, Sentinel-1 linear power or amplitude to dB, non-finite values
    to NaN). ``to_db`` is kept for callers; the units are the file's own (``fb.db_factor``).
    """
    data = data.astype(np.float32, copy=False)
    if nodata_mask is not None:
        data[nodata_mask] = np.nan
    return fb.to_physical(data)


def _names(paths: list[str]) -> str:
    first = display_name(paths[0])
    return first if len(paths) == 1 else f"{first} and {len(paths) - 1} more files"


_open = open_raster


def file_info(path: str, dataset, nodata) -> dict:
    """What `info` shows of one opened file."""
    return {
        "path": str(path), "crs": dataset.crs.to_string() if dataset.crs else (
            dataset.gcps[1].to_string() if dataset.gcps[1] else None),
        "res": list(dataset.res), "size": [dataset.width, dataset.height], "count": dataset.count,
        "dtype": dataset.dtypes[0], "nodata": nodata, "descriptions": list(dataset.descriptions),
    }


def normalise_band_name(name: str | None) -> str | None:
    """``B1``/``b01``/``B8A``/``blue``/``vv`` -> ``B01``/``B01``/``B8A``/``BLUE``/``VV``; None for empty names."""
    if not name:
        return None
    name = name.strip().upper()
    match = re.fullmatch(r"B0*(\d{1,2})(A?)", name)
    if match:
        number, suffix = int(match.group(1)), match.group(2)
        return f"B{number}A" if suffix else f"B{number:02d}"
    return name


def _band_index(modality: str) -> dict[str, int]:
    m = MODALITIES[modality]
    index = {name.upper(): i for i, name in enumerate(m.bands)}
    index.update({bid: i for i, bid in enumerate(m.band_ids)})
    if modality == "DEM":
        index.update({"ELEVATION": 0, "HEIGHT": 0})
    return index


def _stem(path) -> str:
    name = display_name(path)
    return name.rsplit(".", 1)[0] if "." in name else name


def _file_band_names(path, dataset, extra: frozenset[str] = frozenset()) -> list[str | None]:
    """Band names of a file from its descriptions, else (single-band files) from the file-name suffix.
    ``extra``: band names a layout knows besides the pre-trained modalities' (upper case)."""
    names = [normalise_band_name(d) for d in dataset.descriptions]
    if dataset.count == 1 and names[0] is None:
        suffix = _stem(path).rsplit("_", 1)[-1]
        names = [normalise_band_name(suffix)]
    known = {n for m in MODALITIES.values() for n in (*(b.upper() for b in m.bands), *m.band_ids)}
    known |= {"ELEVATION", "HEIGHT"} | extra
    return [n if n in known else None for n in names]


# File-name words that name a modality (whole words between separators, any case): "Rome-30m-DEM.tif",
# "tile_17_s1rtc.tif", "copdem.tif".
_NAME_HINTS = {
    "S2L2A": "S2L2A", "L2A": "S2L2A", "S2L1C": "S2L1C", "L1C": "S2L1C", "S1GRD": "S1GRD", "GRD": "S1GRD",
    "S1RTC": "S1RTC", "RTC": "S1RTC", "DEM": "DEM", "COPDEM": "DEM", "ELEVATION": "DEM", "LULC": "LULC",
    "LANDCOVER": "LULC", "NDVI": "NDVI",
}


def _name_hint(paths) -> str | None:
    """The modality the file names agree on, from words like DEM, LULC, NDVI, S1RTC; None if none or several."""
    hints = set()
    for path in paths:
        words = re.split(r"[^A-Za-z0-9]+", _stem(path).upper())
        found = {_NAME_HINTS[w] for w in words if w in _NAME_HINTS}
        if len(found) != 1:
            return None
        hints |= found
    return hints.pop() if len(hints) == 1 else None


def _guess_modality(names: list[str | None], count: int, dtypes: set[str], hint: str | None = None) -> str | None:
    guess = _guess_from_bands(names, count, dtypes)
    # A file-name hint decides only what the bands leave open: which single-band modality, or GRD versus RTC.
    if hint is not None and MODALITIES[hint].num_channels == count:
        if guess is None or {guess, hint} <= set(S1_MODALITIES):
            return hint
    return guess


def _guess_from_bands(names: list[str | None], count: int, dtypes: set[str]) -> str | None:
    named = {n for n in names if n}
    if named:
        if "B10" in named:
            return "S2L1C"
        if named <= set(MODALITIES["S2L1C"].band_ids) | set(MODALITIES["S2L1C"].bands):
            return "S2L1C" if count == 13 else "S2L2A"
        if named <= {"VV", "VH"}:
            return "S1GRD"
        if named <= {"DEM", "ELEVATION", "HEIGHT"}:
            return "DEM"
        if named <= {"LULC"}:
            return "LULC"
        if named <= {"NDVI"}:
            return "NDVI"
    if count == 12:
        return "S2L2A"
    if count == 13:
        return "S2L1C"
    if count == 3 and dtypes == {"uint8"}:
        return "RGB"
    if count == 2:
        return "S1GRD"
    return None


def detect_modality(path) -> str | None:
    """Guess a file's modality from its band count, band descriptions and data type; None when it cannot tell.

    12 bands: S2L2A, 13 (or a B10 band): S2L1C, 3 x uint8: RGB, 2 (or VV/VH): S1GRD. Single-band files are named by
    their description or file-name suffix (``DEM``, ``LULC``, ``NDVI``, ``B04``), or by a word of the file name
    (``Rome-30m-DEM.tif``; ``S1RTC``/``RTC`` also tells RTC from GRD); otherwise give ``FILE:MODALITY``.
    Products (SAFE, STAC) are detected from their metadata (:func:`resolve_sources`).
    """
    from geomind_cli.engine.products import product_modality

    found = product_modality(str(path))
    if found is not None:
        return found
    with _open(path) as dataset:
        return _guess_modality(_file_band_names(path, dataset), dataset.count, set(dataset.dtypes), _name_hint([path]))


def _tag_offsets(dataset, modality: str, file_bands: list[int], names: list[str | None]) -> tuple[float, ...] | None:
    """The baseline offset (in digital numbers) from BOA_ADD_OFFSET/RADIO_ADD_OFFSET tags; None when no tag says."""
    tag = _OFFSET_TAGS.get(modality)
    if tag is None:
        return None
    tags = {k.upper(): v for k, v in dataset.tags().items()}
    out, found = [], False
    for band, name in zip(file_bands, names):
        band_tags = {k.upper(): v for k, v in dataset.tags(band).items()}
        value = band_tags.get(tag) or (name and tags.get(f"{tag}_{name}")) or tags.get(tag)
        found |= value not in (None, "")
        out.append(float(value) if value not in (None, "") else 0.0)
    return tuple(out) if found else None


def s2_conversion(modality: str, scales, offsets, options: ReadOptions, *, metadata_offsets=None,
                  source: str = "") -> tuple[tuple[float, ...], tuple[float, ...], list[str]]:
    """Scale and offset that give Sentinel-2 values in reflectance x 10000, and the notes that explain them.

    ``scales``/``offsets`` come from GDAL or STAC metadata (reflectance = DN * scale + offset when scale is about
    1/10000); ``metadata_offsets`` are baseline offsets in digital numbers (BOA_ADD_OFFSET, RADIO_ADD_OFFSET, a
    product's MTD file). ``options.s2_offset`` overrides both when it is not ``auto``.
    """
    scales, offsets, notes = list(scales), list(offsets), []
    decided = False  # the metadata said what the offset is (possibly none)
    if any(abs(s) < 0.01 for s in scales):
        # Metadata that converts to reflectance (0..1): bring it to TerraMind's reflectance x 10000.
        scales = [s * S2_UNIT_SCALE for s in scales]
        offsets = [o * S2_UNIT_SCALE for o in offsets]
        notes.append(f"reflectance scale and offset{source}: x 10000 gives scale {scales[0]:g}, offset {offsets[0]:g}")
        decided = True
    elif metadata_offsets is not None and not any(offsets):
        offsets = [float(o) for o in metadata_offsets]
        notes.append(f"baseline offset {offsets[0]:g}{source}")
        decided = True
    if options.s2_offset == "none":
        offsets = [0.0 for _ in offsets]
        notes = [n for n in notes if "offset" not in n] + ["no baseline offset (--s2-offset none)"]
    elif isinstance(options.s2_offset, float):
        offsets = [options.s2_offset * s for s in scales]
        notes = [n for n in notes if "offset" not in n] + [f"baseline offset {options.s2_offset:g} (--s2-offset)"]
    elif not decided and modality in S2_MODALITIES:
        notes.append("no baseline offset in the metadata: values taken as reflectance x 10000 (give --s2-offset "
                     "-1000 for an unharmonised product of processing baseline 04.00 or later)")
    return tuple(scales), tuple(offsets), notes


def s1_decision(files: list[FileBands], options: ReadOptions, spec_units: str | None,
                product_units: str | None = None, why: str = "") -> tuple[str, str]:
    """Sentinel-1 units of the raw values and the reason: the option, then the product, then the values."""
    if spec_units:
        return spec_units, "given"
    if options.s1_units != "auto":
        return options.s1_units, "--s1-units"
    if product_units:
        return product_units, why or "from the product"
    return _sampled_s1_units(files)


def _sampled_s1_units(files: list[FileBands]) -> tuple[str, str]:
    """dB is mostly negative; linear power is non-negative and small; amplitude (GRD digital numbers) is
    non-negative integers in the tens to hundreds. Decided on a decimated read."""
    values, integers = [], True
    for fb in files:
        with _open(fb.path) as dataset:
            h = max(1, min(dataset.height, 64))
            w = max(1, min(dataset.width, 64))
            data = dataset.read(list(fb.file_bands), out_shape=(len(fb.file_bands), h, w)).astype(np.float64)
            integers &= all(np.dtype(d).kind in "ui" for d in dataset.dtypes)
            if fb.nodata is not None:
                data[data == fb.nodata] = np.nan
            data = data * np.asarray(fb.scales)[:, None, None] + np.asarray(fb.offsets)[:, None, None]
            values.append(data[np.isfinite(data)])
    values = np.concatenate(values) if values else np.array([])
    if values.size == 0:
        return "db", "no valid values to test; taken as dB"
    negative, median = float(np.mean(values < 0)), float(np.median(values))
    if negative < 0.05 and median < 5.0:
        return "linear", f"values non-negative with median {median:.3g}: linear power"
    if negative < 0.05 and integers and median >= 5.0:
        return "amplitude", f"non-negative integers with median {median:.3g}: amplitude"
    return "db", f"{negative:.0%} of values negative: dB"


def _gdal_scale_offset(dataset, bands: list[int]) -> tuple[list[float], list[float]]:
    scales = [float(dataset.scales[b - 1]) if dataset.scales[b - 1] is not None else 1.0 for b in bands]
    offsets = [float(dataset.offsets[b - 1]) if dataset.offsets[b - 1] is not None else 0.0 for b in bands]
    return scales, offsets


def resolve_sources(spec: SourceSpec, options: ReadOptions = ReadOptions(), *,
                    categorical: set[str] = frozenset({"LULC"})) -> list[ResolvedSource]:
    """A source as one or more resolved modalities: products (SAFE, STAC) through :mod:`.products`, files here."""
    from geomind_cli.engine.products import open_product

    product = open_product(spec, options, categorical=set(categorical))
    if product is not None:
        return product
    return [resolve_source(spec, options, categorical=categorical)]


def resolve_source(spec: SourceSpec, options: ReadOptions = ReadOptions(), *,
                   categorical: set[str] = frozenset({"LULC"})) -> ResolvedSource:
    """Open every file of a source, decide its modality and locate each band of its layout (1-based file band
    index): the pre-trained modality's bands, or ``spec.layout``'s."""
    extra = frozenset(b.upper() for b in spec.layout.bands) if spec.layout is not None else frozenset()
    per_file = []
    for path in spec.paths:
        with _open(path) as dataset:
            gcps = dataset.crs is None and bool(dataset.gcps[0])  # radar geometry (Sentinel-1 GRD COGs): warped
            if dataset.crs is None and not gcps:
                raise InputError(f"{path} has no coordinate reference system; georeference it (e.g. gdal_edit.py -a_srs).")
            names = _file_band_names(path, dataset, extra)
            info = file_info(path, dataset, spec.nodata if spec.nodata is not None else dataset.nodata)
            info["gcps"] = gcps
            per_file.append((path, dataset.count, names, set(dataset.dtypes), info))
    total = sum(count for _, count, _, _, _ in per_file)
    if spec.bands is not None:
        if len(spec.bands) != total:
            raise InputError(f"{len(spec.bands)} band names were given but the input has {total} bands; name each band.")
        given = [normalise_band_name(b) for b in spec.bands]
        per_file_names, start = [], 0
        for _, count, _, _, _ in per_file:
            per_file_names.append(given[start:start + count])
            start += count
    else:
        per_file_names = [names for _, _, names, _, _ in per_file]
    all_names = [n for names in per_file_names for n in names]
    dtypes = set().union(*(d for _, _, _, d, _ in per_file))
    modality = spec.modality or _guess_modality(all_names, total, dtypes, _name_hint(spec.paths))
    if modality is None:
        raise InputError(
            f"Cannot tell the modality of {_names(spec.paths)} ({total} bands); "
            f"add it as FILE:MODALITY (one of {', '.join(MODALITIES)})."
        )
    if spec.layout is None and modality not in MODALITIES:
        raise ModalityError(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")
    layout = spec.layout or pretrained_layout(modality)
    index = _band_index(modality) if spec.layout is None else layout.lookup()
    located: dict[int, tuple[int, int]] = {}  # target band -> (file number, 1-based band)
    for f, names in enumerate(per_file_names):
        for b, name in enumerate(names, start=1):
            if name in index and index[name] not in located:
                located[index[name]] = (f, b)
    if not located and (not any(all_names) or spec.layout is not None):
        # No band matched by name: files are taken to hold the layout's bands in order, or (a band subset) all
        # the bands of its pre-trained modality in TerraMind order.
        pos = [(f, b) for f, (_, count, _, _, _) in enumerate(per_file) for b in range(1, count + 1)]
        base_positions = layout.base_positions()
        if total == layout.num_channels:
            located = dict(enumerate(pos))
        elif base_positions is not None and total == MODALITIES[layout.base].num_channels:
            located = {i: pos[p] for i, p in enumerate(base_positions)}
    missing = [i for i in range(layout.num_channels) if i not in located]
    wanted = list(_layout_band_names(layout))
    if missing:
        present = [n for n in all_names if n] or [f"{total} unnamed band(s)"]
        raise InputError(
            f"{modality} needs bands {', '.join(wanted[i] for i in missing)} that "
            f"{_names(spec.paths)} lacks (it has {', '.join(present)}); "
            "add the missing band files or name the bands in file order."
        )
    base = layout.base
    files, notes = [], []
    for f, (path, _, _, _, info) in enumerate(per_file):
        targets = sorted(t for t, (ff, _) in located.items() if ff == f)
        if not targets:
            continue
        bands = [located[t][1] for t in targets]
        with _open(path) as dataset:
            scales, offsets = _gdal_scale_offset(dataset, bands)
            if any(s != 1.0 for s in scales) or any(offsets):
                notes.append(f"{display_name(path)}: GDAL scale {scales[0]:g}, offset {offsets[0]:g}")
            if base in S2_MODALITIES:
                tagged = _tag_offsets(dataset, base, bands, [per_file_names[f][b - 1] for b in bands])
                scales, offsets, s2_notes = s2_conversion(
                    base, scales, offsets, options, metadata_offsets=tagged,
                    source=f" ({_OFFSET_TAGS[base]} tag)" if tagged else " (GDAL metadata)")
                notes.extend(f"{display_name(path)}: {n}" for n in s2_notes)
        files.append(FileBands(gdal_path(path), tuple(bands), tuple(targets), info["nodata"], tuple(offsets),
                               tuple(scales), gcps=info["gcps"]))
    units = MODALITIES[base].unit if base else ""
    if base in S1_MODALITIES:
        s1_units, why = s1_decision(files, options, spec.s1_units)
        notes.append(f"Sentinel-1 values are {s1_units} ({why})" + ("" if s1_units == "db" else ", converted to dB"))
        files = [FileBands(fb.path, fb.file_bands, fb.targets, fb.nodata, fb.offsets, fb.scales,
                           DB_FACTOR[s1_units], gcps=fb.gcps) for fb in files]
    is_categorical = base is not None and (base in categorical or MODALITIES[base].categorical)
    return ResolvedSource(spec, modality, tuple(files), modality in categorical or is_categorical,
                          [info for *_, info in per_file], tuple(notes), units, bands=tuple(wanted))
