"""scripts/demo.sh (``make demo``) reports a failing ``geomind generate`` with its exit status, not success."""

import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_exits_with_the_status_of_a_failing_generate(tmp_path):
    fake = tmp_path / "geomind"  # weights are cached (so not an offline case); generate fails with status 3
    fake.write_text('#!/usr/bin/env bash\nif [ "$1" = weights ]; then exit 0; fi\n'
                    'echo "geomind: error: something real" >&2; exit 3\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", "scripts/demo.sh", str(fake), str(tmp_path / "out")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "demo: outputs in" not in proc.stdout
