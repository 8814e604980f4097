"""`benchmarks/gpu_rehearsal.py --tiny`: the GPU rehearsal's code path (the paper-1.5b preset, one step per stage,
responses extended to the stage's limit) at tiny size on a CPU, so that it cannot rot between GPU loans."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_rehearsal_runs_at_tiny_size(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    p = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'gpu_rehearsal.py'), '--tiny', '--out', str(tmp_path)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    rep = json.loads((tmp_path/'rehearsal.json').read_text())
    assert [s['stage'] for s in rep['stages']] == ['stage1', 'stage2']
    assert [s['limit'] for s in rep['stages']] == [64, 96] and all(s['responses'] == 16 for s in rep['stages'])
    # every response ran to its stage's limit, and the update trained on all of their tokens
    assert [s['update_tokens'] for s in rep['stages']] == [16 * 64, 16 * 96]
    assert all(s['update_s'] > 0 and s['projected']['update_s'] > s['update_s'] for s in rep['stages'])
    assert len(rep['eval_s']) == 3  # at the start and at both stage ends
    assert 'projected full step' in p.stdout
