"Re-render the published training curves from results/tiny-cpu metrics with the library's plot_runs, two panels per row."
import json, matplotlib; matplotlib.use('Agg')
from pathlib import Path
from staged_rl.experiments import plot_runs
R = Path('results/tiny-cpu'); seeds = [0, 1, 2, 3]
rows = lambda p: [json.loads(l) for l in p.read_text().splitlines() if l.strip()]
runs = lambda folder: [rows(R/folder/f'seed{s}'/'metrics.jsonl') for s in seeds]
keys = ['eval/math/pass@1', 'reward', 'len_mean', 'trunc_frac', 'entropy', 'kl', 'zero_std_frac']
figs = {
 '02_difficulty_ablation': plot_runs({f'level {L}': runs(f'02_difficulty_ablation/level{L}') for L in (1, 2, 3)}, keys=keys, ncols=2),
 '03_staged_run': plot_runs({a: runs(f'03_staged_run/{d}') for a, d in [('staged', 'staged'), ('stage 1 continued', 'stage-1-continued'),
     ('stage 2, no masking', 'stage-2-no-masking'), ('stage 2 at stage-1 length', 'stage-2-at-stage-1-length')]}, keys=keys, switch=40, ncols=2),
 '04_math_code_mix': plot_runs({'math only': runs('02_difficulty_ablation/level1'), 'math L1 + code L3 2.1:1': runs('04_math_code_mix/mix')},
     keys=['eval/math/pass@1', 'eval/code/pass@1', 'reward', 'len_mean', 'zero_std_frac'], ncols=2),
}
for name, fig in figs.items(): fig.savefig(R/name/'training_curves.png', dpi=120, bbox_inches='tight')  # save_figure's settings
