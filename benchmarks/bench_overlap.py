"""Overlapped writing: wall time of one scene with stitching + writing in the calling thread vs a writer thread.

    python benchmarks/bench_overlap.py                       # 2048 px scene, a few minutes on 2 cores
    python benchmarks/bench_overlap.py --size 1024 --repeats 1

The tile function stands for the model without one: ``sleep`` waits a fixed time per batch (a GPU-bound model: the
host thread only waits for the device), ``conv`` runs a small convolution on the CPU (the model competes with the
writer for the cores). Outputs are what ``geomind generate --to S1GRD LULC`` writes: a 2-band float32 COG and a
10-class uint8 COG blended from probabilities. ``write_behind=0`` is the single-threaded loop of earlier versions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_common import machine, versions  # noqa: E402
from bench_scene import write_scene  # noqa: E402


def tile_function(kind: str, seconds: float):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(12, 12, 3, padding=1)

    def tile_fn(batch):
        x = torch.from_numpy(batch.arrays["S2L2A"]) / 10000.0
        if kind == "sleep":
            time.sleep(seconds)
            y = x
        else:
            with torch.inference_mode():
                y = conv(x)
                for _ in range(int(seconds)):
                    y = conv(y)
        s1 = -10.0 + 5.0 * y[:, :2]
        logits = y[:, :10] * 4.0
        return {"S1GRD": s1.numpy(), "LULC": torch.softmax(logits, dim=1).numpy()}

    return tile_fn


def run_once(scene_path: Path, out_dir: Path, tile_fn, *, batch_size: int, write_behind: int) -> float:
    from geomind_cli.engine import OutputSpec, SourceSpec, open_scene, run_scene

    specs = [OutputSpec("S1GRD", out_dir / "s1.tif", "continuous", ["VV", "VH"], "float32", nodata=float("nan")),
             OutputSpec("LULC", out_dir / "lulc.tif", "classes", ["LULC"], "uint8", nodata=0,
                        class_names=[f"c{i}" for i in range(10)])]
    start = time.perf_counter()
    with open_scene([SourceSpec([scene_path])]) as scene:
        run_scene(scene, tile_fn, specs, batch_size=batch_size, progress=False, overwrite=True,
                  write_behind=write_behind)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting; the best is reported")
    parser.add_argument("--sleep", type=float, default=0.25, help="seconds per batch for the sleep tile function")
    parser.add_argument("--convs", type=float, default=2, help="3x3 convolutions per batch for the conv one")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="geomind-overlap-") as tmp:
        files = write_scene(Path(tmp), args.size)
        for kind, amount in (("sleep", args.sleep), ("conv", args.convs)):
            fn = tile_function(kind, amount)
            for depth in (0, 2):
                times = [run_once(files.s2l2a, Path(tmp), fn, batch_size=args.batch_size, write_behind=depth)
                         for _ in range(args.repeats)]
                rows.append({"tile_fn": f"{kind} {amount}", "write_behind": depth, "wall_s": round(min(times), 2),
                             "all_s": [round(t, 2) for t in times]})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    for kind in ("sleep", "conv"):
        pair = [r for r in rows if r["tile_fn"].startswith(kind)]
        pair[1]["speedup"] = round(pair[0]["wall_s"] / pair[1]["wall_s"], 3)
    result = {"date": date.today().isoformat(),
              "command": " ".join(["python", "benchmarks/bench_overlap.py", *(argv or sys.argv[1:])]),
              "machine": machine(torch.device("cpu")), "versions": versions(),
              "settings": {"scene_px": args.size, "batch_size": args.batch_size, "tile_size": 224, "overlap": 64},
              "results": rows}
    path = args.json or HERE / "results" / f"overlap-{result['date']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("tile_fn | write_behind | wall s | speedup")
    print("--- | --- | --- | ---")
    for r in rows:
        print(f"{r['tile_fn']} | {r['write_behind']} | {r['wall_s']:.2f} | {r.get('speedup', '-')}")
    print(f"\n{result['command']}\n{result['machine']['cpu']} ({result['machine']['cores']} cores), {result['date']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
