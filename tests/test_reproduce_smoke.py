"""`staged-rl reproduce --preset smoke` end to end: every experiment notebook runs under papermill on the CPU,
writes its figures (PNG and SVG), the numbers behind them and its claims, and a rerun skips finished work.

The claims are checked against what the runs wrote: level sizes against the level files, and every number of the
training experiments recomputed here from the runs' `metrics.jsonl` (one seed at smoke scale: sd 0, n=1, no verdict)."""
import json, subprocess
from pathlib import Path
from staged_rl.reproduce import EXPERIMENTS

def _metrics(folder: Path) -> list: return [json.loads(l) for l in (folder/'seed0'/'metrics.jsonl').read_text().splitlines() if l.strip()]
def _vals(rows: list, key: str) -> list: return [r[key] for r in rows if r.get(key) is not None]
def _one(x: float, d: int = 3) -> str: return f"{x:.{d}f} ± {0:.{d}f} (n=1)"  # one seed: mean ± sd (n=1)
def _lines(p: Path) -> int: return sum(1 for l in open(p) if l.strip()) if p.exists() else 0

def check_claims(out: Path):
    "Each experiment's claims.json says what its level files and runs' metrics give (smoke preset: seed 0 only)."
    claims = {n: {c['claim']: c for c in json.loads((out/n/'claims.json').read_text())} for n in EXPERIMENTS}
    sizes = {(L, d): _lines(out/'levels'/f'level{L}_{d}.jsonl') for L in (1, 2, 3) for d in ('math', 'code')}
    c = claims['01_ladder_and_scoring']['levels 1-3 all populated by the rules']
    assert c['ours'] == ', '.join(f"level{L}: {sizes[L, 'math']} math + {sizes[L, 'code']} code" for L in (1, 2, 3)), c
    assert c['held'] == all(sizes[L, 'math'] + sizes[L, 'code'] > 0 for L in (1, 2, 3))
    # 02: held-out gain (last - first evaluation) and first training reward per level, from each level's run
    here = out/'02_difficulty_ablation'
    levels = [L for L in (1, 2, 3) if sizes[L, 'math']]
    runs = {L: _metrics(here/f'level{L}') for L in levels}
    gain = {L: _vals(runs[L], 'eval/math/pass@1')[-1] - _vals(runs[L], 'eval/math/pass@1')[0] for L in levels}
    init = {L: _vals(runs[L], 'reward')[0] for L in levels}
    c = claims['02_difficulty_ablation']
    assert c['level 1 learns best (largest held-out gain)']['ours'] == '; '.join(f"level {L}: {_one(gain[L])}" for L in levels)
    assert c['initial reward falls with level']['ours'] == '; '.join(f"level {L}: {_one(init[L], 2)}" for L in levels)
    assert all(x['held'] is None for x in c.values())  # one seed cannot clear a spread
    summary = json.loads((here/'summary.json').read_text())
    assert summary == {f'level{L}': {'gain': [gain[L]], 'initial_reward': [init[L]]} for L in levels}
    # 03: staged run against stage 1 continued for the same number of steps
    here = out/'03_staged_run'
    if sizes[2, 'math'] + sizes[2, 'code'] and sizes[3, 'math'] + sizes[3, 'code']:
        staged, base = _metrics(here/'staged'), _metrics(here/'baseline')
        assert [r['step'] for r in staged if r.get('stage_end')][:1] and staged[-1]['step'] == base[-1]['step']
        c = claims['03_staged_run']
        for name, title in (('math', 'staged RL improves math over the initial policy'), ('code', 'code: staged model against the initial policy')):
            s = _vals(staged, f'eval/{name}/pass@1')
            assert c[title]['ours'] == f"{_one(s[0])} -> {_one(s[-1])}", (title, c[title])
        d = _vals(staged, 'eval/math/pass@1')[-1] - _vals(base, 'eval/math/pass@1')[-1]
        assert c['stage 2 beats continuing stage 1 for the same steps']['ours'] == f"staged - continued: {_one(d)}"
    # 04: final held-out scores of the two arms, and the math-only arm's gain over its first evaluation
    here = out/'04_math_code_mix'
    if sizes[1, 'math'] and sizes[3, 'code']:
        mo, mix = _metrics(here/'math_only'), _metrics(here/'math_and_code_2.1-1')
        final = lambda rows, k: _vals(rows, f'eval/{k}/pass@1')[-1]
        c = claims['04_math_code_mix']
        assert c['mixing in code improves code']['ours'] == f"mix - math only (code): {_one(final(mix, 'code') - final(mo, 'code'))}"
        mo_gain = final(mo, 'math') - _vals(mo, 'eval/math/pass@1')[0]
        assert c['mixing keeps (or improves) math']['ours'] == \
            f"mix - math only (math): {_one(final(mix, 'math') - final(mo, 'math'))}; math only gain over initial: {_one(mo_gain)}"

def test_reproduce_smoke_end_to_end(tmp_path):
    out = tmp_path/'smoke'
    r = subprocess.run(['staged-rl', 'reproduce', '--preset', 'smoke', '--out', str(out)], capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in EXPERIMENTS:
        folder = out/name
        assert (folder/'done.json').exists() and (folder/f'{name}.ipynb').exists(), name
        claims = json.loads((folder/'claims.json').read_text())
        assert claims and all({'claim', 'paper', 'ours', 'held'} <= c.keys() for c in claims), name
    check_claims(out)
    first = out/EXPERIMENTS[0]
    for fig in ('pass_rate_histograms', 'levels'):
        assert all((first/f'{fig}.{ext}').exists() for ext in ('png', 'svg', 'json')), fig
    assert (out/'scores.jsonl').exists() and len(list((out/'levels').glob('level*_*.jsonl'))) == 6
    assert '| experiment | claim |' in (out/'results.md').read_text()
    again = subprocess.run(['staged-rl', 'reproduce', '--preset', 'smoke', '--out', str(out)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count('skipped') == len(EXPERIMENTS)
