"""Make the README's picture: a generated DEM over the Sen1Floods11 sample, per-tile noise against world noise.

    .venv/bin/python scripts/readme_figure.py [--weights random|PATH] [--model tiny] [--timesteps 3]

With ``--weights random`` (the only choice on a machine without the official weights) the model is untrained, so
the DEM itself is meaningless; what the picture shows is how tiles meet: with per-tile noise every 224 px tile
imagines its own terrain and the overlaps blend two different ones, with world noise they start from the same noise.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "samples" / "sen1floods11" / "Spain_7370579_S2Hand.tif"


def _grey(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    y = np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.repeat((np.nan_to_num(y) * 255).astype(np.uint8)[..., None], 3, axis=-1)


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
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "generated-dem-tile-vs-world-noise.png")
    args = parser.parse_args(argv)

    import rasterio
    import torch

    from geomind_cli.preview import render
    from geomind_cli.tasks.generate import GenerateOptions, generate_task
    from geomind_cli.tasks.inputs import open_inputs
    from geomind_cli.tasks.run import run_task
    from geomind_cli.tasks.runtime import Runtime

    torch.manual_seed(0)  # random weights: the same untrained model for both runs (built once, then cached)
    runtime = Runtime.resolve(device="cpu", precision="fp32", compile=False, weights=args.weights)
    dems = {}
    with tempfile.TemporaryDirectory() as tmp:
        scene = open_inputs([str(SCENE)], None)
        for noise in ("tile", "world"):
            options = GenerateOptions(targets=("DEM",), size=args.model, timesteps=args.timesteps, seed=0, noise=noise)
            task = generate_task(list(scene.band_counts), options, runtime, Path(tmp), noise, overwrite=True)
            run_task(scene, task, batch_size=4, overwrite=True, quiet=True)
            with rasterio.open(Path(tmp) / f"{noise}_DEM.tif") as src:
                dems[noise] = src.read(1)
        lo, hi = np.nanpercentile(np.concatenate([d.ravel() for d in dems.values()]), [2, 98])
        panels = [_panel(render(SCENE, "S2L1C"), "input: Sentinel-2 L1C (true colour)")]
        panels += [_panel(_grey(dems[n], lo, hi), f"generated DEM, --noise {n}") for n in ("tile", "world")]
    figure = Image.new("RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), panels[0].height), "white")
    x = 0
    for panel in panels:
        figure.paste(panel, (x, 0))
        x += panel.width + 8
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
