"""Shared pytest fixtures: where the real benchmark files live, and a skip when they are absent."""
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent/'shared'/'data'

@pytest.fixture
def shared_data() -> Path:
    "The folder of real benchmark files (../shared/data); skips the test when it is absent."
    if not SHARED_DATA.exists(): pytest.skip(f"real benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA
