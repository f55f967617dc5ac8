"""A/B of each speed setting on this machine, interleaved (A B A B ...) so that a busy machine hurts both alike.

    python benchmarks/bench_ab.py                       # all settings on the default device
    python benchmarks/bench_ab.py --only channels_last --rounds 5 --device cuda

Settings: ``channels_last`` (one diffusion UNet step), ``compile`` (regional torch.compile of the blocks of a
backbone, compile time reported apart), ``autocast`` (bf16 vs float32 of one UNet step; CUDA only by default),
``pad`` (a padded short batch vs the short batch itself: the cost of static shapes). Prints one JSON line each:
median seconds of A and B and B/A speed-up.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from bench_common import sync  # noqa: E402


def interleaved(a, b, device, rounds: int) -> dict:
    a(), b()  # warm-up both (and compile)
    times = {"a": [], "b": []}
    for _ in range(rounds):
        for key, fn in (("a", a), ("b", b)):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[key].append(time.perf_counter() - start)
    ma, mb = statistics.median(times["a"]), statistics.median(times["b"])
    return {"a_s": round(ma, 4), "b_s": round(mb, 4), "speedup_b_over_a": round(ma / mb, 3)}


def _unet(device, batch: int):
    from geomind_cli.models.tokenizers.unet import PatchedUNet, UNetConfig

    torch.manual_seed(0)
    unet = PatchedUNet(UNetConfig(channels=2)).to(device).eval()
    x = torch.randn(batch, 2, 224, 224, device=device)
    t = torch.tensor([999.0], device=device)
    cond = torch.randn(batch, 5, 14, 14, device=device)
    return unet, (x, t, cond)


def ab_channels_last(device, batch: int, rounds: int) -> dict:
    unet, args = _unet(device, batch)
    other = copy.deepcopy(unet).use_channels_last()
    with torch.inference_mode():
        out = interleaved(lambda: unet(*args), lambda: other(*args), device, rounds)
        out["max_abs_diff"] = float((unet(*args) - other(*args)).abs().max())
    return {"setting": "channels_last UNet step", "a": "NCHW", "b": "channels_last", "batch": batch, **out}


def ab_autocast(device, batch: int, rounds: int) -> dict:
    unet, args = _unet(device, batch)

    def bf16():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return unet(*args)

    with torch.inference_mode():
        out = interleaved(lambda: unet(*args), bf16, device, rounds)
    return {"setting": "bf16 autocast UNet step", "a": "float32", "b": "bf16", "batch": batch, **out}


def ab_compile(device, batch: int, rounds: int, size: str) -> dict:
    from geomind_cli.models import build_model
    from geomind_cli.tasks.runtime import Runtime

    torch.manual_seed(0)
    eager = build_model(f"terramind_v1_{size}", modalities=["S2L2A"]).to(device).eval()
    compiled = Runtime(device=device, dtype=torch.float32, compile=True).prepare(copy.deepcopy(eager))
    x = {"S2L2A": torch.randn(batch, 12, 224, 224, device=device)}
    with torch.inference_mode():
        start = time.perf_counter()
        compiled(x)
        sync(device)
        compile_s = time.perf_counter() - start
        out = interleaved(lambda: eager(x), lambda: compiled(x), device, rounds)
        out["max_abs_diff"] = float((eager(x)[-1] - compiled(x)[-1]).abs().max())
    return {"setting": f"regional compile, {size} backbone", "a": "eager", "b": "compiled", "batch": batch,
            "first_call_s": round(compile_s, 1), **out}


def ab_pad(device, batch: int, rounds: int, size: str) -> dict:
    from geomind_cli.models import build_model

    model = build_model(f"terramind_v1_{size}", modalities=["S2L2A"]).to(device).eval()
    short = {"S2L2A": torch.randn(max(1, batch // 2), 12, 224, 224, device=device)}
    padded = {"S2L2A": torch.randn(batch, 12, 224, 224, device=device)}
    with torch.inference_mode():
        out = interleaved(lambda: model(short), lambda: model(padded), device, rounds)
    return {"setting": "last batch padded (eager)", "a": f"{len(short['S2L2A'])} tiles", "b": f"{batch} tiles", **out}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--only", nargs="+", default=None, help="channels_last compile autocast pad")
    args = parser.parse_args(argv)
    from geomind_cli.tasks.runtime import resolve_device

    device = resolve_device(args.device)
    chosen = args.only or ["channels_last", "compile", "pad"] + (["autocast"] if device.type == "cuda" else [])
    runs = {
        "channels_last": lambda: ab_channels_last(device, args.batch, args.rounds),
        "autocast": lambda: ab_autocast(device, args.batch, args.rounds),
        "compile": lambda: ab_compile(device, args.batch, args.rounds, args.model),
        "pad": lambda: ab_pad(device, args.batch, args.rounds, args.model),
    }
    for name in chosen:
        print(json.dumps({"device": str(device), **runs[name]()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
