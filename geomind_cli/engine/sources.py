"""Input sources: what the user named on the command line, and how its bands map onto TerraMind's band order.

A :class:`SourceSpec` is one modality coming from one file (all bands) or from one file per band (Sentinel-2 band
files at 10/20/60 m). :func:`resolve_source` opens the files, finds which file band feeds which TerraMind band (band
descriptions, then file-name suffixes, then position), and says which radiometric fix-ups apply (Sentinel-2
processing-baseline offset, Sentinel-1 linear to dB). Reading and alignment live in :mod:`geomind_cli.engine.grid`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from geomind_cli.errors import InputError, ModalityError
from geomind_cli.facts.layouts import BandLayout, pretrained_layout
from geomind_cli.facts.modalities import MODALITIES, get_modality

S1_MODALITIES = ("S1GRD", "S1RTC")
S2_MODALITIES = ("S2L2A", "S2L1C")
# Sentinel-2 from processing baseline 04.00 stores DN = reflectance * 10000 - offset (offset 1000); products carry the
# (negative) offset as BOA_ADD_OFFSET (L2A) or RADIO_ADD_OFFSET (L1C), per band or once.
_OFFSET_TAGS = {"S2L2A": "BOA_ADD_OFFSET", "S2L1C": "RADIO_ADD_OFFSET"}


@dataclass(frozen=True)
class SourceSpec:
    """One input modality: a file, or one file per band, with optional overrides.

    ``bands`` names the file bands in file order (band ids like ``B02`` or TerraMind names like ``BLUE``/``VV``), for
    files without band descriptions. ``nodata`` overrides the files' nodata value. ``s1_units`` says whether
    Sentinel-1 values are linear power or dB (default: detected from the values). ``layout``: the bands a model
    wants from this source when they are not a pre-trained modality's full set (a fine-tune's band subset or new
    modality); it names the source (``modality`` is its name).
    """

    paths: list[Path]
    modality: str | None = None
    bands: list[str] | None = None
    nodata: float | None = None
    s1_units: Literal["db", "linear"] | None = None
    layout: BandLayout | None = None

    def __post_init__(self):
        object.__setattr__(self, "paths", [Path(p) for p in self.paths])
        if not self.paths:
            raise InputError("An input source needs at least one file.")
        if self.layout is not None:
            object.__setattr__(self, "modality", self.layout.name)
        elif self.modality is not None:
            try:
                object.__setattr__(self, "modality", get_modality(self.modality).name)
            except ModalityError:
                pass  # a name only a model's layout knows (a new modality); resolve_source says if none does
        if self.s1_units not in (None, "db", "linear"):
            raise InputError(f"Sentinel-1 units must be 'db' or 'linear', not {self.s1_units!r}.")

    @classmethod
    def parse(cls, text: str, layouts: dict[str, BandLayout] | None = None) -> "SourceSpec":
        """Parse the CLI's ``FILE[,FILE...][:MODALITY]`` syntax (``scene.tif``, ``scene.tif:S1GRD``, ``b02.tif,b03.tif:S2L2A``).

        The suffix after the last colon is taken as a modality when it names one, or when the files before it exist
        (a new modality of a fine-tune: ``ndvi.tif:NDVI_S2``), so paths containing colons (``/vsicurl/https://...``)
        still work. ``layouts``: the inputs a model takes, by name; a source named by one of them (exactly, or by
        a pre-trained modality's alias) gets that layout.
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
                if Path(text).exists():
                    pass
                elif tail.replace("_", "").isalnum() and all(p.exists() for p in _split_paths(head)):
                    modality, text = tail, head
                else:
                    raise
        paths = _split_paths(text)
        if modality in layouts:
            return cls(paths=paths, layout=layouts[modality])
        return cls(paths=paths, modality=modality)


def _split_paths(text: str) -> list[Path]:
    return [Path(p) for p in text.split(",") if p]


@dataclass(frozen=True)
class FileBands:
    """Which bands of one file feed the modality: ``file_bands[i]`` (1-based) feeds ``targets[i]`` (0-based index
    into the modality's band list)."""

    path: Path
    file_bands: tuple[int, ...]
    targets: tuple[int, ...]
    nodata: float | None
    offsets: tuple[float, ...]  # added to the values of each selected band (Sentinel-2 baseline offset), 0 if none


@dataclass(frozen=True)
class ResolvedSource:
    """A source with its modality decided and every band of its layout located in a file."""

    spec: SourceSpec
    modality: str
    files: tuple[FileBands, ...]
    to_db: bool  # Sentinel-1 values are linear power and must be turned into dB
    categorical: bool
    info: list[dict] = field(default_factory=list)  # per file: crs, res, size, nodata, descriptions (for `info`)
    bands: tuple[str, ...] = ()  # the layout's band names, in order (band ids for Sentinel-2 when it has them)


def to_physical(fb: FileBands, data: np.ndarray, *, to_db: bool, nodata_mask: np.ndarray | None = None) -> np.ndarray:
    """Values of ``fb``'s bands [c, h, w] as read (float32, or raw file values) -> float32 physical values.

    The one place where file values become what the model sees: nodata becomes NaN (``nodata_mask``, where the
    reader found the file's nodata value; a warped read has already turned it into NaN), the Sentinel-2 baseline
    offset is added, Sentinel-1 linear power becomes dB. Works on any block of rows, in place when it can.
    """
    data = data.astype(np.float32, copy=False)
    if nodata_mask is not None:
        data[nodata_mask] = np.nan
    if any(fb.offsets):
        data += np.asarray(fb.offsets, dtype=np.float32)[:, None, None]
    if to_db:
        with np.errstate(divide="ignore", invalid="ignore"):
            data = np.where(data > 0, 10.0 * np.log10(data), np.nan).astype(np.float32)
    return data


def _names(paths: list[Path]) -> str:
    return paths[0].name if len(paths) == 1 else f"{paths[0].name} and {len(paths) - 1} more files"


def _open(path: Path):
    try:
        return rasterio.open(path)
    except (RasterioIOError, OSError) as error:
        raise InputError(f"Cannot read {path} as a raster ({str(error).splitlines()[0]}); check the path and format.")


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


def _file_band_names(path: Path, dataset, extra: frozenset[str] = frozenset()) -> list[str | None]:
    """Band names of a file from its descriptions, else (single-band files) from the file-name suffix.
    ``extra``: band names a layout knows besides the pre-trained modalities' (upper case)."""
    names = [normalise_band_name(d) for d in dataset.descriptions]
    if dataset.count == 1 and names[0] is None:
        suffix = path.stem.rsplit("_", 1)[-1]
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
        words = re.split(r"[^A-Za-z0-9]+", Path(path).stem.upper())
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
    """
    path = Path(path)
    with _open(path) as dataset:
        return _guess_modality(_file_band_names(path, dataset), dataset.count, set(dataset.dtypes), _name_hint([path]))


def _offsets(dataset, modality: str, file_bands: list[int], names: list[str | None]) -> tuple[float, ...]:
    tag = _OFFSET_TAGS.get(modality)
    if tag is None:
        return tuple(0.0 for _ in file_bands)
    tags = {k.upper(): v for k, v in dataset.tags().items()}
    out = []
    for band, name in zip(file_bands, names):
        band_tags = {k.upper(): v for k, v in dataset.tags(band).items()}
        value = band_tags.get(tag) or (name and tags.get(f"{tag}_{name}")) or tags.get(tag)
        out.append(float(value) if value not in (None, "") else 0.0)
    return tuple(out)


def _linear_sample(files: list[FileBands]) -> bool:
    """Sentinel-1 in linear power is non-negative; in dB mostly negative. Decide on a decimated read."""
    values = []
    for fb in files:
        with _open(fb.path) as dataset:
            h = max(1, min(dataset.height, 64))
            w = max(1, min(dataset.width, 64))
            data = dataset.read(list(fb.file_bands), out_shape=(len(fb.file_bands), h, w)).astype(np.float64)
            if fb.nodata is not None:
                data[data == fb.nodata] = np.nan
            values.append(data[np.isfinite(data)])
    values = np.concatenate(values) if values else np.array([])
    if values.size == 0:
        return False
    return float(np.mean(values < 0)) < 0.05 and float(np.median(values)) < 5.0


def resolve_source(spec: SourceSpec, *, categorical: set[str] = frozenset({"LULC"})) -> ResolvedSource:
    """Open every file of a source, decide its modality and locate each band of its layout (1-based file band
    index): the pre-trained modality's bands, or ``spec.layout``'s."""
    extra = frozenset(b.upper() for b in spec.layout.bands) if spec.layout is not None else frozenset()
    per_file = []
    for path in spec.paths:
        with _open(path) as dataset:
            if dataset.crs is None:
                raise InputError(f"{path} has no coordinate reference system; georeference it (e.g. gdal_edit.py -a_srs).")
            names = _file_band_names(path, dataset, extra)
            info = {
                "path": str(path), "crs": dataset.crs.to_string(), "res": list(dataset.res),
                "size": [dataset.width, dataset.height], "count": dataset.count, "dtype": dataset.dtypes[0],
                "nodata": spec.nodata if spec.nodata is not None else dataset.nodata,
                "descriptions": list(dataset.descriptions),
            }
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
    ids = layout.band_ids()
    wanted = [ids[i] or layout.bands[i] for i in range(layout.num_channels)]
    if missing:
        present = [n for n in all_names if n] or [f"{total} unnamed band(s)"]
        raise InputError(
            f"{modality} needs bands {', '.join(wanted[i] for i in missing)} that "
            f"{_names(spec.paths)} lacks (it has {', '.join(present)}); "
            "add the missing band files or name the bands in file order."
        )
    base = layout.base
    files = []
    for f, (path, _, _, _, info) in enumerate(per_file):
        targets = sorted(t for t, (ff, _) in located.items() if ff == f)
        if not targets:
            continue
        bands = [located[t][1] for t in targets]
        with _open(path) as dataset:
            offsets = (_offsets(dataset, base, bands, [per_file_names[f][b - 1] for b in bands]) if base
                       else tuple(0.0 for _ in bands))
        files.append(FileBands(path, tuple(bands), tuple(targets), info["nodata"], offsets))
    to_db = False
    if base in S1_MODALITIES:
        to_db = spec.s1_units == "linear" if spec.s1_units else _linear_sample(files)
    is_categorical = base is not None and (base in categorical or MODALITIES[base].categorical)
    return ResolvedSource(spec, modality, tuple(files), to_db, modality in categorical or is_categorical,
                          [info for *_, info in per_file], tuple(wanted))
