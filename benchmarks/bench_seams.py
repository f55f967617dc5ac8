"""Seams of generated mosaics, world against tile noise: overlap disagreement before blending and mosaic seam scores.

Runs ``geomind generate`` (the generate task through the scene engine) to S1GRD, DEM and LULC on a real scene larger
than one tile under three settings, records every tile's tokens and output before blending
(geomind_cli.seams.TileRecorder) and measures (definitions in geomind_cli/seams.py):

- ``world``: ``--noise world``, the default: world token keys and Gumbel-max token draws, world diffusion noise;
- ``world-cdf``: world uniforms and inverse-CDF token draws (``GenerateOptions.token_sampling="cdf"``, the earlier
  scheme, no CLI flag), world diffusion noise;
- ``tile``: ``--noise tile``: every tile its own keys and diffusion noise, as other tools.

Figures per output and setting:

- tokens agree: the fraction of (tile pair, shared token position) whose generated tokens are equal;
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
import contextlib
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import random_weights_cache  # noqa: E402
DEFAULT_SCENE = ROOT / "samples" / "sen1floods11" / "Spain_7370579_S2Hand.tif"
TARGETS = ("S1GRD", "DEM", "LULC")
# setting name -> (GenerateOptions.noise, GenerateOptions.token_sampling)
SETTINGS = {"world": ("world", "gumbel"), "world-cdf": ("world", "cdf"), "tile": ("tile", "gumbel")}


@dataclass(frozen=True)
class SeamRow:
    """Figures of one output under one setting (a key of ``SETTINGS``)."""

    output: str
    noise: str
    unit: str  # of the disagreement
    disagreement: float
    pairs: int
    samples: int
    seam_edges: float
    seam_middles: float
    seconds: float
    tokens_agree: float = float("nan")
    token_pairs: int = 0


@dataclass
class TokenRecorder:
    """Keeps every tile's generated token grid by global patch position: ``tokens[name][(row, col)]`` lists ids.

    Wraps a tile function (to learn the batch's tile origins) and, while active, the generation model's
    ``generate_tokens`` (called once per batch by the generate task's tile function, in this process).
    """

    tile_fn: object
    patch: int = 16
    tokens: dict = field(default_factory=dict)
    _origins: list = field(default_factory=list)

    def __call__(self, batch):
        self._origins = list(zip(batch.rows.tolist(), batch.cols.tolist()))
        return self.tile_fn(batch)

    def record(self, out: dict) -> None:
        for name, grids in out.items():
            store = self.tokens.setdefault(name, {})
            for (row, col), grid in zip(self._origins, grids.cpu().numpy()):
                for (i, j), token in np.ndenumerate(grid):
                    store.setdefault((row + i * self.patch, col + j * self.patch), []).append(int(token))

    @contextmanager
    def watching(self, model_class):
        real = model_class.generate_tokens

        def generate_tokens(model, *args, **kwargs):
            out = real(model, *args, **kwargs)
            self.record(out)
            return out

        model_class.generate_tokens = generate_tokens
        try:
            yield self
        finally:
            model_class.generate_tokens = real


def token_agreement(tokens: dict, *, height: int, width: int) -> tuple[float, int]:
    """(fraction of equal pairs, pairs) over all pairs of tiles that generated a token at the same in-scene position."""
    agree = pairs = 0
    for (row, col), ids in tokens.items():
        if row >= height or col >= width or len(ids) < 2:
            continue
        for a, b in combinations(ids, 2):
            pairs += 1
            agree += a == b
    return (agree / pairs if pairs else float("nan")), pairs


def measure(scene_path: Path, *, noise: str, out_dir: Path, size: str = "base", targets=TARGETS,
            timesteps: int = 50, overlap: int | None = None, batch_size: int = 4, seed: int = 0,
            device: str = "auto", tile_size: int = 224) -> list[SeamRow]:
    """One generate run of ``scene_path`` under the setting ``noise`` (a key of ``SETTINGS``, or ``"world"`` /
    ``"tile"``); one :class:`SeamRow` per target.

    As ``geomind generate`` (the generate task through the scene engine), except that the tile size may be changed
    (small tiles keep CI runs cheap) and every tile's tokens and output are kept for the overlap measurement.
    """
    import rasterio

    from geomind_cli.engine import DEFAULT_OVERLAP, plan_tiles, run_scene
    from geomind_cli.models.generation import TerraMindGeneration
    from geomind_cli.facts.modalities import MODALITIES
    from geomind_cli.seams import TileRecorder, overlap_disagreement, seam_score
    from geomind_cli.tasks.generate import GenerateOptions, generate_task
    from geomind_cli.tasks.inputs import open_inputs
    from geomind_cli.tasks.runtime import Runtime

    overlap = DEFAULT_OVERLAP if overlap is None else overlap
    scene = open_inputs([str(scene_path)])
    runtime = Runtime.resolve(device=device, precision="fp32", compile=False)
    mode, sampling = SETTINGS[noise]
    options = GenerateOptions(targets=tuple(targets), size=size, timesteps=timesteps, seed=seed, noise=mode,
                              token_sampling=sampling)
    task = generate_task(list(scene.band_counts), options, runtime, out_dir, f"{Path(scene_path).stem}_{noise}",
                         overwrite=True)
    tokens = TokenRecorder(task.tile_fn)
    recorder = TileRecorder(tokens)
    start = time.perf_counter()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with tokens.watching(TerraMindGeneration):
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
        agree, token_pairs = token_agreement(tokens.tokens.get(spec.name, {}), height=plan.height, width=plan.width)
        rows.append(SeamRow(spec.name, noise, unit, found.mean, found.pairs, found.samples, *scores, seconds,
                            agree, token_pairs))
    return rows


def table(rows: list[SeamRow]) -> str:
    lines = [f"{'output':<7} {'setting':<10} {'tokens agree':>12} {'disagreement':>13} {'unit':<14} "
             f"{'seam edges':>10} {'seam middles':>12}"]
    for r in rows:
        lines.append(f"{r.output:<7} {r.noise:<10} {r.tokens_agree:>12.3f} {r.disagreement:>13.4f} {r.unit:<14} "
                     f"{r.seam_edges:>10.3f} {r.seam_middles:>12.3f}")
    by = {(r.output, r.noise): r for r in rows}
    for output in dict.fromkeys(r.output for r in rows):
        tile = by.get((output, "tile"))
        for setting in ("world", "world-cdf"):
            row = by.get((output, setting))
            if row and tile and tile.disagreement > 0:
                lines.append(f"{output}: {setting} / tile disagreement = {row.disagreement / tile.disagreement:.3f}")
        world, cdf = by.get((output, "world")), by.get((output, "world-cdf"))
        if world and cdf and cdf.disagreement > 0:
            lines.append(f"{output}: world / world-cdf disagreement = {world.disagreement / cdf.disagreement:.3f}")
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
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
                        help="what to compare (default: all three)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    weights = contextlib.nullcontext()
    if args.weights == "random":
        weights = random_weights_cache(args.model, args.targets, folder=args.hf_home)
    with tempfile.TemporaryDirectory(prefix="geomind-seams-") as tmp, weights:
        out = args.out or Path(tmp) / "out"
        rows = []
        for noise in args.settings:
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
