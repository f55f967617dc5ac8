"""geomind benchmark: per command, model-only and end-to-end throughput, memory, FLOPs, and the reference side by side.

    python benchmarks/run_all.py --quick                                   # CPU-sized, a few minutes on 2 cores
    python benchmarks/run_all.py --model base --device cuda --batch-sizes 8 16 32 --scene-size 4096

For each command (embed, tokenize DEM, TiM LULC, generate LULC, generate S1GRD with each --timesteps, segment):
model-only tiles/s at the best of --batch-sizes (random standardized tiles already on the device), FLOPs per tile
(torch's FLOP counter), MFU on GPUs with a known bf16 peak; end to end on a synthetic GeoTIFF scene: tiles/s,
km2/s, wall time split into read (a separate pure read pass), model, stitch/write; peak host RSS and GPU memory.
The reference (terratorch 1.2.13's TerraMind models driven by its ``tiled_inference``) runs in the same process on
the same scene with the same tile size, stride and batch size. Random weights: timing only.

Prints a table and writes JSON (``--json``; default benchmarks/results/bench-<date>.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from bench_common import (PeakMemory, bf16_peak, count_flops, free_memory, log, machine, sync,  # noqa: E402
                          time_calls, versions)

QUICK = dict(model="tiny", batch_sizes=[2], timesteps=[1], scene_size=448, repeats=1)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="CPU-sized run: tiny model, batch 2, 1 diffusion step, 448 px scene, 1 repeat")
    parser.add_argument("--model", default=None, help="TerraMind size (default base; tiny with --quick)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the hot modules (default: on for CUDA)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="model-only batch sizes (default 8)")
    parser.add_argument("--e2e-batch", type=int, default=None, help="end-to-end batch (default: best model-only)")
    parser.add_argument("--timesteps", type=int, nargs="+", default=None, help="S1GRD diffusion steps (default 50 10)")
    parser.add_argument("--commands", nargs="+", default=None, help="subset, e.g. embed tokenize (prefix match)")
    parser.add_argument("--scene-size", type=int, default=None, help="square scene side in px (default 2048)")
    parser.add_argument("--tile-size", type=int, default=224)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=None, help="timed model-only calls per batch size (default 3)")
    parser.add_argument("--no-reference", dest="reference", action="store_false", help="skip the terratorch side")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    defaults = dict(model="base", batch_sizes=[8], timesteps=[50, 10], scene_size=2048, repeats=3)
    for key, value in (QUICK if args.quick else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _model_only(make_call, batch_sizes, device, repeats: int) -> dict:
    rows = []
    with PeakMemory(device) as memory:
        for batch in batch_sizes:
            seconds = time_calls(make_call(batch), device, repeats=repeats)
            rows.append({"batch": batch, "seconds_per_batch": round(seconds, 4), "tiles_per_s": round(batch / seconds, 3)})
    best = max(rows, key=lambda r: r["tiles_per_s"])
    return {"per_batch": rows, "best_batch": best["batch"], "tiles_per_s": best["tiles_per_s"],
            "peak_rss_mb": memory.host_peak_mb, "peak_gpu_mb": memory.gpu_peak_mb}


def _flops_per_tile(make_call) -> int:
    """FLOPs of one tile, counted in eager mode (compiled graphs bypass the dispatcher the counter hooks)."""
    call = make_call(1)
    stance = getattr(torch.compiler, "set_stance", None)
    if stance is None:
        return count_flops(call)
    with stance("force_eager"):
        return count_flops(call)


def bench_command(cmd, args, runtime, files, out_dir: Path) -> dict:
    from bench_cases import our_model, our_task, reference_model
    from bench_reference import reference_end_to_end
    from bench_scene import geomind_end_to_end

    from geomind_cli.facts.modalities import statistics
    from geomind_cli.tasks.base import release_models

    device = runtime.device
    row: dict = {"command": cmd.name}
    if cmd.kind == "segment":
        row["segment"] = "stand-in: backbone + conv head"
    log(f"[{cmd.name}] geomind model-only")
    ours = our_model(cmd, runtime, args.model)
    flops = _flops_per_tile(ours.call)
    model_only = _model_only(ours.call, args.batch_sizes, device, args.repeats)
    peak = bf16_peak(device)
    model_only["flops_per_s"] = round(flops * model_only["tiles_per_s"], 1)
    model_only["mfu"] = round(model_only["flops_per_s"] / peak, 4) if peak else None
    row.update(flops_per_tile=flops, model_only=model_only)
    del ours
    free_memory(device)

    batch = args.e2e_batch or model_only["best_batch"]
    log(f"[{cmd.name}] geomind end to end (batch {batch})")
    task = our_task(cmd, runtime, args.model, out_dir)
    e2e = geomind_end_to_end(files, cmd.modality, task, device, tile_size=args.tile_size, overlap=args.overlap,
                             batch_size=batch)
    row["end_to_end"] = {"batch": batch, **e2e.to_dict(),
                         "vs_read_alone": round(e2e.tiles_per_s / e2e.read_tiles_per_s, 3)}
    del task
    release_models()
    free_memory(device)

    if args.reference:
        log(f"[{cmd.name}] reference model-only and end to end")
        ref = reference_model(cmd, device, args.model)

        def ref_call(n: int):
            x = torch.randn(n, 1 if cmd.modality == "DEM" else 12, args.tile_size, args.tile_size, device=device)

            def run():
                with torch.no_grad(), runtime.autocast():
                    return ref.forward(x)

            return run

        ref_model_only = _model_only(ref_call, args.batch_sizes, device, args.repeats)

        def forward(x):
            with runtime.autocast():
                return ref.forward(x)

        ref_e2e = reference_end_to_end(files, cmd.modality, forward, cmd.reference_output, out_dir / "ref.tif", device,
                                       tile_size=args.tile_size, overlap=args.overlap, batch_size=batch,
                                       stats=statistics(cmd.modality))
        row["reference"] = {"model_only": ref_model_only, "end_to_end": {"batch": batch, **ref_e2e}}
        row["ratio"] = {
            "end_to_end_km2_per_s": round(e2e.km2_per_s / ref_e2e["km2_per_s"], 3),
            "model_only_tiles_per_s": round(model_only["tiles_per_s"] / ref_model_only["tiles_per_s"], 3),
        }
        del ref
        free_memory(device)
    sync(device)
    return row


def table(result: dict) -> str:
    head = ("command", "batch", "model t/s", "GFLOP/tile", "GFLOP/s", "MFU", "e2e t/s", "km2/s", "read s",
            "model s", "stitch s", "RSS MB", "GPU MB", "ref e2e t/s", "x ref")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for row in result["results"]:
        mo, e2e = row["model_only"], row["end_to_end"]
        ref = row.get("reference", {}).get("end_to_end", {})
        cells = (row["command"], e2e["batch"], f"{mo['tiles_per_s']:.2f}", f"{row['flops_per_tile'] / 1e9:.1f}",
                 f"{mo['flops_per_s'] / 1e9:.0f}", "-" if mo["mfu"] is None else f"{100 * mo['mfu']:.0f}%",
                 f"{e2e['tiles_per_s']:.2f}", f"{e2e['km2_per_s']:.3f}", f"{e2e['read_s']:.2f}",
                 f"{e2e['model_s']:.2f}", f"{e2e['stitch_write_s']:.2f}", f"{e2e['peak_rss_mb']:.0f}",
                 "-" if e2e["peak_gpu_mb"] is None else f"{e2e['peak_gpu_mb']:.0f}",
                 f"{ref['tiles_per_s']:.2f}" if ref else "-",
                 f"{row['ratio']['end_to_end_km2_per_s']:.2f}" if ref else "-")
        lines.append(" | ".join(str(c) for c in cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import logging

    # The reference warns about random weights and deprecated options, geomind about random weights (once per
    # model): silenced for the run only, so an in-process caller (the test) keeps its own settings.
    geomind_log = logging.getLogger("geomind")
    level = geomind_log.level
    geomind_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _run(args)
    finally:
        geomind_log.setLevel(level)


def _run(args) -> int:
    from bench_cases import commands
    from bench_scene import write_scene

    from geomind_cli.tasks.runtime import Runtime

    runtime = Runtime.resolve(device=args.device, precision=args.precision, compile=args.compile, weights="random")
    available = commands(steps=tuple(args.timesteps))
    chosen = [c for c in available.values()
              if args.commands is None or any(c.name.startswith(p) for p in args.commands)]
    if not chosen:
        raise SystemExit(f"no command matches {args.commands}; choose from {', '.join(available)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="geomind-bench-") as tmp:
        files = write_scene(Path(tmp), args.scene_size)
        rows = []
        for cmd in chosen:
            rows.append(bench_command(cmd, args, runtime, files, Path(tmp)))
            log(json.dumps(rows[-1]))  # a row survives a later failure or interruption
    result = {
        "date": date.today().isoformat(),
        "command": " ".join(["python", "benchmarks/run_all.py", *args.argv]),
        "machine": machine(runtime.device),
        "versions": versions(),
        "settings": {"model": args.model, "device": str(runtime.device), "dtype": str(runtime.dtype).replace("torch.", ""),
                     "compile": runtime.compile, "tile_size": args.tile_size, "overlap": args.overlap,
                     "stride": args.tile_size - args.overlap, "scene_px": args.scene_size, "scene_km2": files.km2,
                     "batch_sizes": args.batch_sizes, "timesteps": args.timesteps, "repeats": args.repeats,
                     "reference": "terratorch 1.2.13 tiled_inference" if args.reference else None},
        "notes": [
            "random weights; reference runs under the same autocast dtype as geomind",
            "reference grid outputs (embed, tokenize, tim) are repeated 16x16 per patch for tiled_inference",
            "MFU only where the GPU's dense bf16 peak is known; CPU rows report FLOP/s",
        ],
        "results": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = args.json or HERE / "results" / f"bench-{result['date']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\n{result['machine']['cpu']} ({result['machine']['cores']} cores), GPU {result['machine']['gpu']}, "
          f"{result['settings']['dtype']}, model {args.model}, {result['seconds']} s; JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
