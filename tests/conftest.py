"""Shared pytest fixtures: where the real benchmark files live (skipping, and saying so, when absent), and one torch thread;
with STAGED_RL_NO_SKIPS=1 (`make test-vllm`) a skipped test counts as a failure."""
import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ('math500.jsonl', 'aime2024.jsonl', 'humaneval.jsonl', 'codeforces_stdin_sample.jsonl')

def data_dir() -> Path:
    "$STAGED_RL_DATA_DIR when set; else `make data`'s folder (data/) when it exists; else ../shared/data beside the repo."
    env = os.environ.get('STAGED_RL_DATA_DIR')
    if env: return Path(env).expanduser()
    return next((d for d in (ROOT/'data', ROOT.parent/'shared'/'data') if d.exists()), ROOT/'data')

SKIPPED = []  # node ids of the tests skipped for want of the real files, reported at the end of the run

@pytest.fixture
def shared_data(request) -> Path:
    "The folder of real benchmark files; skips the test (and lists it in the run's summary) when a file is missing."
    d = data_dir()
    missing = [f for f in NEEDED if not (d/f).exists()]
    if missing:
        SKIPPED.append(request.node.nodeid)
        pytest.skip(f"real benchmark data: {', '.join(missing)} not found in {d}")
    return d

def pytest_terminal_summary(terminalreporter):
    "One plain line when real-data tests were skipped, with the two ways to get the files."
    if SKIPPED:
        terminalreporter.write_line(f"real-data tests skipped ({len(SKIPPED)}): no benchmark files in {data_dir()}; "
                                    "set STAGED_RL_DATA_DIR=<folder> or run `make data`", yellow=True, bold=True)

@pytest.fixture(scope='module')
def one_torch_thread():
    "Tiny models run fastest on one thread, and a shared 2-core box does not oversubscribe; restored afterwards."
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    "Under STAGED_RL_NO_SKIPS=1 a skip (a test that could not run) is reported as a failure, with the skip's reason."
    rep = (yield).get_result()
    if os.environ.get('STAGED_RL_NO_SKIPS') == '1' and rep.skipped and not hasattr(rep, 'wasxfail'):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome, rep.longrepr = 'failed', f"skipped, but STAGED_RL_NO_SKIPS=1 requires every test to run: {reason}"
