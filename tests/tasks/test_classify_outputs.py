"""classify's side outputs are named from the user's path as typed: braces in it are text, not format fields."""

from pathlib import Path

from geomind_cli.tasks.classify import output_specs
from geomind_cli.tasks.segment import SegmentOptions


def test_paths_with_braces_name_their_side_outputs_literally(tmp_path):
    out = tmp_path / "run{1}" / "labels_{date}.tif"
    specs = output_specs(["water", "land"], out, SegmentOptions(probabilities=True, confidence=True))
    assert [Path(spec.path) for spec in specs] == [
        out, out.with_name("labels_{date}_probabilities.tif"), out.with_name("labels_{date}_confidence.tif")]
    assert [spec.name for spec in specs] == ["classes", "probabilities", "confidence"]
