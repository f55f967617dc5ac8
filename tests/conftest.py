import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hub_cache import HubCache  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture
def hub_cache(tmp_path):
    """An empty offline Hugging Face cache, active for this process and for subprocesses started with .env()."""
    with HubCache(tmp_path / "hf-home").active() as cache:
        yield cache


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA


# The fault matrix (tests/faults) appends one JSON row per case to this file; the table is printed at the end.
def _fault_rows(config) -> Path:
    return Path(config.rootpath) / ".pytest_cache" / "geomind-fault-matrix.jsonl"


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist) starts a new table
        _fault_rows(session.config).unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import json

    path = _fault_rows(config)
    if hasattr(config, "workerinput") or not path.exists():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    terminalreporter.section("fault matrix")
    terminalreporter.write_line(f"{'case':<42} {'exit':>4}  {'leftovers':<10} message")
    for row in sorted(rows, key=lambda r: r["case"]):
        left = ", ".join(row["leftovers"]) or "none"
        terminalreporter.write_line(f"{row['case'][:42]:<42} {row['code']:>4}  {left[:10]:<10} {row['message'][:150]}")
