"""Experiment 01's stability check: its second scoring after the first (as before) or beside it in a spawned process
(as `nbs/experiments/01_ladder_and_scoring.ipynb` now runs it), and from the content-addressed cache.

Usage: python benchmarks/bench_stability_scoring.py [--preset smoke] [--every 1] [--repeats 2] [key=value overrides]
Scores every `--every`-th pool problem with seed 0 and seed 1 into fresh stores, `--repeats` times, alternating:
(a) one scoring after the other, in this process; (b) seed 1 in a spawned process while seed 0 runs here. Each pair of
(a, b) runs back to back, so a shared machine's load affects both alike; the script checks that (a) and (b) give the
same records and prints the median ratio of wall times. Then (c): seed 1 again through `cached_score_pool`, after one
such scoring has filled the cache: no sample is drawn. Last line: `stability re-score: <x>x beside the first scoring,
<y>x from the cache`.
"""
import argparse, statistics, tempfile, time
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='smoke')
    ap.add_argument('--every', type=int, default=1)
    ap.add_argument('--repeats', type=int, default=2)
    ap.add_argument('overrides', nargs='*')
    a = ap.parse_args()
    from staged_rl.config import load_config
    from staged_rl.filtering import load_pool
    from staged_rl.scoring import score_pool, cached_score_pool
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cfg = {s: load_config(a.preset, [*a.overrides, f'seed={s}', f'output.dir={d}/seed{s}']) for s in (0, 1)}
        probs = load_pool(cfg[0])[::a.every]
        ratios = []
        for r in range(a.repeats):
            t0 = time.time()
            seq = [score_pool(probs, cfg[s], d/f'seq{r}_{s}.jsonl', progress=False) for s in (0, 1)]
            t_seq = time.time() - t0
            t0 = time.time()
            with ProcessPoolExecutor(1, mp_context=mp.get_context('spawn')) as ex:
                fut = ex.submit(score_pool, probs, cfg[1], d/f'par{r}_1.jsonl', progress=False)
                par0 = score_pool(probs, cfg[0], d/f'par{r}_0.jsonl', progress=False)
                par1 = fut.result()
            t_par = time.time() - t0
            strip = lambda recs: {k: {f: v for f, v in x.items() if f != 'seconds'} for k, x in recs.items()}
            if strip(seq[0]) != strip(par0) or strip(seq[1]) != strip(par1): raise SystemExit('the two schedules gave different records')
            ratios.append(t_seq / t_par)
            print(f"repeat {r}: one after the other {t_seq:.1f} s, beside each other {t_par:.1f} s (same records)")
        cached_score_pool(probs, cfg[1], d/'fill.jsonl', progress=False)  # fills the cache (or finds it filled)
        t0 = time.time(); t_one = time.time()
        score_pool(probs, cfg[1], d/'again_plain.jsonl', progress=False); t_one = time.time() - t0
        t0 = time.time(); cached_score_pool(probs, cfg[1], d/'again_cached.jsonl', progress=False); t_cache = time.time() - t0
        print(f"{len(probs)} problems, preset {a.preset}: second scoring {t_one:.1f} s, from the cache {t_cache:.2f} s")
        print(f"stability re-score: {statistics.median(ratios):.2f}x beside the first scoring, {t_one / max(t_cache, 1e-3):.0f}x from the cache")


if __name__ == '__main__':
    main()
