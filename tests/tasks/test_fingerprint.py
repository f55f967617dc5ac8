"""What made an output: the same command, options, precision and weights file give the same fingerprint; any
change of them (a seed, a model size, a replaced weights file) gives another."""

import os

from geomind_cli.tasks.base import Task, fingerprint
from geomind_cli.tasks.generate import GenerateOptions, output_specs
from geomind_cli.tasks.runtime import Runtime


def _made_by(runtime, **options):
    return {"command": "generate", "inputs": ["S2L2A"], "options": GenerateOptions(targets=("LULC",), **options),
            "runtime": runtime}


def test_fingerprint_changes_with_options_precision_and_weights_file_only(tmp_path):
    random = Runtime.resolve(device="cpu", precision="fp32", compile=False, weights="random")
    base = fingerprint(_made_by(random, size="tiny", seed=1))
    assert base == fingerprint(_made_by(Runtime.resolve(device="cpu", precision="fp32", compile=True,
                                                        weights="random"), size="tiny", seed=1))
    assert base != fingerprint(_made_by(random, size="tiny", seed=2))
    assert base != fingerprint(_made_by(random, size="large", seed=1))
    assert base != fingerprint(_made_by(Runtime.resolve(device="cpu", precision="bf16", compile=False,
                                                        weights="random"), size="tiny", seed=1))
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    local = Runtime.resolve(device="cpu", precision="fp32", compile=False, weights=str(weights))
    first = fingerprint(_made_by(local, size="tiny", seed=1))
    assert first != base and first == fingerprint(_made_by(local, size="tiny", seed=1))
    weights.write_bytes(b"other weights")
    os.utime(weights, ns=(1, 1))
    assert fingerprint(_made_by(local, size="tiny", seed=1)) != first


def test_a_task_stamps_its_outputs(tmp_path):
    random = Runtime.resolve(device="cpu", precision="fp32", compile=False, weights="random")
    made_by = _made_by(random, size="tiny", seed=1)
    task = Task(outputs=output_specs(["LULC"], tmp_path, "scene"), tile_fn=lambda batch: {}, made_by=made_by)
    assert [spec.fingerprint for spec in task.outputs] == [fingerprint(made_by)]
