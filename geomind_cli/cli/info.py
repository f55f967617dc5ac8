"""``geomind info``: what geomind sees in the inputs, the tile plan, the work ahead and the cached weights."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from geomind_cli.cli import options as o


def info(
    scenes: o.Scenes,
    from_: Annotated[Optional[list[str]], typer.Option("--from", help="Modalities of inputs that cannot be detected, in order.")] = None,
    overlap: o.Overlap = None,
    batch_size: o.BatchSize = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show detected modalities, bands, CRS, resolution, size and nodata; the tile plan; an estimate of memory and
    work; and which official weights are in the local cache.

    Example: `geomind info s2.tif s1.tif dem.tif`
    """
    import json

    from geomind_cli.scene_report import scene_report
    from geomind_cli.tasks.inputs import open_inputs

    scene = open_inputs(scenes, from_)
    report = scene_report(scene, overlap=overlap, batch_size=batch_size)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    sources = Table("file", "modality", "bands", "CRS", "resolution", "size", "nodata", title="Inputs")
    for src in report["sources"]:
        sources.add_row(*(str(src.get(k, "")) for k in ("file", "modality", "bands", "crs", "resolution", "size",
                                                          "nodata")))
    console.print(sources)
    grid, plan, work = report["grid"], report["tile_plan"], report["estimate"]
    console.print(f"[bold]Target grid[/bold]: {grid['crs']}, {grid['resolution']} m, {grid['width']} x "
                  f"{grid['height']} px ({grid['area_km2']:.2f} km2)")
    console.print(f"[bold]Tiles[/bold]: {plan['tiles']} ({plan['rows']} rows x {plan['cols']} cols), tile "
                  f"{plan['tile_size']} px, overlap {plan['overlap']} px, stride {plan['stride']} px")
    console.print(f"[bold]Estimate[/bold]: {work['batches']} batches of {batch_size}; peak memory about "
                  f"{work['peak_memory_mb']:.0f} MB for a 12-band float output; encoder work about "
                  f"{work['encoder_gflop']:,.0f} GFLOP (base)")
    cache = Table("weights", "repository", "local cache", title="Official weights")
    for row in report["weights"]:
        cache.add_row(row["name"], row["repo_id"], row["path"] or "not cached")
    console.print(cache)
