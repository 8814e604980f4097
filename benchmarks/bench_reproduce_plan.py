"""Where the published `staged-rl reproduce --preset tiny-cpu` run spent its time, and what each remaining lever would give.

Usage: python benchmarks/bench_reproduce_plan.py [--decode 1.3 --update 1.5 --score 2 --eval 1.5 --seeds 8 --cores 2]

What is measured and what is modelled:
- measured: each experiment's wall time (its `done.json`) and, from every run's `metrics.jsonl` under
  `results/tiny-cpu/<experiment>/`, the seconds its training steps spent generating (`time/gen`), in the reference
  pass (`time/ref`), grading (`time/score`), in the policy update (`time/update`), elsewhere in the step, and evaluating
  (`time/eval`); a branched run's rows up to its branch point are its parent's, copied: every row counts once. Experiment
  1 (the ladder build, scoring and the design checks) has no training runs: it is one block.
- modelled (an ESTIMATE): an experiment's runs keep the parallel efficiency they had (their wall time over their
  summed run time), so an experiment's run time scales with the run time left after the speed-ups given; what the
  experiment spent outside its runs (papermill, figures, its share of idle cores) is kept as is. `--seeds` scales the
  runs of experiments 2-5 linearly; `--cores` divides their time by cores/2 (perfect scaling, an upper bound);
  `--exp01` divides experiment 1.
The script prints, per experiment, the measured time and breakdown beside the modelled time with the levers given
(with no lever the model equals the measurement by construction). Last line:
`estimated total: M min (ESTIMATE; measured N min)`.
"""
import argparse, glob, json
from pathlib import Path
from staged_rl.reproduce import first_seconds

ROOT = Path(__file__).resolve().parents[1]
PARTS = ['gen', 'ref', 'score', 'update', 'other', 'eval']


def rows(p): return [json.loads(l) for l in open(p) if l.strip()]


def experiment_parts(folder: Path, seen: set) -> dict:
    "Seconds per part, summed over the runs under `folder`; a row seen before (a branched arm's copy of its parent's rows, or a run another experiment reuses) counts once, where it first appears."
    out = dict.fromkeys(PARTS, 0.0)
    for p in sorted(glob.glob(str(folder/'**'/'metrics.jsonl'), recursive=True)):
        if 'checkpoints' in Path(p).parts: continue
        for r in rows(p):
            key = json.dumps(r, sort_keys=True)  # times are measured floats: equal rows are copies
            if key in seen: continue
            seen.add(key)
            if 'time/eval' in r: out['eval'] += r['time/eval']
            if 'time/step' in r:
                named = {q: r.get(f'time/{q}', 0.0) for q in ('gen', 'ref', 'score', 'update')}
                for q, v in named.items(): out[q] += v
                out['other'] += max(r['time/step'] - r.get('time/eval', 0.0) - sum(named.values()), 0.0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--published', default=str(ROOT/'results'/'tiny-cpu'))
    for p in ('decode', 'update', 'score', 'eval', 'exp01'): ap.add_argument(f'--{p}', type=float, default=1.0, help=f'speed-up of {p}')
    ap.add_argument('--seeds', type=int, default=None, help='seeds of experiments 2-5 (default: the published run\'s)')
    ap.add_argument('--cores', type=int, default=2)
    a = ap.parse_args()
    pub = Path(a.published)
    speed = {'gen': a.decode, 'ref': a.update, 'update': a.update, 'score': a.score, 'other': 1.0, 'eval': a.eval}
    total_meas = total_model = 0.0
    seen = set()
    for d in sorted(pub.glob('*/done.json')):
        name, done = d.parent.name, json.loads(d.read_text())
        wall = first_seconds(done)
        seeds = len(done['params'].get('seeds', [])) or 1
        parts = experiment_parts(d.parent, seen)
        run_s = sum(parts.values())
        total_meas += wall
        if run_s == 0:  # experiment 1: one block
            model = wall / a.exp01
            print(f"{name}: {wall/60:.1f} min measured (no training runs); modelled {model/60:.1f} min")
        else:
            eff = wall / run_s  # wall seconds per run second, as measured (parallel runs, idle cores, notebook work)
            new_run = sum(v / speed[p] for p, v in parts.items()) * (a.seeds or seeds) / seeds * 2 / a.cores
            model = eff * new_run
            share = ', '.join(f"{p} {v/run_s:.0%}" for p, v in parts.items())
            print(f"{name}: {wall/60:.1f} min measured, {seeds} seeds; run time {run_s/60:.1f} min on all workers ({share}); "
                  f"wall/run {eff:.2f}; modelled {model/60:.1f} min")
        total_model += model
    print(f"estimated total: {total_model/60:.1f} min (ESTIMATE; measured {total_meas/60:.1f} min)")


if __name__ == '__main__':
    main()
