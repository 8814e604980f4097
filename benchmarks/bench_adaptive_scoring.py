"""Adaptive difficulty scoring against fixed-k scoring on the same pool, models and seed.

Scores the preset's pool three ways, each into its own resumable store under --out:
  fixed      every problem, every role, k samples (the paper's protocol)
  adaptive   `scoring.adaptive=true`: small rounds, stop once the fact the level rules need is settled
  fixed-s1   fixed k again with another seed (--noise-floor): how much two fixed-k runs agree by themselves
and prints rollouts and seconds of each, the share of rollouts adaptive mode saves, and the agreement of the
level sets (overall and per level) between adaptive and fixed, and between the two fixed runs.

Usage: python benchmarks/bench_adaptive_scoring.py [--preset tiny-cpu] [--out runs/bench-scoring] [--noise-floor]
       [key=value overrides, e.g. scoring.k=8]
A killed run resumes from the stores; delete --out to start over.
"""
import argparse, json, sys, time
from pathlib import Path


def score(preset, overrides, out):
    "Score the pool into `out/scores.jsonl`; (problems, rates by id, summary, seconds)."
    from staged_rl.config import load_config
    from staged_rl.filtering import load_pool
    from staged_rl.scoring import score_pool, summarize, rates_from_records
    cfg = load_config(preset, [*overrides, f'output.dir={out}'])
    pool = load_pool(cfg)
    t0 = time.time()
    records = score_pool(pool, cfg)
    secs = time.time() - t0
    summ = summarize(records, len(pool), cfg.scoring.k, cfg.scoring.roles)
    return pool, rates_from_records(records), summ, secs, cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='tiny-cpu')
    ap.add_argument('--out', default='runs/bench-scoring')
    ap.add_argument('--noise-floor', action='store_true', help='also score with fixed k and another seed')
    ap.add_argument('overrides', nargs='*')
    a = ap.parse_args(argv)
    from staged_rl.scoring import compare_levels
    from staged_rl.models import set_threads
    print(f"torch threads: {set_threads()}", flush=True)
    out = Path(a.out)
    runs = {'fixed': ['scoring.adaptive=false', 'seed=0'], 'adaptive': ['scoring.adaptive=true', 'seed=0']}
    if a.noise_floor: runs['fixed-s1'] = ['scoring.adaptive=false', 'seed=1']
    res = {}
    for name, ov in runs.items():
        print(f"[{name}] scoring ...", flush=True)
        res[name] = score(a.preset, [*a.overrides, *ov], out/name)
        pool, _, summ, secs, cfg = res[name]
        print(f"[{name}] {summ['rollouts']} rollouts ({summ['budget']} fixed-k budget), {secs:.0f} s this call", flush=True)
    pool, fixed, fsum, _, cfg = res['fixed']
    _, adapt, asum, _, _ = res['adaptive']
    report = {'preset': a.preset, 'problems': len(pool), 'k': cfg.scoring.k, 'roles': cfg.scoring.roles,
              'rollouts_fixed': fsum['rollouts'], 'rollouts_adaptive': asum['rollouts'],
              'rollouts_saved_frac': round(1 - asum['rollouts'] / fsum['rollouts'], 4),
              'tokens_fixed': fsum['tokens'], 'tokens_adaptive': asum['tokens'],
              'tokens_saved_frac': round(1 - asum['tokens'] / fsum['tokens'], 4),
              'seconds_fixed': fsum['seconds'], 'seconds_adaptive': asum['seconds'],
              'speedup': round(fsum['seconds'] / max(asum['seconds'], 1e-9), 2),
              'agreement_adaptive_vs_fixed': compare_levels(pool, adapt, fixed, cfg.filtering)}
    if a.noise_floor:
        report['agreement_fixed_seed1_vs_fixed'] = compare_levels(pool, res['fixed-s1'][1], fixed, cfg.filtering)
    print(json.dumps(report, indent=1))
    (out/'report.json').write_text(json.dumps(report, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
