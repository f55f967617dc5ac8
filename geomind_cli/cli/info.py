"""``geomind info``: what geomind sees in the inputs, the tile plan, the work ahead and the cached weights."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from geomind_cli.cli import options as o
from geomind_cli.tasks.options import InputOptions, RunOptions

EXAMPLES = o.examples(
    "geomind info samples/sen1floods11/Spain_7370579_S2Hand.tif samples/sen1floods11/Spain_7370579_S1Hand.tif",
    "geomind info samples/terramind/*.tif --together --overlap 32   # one scene of four modalities",
    "geomind info scenes/*.tif --json   # one report per scene, for scripts",
    "geomind info S2B_MSIL2A_20240612T103629_N0510_R008_T32TNS.SAFE.zip --bbox 500000 5090000 510000 5100000",
)


@o.run_options(only=("batch_size", "overlap", "each", "verbose"))
@o.input_options()
def info(
    scenes: o.Scenes,
    from_: Annotated[
        Optional[list[str]], typer.Option("--from", help="Modalities of inputs that cannot be detected, in order."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The same facts as one JSON object on stdout, for scripts."),
    ] = False,
    *,
    run: RunOptions,
    inputs: InputOptions,
) -> None:
    """Show detected modalities, bands, CRS, resolution (in the CRS's units), size and nodata; where each band comes
    from (file or STAC asset), the scale/offset applied, the units and what was decided automatically; the tile plan;
    an estimate of memory and work; and which official weights are in the local cache. Several scenes of one modality
    are reported one by one, as the other commands would run them.
    """
    import json

    from geomind_cli.scene_report import cached_weights, scene_report
    from geomind_cli.tasks.inputs import group_scenes, open_inputs

    groups = group_scenes(scenes, modality=from_[0] if from_ and len(from_) == 1 else None, each=run.each)
    reports = []
    for group in groups:
        explicit = len(groups) > 1 and ":" in group.sources[0][2:]  # in a batch --from names every scene's modality
        with open_inputs(group.sources, None if explicit else from_, inputs=inputs) as scene:
            report = scene_report(scene, overlap=run.overlap, batch_size=run.batch_size)
        report.pop("weights")
        reports.append({"scene": group.stem, **report})
    weights = cached_weights()
    if as_json:
        single = {**reports[0], "weights": weights}
        single.pop("scene")
        print(json.dumps(single if len(reports) == 1 else {"scenes": reports, "weights": weights}, indent=2,
                         default=str))
        return
    _print(reports, weights, run.batch_size)


def _print(reports: list[dict], weights: list[dict], batch_size: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from geomind_cli.scene_report import format_resolution

    console = Console()
    for report in reports:
        title = f"Inputs of scene {report['scene']}" if len(reports) > 1 else "Inputs"
        sources = Table("from", "modality", "bands", "CRS", "resolution", "size", "nodata", "scale", "offset",
                        "units", title=title)
        for src in report["sources"]:
            res = format_resolution(src["resolution"], src["units"]) if src.get("resolution") else ""
            size = "{} x {} px".format(*src["size"]) if src.get("size") else ""
            sources.add_row(src["from"], src["modality"], src["bands"] or "(not used)", src["crs"], res, size,
                            *(str(src.get(k, "")) for k in ("nodata", "scale", "offset", "value_units")))
        console.print(sources)
        decided = dict.fromkeys(f"{src['modality']}: {note}" for src in report["sources"] for note in src["decisions"])
        for note in decided:
            console.print(f"[bold]Decided[/bold] {note}", soft_wrap=True)
        # How the files reach the grid, bands grouped by road (direct, upsampled on its lattice, warped).
        roads: dict[tuple[str, str], list[str]] = {}
        for src in report["sources"]:
            if src.get("read"):
                roads.setdefault((src["modality"], src["read"]), []).append(src["bands"] or src["file"])
        for (modality, road), bands in roads.items():
            console.print(f"[bold]Read[/bold] {modality} {' '.join(bands)}: {road}", soft_wrap=True)
        grid, plan, work = report["grid"], report["tile_plan"], report["estimate"]
        res = format_resolution([grid["resolution"], grid["resolution"]], grid["units"])
        console.print(f"[bold]Target grid[/bold]: {grid['crs']}, {res}, {grid['width']} x {grid['height']} px "
                      f"({grid['area_km2']:.2f} km2)")
        console.print(f"[bold]Tiles[/bold]: {plan['tiles']} ({plan['rows']} rows x {plan['cols']} cols), tile "
                      f"{plan['tile_size']} px, overlap {plan['overlap']} px, stride {plan['stride']} px")
        console.print(f"[bold]Estimate[/bold]: {work['batches']} batches of {batch_size}; peak memory about "
                      f"{work['peak_memory_mb']:.0f} MB for a 12-band float output; encoder work about "
                      f"{work['encoder_gflop']:,.0f} GFLOP (base)")
    cache = Table("weights", "repository", "local cache", title="Official weights")
    for row in weights:
        cache.add_row(row["name"], row["repo_id"], row["path"] or "not cached")
    console.print(cache)
