"""Whole scenes at full speed: everything around the model against its limit, side by side in one run.

Four measurements, each a ratio of two timings taken in the same run on the same generated files:

1. ``engine``: raw decode of the input (every block read once, one GDAL thread) against ``run_scene`` with a free
   tile function (it only slices its input into an 8-band grid output), as tiles/s, with 1 decode thread and with
   all cores; each run in a fresh process, as a user's command runs (:func:`in_fresh_process`); also for the same
   scene as twelve band files at 10, 20 and 60 m (as Sentinel-2 ships them), where the engine also resamples
   eight bands, and against the engine with those bands through GDAL's warper instead of the lattice reader;
2. ``embed``: the embed task end to end (read, model, stitch, COG) against the same model alone on the same tiles
   in the same batches, already in memory (random weights, CPU; tiny on 4,096 and 2,048 px scenes, base on 2,048);
3. ``finish``: finishing a float32 grid output (overviews, COG layout) against writing the same bytes once into a
   tiled GeoTIFF with the COG's compression;
4. peak RSS of each run (Linux VmHWM: of its own process for the engine, reset before each run otherwise).

The two sides of each ratio run alternately (for the engine and embed at least ``--repeats`` pairs, and more until
the row has taken ``--min-seconds``; ``--finish-repeats`` pairs for finishing) and the median pair's ratio counts
(the times shown are medians too): on a shared virtual machine one run can be 30 % slower than the next for no
reason of its own, so each side is compared with the other side's run next to it, over about the same length of
time, and the short rows get enough pairs for their median to hold from one run of the benchmark to the next.

    .venv/bin/python benchmarks/bench_scene_throughput.py --out benchmarks/results/scene_throughput.json
    .venv/bin/python benchmarks/bench_scene_throughput.py --quick     # small sizes, a minute

Prints a table and writes JSON with the command, machine, date and versions. Targets (issue #13): engine >= 0.8 x
raw decode, embed end to end <= 1.25 x the model time, finishing <= 2 x one write, peak RSS < 2 GB.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model, log, usable_cores  # noqa: E402

TILE, OVERLAP = 224, 64


def reset_peak_rss():
    """Linux: reset the process's peak resident set (VmHWM) so each run reports its own peak.

    Freed heap goes back to the system first (glibc's malloc_trim): otherwise what earlier runs of this long process
    freed but the allocator kept (hundreds of MB after a 10,980 px run) would count in every later run's peak."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def alternate(pair, repeats: int, min_seconds: float, *, max_pairs: int | None = None, clock=time.monotonic) -> list:
    """``pair()``'s results, run at least ``repeats`` times and again until ``min_seconds`` have passed since the
    first (at most ``max_pairs``, default 4 x ``repeats``).

    A row's ratio is the median of its pairs. On this shared machine single pairs of a 10 s row range over +-15 %,
    so five pairs left the median of the short rows swinging across their targets from one run of the benchmark
    to the next; a time budget gives the short rows more pairs and costs the long ones nothing."""
    max_pairs = max(repeats, max_pairs or 4 * repeats)
    start, results = clock(), []
    while len(results) < repeats or (clock() - start < min_seconds and len(results) < max_pairs):
        results.append(pair())
    return results


def write_input(path: Path, size: int, *, seed: int = 0) -> Path:
    """A ``size`` px 12-band uint16 S2L2A-like GeoTIFF, DEFLATE, 512 px tiles, written in row chunks."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    profile = dict(driver="GTiff", height=size, width=size, count=12, dtype="uint16", nodata=0,
                   crs=CRS.from_epsg(32633), transform=Affine(10, 0, 300000, 0, -10, 5000000), tiled=True,
                   blockxsize=512, blockysize=512, compress="DEFLATE")
    x = np.arange(size, dtype=np.float32)[None, :]
    with rasterio.open(path, "w", num_threads="ALL_CPUS", **profile) as dst:
        for y0 in range(0, size, 512):
            h = min(512, size - y0)
            y = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
            base = np.sin(x / 37.0) * np.cos(y / 53.0)
            block = np.empty((12, h, size), np.uint16)
            for band in range(12):
                noise = rng.normal(0, 80, (h, size)).astype(np.float32)
                block[band] = np.clip(1500 + 200 * band + 700 * base + noise, 1, 10000)
            dst.write(block, window=Window(0, y0, size, h))
    return path


# Sentinel-2's bands by resolution (m), as its products ship them: one file each.
S2_BAND_FILES = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20,
                 "B12": 20, "B01": 60, "B09": 60}


def write_band_files(folder: Path, size: int, *, seed: int = 0) -> list[str]:
    """A ``size`` px (at 10 m) scene as twelve uint16 band files at 10, 20 and 60 m, one pixel grid, DEFLATE with
    horizontal differencing and 1,024 px tiles (as in Sentinel-2 COGs); written once, reused."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, (band, res) in enumerate(S2_BAND_FILES.items()):
        path = folder / f"T33_{size}_{band}.tif"
        paths.append(str(path))
        if path.exists():
            continue
        n = -(-size * 10 // res)
        profile = dict(driver="GTiff", height=n, width=n, count=1, dtype="uint16", nodata=0,
                       crs=CRS.from_epsg(32633), transform=Affine(res, 0, 300000, 0, -res, 5000000), tiled=True,
                       blockxsize=1024, blockysize=1024, compress="DEFLATE", predictor=2)
        x = np.arange(n, dtype=np.float32)[None, :]
        with rasterio.open(path, "w", num_threads="ALL_CPUS", **profile) as dst:
            for y0 in range(0, n, 1024):
                h = min(1024, n - y0)
                y = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
                value = 1500 + 200 * i + 700 * np.sin(x / 37.0) * np.cos(y / 53.0) + rng.normal(0, 80, (h, n))
                dst.write(np.clip(value, 1, 10000).astype(np.uint16)[None], window=Window(0, y0, n, h))
    return paths


def raw_decode_s(paths) -> float:
    """Read every block of the file (or of each file) once, one thread."""
    paths = [paths] if isinstance(paths, (str, Path)) else paths
    start = time.perf_counter()
    with rasterio.Env(GDAL_NUM_THREADS=1, GDAL_CACHEMAX=64 * 2**20):
        for path in paths:
            with rasterio.open(path) as src:
                for _, window in src.block_windows(1):
                    src.read(window=window)
    return time.perf_counter() - start


def engine_run(paths, out_dir: Path, threads: int, warper: bool = False) -> dict:
    """``run_scene`` with a free tile function over the file (or band files); ``warper``: every file that is not
    on the grid goes through GDAL's warper (as before the lattice reader), for comparison."""
    paths = [str(paths)] if isinstance(paths, (str, Path)) else paths
    out_dir = Path(out_dir)
    from geomind_cli.engine import OutputSpec, SourceSpec, open_scene, run_scene

    os.environ["GEOMIND_DECODE_THREADS"] = str(threads)
    spec = OutputSpec("free", out_dir / "free.tif", "grid", [f"b{i}" for i in range(8)], "float32",
                      nodata=float("nan"))

    def free(batch):  # slices only: the cost is the engine's
        return {"free": batch.arrays["S2L2A"][:, :8, ::16, ::16]}

    with open_scene([SourceSpec(paths, modality="S2L2A")]) as scene:
        if warper:
            for layer in scene.layers:
                layer.lattice = None
        summary = run_scene(scene, free, [spec], tile_size=TILE, overlap=OVERLAP, batch_size=16, overwrite=True,
                            progress=False)
    return {"tiles": summary.processed, "seconds": summary.seconds}


def in_fresh_process(function: str, *args) -> tuple[object, float]:
    """``function(*args)`` of this module run in a new Python process: (its result, the process's peak RSS in MB).

    Both sides of an engine pair run this way, as a user's command would. In one long process the raw decode (main
    thread) found GDAL's block cache memory already mapped from its previous run (4 page faults), while every engine
    run's new decoding thread mapped its cache afresh (41,000-45,000 faults at about 4 us each on this machine):
    a tenth of the one-thread 4,096 px run that only the engine side paid."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"import bench_scene_throughput as b; result = b.{function}(*json.loads(sys.argv[1])); "
            "print(json.dumps([result, b.peak_rss_mb()]))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(args, default=str)],
                          check=True, capture_output=True, text=True)
    result, rss = json.loads(done.stdout.strip().splitlines()[-1])
    return result, rss


def bench_engine(paths, size: int, out_dir: Path, repeats: int, *, min_seconds: float = 0.0, files: str = "",
                 target: str = ">= 0.8", against_warper: bool = False) -> list[dict]:
    """Raw decode of the input (a file, or band files: ``files`` names them in the case) and the engine alternately,
    pairs as :func:`alternate` runs them, each run in a fresh process; the median pair counts (the box is shared). With
    ``against_warper``, the engine also runs once with the coarser bands through GDAL's warper (what the lattice
    reader replaced). With 1 decode thread and with all cores."""
    from geomind_cli.engine.tiling import plan_tiles

    tiles = len(plan_tiles(size, size, tile_size=TILE, overlap=OVERLAP))
    # Untimed: without it the first raw decode of a run met its file on disk and its libraries cold (4.6 s against
    # 1.5 s at 4,096 px, 27 s against 9.6 s at 10,980 px) while the engine right after it did not, a first pair of
    # 2.3-2.6 that flattered the engine.
    in_fresh_process("raw_decode_s", paths)
    rows = []
    for threads in sorted({1, usable_cores()}):
        def pair():  # (raw decode s, its peak RSS, engine run, its peak RSS)
            return (*in_fresh_process("raw_decode_s", paths), *in_fresh_process("engine_run", paths, out_dir, threads))

        raws, raw_peaks, runs, peaks = zip(*alternate(pair, repeats, min_seconds))
        raw_rss, rss = max(raw_peaks), max(peaks)
        # Each engine run against the raw decode just before it; the median pair counts.
        ratios = [(r["tiles"] / r["seconds"]) / (tiles / raw) for raw, r in zip(raws, runs)]
        raw, run = float(np.median(raws)), float(np.median([r["seconds"] for r in runs]))
        row = {"case": f"engine {size} px{files}, {threads} decode thread(s)", "tiles": tiles,
               "raw_decode_s": round(raw, 2), "raw_tiles_per_s": round(tiles / raw, 1), "engine_s": round(run, 2),
               "engine_tiles_per_s": round(runs[0]["tiles"] / run, 1),
               "ratio": round(float(np.median(ratios)), 3), "target": target,
               "peak_rss_mb": round(rss, 1), "raw_decode_peak_rss_mb": round(raw_rss, 1),
               "all_raw_s": [round(v, 2) for v in raws], "all_engine_s": [r["seconds"] for r in runs],
               "all_ratios": [round(v, 3) for v in ratios]}
        if against_warper:
            warped, peak = in_fresh_process("engine_run", paths, out_dir, threads, True)
            row.update(warper_engine_s=round(warped["seconds"], 2),
                       speedup_over_warper=round(warped["seconds"] / run, 2), peak_rss_mb=round(max(rss, peak), 1))
        log(f"{row}")
        rows.append(row)
    return rows


def bench_embed(path: Path, size: str, out_dir: Path, batch: int, repeats: int, min_seconds: float = 0.0) -> dict:
    """The model alone and embed end to end alternately, pairs as :func:`alternate` runs them; the median pair
    counts.

    The model alone runs the task's own tile function (standardization included) on random tiles already in memory,
    in exactly the batches of the scene run (the last one short): both sides of a pair do the same model work and
    take about as long, so the box's background load hits both alike.
    """
    import torch

    from bench_cases import TILE as T
    from geomind_cli.engine import SourceSpec, open_scene, plan_tiles, run_scene
    from geomind_cli.engine.batches import TileBatch
    from geomind_cli.tasks.base import release_models
    from geomind_cli.tasks.embed import EmbedOptions, embed_task
    from geomind_cli.tasks.runtime import Runtime

    runtime = Runtime.resolve(device="cpu", precision="auto", compile=False, weights="random")
    raw_decode_s(path)  # untimed: the first scene run must not be the one that reads the file from disk
    reset_peak_rss()
    task = embed_task(["S2L2A"], EmbedOptions(size=size), runtime, out_dir / f"embed_{size}.tif", overwrite=True)
    with rasterio.open(path) as src:
        tiles, side = len(plan_tiles(src.height, src.width, tile_size=TILE, overlap=OVERLAP)), src.width
    sizes = [batch] * (tiles // batch) + ([tiles % batch] if tiles % batch else [])

    def fake(n: int) -> TileBatch:
        x = np.random.default_rng(n).uniform(500, 4000, (n, 12, T, T)).astype(np.float32)
        return TileBatch(arrays={"S2L2A": x}, valid=np.ones((n, T, T), bool), rows=np.zeros(n, int),
                         cols=np.zeros(n, int), tile_rows=np.zeros(n, int), tile_cols=np.zeros(n, int))

    batches = {n: fake(n) for n in set(sizes)}
    for n in batches:
        task.tile_fn(batches[n])  # warm-up, every shape

    def pair():
        start = time.perf_counter()
        for n in sizes:
            task.tile_fn(batches[n])
        alone = time.perf_counter() - start
        with open_scene([SourceSpec([path], modality="S2L2A")]) as scene:
            return alone, run_scene(scene, task.tile_fn, task.outputs, tile_size=TILE, overlap=OVERLAP,
                                    batch_size=batch, overwrite=True, progress=False)

    alone_s, runs = zip(*alternate(pair, repeats, min_seconds))
    rss = peak_rss_mb()
    del task, batches
    release_models()
    assert all(r.processed == tiles for r in runs), "the scene run skipped tiles: the two sides would differ"
    ratios = [r.seconds / alone for alone, r in zip(alone_s, runs)]
    model_s = float(np.median(alone_s))
    row = {"case": f"embed {size}, {side} px, CPU, batch {batch}", "tiles": tiles, "threads": torch.get_num_threads(),
           "model_tiles_per_s": round(tiles / model_s, 2), "model_s": round(model_s, 2),
           "end_to_end_s": round(float(np.median([r.seconds for r in runs])), 2),
           "ratio": round(float(np.median(ratios)), 3), "target": "<= 1.25",
           "peak_rss_mb": round(rss, 1), "all_model_s": [round(v, 2) for v in alone_s],
           "all_end_to_end_s": [r.seconds for r in runs], "all_ratios": [round(v, 3) for v in ratios]}
    log(f"{row}")
    return row


def _finish_pair(grid, chunk: np.ndarray, out_dir: Path) -> dict:
    """One output streamed through the writer and finished, then the same bytes written once; timings and sizes."""
    from geomind_cli.engine.writer import STREAM_CACHE_BYTES, RasterWriter, cog_compression

    count, width = chunk.shape[0], grid.width
    path = out_dir / f"finish_{count}.tif"
    path.unlink(missing_ok=True)
    reset_peak_rss()
    with rasterio.Env(GDAL_CACHEMAX=STREAM_CACHE_BYTES):
        writer = RasterWriter(path, grid=grid, count=count, dtype="float32", nodata=float("nan"),
                              descriptions=[f"f{i}" for i in range(count)], overview_resampling="NEAREST")
        start = time.perf_counter()
        for row0 in range(0, width, 16):
            h = min(16, width - row0)
            writer.write_rows(row0, chunk[:, :h] + row0)
    stream_s = time.perf_counter() - start
    start = time.perf_counter()
    writer.finish()
    writer.commit()
    finish_s = time.perf_counter() - start
    rss = peak_rss_mb()
    # The same bytes written once, with the COG's compression, tile side and interleaving.
    once = out_dir / f"once_{count}.tif"
    block, compression = writer.layout.block, cog_compression("float32")
    profile = dict(driver="GTiff", width=width, height=width, count=count, dtype="float32", crs=grid.crs,
                   transform=grid.transform, nodata=float("nan"), tiled=True, blockxsize=block, blockysize=block,
                   compress=compression["COMPRESS"], zlevel=compression["LEVEL"], predictor=3, interleave="pixel",
                   bigtiff="IF_SAFER", num_threads=writer.layout.threads)
    start = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=writer.layout.cache_bytes), rasterio.open(once, "w", **profile) as dst:
        for row0 in range(0, width, block):
            h = min(block, width - row0)
            rows = np.concatenate([chunk[:, :min(16, h - k)] + row0 + k for k in range(0, h, 16)], axis=1)
            dst.write(rows, window=Window(0, row0, width, h))
    once_s = time.perf_counter() - start
    once.unlink()
    size_mb = path.stat().st_size / 2**20
    path.unlink()
    return {"block": block, "stream_s": stream_s, "finish_s": finish_s, "once_s": once_s, "cog_mb": size_mb,
            "rss": rss}


def bench_finish(width: int, count: int, out_dir: Path, repeats: int) -> dict:
    """Stream a [count, width, width] float32 grid output through the writer; finishing against one write, in
    ``repeats`` pairs (the median pair counts)."""
    from geomind_cli.engine.grid import Grid

    grid = Grid(CRS.from_epsg(32633), Affine(160, 0, 300000, 0, -160, 5000000), width, width)
    rng = np.random.default_rng(0)
    # Embedding-like values: smooth along x, different per band (compressible as real features roughly are).
    chunk = np.cumsum(rng.standard_normal((count, 16, width)).astype(np.float32) * 0.1, axis=2)
    pairs = [_finish_pair(grid, chunk, out_dir) for _ in range(repeats)]
    median = {key: float(np.median([p[key] for p in pairs])) for key in ("stream_s", "finish_s", "once_s")}
    row = {"case": f"finish {width} x {width} x {count} float32", "block": pairs[0]["block"],
           "stream_s": round(median["stream_s"], 2), "finish_s": round(median["finish_s"], 2),
           "write_once_s": round(median["once_s"], 2),
           "ratio": round(float(np.median([p["finish_s"] / p["once_s"] for p in pairs])), 3), "target": "<= 2",
           "cog_mb": round(pairs[0]["cog_mb"], 1), "peak_rss_mb": round(max(p["rss"] for p in pairs), 1),
           "all_finish_s": [round(p["finish_s"], 2) for p in pairs], "all_write_once_s": [round(p["once_s"], 2)
                                                                                        for p in pairs]}
    log(f"{row}")
    return row


def table(rows: list[dict]) -> str:
    lines = ["| case | measured | limit | ratio (target) | peak RSS MB |", "|---|---|---|---|---|"]
    for r in rows:
        if r["case"].startswith("engine"):
            measured, limit = f"{r['engine_tiles_per_s']} tiles/s", f"raw decode {r['raw_tiles_per_s']} tiles/s"
            if "warper_engine_s" in r:
                measured += f" ({r['speedup_over_warper']}x the warper's {r['warper_engine_s']} s)"
        elif r["case"].startswith("embed"):
            measured, limit = f"{r['end_to_end_s']} s ({r['tiles']} tiles)", f"model alone {r['model_s']} s"
        else:
            measured, limit = f"finish {r['finish_s']} s", f"one write {r['write_once_s']} s"
        lines.append(f"| {r['case']} | {measured} | {limit} | {r['ratio']} ({r['target']}) | {r['peak_rss_mb']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[4096, 10980], help="engine scene sides (px)")
    parser.add_argument("--band-files", type=int, nargs="*", default=[4096],
                        help="engine scene sides (px at 10 m) read from 12 band files at 10/20/60 m")
    parser.add_argument("--embed", nargs="+", default=["tiny@4096", "tiny@2048", "base@2048"],
                        help="embed cases, MODEL@SIDE (scene side in px)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5,
                        help="alternating pairs of runs at least (engine, embed); the median pair counts")
    parser.add_argument("--min-seconds", type=float, default=120.0,
                        help="more pairs (up to 4 x --repeats) until an engine or embed row has taken this long")
    parser.add_argument("--finish-repeats", type=int, default=3, help="pairs of runs of each finishing case")
    parser.add_argument("--finish", nargs="+", default=["750x192", "686x768"], help="WIDTHxBANDS grid outputs")
    parser.add_argument("--skip", nargs="*", default=[], choices=["engine", "embed", "finish"])
    parser.add_argument("--quick", action="store_true", help="small sizes: 2048 px engine, 1024 px embed (tiny), "
                                                             "300x192 finish; --repeats pairs only")
    parser.add_argument("--data", type=Path, default=None, help="folder for the generated inputs (kept, reused)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results path")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.band_files, args.embed, args.finish = [2048], [2048], ["tiny@1024"], ["300x192"]
        args.min_seconds = 0.0
    warnings.simplefilter("ignore")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="geomind-bench-") as tmp:
        out_dir = Path(tmp)
        data = args.data or out_dir
        data.mkdir(parents=True, exist_ok=True)
        if "engine" not in args.skip:
            for size in args.sizes:
                log(f"writing the {size} px input")
                path = write_input(data / f"scene_{size}.tif", size)
                rows += bench_engine(path, size, out_dir, args.repeats, min_seconds=args.min_seconds)
            for size in args.band_files:
                log(f"writing the {size} px band files")
                rows += bench_engine(write_band_files(data, size), size, out_dir, args.repeats,
                                     min_seconds=args.min_seconds, files=" from 12 band files at 10/20/60 m",
                                     against_warper=True,
                                     target="none set (the resampling is work raw decoding does not do)")
        if "embed" not in args.skip:
            from bench_common import random_weights_cache

            for case in args.embed:
                model, side = case.split("@")
                path = write_input(data / f"scene_{side}.tif", int(side))
                with random_weights_cache(model):
                    rows.append(bench_embed(path, model, out_dir, args.batch, args.repeats, args.min_seconds))
        if "finish" not in args.skip:
            for case in args.finish:
                width, count = (int(v) for v in case.split("x"))
                rows.append(bench_finish(width, count, out_dir, args.finish_repeats))
    import torch

    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": usable_cores(), "gdal": rasterio.__gdal_version__,
                    "torch": torch.__version__, "note": "shared with other work; compare ratios, not times"},
        "results": rows,
    }
    print(table(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
