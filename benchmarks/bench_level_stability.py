"""How stable are the levels? Two independent scorings of the same pool problems, compared level set by level set.

Scores every `--every`-th problem of the preset's pool twice (seeds 0 and 1, each into its own resumable store under
--out) with the preset's scoring settings plus the overrides, and prints the share of problems whose level sets
are identical: per domain, split into plain problems and the tiny world's skill problems, and overall; then the
seconds of each scoring. This is the pilot behind the `tiny-cpu` preset's `scoring.k` and `filtering.levels_code`
(see `nbs/08_scoring.ipynb`, "Stable levels").

Usage: python benchmarks/bench_level_stability.py [--preset tiny-cpu] [--every 4] [--out runs/bench-stability]
       [key=value overrides, e.g. scoring.k=32 'filtering.levels_code=[1,2,3]']
A killed run resumes from the stores; delete --out to start over.
"""
import argparse, json, time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='tiny-cpu')
    ap.add_argument('--every', type=int, default=4, help='score every N-th pool problem')
    ap.add_argument('--out', default='runs/bench-stability')
    ap.add_argument('overrides', nargs='*', help='config overrides (key=value)')
    a = ap.parse_args()
    if a.every < 1: ap.error(f'--every: got {a.every}; expected an int >= 1')
    from staged_rl.config import load_config
    from staged_rl.filtering import load_pool
    from staged_rl.scoring import score_pool, rates_from_records, compare_levels
    out = Path(a.out)
    cfgs = [load_config(a.preset, [*a.overrides, f'seed={s}', f'output.dir={out}/seed{s}']) for s in (0, 1)]
    probs = load_pool(cfgs[0])[::a.every]
    rates, secs = [], []
    for s, cfg in enumerate(cfgs):
        t0 = time.time()
        rates.append(rates_from_records(score_pool(probs, cfg, progress=False)))
        secs.append(time.time() - t0)
        print(f"scoring with seed {s}: {len(probs)} problems in {secs[-1]:.0f} s", flush=True)
    f = cfgs[0].filtering
    print(f"{a.preset}, every {a.every}-th pool problem, scoring.k={cfgs[0].scoring.k} (adaptive: {cfgs[0].scoring.adaptive}), "
          f"levels built: math {f.levels_math}, code {f.levels_code}")
    res = {'preset': a.preset, 'every': a.every, 'overrides': a.overrides, 'k': cfgs[0].scoring.k, 'seconds': secs}
    skill = lambda p: bool((p.meta or {}).get('skill'))
    for d in ('math', 'code'):
        for kind in ('plain', 'skill', 'all'):
            ps = [p for p in probs if p.domain == d and (kind == 'all' or (kind == 'skill') == skill(p))]
            if not ps: continue
            res[f'{d}/{kind}'] = r = compare_levels(ps, rates[0], rates[1], f)
            print(f"  {d:<5}{kind:<6}{r['problems']:>6} problems  identical level sets {r['identical']:.1%}")
    res['all'] = r = compare_levels(probs, rates[0], rates[1], f)
    print(f"  all        {r['problems']:>6} problems  identical level sets {r['identical']:.1%}")
    (out/'stability.json').write_text(json.dumps(res, indent=1))
    print(f"identical level sets: {r['identical']:.1%} of {r['problems']} problems; scorings {secs[0]:.0f} s and {secs[1]:.0f} s")


if __name__ == '__main__':
    main()
