"""GDAL paths and the settings of remote reads, in one place.

Inputs are GDAL paths, never ``pathlib.Path`` (which folds ``https://`` into ``https:/``). URLs are mapped onto
GDAL's virtual file systems (``https://`` -> ``/vsicurl/https://``, ``s3://`` -> ``/vsis3/``, ``gs://`` ->
``/vsigs/``, ``az://`` -> ``/vsiaz/``); ``/vsi...`` paths pass through unchanged.

Remote reads of COGs are fast when GDAL does not list the remote "directory" on open (one request fewer per file and
no 403 on buckets that forbid listing), caches what it read (``VSI_CACHE``), merges and multiplexes range requests,
and retries transient HTTP errors. The HTTP settings only concern network reads, so they are set process-wide as
defaults (a user's environment wins); the directory-listing switch also changes how local files find their sidecars
(``.aux.xml`` holding scale/offset) and the VSI cache would hold local files in memory too, so those two are applied
only while a remote file is opened (:func:`open_raster`).
"""

from __future__ import annotations

import os
import re

import rasterio
from rasterio.errors import RasterioIOError

from geomind_cli.errors import InputError

# Process-wide defaults for network reads (GDAL reads config options from the environment too).
HTTP_SETTINGS = {
    "CPL_VSIL_CURL_CACHE_SIZE": str(256 * 2**20),  # the /vsicurl/ block cache shared by all files
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_INGESTED_BYTES_AT_OPEN": "65536",  # a COG header and tile index in the first request
}
# Applied only while opening remote files (see module docstring). The VSI cache is chosen when a file is opened;
# set for every file it would also hold up to its size of each local file the engine streams (outputs included),
# which the engine's bounded memory does not allow.
REMOTE_OPEN_SETTINGS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "VSI_CACHE": "TRUE",
                        "VSI_CACHE_SIZE": str(32 * 2**20)}  # bytes per opened remote file

_SCHEMES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/",
            "abfs": "/vsiaz/", "oss": "/vsioss/"}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")


def apply_http_settings() -> None:
    """Set the remote-read defaults where the environment does not already choose."""
    for key, value in HTTP_SETTINGS.items():
        os.environ.setdefault(key, value)


def is_remote(path: str) -> bool:
    """True for URLs and GDAL virtual file system paths that go over the network."""
    path = str(path)
    match = _URL.match(path)
    if match:
        return match.group(1).lower() != "file"
    return path.startswith(("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift",
                            "/vsiwebhdfs", "/vsihdfs")) or "/vsicurl/" in path or "/vsis3/" in path


def is_url(path: str) -> bool:
    return bool(_URL.match(str(path)))


def gdal_path(path) -> str:
    """The path GDAL opens: URLs on their virtual file system, ``file://`` stripped, anything else unchanged."""
    path = str(path)
    match = _URL.match(path)
    if not match:
        return path
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "file":
        return rest
    if scheme in ("http", "https"):
        return f"/vsicurl/{path}"
    if scheme in _SCHEMES:
        return _SCHEMES[scheme] + rest
    raise InputError(f"Cannot read {path}: the {scheme}:// scheme is not supported (use http(s), s3, gs, az or a "
                     "GDAL /vsi path).")


def display_name(path) -> str:
    """The last component of a path or URL (without a query string), for messages and tables."""
    return str(path).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def open_env(path):
    """The GDAL settings to hold while opening ``path`` (remote-open settings for network files)."""
    from contextlib import nullcontext

    return rasterio.Env(**REMOTE_OPEN_SETTINGS) if is_remote(gdal_path(path)) else nullcontext()


def open_raster(path):
    """``rasterio.open`` of a GDAL path, with the remote-open settings for network files; one-line errors."""
    target = gdal_path(path)
    try:
        with open_env(target):
            return rasterio.open(target)
    except (RasterioIOError, OSError) as error:
        raise InputError(f"Cannot read {path} as a raster ({str(error).splitlines()[0]}); check the path and format.")


def read_bytes(path) -> bytes:
    """The bytes of a small file (metadata XML, STAC JSON): a local path, an http(s) URL or a member of a local zip
    (``/vsizip/archive.zip/member``)."""
    path = str(path)
    try:
        if path.startswith("/vsizip/"):
            import zipfile

            archive, member = split_zip_path(path)
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        if re.match(r"^https?://", path):
            import urllib.request

            with urllib.request.urlopen(path, timeout=60) as response:  # noqa: S310 (user-given URL)
                return response.read()
        with open(gdal_path(path), "rb") as handle:
            return handle.read()
    except (OSError, KeyError) as error:
        raise InputError(f"Cannot read {path} ({error}); check the path.")


def split_zip_path(path: str) -> tuple[str, str]:
    """``/vsizip/dir/a.zip/x/y.xml`` -> (``dir/a.zip``, ``x/y.xml``)."""
    rest = path[len("/vsizip/"):]
    index = rest.lower().find(".zip")
    if index < 0:
        raise InputError(f"{path} names no .zip archive.")
    return rest[:index + 4], rest[index + 4:].lstrip("/")


apply_http_settings()
