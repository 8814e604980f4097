"""How long `staged-rl reproduce --preset tiny-cpu` takes for N seeds: an ESTIMATE from measured times, not a run.

Usage: python benchmarks/bench_reproduce_plan.py [--seeds 8 --workers 2 --eval-every 0 --decode-train 1.0 --decode-eval 1.0]

What is measured and what is modelled:
- per-step and per-evaluation times of every kind of run (level 1/2/3, stage 1, the four stage-2 arms, the mix)
  come from the published run's `metrics.jsonl` (`results/tiny-cpu`, 4 seeds, 2 cores): `time/step` minus
  `time/eval` for training, `time/eval` for an evaluation; the generation part of each is its tokens over the
  training rollout's measured tokens per second (`perf/gen_tokens_per_s`);
- `--decode-train` / `--decode-eval` divide the generation part (speed-ups measured by `bench_decode_step.py`);
- which steps evaluate follows the trainer's rule (step 0 unless branched, every `eval.every` steps, stage ends); in
  the new plan a seed's runs evaluate step 0 once (level 1's run, math and code) and the others read it
  (`trainer.initial_eval_cache`);
- runs go through `run_many` as the notebooks call it (one call per grid, a barrier between calls), `--workers` at a
  time, each run to the first free worker; each worker is assumed to have a core of its own at the published speed
  (so `--workers` above the number of cores models nothing real); what the notebooks spend outside their runs (papermill, figures) is the
  published experiment time minus the modelled time of its runs at 4 seeds and eval every 10, added as is;
- experiment 01 and the ladder build are taken from the published run (`--exp01-s`, `--ladder-s`), less the
  stability re-score's time where it now runs beside the first scoring (`--stability-s`, `--stability-overlap`).
The script first models the published configuration (4 seeds, eval every 10) and prints it beside the published
time, so the model's error is visible. Last line: `estimated total for N seeds: M min (ESTIMATE)`.
"""
import argparse, glob, heapq, json, statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = ['staged', 'stage-1-continued', 'stage-2-no-masking', 'stage-2-at-stage-1-length']


def rows(p): return [json.loads(l) for l in open(p) if l.strip()]


def kind_costs(pub: Path) -> dict:
    "kind -> {train: s per step, gen_share, eval: s per evaluation, eval_gen: s of it generating}, averaged over seeds."
    kinds = {**{f'level{L}': f'02_difficulty_ablation/level{L}' for L in (1, 2, 3)}, 'stage1': '03_staged_run/stage1',
             **{a: f'03_staged_run/{a}' for a in ARMS}, 'mix': '04_math_code_mix/mix'}
    out = {}
    for kind, rel in kinds.items():
        runs = [rows(p) for p in sorted(glob.glob(str(pub/rel/'seed*'/'metrics.jsonl')))]
        first = 40 if kind in ARMS else 0  # an arm's rows up to the switch are stage 1's, copied
        tr = [r for run in runs for r in run if r['step'] > first and 'time/step' in r]
        ev = [r for run in runs for r in run if 'time/eval' in r and (r['step'] > first or kind not in ARMS)]
        rate = statistics.fmean(r['perf/gen_tokens_per_s'] for r in tr)
        step = statistics.fmean(r['time/step'] - r.get('time/eval', 0) for r in tr)
        sets = sorted({k.split('/')[1] for r in ev for k in r if k.startswith('eval/') and k.endswith('/len_mean')})
        heldout = {'math': 200 * 16, 'code': 100 * 4}  # tiny-cpu: 200 math problems at k=16, 100 code at k=4
        eval_gen = sum(statistics.fmean(r[f'eval/{s}/len_mean'] for r in ev) * heldout[s] for s in sets) / rate
        out[kind] = {'train': step, 'gen_share': statistics.fmean(r['time/gen'] for r in tr) / step, 'update': statistics.fmean(r['time/update'] for r in tr),
                     'eval': statistics.fmean(r['time/eval'] for r in ev), 'eval_gen': eval_gen}
    return out


def n_evals(steps: range, every: int, ends: set, at_start: bool) -> int:
    return int(at_start) + sum(1 for s in steps if (every and s % every == 0) or s in ends)


def run_time(c: dict, n_steps: int, evals: int, a) -> float:
    gen = c['train'] * c['gen_share']
    train = gen / a.decode_train + c['update'] / a.update + (c['train'] - gen - c['update'])
    ev = c['eval'] - c['eval_gen'] + c['eval_gen'] / a.decode_eval
    return n_steps * train + evals * ev


def makespan(times: list, workers: int) -> float:
    free = [0.0] * workers
    for t in times: heapq.heappush(free, heapq.heappop(free) + t)
    return max(free)


def plan(costs: dict, seeds: int, every: int, a, workers: int) -> dict:
    "Modelled seconds of each experiment's runs."
    share = getattr(a, 'share_step0', False)  # step 0 evaluated once per seed (level 1: math and code) and reused by the other runs
    lv = lambda k: run_time(costs[k], 40, n_evals(range(1, 41), every, {40}, not share or k == 'level1'), a)
    arm = lambda k: run_time(costs[k], 20, n_evals(range(41, 61), every, {60}, False), a)
    e02 = makespan([lv(f'level{L}') for L in (1, 2, 3) for _ in range(seeds)], workers)
    e03 = makespan([lv('stage1')] * seeds, workers) + makespan([arm(k) for k in ARMS for _ in range(seeds)], workers)
    e04 = makespan([lv('mix')] * seeds, workers)  # the math-only arm is experiment 02's level-1 runs
    return {'02_difficulty_ablation': e02, '03_staged_run': e03, '04_math_code_mix': e04}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', type=int, default=8)
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--eval-every', type=int, default=0, help='0: step 0 and stage ends only (the preset)')
    ap.add_argument('--decode-train', type=float, default=1.0, help='decode speed-up on training rollouts (bench_decode_step.py)')
    ap.add_argument('--decode-eval', type=float, default=1.0, help='decode speed-up on evaluation rollouts')
    ap.add_argument('--update', type=float, default=1.0, help='policy-update speed-up (not implemented: a remaining lever)')
    ap.add_argument('--no-share-step0', dest='share_step0', action='store_false', help="model the runs without the shared step-0 evaluation (trainer.initial_eval_cache)")
    ap.add_argument('--published', default=str(ROOT/'results'/'tiny-cpu'))
    ap.add_argument('--exp01-s', type=float, default=None, help="experiment 01's time (default: the published done.json)")
    ap.add_argument('--ladder-s', type=float, default=280.0, help='ladder build (published: 280 s)')
    ap.add_argument('--stability-s', type=float, default=540.0, help="experiment 01's stability re-score (about 9 min, issue 23)")
    ap.add_argument('--stability-overlap', type=float, default=0.5, help='share of it hidden beside the first scoring (modelled: two processes on 2 cores)')
    a = ap.parse_args()
    pub = Path(a.published)
    costs = kind_costs(pub)
    done = {n: json.loads((pub/n/'done.json').read_text()) for n in ('01_ladder_and_scoring', '02_difficulty_ablation', '03_staged_run', '04_math_code_mix')}
    secs = {n: (d.get('history') or [d])[0]['seconds'] for n, d in done.items()}
    base = argparse.Namespace(decode_train=1.0, decode_eval=1.0, update=1.0, share_step0=False)
    old4 = plan(costs, 4, 10, base, 2)
    overhead = {n: secs[n] - t for n, t in old4.items()}  # outside the runs: papermill, figures
    print('per kind (s): ' + ', '.join(f"{k} step {c['train']:.2f} (gen {c['gen_share']:.0%}), eval {c['eval']:.1f} (gen {c['eval_gen']:.1f})" for k, c in costs.items()))
    print(f"published 02-04, 4 seeds, eval every 10: {sum(secs[n] for n in old4)/60:.1f} min; modelled runs {sum(old4.values())/60:.1f} min + notebooks {sum(overhead.values())/60:.1f} min")
    exp01 = a.exp01_s if a.exp01_s is not None else secs['01_ladder_and_scoring']
    new01 = exp01 - a.stability_s * a.stability_overlap
    today = plan(costs, a.seeds, 10, base, 2)
    new = plan(costs, a.seeds, a.eval_every, a, a.workers)
    tot = lambda p, e01: (sum(p.values()) + sum(overhead.values()) + e01 + a.ladder_s) / 60
    for name, p, e01 in (('today', today, exp01), ('new', new, new01)):
        print(f"{name:5s} {a.seeds} seeds: " + ', '.join(f"{n} {(t + overhead[n])/60:.1f} min" for n, t in p.items())
              + f", 01 {e01/60:.1f} min, ladder {a.ladder_s/60:.1f} min: total {tot(p, e01):.1f} min (ESTIMATE)")
    print(f"ratio today/new for experiments 02-04: {sum(today.values()) / sum(new.values()):.2f}x (ESTIMATE)")
    print(f"estimated total for {a.seeds} seeds: {tot(new, new01):.1f} min (ESTIMATE)")


if __name__ == '__main__':
    main()
