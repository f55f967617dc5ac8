"""Batch mode from the command line: one output set per scene, a killed batch resumes where it stopped (complete
outputs left alone, the rest written), on a local Dask cluster, with the bytes of an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio

S2 = Path(__file__).resolve().parents[2] / "samples" / "terramind" / "282D_485L_3_3_S2L2A.tif"
FAST = ["--to", "LULC", "--model", "tiny", "--timesteps", "1", "--device", "cpu", "--quiet"]


def _scenes(folder: Path) -> list[Path]:
    """Four different 224 px S2L2A scenes (the sample, flipped and rolled)."""
    folder.mkdir()
    with rasterio.open(S2) as src:
        data, profile, descriptions = src.read(), src.profile, src.descriptions
    paths = []
    for i, variant in enumerate([data, data[:, ::-1], data[:, :, ::-1], np.roll(data, 50, axis=2)]):
        path = folder / f"scene_{i}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.ascontiguousarray(variant))
            dst.descriptions = descriptions
        paths.append(path)
    return paths


def _command(hub, out, scenes, *extra):
    env = hub.env()
    env["OMP_NUM_THREADS"] = "1"  # as on the Dask workers: CPU float reductions then round alike
    return [sys.executable, "-m", "geomind_cli.cli.app", "generate", *map(str, scenes), "-o", str(out), *FAST,
            *extra], env


def test_killed_batch_resumes_on_a_cluster_with_identical_outputs(hub, tmp_path):
    scenes = _scenes(tmp_path / "scenes")
    out = tmp_path / "out"
    args, env = _command(hub, out, scenes)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not list(out.glob("*_LULC.tif")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no clean-up at all, as a lost node or an OOM kill
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("*_LULC.tif")}
    assert 1 <= len(done) < 4, (done, proc.stderr.read().decode()[-2000:])
    (out / ".scene_3_LULC.tif.0123abcd.partial.tif").write_bytes(b"left by a killed run")

    args, env = _command(hub, out, scenes, "--cluster", "local", "--workers", "2")
    args.remove("--quiet")
    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stderr.count("Skipped (complete, made by the same command") == len(done)
    assert f"{4 - len(done)} scenes run, {len(done)} outputs already complete" in resumed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_LULC.tif") if p.name in done} == done  # untouched
    assert sorted(p.name for p in out.iterdir()) == [f"scene_{i}_LULC.tif" for i in range(4)]  # no leftovers

    args, env = _command(hub, tmp_path / "reference", scenes)
    subprocess.run(args, env=env, check=True, timeout=600)
    for i in range(4):
        with rasterio.open(out / f"scene_{i}_LULC.tif") as a, rasterio.open(tmp_path / "reference" / a.name) as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.transform == b.transform and a.tags()["GEOMIND_OUTPUT"] == "LULC"
