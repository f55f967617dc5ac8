"""Model-only throughput of geomind's tile functions (tiles/s), on random weights. A script, not a test.

    python benchmarks/run_all.py --quick            # CPU-sized: tiny model, 1 diffusion step
    python benchmarks/run_all.py --model base --device cuda --batch-sizes 8 16 32 --timesteps 50 10

Prints a table and writes JSON (``--json PATH``) with the machine, the date and the command.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date

import torch


def _bench(fn, repeats: int) -> float:
    fn()  # warm-up (and compilation, if any)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU-sized run: tiny model, batch 2, 1 step")
    parser.add_argument("--model", default="base")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8])
    parser.add_argument("--timesteps", type=int, nargs="+", default=[50, 10])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.batch_sizes, args.timesteps, args.repeats = "tiny", [2], [1], 1

    from geomind_cli.models import build_model
    from geomind_cli.tasks.runtime import Runtime

    runtime = Runtime.resolve(device=args.device, precision=args.precision, compile=False, weights="random")
    size = 224
    rows = []
    for batch in args.batch_sizes:
        s2 = torch.randn(batch, 12, size, size, device=runtime.device)
        cases = {}
        backbone = runtime.prepare(build_model(f"terramind_v1_{args.model}", modalities=["S2L2A"]))
        cases["embed (backbone)"] = lambda m=backbone: m({"S2L2A": s2})
        tokenizer = runtime.prepare(build_model("terramind_v1_tokenizer_dem"))
        dem = torch.randn(batch, 1, size, size, device=runtime.device)
        cases["tokenize DEM"] = lambda t=tokenizer: t.encode(dem)
        to_lulc = runtime.prepare(build_model(f"terramind_v1_{args.model}_generate", modalities=["S2L2A"],
                                              output_modalities=["LULC"], temps=0.0))
        cases["generate LULC"] = lambda m=to_lulc: m({"S2L2A": s2})
        to_s1 = runtime.prepare(build_model(f"terramind_v1_{args.model}_generate", modalities=["S2L2A"],
                                            output_modalities=["S1GRD"], temps=0.0))
        for steps in args.timesteps:
            cases[f"generate S1GRD, {steps} steps"] = lambda m=to_s1, n=steps: m({"S2L2A": s2}, timesteps=n)
        for name, fn in cases.items():
            with torch.inference_mode(), runtime.autocast():
                seconds = _bench(fn, args.repeats)
            rows.append({"case": name, "batch": batch, "seconds_per_batch": seconds, "tiles_per_second": batch / seconds})
            print(f"{name:32s} batch {batch:3d}: {batch / seconds:8.2f} tiles/s", flush=True)
    result = {
        "date": date.today().isoformat(),
        "command": " ".join([sys.executable, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                    "device": torch.cuda.get_device_name() if runtime.device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "dtype": str(runtime.dtype)},
        "model": args.model,
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
