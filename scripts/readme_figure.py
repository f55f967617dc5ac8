"""Make the README's picture: how much overlapping tiles disagree when generating a DEM, per-tile against world noise.

    .venv/bin/python scripts/readme_figure.py [--weights random|PATH] [--model tiny] [--timesteps 3]

Panels: the input (Sentinel-2 L1C, Sen1Floods11 sample, 512 x 512 px, 3 x 3 tiles of 224 px with 64 px overlap),
then, for ``--noise tile`` and ``--noise world``, the spread (max - min) of the generated DEM over the tiles that
cover each pixel, before blending: black where one tile alone covers a pixel or where tiles agree. With
``--weights random`` (the only choice on a machine without the official weights) the DEM itself is meaningless, but
the disagreement between tiles is exactly the effect the world noise field removes at its source.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "samples" / "sen1floods11" / "Spain_7370579_S2Hand.tif"


def _grey(a: np.ndarray, hi: float) -> np.ndarray:
    y = np.clip(a / max(hi, 1e-6), 0, 1)
    return np.repeat((np.nan_to_num(y) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def _spread(tiles, height: int, width: int) -> np.ndarray:
    """Per pixel, max - min of the tiles' first band over the tiles covering it (0 where one tile covers it)."""
    high = np.full((height, width), -np.inf)
    low = np.full((height, width), np.inf)
    for tile in tiles:
        h, w = min(tile.data.shape[1], height - tile.row), min(tile.data.shape[2], width - tile.col)
        window = (slice(tile.row, tile.row + h), slice(tile.col, tile.col + w))
        high[window] = np.maximum(high[window], tile.data[0, :h, :w])
        low[window] = np.minimum(low[window], tile.data[0, :h, :w])
    return high - low


def _panel(rgb: np.ndarray, title: str) -> Image.Image:
    image = Image.fromarray(rgb)
    canvas = Image.new("RGB", (image.width, image.height + 22), "white")
    canvas.paste(image, (0, 22))
    ImageDraw.Draw(canvas).text((4, 5), title, fill="black")
    return canvas


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="random")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--timesteps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "generated-dem-tile-vs-world-noise.jpg")
    args = parser.parse_args(argv)

    import torch

    from geomind_cli.engine import run_scene
    from geomind_cli.preview import render
    from geomind_cli.seams import TileRecorder
    from geomind_cli.tasks.generate import GenerateOptions, generate_task
    from geomind_cli.tasks.inputs import open_inputs
    from geomind_cli.tasks.runtime import Runtime

    torch.manual_seed(0)  # random weights: the same untrained model for both runs (built once, then cached)
    runtime = Runtime.resolve(device="cpu", precision="fp32", compile=False, weights=args.weights)
    spreads = {}
    with tempfile.TemporaryDirectory() as tmp, open_inputs([str(SCENE)], None) as scene:
        for noise in ("tile", "world"):
            options = GenerateOptions(targets=("DEM",), size=args.model, timesteps=args.timesteps, seed=0, noise=noise)
            task = generate_task(list(scene.band_counts), options, runtime, Path(tmp), noise, overwrite=True)
            recorder = TileRecorder(task.tile_fn)
            run_scene(scene, recorder, task.outputs, batch_size=4, overwrite=True, progress=False)
            spreads[noise] = _spread(recorder.tiles["DEM"], scene.grid.height, scene.grid.width)
    hi = float(np.percentile(spreads["tile"][spreads["tile"] > 0], 99))
    panels = [_panel(render(SCENE, "S2L1C"), "input: Sentinel-2 L1C (true colour)")]
    for noise in ("tile", "world"):
        mean = float(spreads[noise][spreads[noise] > 0].mean())
        title = f"DEM spread across overlapping tiles, --noise {noise} (mean {mean:.0f} m)"
        panels.append(_panel(_grey(spreads[noise], hi), title))
    figure = Image.new("RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), panels[0].height), "white")
    x = 0
    for panel in panels:
        figure.paste(panel, (x, 0))
        x += panel.width + 8
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, quality=85)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
