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
