"""Which kind of product an input names, and uniform access to SAFE products stored as a folder or a zip."""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from geomind_cli.engine.remote import is_url
from geomind_cli.errors import InputError

_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img", ".nc", ".h5", ".zarr", ".png", ".jpg")
_S2_MTD = re.compile(r"(^|/)MTD_MSIL(1C|2A)\.xml$")


@dataclass(frozen=True)
class SafeArchive:
    """A SAFE product as a folder or a local zip: its member paths (relative to the ``.SAFE`` root), their bytes,
    and the GDAL path of each (``/vsizip/`` inside zips)."""

    location: str  # the folder, or the zip file
    root: str  # the .SAFE root inside the zip ("" for folders: location is the root)

    @cached_property
    def names(self) -> tuple[str, ...]:
        if self.is_zip:
            with zipfile.ZipFile(self.location) as archive:
                members = archive.namelist()
            prefix = self.root + "/" if self.root else ""
            return tuple(m[len(prefix):] for m in members if m.startswith(prefix) and not m.endswith("/"))
        base = Path(self.location)
        return tuple(sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()))

    @property
    def is_zip(self) -> bool:
        return self.location.lower().endswith(".zip")

    @property
    def name(self) -> str:
        return Path(self.root or self.location).name

    def read(self, member: str) -> bytes:
        try:
            if self.is_zip:
                with zipfile.ZipFile(self.location) as archive:
                    return archive.read(f"{self.root}/{member}" if self.root else member)
            return (Path(self.location) / member).read_bytes()
        except (OSError, KeyError) as error:
            raise InputError(f"{self.name}: cannot read {member} ({error}); the product is incomplete.")

    def gdal(self, member: str) -> str:
        if self.is_zip:
            inner = f"{self.root}/{member}" if self.root else member
            return f"/vsizip/{os.path.abspath(self.location)}/{inner}"
        return str(Path(self.location) / member)

    def find(self, pattern: str) -> list[str]:
        """Members whose path matches the regular expression ``pattern`` (searched)."""
        rx = re.compile(pattern)
        return [n for n in self.names if rx.search(n)]


def safe_archive(path: str) -> SafeArchive | None:
    """The SAFE product at ``path`` (a .SAFE folder, a zip holding one, or a file inside a SAFE folder), or None."""
    if is_url(path) or path.startswith("/vsi"):
        return None
    p = Path(path)
    if p.is_file() and p.name in ("manifest.safe", "MTD_MSIL1C.xml", "MTD_MSIL2A.xml"):
        p = p.parent
    if p.is_dir():
        if (p / "manifest.safe").is_file() or any(p.glob("MTD_MSIL*.xml")):
            return SafeArchive(str(p), "")
        return None
    if p.is_file() and p.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(p) as archive:
                members = archive.namelist()
        except zipfile.BadZipFile:
            raise InputError(f"{p.name} is not a readable zip archive.")
        marks = [m for m in members if m.endswith("/manifest.safe") or m == "manifest.safe" or _S2_MTD.search(m)]
        if not marks:
            return None
        root = min((m.rsplit("/", 1)[0] if "/" in m else "" for m in marks), key=len)
        return SafeArchive(str(p), root)
    return None


def product_kind(path: str) -> str | None:
    """``"s2-safe"``, ``"s1-safe"``, ``"stac"`` or None (a plain raster)."""
    archive = safe_archive(path)
    if archive is not None:
        if archive.find(r"^MTD_MSIL(1C|2A)\.xml$"):
            return "s2-safe"
        if archive.find(r"^measurement/") or archive.find(r"^annotation/s1"):
            return "s1-safe"
        if "manifest.safe" in archive.names and b"SENTINEL-1" in archive.read("manifest.safe").upper():
            return "s1-safe"
        raise InputError(f"{archive.name} is a SAFE product geomind cannot read (neither Sentinel-2 L1C/L2A nor "
                         "Sentinel-1 GRD).")
    lowered = path.split("?", 1)[0].split("#", 1)[0].lower()
    if lowered.endswith((".json", ".geojson")):
        return "stac"
    if is_url(path) and not lowered.endswith(_RASTER_SUFFIXES) and re.search(r"/items(/|$)|/search", lowered):
        return "stac"  # a STAC API item or search URL
    return None
