"""The command line on products and URLs: `geomind info` per source (origin, scale/offset, units, decisions),
the input options, and one-line errors."""

import json
import subprocess
import sys

import numpy as np

from cli_in_process import run_geomind
from engine_rasters import write_raster
from http_server import serve
from product_trees import build_s2_safe, zip_folder


def geomind(*args):
    """The real command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "geomind_cli.cli.app", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_info_json_on_safe_zip_with_bbox_and_offset_decision(tmp_path, monkeypatch, capsys):
    safe, _ = build_s2_safe(tmp_path, "L2A")
    archive = zip_folder(safe, tmp_path / f"{safe.name}.zip")
    proc = geomind("info", archive, "--json", "--bbox", 300100, 6099600, 300300, 6099900)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["modalities"] == {"S2L2A": 12}
    assert (report["grid"]["width"], report["grid"]["height"]) == (20, 30)
    assert report["grid"]["crs"] == "EPSG:32634"
    b04 = next(s for s in report["sources"] if s["bands"] == "B04")
    assert b04["from"].endswith("_B04_10m.jp2") and b04["path"].startswith("/vsizip/")
    assert b04["offset"] == -1000.0 and b04["scale"] == 1.0 and b04["value_units"] == "reflectance x10000"
    assert any("baseline offset -1000" in d for d in b04["decisions"])
    # How each band file reaches the 10 m grid: the 20 m and 60 m ones upsampled on its lattice, not warped.
    reads = {s["bands"]: s["read"] for s in report["sources"]}
    assert reads["B04"] == "direct"
    assert reads["B05"] == "upsampled x2, bilinear" and reads["B01"] == "upsampled x6, bilinear"
    code, out, err = run_geomind(monkeypatch, capsys, "info", archive, "--s2-offset", "none")
    assert code == 0, err
    assert "no baseline offset (--s2-offset none)" in out
    assert "S2L2A B05 B06 B07 B8A B11 B12: upsampled x2, bilinear" in out


def test_info_on_url_with_modality_suffix(tmp_path, monkeypatch, capsys):
    served = tmp_path / "served"
    served.mkdir()
    write_raster(served / "db100.tif", np.full((2, 32, 32), -1260, np.int16), descriptions=["VV", "VH"])
    with serve(served) as (base, _):
        code, out, err = run_geomind(monkeypatch, capsys, "info", f"{base}/db100.tif:S1GRD", "--json",
                                      "--s1-units", "db")
        vsi = run_geomind(monkeypatch, capsys, "info", f"/vsicurl/{base}/db100.tif", "--json")
    assert code == 0 and vsi[0] == 0, err + vsi[2]
    source = json.loads(out)["sources"][0]
    assert source["modality"] == "S1GRD" and source["file"] == "db100.tif"
    assert any("--s1-units" in d for d in source["decisions"])
    assert json.loads(vsi[1])["modalities"] == {"S1GRD": 2}


def test_bad_input_options_are_one_error_line(tmp_path, monkeypatch, capsys):
    safe, _ = build_s2_safe(tmp_path, "L1C")
    cases = [(("--s2-offset", "lots"), "--s2-offset"), (("--mask", "clouds"), "scene classification"),
             (("--bbox", 0, 0, 10, 10), "does not overlap"), (("--bbox-crs", "EPSG:4326"), "--bbox-crs needs --bbox"),
             (("--mask", "snow"), "the only mask is 'clouds'")]
    for args, message in cases:
        code, _, err = run_geomind(monkeypatch, capsys, "info", safe, *args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1 and lines[0].startswith("geomind: error:"), err
        assert message in lines[0], (args, lines[0])


def test_reading_options_are_part_of_the_output_fingerprint(tmp_path):
    """A resumed run with another --s2-offset must not keep outputs made with the first one."""
    from geomind_cli.engine import OutputSpec, ReadOptions, open_scene
    from geomind_cli.tasks.base import Task
    from geomind_cli.tasks.run import pending_outputs

    safe, _ = build_s2_safe(tmp_path, "L2A")
    prints = []
    for read in (ReadOptions(), ReadOptions(s2_offset="none"), ReadOptions()):
        with open_scene([str(safe)], read=read) as scene:
            task = Task([OutputSpec("out", tmp_path / "out.tif", "continuous", ["B04"], "float32")],
                        lambda batch: {}, made_by={"command": "test"})
            prints.append(pending_outputs(scene, task, resume=False, overwrite=True).outputs[0].fingerprint)
    assert prints[0] != prints[1] and prints[0] == prints[2]
