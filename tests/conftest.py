"""Shared pytest fixtures: where the real benchmark files live (skipping when absent), and one torch thread."""
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent/'shared'/'data'

@pytest.fixture
def shared_data() -> Path:
    "The folder of real benchmark files (../shared/data); skips the test when it is absent."
    if not SHARED_DATA.exists(): pytest.skip(f"real benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA

@pytest.fixture(scope='module')
def one_torch_thread():
    "Tiny models run fastest on one thread, and a shared 2-core box does not oversubscribe; restored afterwards."
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
