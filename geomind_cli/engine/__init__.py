"""The scene engine: read and align multi-source scenes, tile them, run a tile function, stitch, write COGs.

Model-agnostic: a task gives a tile function (a :class:`TileBatch` in, arrays out) and :class:`OutputSpec` s::

    scene = open_scene([SourceSpec.parse("s2.tif"), SourceSpec.parse("s1.tif:S1GRD")])
    run_scene(scene, tile_fn, [OutputSpec("dem", Path("dem.tif"), "continuous", ["DEM"], "float32")])
"""

from geomind_cli.engine.area import Area
from geomind_cli.engine.batches import TileBatch
from geomind_cli.engine.grid import Grid
from geomind_cli.engine.outputs import OutputSpec
from geomind_cli.engine.runner import RunSummary, check_outputs, run_scene
from geomind_cli.engine.scene import Scene, open_scene
from geomind_cli.engine.sources import ReadOptions, SourceSpec, detect_modality
from geomind_cli.engine.tiling import DEFAULT_OVERLAP, TilePlan, plan_tiles

__all__ = [
    "DEFAULT_OVERLAP", "Area", "Grid", "OutputSpec", "ReadOptions", "RunSummary", "Scene", "SourceSpec", "TileBatch",
    "TilePlan",
    "check_outputs", "detect_modality", "open_scene", "plan_tiles", "run_scene",
]
