"""Seams of generated mosaics, world against tile noise: overlap disagreement before blending and mosaic seam scores.

Runs ``geomind generate`` (the generate task through the scene engine) to S1GRD, DEM and LULC on a real scene larger
than one tile, once with ``--noise world`` and once with ``--noise tile``, records every tile's output before
blending (geomind_cli.seams.TileRecorder) and measures (definitions in geomind_cli/seams.py):

- disagreement: mean |a - b| of overlapping tiles inside their overlaps (dB, m), or for LULC the fraction of
  overlap pixels whose argmax class differs;
- seam score of the final mosaic on the tile edges and on the overlap middles (1.0: no seam).

    .venv/bin/python benchmarks/bench_seams.py                                   # official weights, base, 50 steps
    .venv/bin/python benchmarks/bench_seams.py --weights random --model tiny --timesteps 2 --device cpu

``--weights random`` writes random checkpoints in the official layout (TerraMind and the tokenizers) into a
temporary offline Hugging Face cache (or ``--hf-home``), so the official loading path runs without a download:
figures then describe the mechanism, not real imagery. Prints a table; ``--json PATH`` also writes the figures
with the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENE = ROOT / "samples" / "sen1floods11" / "Spain_7370579_S2Hand.tif"
TARGETS = ("S1GRD", "DEM", "LULC")


@dataclass(frozen=True)
class SeamRow:
    """Figures of one output under one noise mode."""

    output: str
    noise: str
    unit: str  # of the disagreement
    disagreement: float
    pairs: int
    samples: int
    seam_edges: float
    seam_middles: float
    seconds: float


def place_random_checkpoints(hf_home: Path, size: str, targets, *, seed: int = 1) -> None:
    """Random official-layout checkpoints of TerraMind ``size`` and the ``targets``' tokenizers under ``hf_home``,
    laid out as huggingface_hub's cache (``hub/models--org--name/snapshots/<commit>/<file>``), as the CLI tests do."""
    import hashlib

    import torch

    from geomind_cli.models import official_state_dict
    from geomind_cli.models.modalities import MODALITIES
    from geomind_cli.models.tokenizers import build_tokenizer
    from geomind_cli.models.weights import model_file

    files = [(*model_file(size), lambda: official_state_dict(size, seed=seed))]
    for name in targets:
        info = MODALITIES[name].tokenizer

        def tokenizer_state(info=info, name=name):
            torch.manual_seed(len(name))
            return build_tokenizer(info.name).state_dict()

        files.append((info.repo_id, info.filename, tokenizer_state))
    for repo_id, filename, make in files:
        repo_dir = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        target = repo_dir / "snapshots" / commit / filename
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(make(), target)
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / "main").write_text(commit)


def use_offline_cache(hf_home: Path) -> None:
    """Point huggingface_hub at ``hf_home``, offline (also when it is already imported)."""
    os.environ.update(HF_HOME=str(hf_home), HF_HUB_CACHE=str(Path(hf_home) / "hub"), HF_HUB_OFFLINE="1")
    if "huggingface_hub" in sys.modules:
        import huggingface_hub.constants as constants

        constants.HF_HUB_CACHE = str(Path(hf_home) / "hub")
        constants.HF_HUB_OFFLINE = True


def measure(scene_path: Path, *, noise: str, out_dir: Path, size: str = "base", targets=TARGETS,
            timesteps: int = 50, overlap: int | None = None, batch_size: int = 4, seed: int = 0,
            device: str = "auto", tile_size: int = 224) -> list[SeamRow]:
    """One generate run of ``scene_path`` with ``noise``; one :class:`SeamRow` per target.

    As ``geomind generate`` (the generate task through the scene engine), except that the tile size may be changed
    (small tiles keep CI runs cheap) and every tile's output is kept for the overlap measurement.
    """
    import numpy as np
    import rasterio

    from geomind_cli.engine import DEFAULT_OVERLAP, plan_tiles, run_scene
    from geomind_cli.models.modalities import MODALITIES
    from geomind_cli.seams import TileRecorder, overlap_disagreement, seam_score
    from geomind_cli.tasks.generate import GenerateOptions, generate_task
    from geomind_cli.tasks.inputs import open_inputs
    from geomind_cli.tasks.runtime import Runtime

    overlap = DEFAULT_OVERLAP if overlap is None else overlap
    scene = open_inputs([str(scene_path)])
    runtime = Runtime.resolve(device=device, precision="fp32", compile=False)
    options = GenerateOptions(targets=tuple(targets), size=size, timesteps=timesteps, seed=seed, noise=noise)
    task = generate_task(list(scene.band_counts), options, runtime, out_dir, f"{Path(scene_path).stem}_{noise}",
                         overwrite=True)
    recorder = TileRecorder(task.tile_fn)
    start = time.perf_counter()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    run_scene(scene, recorder, task.outputs, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
              overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    plan = plan_tiles(scene.grid.height, scene.grid.width, tile_size=tile_size, overlap=overlap)
    rows = []
    for spec in task.outputs:
        categorical = MODALITIES[spec.name].categorical
        found = overlap_disagreement(recorder.tiles[spec.name], categorical=categorical,
                                     height=plan.height, width=plan.width)
        with rasterio.open(spec.path) as src:
            mosaic = src.read(masked=False).astype(np.float64)
            if not categorical and src.nodata is not None and not np.isnan(src.nodata):
                mosaic[mosaic == src.nodata] = np.nan
        nodata = spec.nodata if categorical else None
        scores = [seam_score(mosaic[0] if categorical else mosaic, plan, categorical=categorical, lines=lines,
                             nodata=nodata) for lines in ("edges", "middles")]
        unit = "class changed" if categorical else MODALITIES[spec.name].unit
        rows.append(SeamRow(spec.name, noise, unit, found.mean, found.pairs, found.samples, *scores, seconds))
    return rows


def table(rows: list[SeamRow]) -> str:
    lines = [f"{'output':<7} {'noise':<6} {'disagreement':>13} {'unit':<14} {'seam edges':>10} {'seam middles':>12}"]
    for r in rows:
        lines.append(f"{r.output:<7} {r.noise:<6} {r.disagreement:>13.4f} {r.unit:<14} {r.seam_edges:>10.3f} "
                     f"{r.seam_middles:>12.3f}")
    by = {(r.output, r.noise): r for r in rows}
    for output in dict.fromkeys(r.output for r in rows):
        world, tile = by.get((output, "world")), by.get((output, "tile"))
        if world and tile and tile.disagreement > 0:
            lines.append(f"{output}: world / tile disagreement = {world.disagreement / tile.disagreement:.3f}")
    return "\n".join(lines)


def machine(device: str) -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", type=Path, default=DEFAULT_SCENE, help="input raster (S2L1C sample by default)")
    parser.add_argument("--model", default="base", choices=("tiny", "small", "base", "large"))
    parser.add_argument("--weights", default="official", choices=("official", "random"))
    parser.add_argument("--hf-home", type=Path, default=None, help="Hugging Face cache for --weights random")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS))
    parser.add_argument("--timesteps", type=int, default=50)
    parser.add_argument("--overlap", type=int, default=None, help="tile overlap in pixels (engine default 64)")
    parser.add_argument("--tile-size", type=int, default=224, help="model tile size in pixels (TerraMind: 224)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="folder for the mosaics (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="geomind-seams-") as tmp:
        if args.weights == "random":
            hf_home = args.hf_home or Path(tmp) / "hf-home"
            use_offline_cache(hf_home)
            place_random_checkpoints(hf_home, args.model, args.targets)
        out = args.out or Path(tmp) / "out"
        rows = []
        for noise in ("world", "tile"):
            rows += measure(args.scene, noise=noise, out_dir=out, size=args.model, targets=args.targets,
                            timesteps=args.timesteps, overlap=args.overlap, batch_size=args.batch_size,
                            seed=args.seed, device=args.device, tile_size=args.tile_size)
    print(table(rows))
    if args.json:
        from geomind_cli.engine.tiling import DEFAULT_OVERLAP

        report = {
            "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(args.device),
            "weights": args.weights, "model": args.model, "timesteps": args.timesteps, "seed": args.seed,
            "scene": str(args.scene), "overlap": args.overlap if args.overlap is not None else DEFAULT_OVERLAP, "tile_size": args.tile_size,
            "rows": [asdict(r) for r in rows],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
