"""Scaling with the number of Dask workers: one scene, blocks of tile rows, LocalCluster of 1, 2, ... workers.

    python benchmarks/bench_scaling.py --workers 1 2 [--size 1024] [--model tiny] [--out results/scaling.json]

Runs the tokenize task (full-size S1GRD tokenizer, random weights: the timing does not depend on the values) over a
synthetic S1 scene, first in this process (``run_scene``) then on LocalClusters of each worker count (one process
per worker, the cores split evenly between them). Reports wall time (cluster start excluded, first model build on
the workers included, as in a real run), tiles per second and speed-up, as JSON plus a table, with the command,
machine and date. On a GPU machine each worker takes one GPU (dask-cuda when installed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import random_weights_cache  # noqa: E402


def _machine() -> dict:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"platform": platform.platform(), "python": platform.python_version(), "cores": cores, "gpus": gpus,
            "torch": torch.__version__}


def _scene(folder: Path, size: int) -> Path:
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(0)
    data = (rng.normal(-12, 4, (2, size, size))).astype(np.float32)
    path = folder / "s1.tif"
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=2, dtype="float32",
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 4000000)) as dst:
        dst.write(data)
        dst.descriptions = ("VV", "VH")
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=1024, help="scene side in pixels")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scaling.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, random_weights_cache(None, ["S1GRD"]):  # workers inherit it
        tmp = Path(tmp)
        from geomind_cli.engine.cluster import local_cluster
        from geomind_cli.tasks.inputs import open_inputs
        from geomind_cli.tasks.options import RunOptions
        from geomind_cli.tasks.run import run_task
        from geomind_cli.tasks.runtime import Runtime
        from geomind_cli.tasks.tokenize import tokenize_task
        from distributed import Client

        runtime = Runtime.resolve(device=args.device, precision="auto", compile=False, weights=None)
        source = _scene(tmp, args.size)
        rows = []
        with open_inputs([f"{source}:S1GRD"]) as scene:
            task = tokenize_task("S1GRD", runtime, tmp / "single.tif")
            start = time.perf_counter()
            summary = run_task(scene, task, RunOptions(batch_size=args.batch_size, quiet=True))
            rows.append({"mode": "single process", "workers": 0, "seconds": time.perf_counter() - start,
                         "tiles": summary.processed})
            for n in args.workers:
                cluster, plugin = local_cluster(n)
                with cluster, Client(cluster) as client:
                    if plugin is not None:
                        client.register_plugin(plugin)
                    task = tokenize_task("S1GRD", runtime, tmp / f"w{n}.tif")
                    start = time.perf_counter()
                    summary = run_task(scene, task, RunOptions(batch_size=args.batch_size, quiet=True),
                                       client=client)
                    rows.append({"mode": "dask LocalCluster", "workers": n, "seconds": time.perf_counter() - start,
                                 "tiles": summary.processed})
    base = next((r["seconds"] for r in rows if r["workers"] == 1), rows[0]["seconds"])
    for row in rows:
        row["seconds"] = round(row["seconds"], 2)
        row["tiles_per_second"] = round(row["tiles"] / row["seconds"], 2)
        row["speedup_vs_1_worker"] = round(base / row["seconds"], 2)
    report = {"benchmark": "scaling", "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": _machine(), "scene_px": args.size, "task": "tokenize S1GRD", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'mode':<20} {'workers':>7} {'seconds':>8} {'tiles/s':>8} {'speed-up':>8}")
    for row in rows:
        print(f"{row['mode']:<20} {row['workers']:>7} {row['seconds']:>8} {row['tiles_per_second']:>8} "
              f"{row['speedup_vs_1_worker']:>8}")
    return report


if __name__ == "__main__":
    main()
