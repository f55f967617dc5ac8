"""What a run tells its user: one line per output written, one summary line, or one JSON object for scripts.

Each output is described from the file itself (size, data type, layout, band names, class names), so the report
says what is on disk, not what was meant to be. Human lines go to stderr (colour on a terminal); ``--json`` prints
one object on stdout at the end; ``--quiet`` prints nothing.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from geomind_cli.engine import RunSummary
from geomind_cli.tasks.options import RunOptions


@dataclass(frozen=True)
class OutputFacts:
    """One written output as found on disk."""

    path: str
    width: int
    height: int
    dtype: str
    bands: list[str]
    layout: str  # "COG", "GeoTIFF" or "Zarr"
    bytes: int
    kind: str = ""  # the engine's output kind (continuous, classes, grid) when the file records it
    classes: list[str] = field(default_factory=list)

    def holds(self) -> str:
        """What the values are, in a few words."""
        if self.classes and len(self.bands) == 1:
            names = ", ".join(self.classes[:3]) + (", ..." if len(self.classes) > 3 else "")
            return f"{len(self.classes)} classes ({names})"
        per_patch = " per 16 px patch" if self.kind == "grid" else ""
        if len(self.bands) <= 4:
            return f"band{'s' if len(self.bands) > 1 else ''} {', '.join(self.bands)}{per_patch}"
        return f"{len(self.bands)} bands ({', '.join(self.bands[:2])}, ...){per_patch}"

    def sentence(self) -> str:
        return (f"{self.path}: {self.width} x {self.height} px, {self.dtype} {self.layout}, {self.holds()}, "
                f"{human_bytes(self.bytes)}")


def human_bytes(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def describe(path: str | Path) -> OutputFacts:
    """Facts about a written GeoTIFF/COG or Zarr store."""
    path = Path(path)
    if path.suffix == ".zarr":
        return _describe_zarr(path)
    import rasterio

    with rasterio.open(path) as src:
        tags = src.tags()
        names = json.loads(tags["CLASS_NAMES"]) if "CLASS_NAMES" in tags else []
        layout = "COG" if src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" else src.driver
        if layout == "GTiff":
            layout = "GeoTIFF"
        dtype = "float16" if src.tags(1, "IMAGE_STRUCTURE").get("NBITS") == "16" else src.dtypes[0]
        bands = [d or f"band_{i + 1}" for i, d in enumerate(src.descriptions)]
        return OutputFacts(str(path), src.width, src.height, dtype, bands, layout, path.stat().st_size,
                           tags.get("GEOMIND_KIND", ""), names)


def _describe_zarr(path: Path) -> OutputFacts:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    array = next(a for _, a in group.arrays() if a.ndim == 3)  # (band, y, x); the rest are coordinates
    bands = list(array.attrs.get("long_name", [])) or [f"band_{i + 1}" for i in range(array.shape[0])]
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return OutputFacts(str(path), array.shape[2], array.shape[1], str(array.dtype), bands, "Zarr", size, "grid")


def summary_sentence(summary: RunSummary) -> str:
    skipped = f" ({summary.skipped} all nodata, skipped)" if summary.skipped else ""
    plural = "s" if summary.tiles != 1 else ""
    return (f"{summary.tiles} tile{plural}{skipped} in {summary.seconds:.1f} s "
            f"({summary.tiles_per_second:.3g} tiles/s), {summary.km2:,.2f} km2, "
            f"peak memory {summary.peak_rss_mb:,.0f} MB")


def summary_object(summary: RunSummary) -> dict:
    """The run summary for scripts: the engine's numbers, each output's facts in place of its bare path."""
    data = asdict(summary)
    data["outputs"] = [asdict(describe(path)) for path in summary.outputs]
    return data


class Report:
    """Prints what runs did, as ``options`` asks: human lines on stderr, one JSON object on stdout, or nothing.

    ``done`` and ``skipped`` are called per scene as it finishes (a long batch reports as it goes); ``close`` prints
    the batch total, or the JSON object (one scene: its summary; a batch: every scene and the totals).
    """

    def __init__(self, options: RunOptions, *, batch: bool = False):
        self.options, self.batch = options, batch
        self.start = time.perf_counter()
        self.scenes: list[dict] = []  # for --json
        self.summaries: list[RunSummary] = []
        self.skipped_paths: list[str] = []
        self.console = None
        if not (options.quiet or options.json):
            from rich.console import Console

            self.console = Console(stderr=True, highlight=False, soft_wrap=True)

    def done(self, summary: RunSummary) -> None:
        self.summaries.append(summary)
        if self.options.json:
            self.scenes.append(summary_object(summary))
        if self.console is None:
            return
        for path in summary.outputs:
            self.console.print(f"[green]Wrote[/green] {describe(path).sentence()}")
        self.console.print(f"[bold]{summary_sentence(summary)}[/bold]")

    def skipped(self, paths: list) -> None:
        """Outputs left alone: complete, and made by the same command, options, model and weights (resume)."""
        self.skipped_paths += [str(p) for p in paths]
        if self.options.json:
            self.scenes.append({"skipped": "complete, made by the same command, options, model and weights",
                                "outputs": [str(p) for p in paths]})
        if self.console is not None:
            self.console.print(f"[yellow]Skipped[/yellow] (complete, made by the same command, options, model and "
                               f"weights): {', '.join(map(str, paths))}")

    def totals(self) -> dict:
        """Scenes run, outputs skipped, tiles, wall time and peak memory of everything reported so far."""
        runs = self.summaries
        return {"scenes_run": len(runs), "outputs_skipped": len(self.skipped_paths),
                "tiles": sum(s.tiles for s in runs), "processed": sum(s.processed for s in runs),
                "seconds": round(time.perf_counter() - self.start, 3),
                "peak_rss_mb": max((s.peak_rss_mb for s in runs), default=0.0)}

    def close(self) -> None:
        if self.options.json:
            obj = {"scenes": self.scenes, **self.totals()} if self.batch else (self.scenes[0] if self.scenes else {})
            print(json.dumps(obj, indent=2, default=str), file=sys.stdout, flush=True)
        elif self.console is not None and self.batch:
            t = self.totals()
            self.console.print(
                f"[bold]{t['scenes_run']} scenes run, {t['outputs_skipped']} outputs already complete: {t['tiles']} "
                f"tiles in {t['seconds']:.1f} s, peak memory {t['peak_rss_mb']:,.0f} MB[/bold]")
