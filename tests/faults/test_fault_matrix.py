"""The fault matrix: the real CLI (a subprocess) over bad inputs and faults, one row each.

Every row asserts the exit status; for a failure, exactly one line on stderr, ``geomind: error: ...``, naming the
problem (and what to do), no traceback; the output folder as it was before (no new file, an old output untouched,
byte for byte); and no hidden leftovers. Rows that should succeed (a 1 x 1 scene, an all-nodata scene) assert a
finished output instead. The table of what was tried is printed at the end of the run (tests/conftest.py).

CI-sized: tiny TerraMind with random weights in an offline temporary Hugging Face cache, 1 diffusion step, scenes
of at most 224 px.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import rasterio
from affine import Affine

from hub_cache import HubCache

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
S2 = SAMPLES / "terramind" / "282D_485L_3_3_S2L2A.tif"
DEM = SAMPLES / "terramind" / "282D_485L_3_3_DEM.tif"
FLOOD_S1 = SAMPLES / "sen1floods11" / "Spain_7370579_S1Hand.tif"
INTERRUPTING = Path(__file__).with_name("interrupting.py")
FAST = ["--model", "tiny", "--timesteps", "1", "--device", "cpu", "--quiet"]
UTM = "EPSG:32633"
ORIGIN = Affine(10, 0, 500000, 0, -10, 4000000)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    hub = HubCache(tmp_path_factory.mktemp("hf-home"))
    hub.place_random_official("tiny", ("S1GRD", "LULC", "DEM"))
    return hub


def _s2_bands() -> tuple[str, ...]:
    with rasterio.open(S2) as src:
        return src.descriptions


def _raster(path: Path, data: np.ndarray, *, crs=UTM, nodata=None, descriptions=None) -> Path:
    count, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name,
                       crs=crs, transform=ORIGIN, nodata=nodata) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
    return path


def _s2_like(path: Path, fill=None, *, dtype="uint16", crs=UTM, nodata=None, size=224) -> Path:
    with rasterio.open(S2) as src:
        data = src.read(window=((0, size), (0, size))).astype(dtype)
    if fill is not None:
        fill(data)
    return _raster(path, data, crs=crs, nodata=nodata, descriptions=_s2_bands())


@dataclass
class Row:
    case: str
    code: int
    message: str
    leftovers: list[str] = field(default_factory=list)


def _record(request, row: Row) -> None:
    """Append the row to the run's table (read and printed by tests/conftest.py, also under pytest-xdist)."""
    path = Path(request.config.rootpath) / ".pytest_cache" / "geomind-fault-matrix.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row.__dict__) + "\n")


def _snapshot(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*")) if folder.exists() else []


def _run(cache: HubCache, args, *, point: str | None = None, signame: str | None = None, preexec=None,
         env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = cache.env()
    env.update(env_extra or {})
    env.pop("GEOMIND_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    head = [sys.executable, str(INTERRUPTING), point, signame] if point else [sys.executable, "-m",
                                                                             "geomind_cli.cli.app"]
    return subprocess.run([*head, *map(str, args)], env=env, capture_output=True, text=True, timeout=600,
                          preexec_fn=preexec)


@dataclass
class Case:
    """``setup(tmp) -> args`` (the output folder is ``tmp / "out"``, which may be prepared); ``words``: what the
    one error line must say (lowercase); ``code`` 0: the run must succeed."""

    name: str
    setup: Callable[[Path], list]
    code: int = 1
    words: tuple[str, ...] = ()
    point: str | None = None
    signame: str | None = None
    limit_file_bytes: int | None = None
    # libtiff reports a failing write on stderr itself, from C, before GDAL raises (``_tiffWriteProc: No space left
    # on device.``); Python cannot silence it. Those raw lines are allowed before the one ``geomind: error:`` line.
    libtiff_lines: bool = False


def _generate(scene, *extra):
    return lambda tmp: ["generate", scene(tmp) if callable(scene) else scene, "--to", "LULC", "-o", tmp / "out",
                        *FAST, *extra]


def _text_file(tmp):
    (tmp / "readme.tif").write_text("hello, not a raster")
    return tmp / "readme.tif"


def _empty_file(tmp):
    (tmp / "empty.tif").write_bytes(b"")
    return tmp / "empty.tif"


def _truncated(tmp):
    data = S2.read_bytes()
    (tmp / "truncated.tif").write_bytes(data[: len(data) // 3])
    return tmp / "truncated.tif"


def _zero_by_zero(tmp):
    vrt = tmp / "zero.vrt"
    vrt.write_text('<VRTDataset rasterXSize="0" rasterYSize="0"><VRTRasterBand dataType="UInt16" band="1"/>'
                   "</VRTDataset>")
    return f"{vrt}:DEM"


def _corrupt_checkpoint(tmp):
    bad = tmp / "model.pt"
    bad.write_bytes(b"PK\x03\x04 this is no checkpoint" * 10)
    return ["generate", S2, "--to", "LULC", "-o", tmp / "out", *FAST, "--weights", bad]


def _existing_output(tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / f"{S2.stem}_LULC.tif").write_bytes(b"an older output, keep me")
    return ["generate", S2, "--to", "LULC", "-o", tmp / "out", *FAST]


def _readonly_folder(tmp):
    out = tmp / "out"
    out.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: a read-only file system instead
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(out)]).returncode:
            pytest.skip("root cannot mount a read-only tmpfs here, and ignores folder permissions")
    else:
        out.chmod(0o555)
    return ["generate", S2, "--to", "LULC", "-o", out, *FAST]


def _disk_full(tmp):
    out = tmp / "out"
    out.mkdir()
    if os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(out)]).returncode == 0:
        return ["generate", S2, "--to", "LULC", "S1GRD", "-o", out, *FAST]
    pytest.skip("a small tmpfs cannot be mounted here (needs root); the file-size limit row covers a failing write")


def _lulc_raw_codes(tmp):
    data = np.full((1, 224, 224), 11, np.uint8)  # raw ESRI "Rangeland" code, not a TerraMind class index
    return ["tokenize", _raster(tmp / "esri_lulc.tif", data), "--modality", "LULC", "-o", tmp / "out" / "t.tif",
            "--device", "cpu", "--quiet"]


def _detokenize_other_modality(tmp):
    tokens = tmp / "dem_tokens.tif"
    data = np.zeros((1, 14, 14), np.uint16)
    with rasterio.open(tokens, "w", driver="GTiff", width=14, height=14, count=1, dtype="uint16", crs=UTM,
                       transform=ORIGIN * Affine.scale(16), nodata=65535) as dst:
        dst.write(data)
        dst.descriptions = ("DEM_token",)
    return ["detokenize", tokens, "--modality", "S1GRD", "-o", tmp / "out" / "s1.tif", "--device", "cpu", "--quiet"]


def _nan_inf(data):
    data[:, :50, :50] = np.nan
    data[:, 100:120, 100:120] = np.inf


CASES = [
    Case("not a raster", _generate(_text_file), words=("readme.tif",)),
    Case("empty file", _generate(_empty_file), words=("empty.tif",)),
    Case("truncated GeoTIFF", _generate(_truncated), words=("reading an input failed", "truncated or corrupt")),
    Case("0x0 raster", lambda tmp: ["tokenize", _zero_by_zero(tmp), "--modality", "DEM", "-o", tmp / "out" / "t.tif",
                                    "--device", "cpu", "--quiet"], words=("zero.vrt",)),
    Case("1x1 raster", _generate(lambda tmp: _s2_like(tmp / "one.tif", size=1)), code=0),
    Case("all-nodata scene", _generate(lambda tmp: _s2_like(tmp / "blank.tif", lambda d: d.fill(0), nodata=0)),
         code=0),
    Case("NaN and inf pixels", _generate(lambda tmp: _s2_like(tmp / "nan.tif", _nan_inf, dtype="float32")), code=0),
    Case("wrong band count", _generate(f"{DEM}:S2L2A"), words=("lacks",)),
    Case("unknown modality", lambda tmp: ["generate", S2, "--to", "HYPERSPECTRAL", "-o", tmp / "out", *FAST],
         words=("unknown modality",)),
    Case("inputs do not overlap", _generate(S2, f"{FLOOD_S1}:S1GRD"), words=("overlap",)),
    Case("CRS missing", _generate(lambda tmp: _s2_like(tmp / "nocrs.tif", crs=None)), words=("crs",)),
    Case("read-only output folder", _readonly_folder, words=("writable",)),
    Case("output exists without --overwrite", _existing_output, words=("--overwrite",)),
    Case("disk full (tmpfs)", _disk_full, words=("space",), libtiff_lines=True),
    Case("write fails (file-size limit)", lambda tmp: ["generate", S2, "--to", "LULC", "S1GRD", "-o", tmp / "out",
                                                       *FAST], words=("check free space",), limit_file_bytes=64 * 1024,
         libtiff_lines=True),
    Case("weights missing offline", lambda tmp: ["generate", S2, "--to", "LULC", "-o", tmp / "out", "--model",
                                                 "small", "--timesteps", "1", "--device", "cpu", "--quiet"],
         words=("terramind-1.0-small", "weights download")),
    Case("corrupt checkpoint", _corrupt_checkpoint, words=("model.pt",)),
    Case("CUDA asked for but absent", lambda tmp: ["generate", S2, "--to", "LULC", "-o", tmp / "out", "--device",
                                                   "cuda", "--quiet"], words=("cuda", "--device cpu")),
    Case("overlap not a multiple of 16", _generate(S2, "--overlap", "40"), words=("--overlap 40", "multiple of 16")),
    Case("LULC input in raw ESRI codes", _lulc_raw_codes, words=("outside the classes", "11")),
    Case("detokenize with another modality", _detokenize_other_modality, words=("dem tokens", "--modality dem")),
]
for _point in ("reading", "model", "finishing"):
    for _sig, _code in (("INT", 130), ("TERM", 143)):
        CASES.append(Case(f"SIG{_sig} while {_point}", _generate(S2), code=_code, words=(f"sig{_sig.lower()}",),
                          point=_point, signame=_sig))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(case: Case, cache, tmp_path, request):
    if case.name.startswith("CUDA"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present here; this row expects a CPU-only machine")
    args = case.setup(tmp_path)
    out = tmp_path / "out"
    before = _snapshot(out)
    preexec = None
    if case.limit_file_bytes:
        limit = case.limit_file_bytes

        def preexec():  # writes past the limit fail with EFBIG (SIGXFSZ ignored), as a full disk fails them
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        proc = _run(cache, args, point=case.point, signame=case.signame, preexec=preexec)
        left = _hidden(out)
    finally:
        if os.path.ismount(out):
            subprocess.run(["umount", str(out)])
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "RANDOM WEIGHTS" not in line]
    _record(request, Row(case.name, proc.returncode, lines[-1] if lines else "", left))
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == case.code, proc.stderr[-3000:]
    assert not left, f"leftovers: {left}"
    if case.code == 0:
        outputs = [p for p in out.glob("*.tif")]
        assert outputs, "no output written"
        for path in outputs:
            with rasterio.open(path) as src:
                assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        return
    if case.libtiff_lines:
        assert all(line.startswith("_tiff") for line in lines[:-1]), proc.stderr
        lines = lines[-1:]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("geomind: error: "), lines[0]
    for word in case.words:
        assert word in lines[0].lower(), lines[0]
    assert _snapshot(out) == before  # no new file, an old output untouched


def test_killed_run_leaves_leftovers_that_a_resumed_run_removes_with_identical_output(cache, tmp_path, request):
    """SIGKILL (no clean-up possible) in the model; the next run into the folder removes the dead run's hidden
    files, and resuming gives the bytes of a run that was never interrupted."""
    out, clean = tmp_path / "out", tmp_path / "clean"
    args = ["generate", S2, "--to", "LULC", "S1GRD", "--seed", "3", *FAST]
    killed = _run(cache, [*args, "-o", out], point="finishing", signame="KILL")
    assert killed.returncode == -signal.SIGKILL
    stale = _hidden(out)
    assert stale, "a killed run leaves its hidden files"
    resumed = _run(cache, [*args, "-o", out, "--resume"])
    _record(request, Row("SIGKILL while finishing, then --resume", killed.returncode,
                         f"killed run left {len(stale)} hidden files; --resume exit {resumed.returncode}, removed "
                         "them", _hidden(out)))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _hidden(out) == []
    assert _run(cache, [*args, "-o", clean]).returncode == 0
    for name in (f"{S2.stem}_LULC.tif", f"{S2.stem}_S1GRD.tif"):
        with rasterio.open(out / name) as a, rasterio.open(clean / name) as b:
            np.testing.assert_array_equal(a.read(), b.read())


def test_resume_refuses_an_output_of_another_model(cache, tmp_path, request):
    """Re-running a batch with other options does not keep the old outputs as if they were the new ones."""
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for i in range(2):
        shutil.copy(S2, scenes / f"scene_{i}.tif")
    out = tmp_path / "out"
    base = ["generate", scenes / "scene_0.tif", scenes / "scene_1.tif", "--to", "LULC", "-o", out, *FAST]
    assert _run(cache, [*base, "--seed", "1"]).returncode == 0
    before = _snapshot(out)
    again = _run(cache, [*base, "--seed", "1"])  # the same work: both skipped
    assert again.returncode == 0 and _snapshot(out) == before
    other = _run(cache, [*base, "--seed", "2"])
    lines = [line for line in other.stderr.splitlines() if line.strip()]
    _record(request, Row("batch re-run with another --seed", other.returncode, lines[-1] if lines else ""))
    assert other.returncode == 1 and len(lines) == 1, other.stderr
    assert "made by another command, options, model or weights" in lines[0] and "--overwrite" in lines[0]
    assert _snapshot(out) == before
