"""The engine (and the modality facts it reads) import no torch and nothing from the tasks or the models: a Dask
worker, a test or a script gets it without loading torch (seconds), and imports go one way."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import importlib, pkgutil, sys
import geomind_cli.engine, geomind_cli.facts
for package in (geomind_cli.engine, geomind_cli.facts):
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "torch"
                or name.startswith(("geomind_cli.models", "geomind_cli.tasks", "geomind_cli.cli")))
print("engine modules:", sum(name.startswith("geomind_cli.engine.") for name in sys.modules))
print("forbidden:", loaded)
"""


def test_importing_every_engine_module_loads_no_torch_no_tasks_no_models():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert int(lines["engine modules"]) >= 10  # the probe really imported the engine's modules
    assert lines["forbidden"] == "[]"
