"""Resume: which outputs a previous run already finished, and the leftovers of one that was killed.

The writers only ever rename a finished COG (or Zarr store) onto an output path, so a file there that geomind wrote
is complete. :func:`why_incomplete` checks exactly that: the file opens, is a COG (or a Zarr store), carries our
``GEOMIND_OUTPUT`` tag for this output, lies on this scene's grid (so an output of another scene with the same
name is not taken for done), and was produced by the same work: its ``GEOMIND_FINGERPRINT`` tag (a hash of the
command, its options, the model and the weights file, see :attr:`OutputSpec.fingerprint`) equals this run's.

Hidden files (the writers' ``.NAME.<owner>.partial.tif``/``.cog.tif``/``.partial.zarr``/``.old``, the Dask staging
folders ``.geomind-staging-<owner>``) carry an owner token, :func:`owner_token`: this machine and process. A later
run removes those whose process is gone (:func:`leftovers`), and leaves alone those of a run still going, or of
another machine (on a shared file system it cannot tell whether that run is alive).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import uuid
import zlib
from pathlib import Path

import rasterio

from geomind_cli.engine.grid import Grid
from geomind_cli.engine.outputs import OutputSpec

STAGING_PREFIX = ".geomind-staging-"
_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
_OWNER = re.compile(r"(?<![0-9a-f])([0-9a-f]{8})-(\d+)-[0-9a-f]{8}")
_HIDDEN_SUFFIXES = (".tif", ".zarr", ".old")


def owner_token() -> str:
    """A unique name part for hidden files that says which machine and process own them."""
    return f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def owner_alive(name: str) -> bool:
    """False when ``name`` has no owner token (an older geomind's file) or its owner process on this machine is
    gone; True for a live process, and for files of another machine (there is no telling)."""
    match = _OWNER.search(name)
    if match is None:
        return False
    host, pid = match.group(1), int(match.group(2))
    if host != _HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def output_files(spec: OutputSpec) -> list[Path]:
    """Every file an output writes: the main raster and its probability/confidence sidecars."""
    files = [Path(spec.path)]
    files += [spec.sidecar(what) for what in ("probabilities", "confidence") if getattr(spec, what)]
    return files


def _file_mismatch(path: Path, spec: OutputSpec, grid: Grid) -> str | None:
    try:
        with rasterio.open(path) as src:
            tags = src.tags()
            if tags.get("GEOMIND_OUTPUT") != spec.name or src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG":
                return "it is not a finished geomind output"
            if (src.width, src.height) != (grid.width, grid.height) or src.crs != grid.crs \
                    or not src.transform.almost_equals(grid.transform, precision=1e-9):
                return "it lies on another grid (another scene)"
            return _fingerprint_mismatch(tags.get("GEOMIND_FINGERPRINT"), spec)
    except (rasterio.errors.RasterioError, OSError):
        return "it cannot be read as a finished geomind output"


def _store_mismatch(path: Path, spec: OutputSpec, grid: Grid) -> str | None:
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr

    try:
        with xr.open_zarr(path, decode_coords="all") as ds:
            ours = [v for v in ds.data_vars.values() if v.attrs.get("GEOMIND_OUTPUT") == spec.name]
            if len(ours) != 1:
                return "it is not a finished geomind output"
            if (ours[0].sizes["x"], ours[0].sizes["y"]) != (grid.width, grid.height) or ours[0].rio.crs != grid.crs \
                    or not ours[0].rio.transform().almost_equals(grid.transform, precision=1e-9):
                return "it lies on another grid (another scene)"
            return _fingerprint_mismatch(ours[0].attrs.get("GEOMIND_FINGERPRINT"), spec)
    except (OSError, ValueError, KeyError):
        return "it cannot be read as a finished geomind output"


def _fingerprint_mismatch(found: str | None, spec: OutputSpec) -> str | None:
    if spec.fingerprint is None or found == spec.fingerprint:
        return None
    return "it was made by another command, options, model or weights file"


def output_files(spec: OutputSpec) -> list[Path]:
    """Every file an output writes: the main raster and its probability/confidence sidecars."""
    files = [Path(spec.path)]
    files += [spec.sidecar(what) for what in ("probabilities", "confidence") if getattr(spec, what)]
    return files


def why_incomplete(spec: OutputSpec, grid: Grid) -> str | None:
    """None when every file of ``spec`` is a finished geomind COG or Zarr store on ``grid`` (the scene's grid) made
    by the same work (fingerprint); else why not, for the first file that is not (``"it does not exist"``...)."""
    target = grid.scaled(16) if spec.kind == "grid" else grid
    for path in output_files(spec):
        if not path.exists():
            return "it does not exist"
        check = _store_mismatch if path.suffix.lower() == ".zarr" else _file_mismatch
        reason = check(path, spec, target)
        if reason is not None:
            return reason
    return None


def is_complete(spec: OutputSpec, grid: Grid) -> bool:
    """True when :func:`why_incomplete` finds nothing missing."""
    return why_incomplete(spec, grid) is None


def leftovers(spec: OutputSpec) -> list[Path]:
    """Hidden files that killed runs left next to this output: its writers' staging files and ``.old`` stores, and
    the folder's Dask staging folders, those whose owner process is gone (see :func:`owner_alive`)."""
    found = []
    for path in output_files(spec):
        found += [p for p in path.parent.glob(f".{path.name}.*") if p.suffix in _HIDDEN_SUFFIXES]
    found += list(Path(spec.path).parent.glob(f"{STAGING_PREFIX}*"))
    return sorted(p for p in set(found) if not owner_alive(p.name))


def remove(path: Path) -> None:
    """Delete a leftover: a file, or a Zarr store's or staging folder."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
