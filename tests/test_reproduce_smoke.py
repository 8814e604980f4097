"""`staged-rl reproduce --preset smoke` end to end: every experiment notebook runs under papermill on the CPU,
writes its figures (PNG and SVG), the numbers behind them and its claims, and a rerun skips finished work.

The claims are checked against what the runs wrote: level sizes against the level files, and every number of the
training experiments recomputed here from the runs' `metrics.jsonl` (one seed at smoke scale: sd 0, n=1, no verdict)."""
import json, math, subprocess
from pathlib import Path
from staged_rl.reproduce import EXPERIMENTS

def _metrics(folder: Path) -> list: return [json.loads(l) for l in (folder/'seed0'/'metrics.jsonl').read_text().splitlines() if l.strip()]
def _vals(rows: list, key: str) -> list: return [r[key] for r in rows if r.get(key) is not None]
def _one(x: float, d: int = 3) -> str: return f"{x:.{d}f} ± {0:.{d}f} (n=1)"  # one seed: mean ± sd (n=1)
def _lines(p: Path) -> int: return sum(1 for l in open(p) if l.strip()) if p.exists() else 0

def check_claims(out: Path):
    "Each experiment's claims.json says what its level files and runs' metrics give (smoke preset: seed 0 only)."
    claims = {n: {c['id']: c for c in json.loads((out/n/'claims.json').read_text())} for n in EXPERIMENTS}
    sizes = {(L, d): _lines(out/'levels'/f'level{L}_{d}.jsonl') for L in (1, 2, 3) for d in ('math', 'code')}
    c = claims['01_ladder_and_scoring']['levels_populated']
    assert c['kind'] == 'check' and c['ours'] == ', '.join(f"level{L}: {sizes[L, 'math']} math + {sizes[L, 'code']} code" for L in (1, 2, 3)), c
    assert c['held'] == (all(sizes[L, 'math'] >= 100 for L in (1, 2, 3)) and sizes[3, 'code'] >= 150)
    assert {x['kind'] for x in claims['01_ladder_and_scoring'].values()} == {'check'}  # design checks, not the paper's claims
    # 02: held-out gain (last - first evaluation) and first training reward per level, from each level's run
    here = out/'02_difficulty_ablation'
    levels = [L for L in (1, 2, 3) if sizes[L, 'math']]
    runs = {L: _metrics(here/f'level{L}') for L in levels}
    gain = {L: _vals(runs[L], 'eval/math/pass@1')[-1] - _vals(runs[L], 'eval/math/pass@1')[0] for L in levels}
    init = {L: _vals(runs[L], 'reward')[0] for L in levels}
    c = claims['02_difficulty_ablation']
    if levels == [1, 2, 3]:
        for o in (2, 3):
            assert c[f'level1_beats_level{o}']['ours'] == f"gain level 1 - level {o}: {_one(gain[1] - gain[o])}; level 1 {_one(gain[1])}, level {o} {_one(gain[o])}"
        for a, b in ((1, 2), (2, 3)):
            assert c[f'first_batch_reward_{a}_over_{b}']['ours'].startswith(f"level {a} - level {b}: {_one(init[a] - init[b])}")
        assert all(x['held'] is None for x in c.values())  # one seed cannot be tested
    summary = json.loads((here/'summary.json').read_text())
    assert summary == {f'level{L}': {'gain': [gain[L]], 'initial_reward': [init[L]]} for L in levels}
    # 03: every arm branches from the stage-1 run's last checkpoint: identical rows up to the switch, then its own stage 2
    here = out/'03_staged_run'
    if sizes[2, 'math'] and sizes[3, 'math']:
        stage1 = _metrics(here/'stage1')
        arms = {a: _metrics(here/a) for a in ('staged', 'stage-1-continued', 'stage-2-no-masking', 'stage-2-at-stage-1-length')}
        switch = stage1[-1]['step']
        for a, rows in arms.items():
            drop = lambda r: {k: v for k, v in r.items() if k != 'next_stage'}
            assert [drop(r) for r in rows if r['step'] <= switch] == [drop(r) for r in stage1], a
            assert rows[-1]['step'] > switch and {r['stage'] for r in rows if r['step'] > switch} != {'stage1'}, a
        c = claims['03_staged_run']
        s = _vals(arms['staged'], 'eval/math/pass@1')
        assert c['staged_beats_initial']['ours'] == f"{_one(s[0])} -> {_one(s[-1])}"
        d = s[-1] - _vals(arms['stage-1-continued'], 'eval/math/pass@1')[-1]
        assert c['stage2_beats_continued']['ours'] == f"staged - continued: {_one(d)}"
    # 04: the math-only arm is experiment 2's level-1 run; the mix arm is its own
    here = out/'04_math_code_mix'
    if sizes[1, 'math'] and sizes[3, 'code']:
        mo, mix = _metrics(out/'02_difficulty_ablation'/'level1'), _metrics(here/'mix')
        final = lambda rows, k: _vals(rows, f'eval/{k}/pass@1')[-1]
        c = claims['04_math_code_mix']
        assert c['mix_improves_code']['ours'].startswith(f"mix - math only (code): {_one(final(mix, 'code') - final(mo, 'code'))}")
        mo_gain = final(mo, 'math') - _vals(mo, 'eval/math/pass@1')[0]
        assert c['mix_keeps_math']['ours'] == f"mix - math only (math): {_one(final(mix, 'math') - final(mo, 'math'))}; math only gain over initial: {_one(mo_gain)}"
        assert not (here/'math-only').exists()  # not trained twice

    # 05: the staged arm is experiment 3's run; the other three arms are its own, all with equal training rollouts
    here = out/'05_online_difficulty'
    if sizes[2, 'math'] and sizes[3, 'math']:
        arms = {'staged': _metrics(out/'03_staged_run'/'staged'), 'screened': _metrics(here/'screened'), 'pool': _metrics(here/'pool'),
                'random': _metrics(here/'random')}
        steps = lambda rows: [r for r in rows if 'n_prompts' in r]
        assert len({sum(r['n_prompts'] for r in steps(rows)) for rows in arms.values()}) == 1  # equal training rollouts
        assert all('online/screened' in r for r in steps(arms['screened'])) and not any('online/screened' in r for r in steps(arms['staged']))
        assert not (here/'staged').exists()  # not trained twice
        pool = _lines(here/'whole-pool-math.jsonl')
        assert [_lines(here/'random-subsets'/'seed0'/f'stage{k}.jsonl') for k in (1, 2)] == [min(sizes[L, 'math'], pool) for L in (2, 3)]
        zero = {a: sum(r['zero_std_frac'] * r['n_prompts'] * 4 for r in steps(rows)) for a, rows in arms.items()}  # smoke: 4 samples per prompt
        c = claims['05_online_difficulty']
        ratio = math.log2(max(zero['staged'], 1) / max(zero['screened'], 1))
        assert c['screening_halves_wasted_rollouts']['ours'].startswith(f"log2(zero-variance rollouts, staged / screened): {_one(ratio, 2)}")
        final = lambda rows: _vals(rows, 'eval/math/pass@1')[-1]
        assert c['levels_beat_pool']['ours'].startswith(f"levels - whole pool: {_one(final(arms['staged']) - final(arms['pool']))}")
        assert c['scoring_cheaper_than_training']['kind'] == 'compute' and c['scoring_cheaper_than_training']['held'] in (True, False)

def test_reproduce_smoke_end_to_end(tmp_path):
    out = tmp_path/'smoke'
    r = subprocess.run(['staged-rl', 'reproduce', '--preset', 'smoke', '--out', str(out)], capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in EXPERIMENTS:
        folder = out/name
        assert (folder/'done.json').exists() and (folder/f'{name}.ipynb').exists(), name
        claims = json.loads((folder/'claims.json').read_text())
        assert claims and all({'id', 'kind', 'claim', 'paper', 'ours', 'held'} <= c.keys() for c in claims), name
        assert json.loads((folder/'done.json').read_text())['git'] is not None, name  # the notebook's commit and blob
    check_claims(out)
    first = out/EXPERIMENTS[0]
    for fig in ('pass_rate_histograms', 'levels'):
        assert all((first/f'{fig}.{ext}').exists() for ext in ('png', 'svg', 'json')), fig
    assert (out/'scores.jsonl').exists() and len(list((out/'levels').glob('level*_*.jsonl'))) == 6
    assert '| experiment | claim |' in (out/'results.md').read_text()
    again = subprocess.run(['staged-rl', 'reproduce', '--preset', 'smoke', '--out', str(out)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count('skipped') == len(EXPERIMENTS)
