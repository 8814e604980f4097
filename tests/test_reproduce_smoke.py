"""`staged-rl reproduce --preset smoke` end to end: every experiment notebook runs under papermill on the CPU,
writes its figures (PNG and SVG), the numbers behind them and its claims, and a rerun skips finished work."""
import json, subprocess
from staged_rl.reproduce import EXPERIMENTS

def test_reproduce_smoke_end_to_end(tmp_path):
    out = tmp_path/'smoke'
    r = subprocess.run(['staged-rl', 'reproduce', '--preset', 'smoke', '--out', str(out)], capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in EXPERIMENTS:
        folder = out/name
        assert (folder/'done.json').exists() and (folder/f'{name}.ipynb').exists(), name
        claims = json.loads((folder/'claims.json').read_text())
        assert claims and all({'claim', 'paper', 'ours', 'held'} <= c.keys() for c in claims), name
    first = out/EXPERIMENTS[0]
    for fig in ('pass_rate_histograms', 'levels'):
        assert all((first/f'{fig}.{ext}').exists() for ext in ('png', 'svg', 'json')), fig
    assert (out/'scores.jsonl').exists() and len(list((out/'levels').glob('level*_*.jsonl'))) == 6
    assert '| experiment | claim |' in (out/'results.md').read_text()
    again = subprocess.run(['staged-rl', 'reproduce', '--preset', 'smoke', '--out', str(out)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count('skipped') == len(EXPERIMENTS)
