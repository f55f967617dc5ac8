"""Logging for the command line: one handler on stderr, and the libraries' chatter only with ``--verbose``.

GDAL (through rasterio), huggingface_hub, Dask and friends log warnings a user cannot act on (a COG block size
below 128 px on a small output, each network retry). They reach our one handler like every record, and a filter
keeps them back unless ``--verbose``; their errors always show. geomind's own warnings (random weights) always show,
``--quiet`` included.
"""

from __future__ import annotations

import logging
import sys

# Loggers of libraries whose warnings are not for the user (prefixes of logger names).
LIBRARIES = ("rasterio", "huggingface_hub", "httpx", "httpcore", "urllib3", "filelock", "fsspec", "distributed",
             "tornado", "asyncio", "numexpr")
FORMAT = "geomind: %(levelname)s: %(message)s"


class _LibraryFilter(logging.Filter):
    """Drop library records below ERROR, and Python warnings raised outside geomind (they start with the file they
    come from); geomind's own warnings still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        if record.name == "py.warnings":
            return "geomind_cli" in record.getMessage().split(":", 1)[0]
        return not record.name.startswith(LIBRARIES)


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record comes (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(*, verbose: bool = False, quiet: bool = False) -> None:
    """Route every record to one stderr handler: geomind's warnings (also if ``quiet``); with ``verbose``,
    geomind's info and the libraries' warnings too. Called by ``main`` and again by each command's options; it
    replaces the handler it added before and leaves others alone (a test runner's capture)."""
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(FORMAT))
    if quiet or not verbose:
        handler.addFilter(_LibraryFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # --quiet keeps geomind's own warnings: they are few and matter (RANDOM WEIGHTS must never pass unseen).
    root.setLevel(logging.INFO if verbose and not quiet else logging.WARNING)
    logging.captureWarnings(True)  # Python warnings of libraries go through the same handler (py.warnings)
