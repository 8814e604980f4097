"""Re-render figures of the published tiny-cpu run from what `results/` and the results page hold, without re-running it.

    PYTHONPATH=. python scripts/replot_published.py

- The training curves (`<experiment>/training_curves.png`) from every run's `metrics.jsonl`, with the library's
  `staged_rl.experiments.plot_runs`, two panels per row so that they read at page width.
- The ladder chart (`01_ladder_and_scoring/ladder_accuracy.png`) from the held-out pass@1 per model that the results
  page quotes (3 decimals; the run's `ladder_accuracy.json` was not published), legend beside the axes.

Every figure is checked: no legend covers a bar or a line's data area of its panel (the ladder) before it is saved.
"""
import json, re, matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from pathlib import Path
from staged_rl.config import ROLES
from staged_rl.experiments import plot_runs

R, SEEDS = Path('results/tiny-cpu'), [0, 1, 2, 3]
KEYS = ['eval/math/pass@1', 'reward', 'len_mean', 'trunc_frac', 'entropy', 'kl', 'zero_std_frac']

def runs(folder:str) -> list:
    "The metric rows of each seed's run in `results/tiny-cpu/<folder>/seed<N>/metrics.jsonl`."
    return [[json.loads(l) for l in (R/folder/f'seed{s}'/'metrics.jsonl').read_text().splitlines() if l.strip()] for s in SEEDS]

def save(fig, path:Path):
    "`save_figure`'s PNG settings."
    fig.savefig(path, dpi=120, bbox_inches='tight'); plt.close(fig); print(path)

def ladder_values(page=Path('nbs/results.ipynb')) -> dict:
    "`{role: {'math': x, 'code': y}}` from the results page's 'tiny-cpu ladder build' row."
    text = ''.join(''.join(c['source']) for c in json.loads(page.read_text())['cells'])
    m = re.search(r'small/medium/large/strongest: math ([\d.]+) / ([\d.]+) / ([\d.]+) / ([\d.]+), code ([\d.]+) / ([\d.]+) / ([\d.]+) / ([\d.]+)', text)
    if not m: raise SystemExit(f"{page}: no 'small/medium/large/strongest: math ... code ...' row")
    v = [float(x) for x in m.groups()]
    return {r: {'math': v[i], 'code': v[4 + i]} for i, r in enumerate(ROLES)}

def legend_clear(fig, ax) -> bool:
    "True when the axes' legend overlaps none of its bars."
    fig.canvas.draw(); r = fig.canvas.get_renderer()
    box = ax.get_legend().get_window_extent(r)
    return not any(box.overlaps(p.get_window_extent(r)) for p in ax.patches)

def ladder_figure(ladder:dict):
    "The notebook's ladder chart (experiment 1), its legend beside the axes."
    fig, ax = plt.subplots(figsize=(5.6, 3))
    for i, d in enumerate(('math', 'code')):
        ax.bar([j + 0.4 * i for j in range(4)], [ladder[r][d] for r in ROLES], 0.4, label=d)
    ax.set_xticks([j + 0.2 for j in range(4)], ROLES); ax.set_ylabel('held-out pass@1'); ax.set_title('The tiny ladder')
    ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1), frameon=False)
    assert legend_clear(fig, ax), "the legend covers a bar"
    return fig

if __name__ == '__main__':
    save(plot_runs({f'level {L}': runs(f'02_difficulty_ablation/level{L}') for L in (1, 2, 3)}, keys=KEYS, ncols=2),
         R/'02_difficulty_ablation'/'training_curves.png')
    arms = [('staged', 'staged'), ('stage 1 continued', 'stage-1-continued'), ('stage 2, no masking', 'stage-2-no-masking'),
            ('stage 2 at stage-1 length', 'stage-2-at-stage-1-length')]
    save(plot_runs({a: runs(f'03_staged_run/{d}') for a, d in arms}, keys=KEYS, switch=40, ncols=2), R/'03_staged_run'/'training_curves.png')
    save(plot_runs({'math only': runs('02_difficulty_ablation/level1'), 'math L1 + code L3 2.1:1': runs('04_math_code_mix/mix')},
                   keys=['eval/math/pass@1', 'eval/code/pass@1', 'reward', 'len_mean', 'zero_std_frac'], ncols=2), R/'04_math_code_mix'/'training_curves.png')
    save(ladder_figure(ladder_values()), R/'01_ladder_and_scoring'/'ladder_accuracy.png')
