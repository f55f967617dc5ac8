"""End-to-end CLI tests: the real `geomind` command in a subprocess, offline, with random weights written in the
official layout into a temporary Hugging Face cache (tiny TerraMind, full-size tokenizers, 1 diffusion step)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from hub_cache import HubCache

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
S2 = SAMPLES / "terramind" / "282D_485L_3_3_S2L2A.tif"
DEM = SAMPLES / "terramind" / "282D_485L_3_3_DEM.tif"
FLOOD_S2 = SAMPLES / "sen1floods11" / "Spain_7370579_S2Hand.tif"
FLOOD_S1 = SAMPLES / "sen1floods11" / "Spain_7370579_S1Hand.tif"
FAST = ["--model", "tiny", "--timesteps", "1", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Official-layout random checkpoints: TerraMind tiny and the tokenizers these tests use."""
    hub = HubCache(tmp_path_factory.mktemp("hf-home"))
    hub.place_random_official("tiny", ("S1GRD", "LULC", "DEM"))
    return hub


def geomind(cache: HubCache, *args, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "geomind_cli.cli.app", *map(str, args)], env=cache.env(),
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"geomind {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")
    return proc


def same_georeferencing(a: Path, b: Path, scale: int = 1):
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.crs == y.crs
        expected = y.transform @ Affine.scale(scale)
        assert x.transform.almost_equals(expected, precision=1e-6), (x.transform, expected)
        assert (x.width, x.height) == (math.ceil(y.width / scale), math.ceil(y.height / scale))


def test_generate_s1grd_and_lulc_georeferenced_in_physical_units(cache, tmp_path):
    geomind(cache, "generate", S2, "--to", "S1GRD", "LULC", "-o", tmp_path, "--seed", "3", "--preview", *FAST)
    s1, lulc = tmp_path / f"{S2.stem}_S1GRD.tif", tmp_path / f"{S2.stem}_LULC.tif"
    same_georeferencing(s1, S2)
    same_georeferencing(lulc, S2)
    with rasterio.open(s1) as src:
        assert src.dtypes == ("float32", "float32") and src.descriptions == ("VV", "VH")
        vv = src.read(1)
        # The diffusion output is clamped to [-1, 1] in standardized units: mean +- std in dB (-12.599 +- 5.195).
        assert np.isfinite(vv).all() and -17.8 <= vv.min() and vv.max() <= -7.4
        assert src.profile.get("tiled") or src.block_shapes[0][0] < src.height  # a COG is tiled
    with rasterio.open(lulc) as src:
        assert src.dtypes == ("uint8",)
        assert src.colormap(1)[1][:3] == (65, 155, 223)  # Water
        classes = src.read(1)
        assert classes.max() <= 9
        assert "Water" in json.dumps(src.tags()) + json.dumps(src.tags(1))
    assert (tmp_path / f"{S2.stem}_LULC.png").stat().st_size > 0
    assert (tmp_path / f"{S2.stem}_S1GRD.png").stat().st_size > 0


def test_generate_same_seed_same_output_other_seed_differs(cache, tmp_path):
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        geomind(cache, "generate", S2, "--to", "S1GRD", "-o", tmp_path / name, "--seed", seed, *FAST)
        with rasterio.open(tmp_path / name / f"{S2.stem}_S1GRD.tif") as src:
            runs[name] = src.read()
    np.testing.assert_array_equal(runs["a"], runs["b"])
    assert np.abs(runs["a"] - runs["c"]).mean() > 1e-3


def _with_nodata_corner(src_path: Path, folder: Path) -> Path:
    """A copy of ``src_path`` whose top-left 200 x 300 px are nodata (0, declared), so nodata is really tested."""
    folder.mkdir()
    with rasterio.open(src_path) as src:
        data, profile, descriptions = src.read(), src.profile, src.descriptions
    data[:, :200, :300] = 0
    profile.update(nodata=0)
    path = folder / src_path.name
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
    return path


def test_generate_lulc_multi_source_scene_keeps_nodata_and_grid(cache, tmp_path):
    """The 512 px Sen1Floods11 chip: S2 L1C + S1 GRD in EPSG:4326, several tiles, nodata where S2 is 0."""
    s2 = _with_nodata_corner(FLOOD_S2, tmp_path / "in")
    geomind(cache, "generate", s2, FLOOD_S1, "--to", "LULC", "-o", tmp_path, "--batch-size", "4", *FAST)
    out = tmp_path / f"{FLOOD_S2.stem}_LULC.tif"
    same_georeferencing(out, FLOOD_S2)
    with rasterio.open(out) as src, rasterio.open(s2) as s2:
        classes = src.read(1)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        empty = (s2.read() == 0).all(axis=0)
        assert empty[:200, :300].all() and empty.sum() < empty.size / 2
        assert src.nodata == 0 and (classes[empty] == src.nodata).all()
        assert (classes[~empty] <= 9).all() and len(np.unique(classes[~empty])) > 1


def test_tokenize_then_detokenize_round_trip(cache, tmp_path):
    tokens = tmp_path / "dem_tokens.tif"
    geomind(cache, "tokenize", DEM, "--modality", "DEM", "-o", tokens, "--device", "cpu", "--quiet")
    same_georeferencing(tokens, DEM, scale=16)
    with rasterio.open(tokens) as src:
        ids = src.read(1)
        assert src.dtypes == ("uint16",) and ids.shape == (14, 14) and src.scales == (1.0,)
        assert ids.max() < 15360 and len(np.unique(ids)) > 1
    decoded = tmp_path / "dem_decoded.tif"
    geomind(cache, "detokenize", tokens, "--modality", "DEM", "-o", decoded, "--timesteps", "1", "--device", "cpu",
            "--quiet")
    same_georeferencing(decoded, DEM)
    with rasterio.open(decoded) as src:
        dem = src.read(1)
        assert src.dtypes == ("float32",) and np.isfinite(dem).all()
        assert 670.665 - 951.3 <= dem.min() and dem.max() <= 670.665 + 951.3  # mean +- std in metres


def test_embed_writes_one_band_per_feature_on_the_patch_grid(cache, tmp_path):
    out = tmp_path / "emb.tif"
    geomind(cache, "embed", S2, "--model", "tiny", "-o", out, "--device", "cpu", "--quiet")
    same_georeferencing(out, S2, scale=16)
    with rasterio.open(out) as src:
        assert src.count == 192 and src.dtypes[0] == "float32"
        emb = src.read()
        assert np.isfinite(emb).all() and emb.std() > 0


def test_embed_float16_cog_and_zarr_hold_the_float32_features_rounded(cache, tmp_path):
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr

    runs = {"f32.tif": "float32", "f16.tif": "float16", "f16.zarr": "float16"}
    for name, dtype in runs.items():
        geomind(cache, "embed", S2, "--model", "tiny", "--dtype", dtype, "-o", tmp_path / name, "--device", "cpu",
                "--quiet")
    with rasterio.open(tmp_path / "f32.tif") as f32, rasterio.open(tmp_path / "f16.tif") as f16:
        full, half = f32.read(), f16.read()
        assert f16.tags(1, "IMAGE_STRUCTURE").get("NBITS") == "16"  # half floats on disk
        assert set(f32.scales) == {1.0} and set(f32.offsets) == {0.0}  # values as they are, no scaling
        transform, crs = f32.transform, f32.crs
    np.testing.assert_array_equal(half, full.astype(np.float16).astype(np.float32))
    store = xr.open_zarr(tmp_path / "f16.zarr", decode_coords="all")["embedding"]
    assert store.dtype == np.float16 and store.shape == full.shape
    assert store.rio.crs == crs and store.rio.transform().almost_equals(transform)
    assert list(store.attrs["long_name"])[:2] == ["feature_0", "feature_1"]
    np.testing.assert_array_equal(store.values.astype(np.float32), half)
    assert not list(tmp_path.glob(".*"))  # no staging left behind


def test_embed_rejects_an_unknown_output_format(cache, tmp_path):
    proc = geomind(cache, "embed", S2, "--model", "tiny", "-o", tmp_path / "e.nc", "--device", "cpu", check=False)
    assert proc.returncode == 1 and ".zarr" in proc.stderr and not (tmp_path / "e.nc").exists()


def test_info_json_reports_modalities_plan_and_cache(cache):
    proc = geomind(cache, "info", FLOOD_S2, FLOOD_S1, "--json")
    report = json.loads(proc.stdout)
    assert report["modalities"] == {"S2L1C": 13, "S1GRD": 2}
    assert report["tile_plan"]["tiles"] == 9  # 512 px, tile 224, stride 160 -> 3 x 3
    cached = {w["name"]: w["path"] for w in report["weights"]}
    assert cached["tiny"] and cached["S1GRD"] and not cached["large"]
    assert report["grid"]["units"] == "degrees" and {s["units"] for s in report["sources"]} == {"degrees"}


def test_info_units_from_the_crs_and_several_scenes_one_by_one(cache, tmp_path):
    """EPSG:4326 resolution in degrees (not "m"), UTM in metres; two scenes of one modality are two reports, as
    `generate` would run them, not an error."""
    scenes = []
    for name in ("a_S2Hand.tif", "b_S2Hand.tif"):
        scenes.append(tmp_path / name)
        scenes[-1].write_bytes(FLOOD_S2.read_bytes())
    report = json.loads(geomind(cache, "info", *scenes, "--json").stdout)
    assert [s["scene"] for s in report["scenes"]] == ["a_S2Hand", "b_S2Hand"]
    assert all(s["modalities"] == {"S2L1C": 13} and s["tile_plan"]["tiles"] == 9 for s in report["scenes"])
    assert len(report["weights"]) == 10  # listed once, not per scene
    human = geomind(cache, "info", *scenes).stdout
    assert "Inputs of scene a_S2Hand" in human and "Inputs of scene b_S2Hand" in human
    assert "8.983e-05 deg" in human and "e-05 m" not in human
    utm = geomind(cache, "info", S2).stdout
    assert "EPSG:32" in utm and "10 m" in utm


def test_weights_path_names_repository_when_missing(cache):
    assert "TerraMind_v1_tiny.pt" in geomind(cache, "weights", "path", "tiny").stdout
    proc = geomind(cache, "weights", "path", "large", check=False)
    assert proc.returncode == 1
    assert "ibm-esa-geospatial/TerraMind-1.0-large" in proc.stderr and "HF_HUB_OFFLINE" in proc.stderr


def _one_error_line(proc) -> str:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "case, expect",
    [
        ("not_a_raster", "readme.md"),
        ("missing_bands", "lacks"),
        ("unknown_modality", "unknown modality"),
        ("no_overlap", "overlap"),
        ("weights_offline", "TerraMind-1.0-small"),
        ("cuda_absent", "cuda"),
    ],
)
def test_bad_input_gives_one_line_and_writes_nothing(cache, tmp_path, case, expect):
    out = tmp_path / "out"
    if case == "not_a_raster":
        bad = tmp_path / "readme.md"
        bad.write_text("hello")
        args = ["generate", bad, "--to", "LULC"]
    elif case == "missing_bands":
        args = ["generate", f"{DEM}:S2L2A", "--to", "LULC"]
    elif case == "unknown_modality":
        args = ["generate", S2, "--to", "HYPERSPECTRAL"]
    elif case == "no_overlap":
        args = ["generate", S2, f"{FLOOD_S1}:S1GRD", "--to", "LULC"]
    elif case == "weights_offline":
        args = ["generate", S2, "--to", "LULC", "--model", "small"]
    else:
        args = ["generate", S2, "--to", "LULC", "--device", "cuda"]
    if case in ("weights_offline", "cuda_absent"):
        proc = geomind(cache, *args, "-o", out, "--timesteps", "1", "--quiet", check=False)
    else:
        proc = geomind(cache, *args, "-o", out, *FAST, check=False)
    if case == "cuda_absent" and proc.returncode == 0:
        pytest.fail("a CUDA device is present here; this case expects a CPU-only machine")
    assert expect.lower() in _one_error_line(proc).lower()
    assert not out.exists() or not any(out.iterdir())


def test_existing_output_needs_overwrite(cache, tmp_path):
    target = tmp_path / f"{S2.stem}_LULC.tif"
    target.write_bytes(b"keep me")
    proc = geomind(cache, "generate", S2, "--to", "LULC", "-o", tmp_path, *FAST, check=False)
    assert "--overwrite" in _one_error_line(proc)
    assert target.read_bytes() == b"keep me"
    geomind(cache, "generate", S2, "--to", "LULC", "-o", tmp_path, "--overwrite", *FAST)
    with rasterio.open(target) as src:
        assert src.dtypes == ("uint8",)


def test_random_weights_warn_loudly(cache, tmp_path):
    proc = geomind(cache, "embed", S2, "--model", "tiny", "--weights", "random", "-o", tmp_path / "e.tif",
                   "--device", "cpu", "--quiet")
    assert "RANDOM WEIGHTS" in proc.stderr


def test_help_is_fast_and_lists_commands():
    proc = subprocess.run([sys.executable, "-m", "geomind_cli.cli.app", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for command in ("generate", "tokenize", "detokenize", "embed", "info", "weights"):
        assert command in proc.stdout
    # Heavy imports live inside command bodies, so help and argument errors come back at once.
    probe = "import sys, geomind_cli.cli.app; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


def test_report_for_people_json_for_scripts_and_quiet(cache, tmp_path):
    """One tokenize run per mode (one 224 px tile): a sentence per output and a summary line on stderr; one JSON
    object on stdout with --json; nothing at all with --quiet. The 14 px output's block size below GDAL's liking
    (a warning nobody can act on) shows only with --verbose."""
    out = tmp_path / "tokens.tif"
    base = ["tokenize", DEM, "--modality", "DEM", "-o", out, "--device", "cpu", "--overwrite"]
    people = geomind(cache, *base)
    assert people.stdout == ""
    wrote, summary = [line for line in people.stderr.splitlines() if line.strip()]
    assert wrote == f"Wrote {out}: 14 x 14 px, uint16 COG, band DEM_token per 16 px patch, {out.stat().st_size} B"
    assert summary.startswith("1 tile in ") and "tiles/s" in summary and "peak memory" in summary
    assert "BLOCKSIZE" not in people.stderr and "WARNING" not in people.stderr

    scripts = geomind(cache, *base, "--json")
    report = json.loads(scripts.stdout)
    assert scripts.stderr == ""
    assert report["tiles"] == 1 and report["processed"] == 1 and report["skipped"] == 0
    [facts] = report["outputs"]
    assert facts["path"] == str(out) and (facts["width"], facts["height"]) == (14, 14)
    assert facts["dtype"] == "uint16" and facts["layout"] == "COG" and facts["bands"] == ["DEM_token"]

    quiet = geomind(cache, *base, "--quiet")
    assert quiet.stdout == "" and quiet.stderr == ""

    verbose = geomind(cache, *base, "--verbose")
    assert "BLOCKSIZE" in verbose.stderr and verbose.stderr.count("Wrote ") == 1


def test_no_network_is_one_line_that_says_offline(cache):
    """Downloads allowed but the hub unreachable: one error line at once, instead of five retries printed twice."""
    env = {k: v for k, v in cache.env().items() if k != "HF_HUB_OFFLINE" and "proxy" not in k.lower()}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
    proc = subprocess.run([sys.executable, "-m", "geomind_cli.cli.app", "weights", "download", "large"], env=env,
                          capture_output=True, text=True, timeout=300)
    line = _one_error_line(proc)
    assert proc.returncode == 1 and "offline (cannot reach 127.0.0.1)" in line and "Retry" not in proc.stderr
    assert "geomind weights download" in line
