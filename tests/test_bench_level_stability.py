"""`benchmarks/bench_level_stability.py` on the smoke preset: two scorings of every 8th pool problem, compared level set by
level set, so that the script behind the tiny-cpu preset's scoring settings cannot rot."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_level_stability_on_smoke(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'STAGED_RL_NO_PROGRESS': '1',
           'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    p = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'bench_level_stability.py'), '--preset', 'smoke', '--every', '8',
                        '--out', str(tmp_path), 'scoring.adaptive=true', 'filtering.levels_code=[3]'], capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path/'stability.json').read_text())
    from staged_rl.config import load_config
    from staged_rl.filtering import load_pool
    pool = load_pool(load_config('smoke'))[::8]
    assert res['all']['problems'] == len(pool) == res['math/all']['problems'] + res['code/all']['problems']
    assert 0 <= res['all']['identical'] <= 1 and len(res['seconds']) == 2
    # two independent stores, seeds 0 and 1; adaptive with code level 3 alone: the small and medium models never scored code
    for s in (0, 1):
        recs = [json.loads(l) for l in (tmp_path/f'seed{s}'/'scores.jsonl').read_text().splitlines()]
        assert {r['id'] for r in recs} == {q.id for q in pool}
        assert not [r for r in recs if r['domain'] == 'code' and r['role'] in ('small', 'medium') and not r['skipped']]
    assert p.stdout.strip().splitlines()[-1].startswith('identical level sets:')
