"""Numbers in the notebooks' prose that quote a preset (a hidden size, a learning rate, a step count, a budget) are
checked against the presets, read through `staged_rl.config.load_config`.

Each entry of QUOTES is a phrase as the notebook writes it, with `{}` where a value goes, and the values: a preset
field (`('smoke', 'scoring.k')`, list items by index: `'stages.1.max_new_tokens'`, `'tiny.sft_steps.-1'`) or a
function of `preset(name)` for a figure computed from preset values, or from a constant the notebook's own code
assigns (`nb_const`: the cost model's assumptions in 08_scoring, stated in a bullet list above the cell). The test renders the phrase and looks for it
in the notebook's markdown and code cells (whitespace runs count as one space, so line wrapping does not matter).
When a preset value changes, the phrase that quotes it no longer renders to what the notebook says, and the test
names the notebook, the phrase and the field. Format specs: any of `str.format`'s, plus `{:sci}` (1e-06 -> 1e-6) and
`{:k}` (16384 -> 16k).

To cover another notebook, add `'path/under/nbs.ipynb': [(phrase, value, ...), ...]` to QUOTES. Numbers measured by a
run are not quoted in prose: the cell that measures them renders them (an `IPython.display.Markdown` output).
"""
import json, re, string
from functools import lru_cache
from pathlib import Path
import pytest
from staged_rl.config import ROLES, load_config

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'

@lru_cache(maxsize=None)
def preset(name:str|None):
    "The resolved config of a preset (None: the defaults)."
    return load_config(name)

def field(name:str, path:str):
    "The value at a dotted path of a preset's config; list items by (possibly negative) index."
    v = preset(name)
    for part in path.split('.'):
        v = v[int(part)] if isinstance(v, (list, tuple)) else getattr(v, part)
    return v

class _Fmt(string.Formatter):
    def format_field(self, v, spec):
        if spec == 'sci': return re.sub(r'e([+-])0*(\d)', lambda m: 'e' + ('-' if m.group(1) == '-' else '') + m.group(2), f"{v:.0e}")
        if spec == 'k': return f"{v // 1024}k" if v % 1024 == 0 else f"{v / 1000:g}k"
        return super().format_field(v, spec)

def value(v):
    "A preset field `(preset, path)`, or a function of `preset`."
    return v(preset) if callable(v) else field(*v)

def render(phrase:str, values) -> str:
    return _Fmt().format(phrase, *[value(v) for v in values])

def page_eval(name:str):
    "An evaluation set of the config file that tutorial 2 writes (`curriculum.yaml`), read from its code cell."
    import yaml
    cells = json.loads((NBS/'tutorials'/'staged_curriculum.ipynb').read_text(encoding='utf-8'))['cells']
    src = next(''.join(c['source']) for c in cells if "Path('curriculum.yaml').write_text" in ''.join(c['source']))
    data = yaml.safe_load(src.split('"""', 2)[1].replace('\\\n', ''))
    return next(type('EvalSet', (), s) for s in data['eval']['sets'] if s['name'] == name)

def nb_const(nb:str, name:str):
    "A constant a notebook's code assigns at the top level of a cell (`POOL = 235_000 + 26_758`), evaluated alone."
    import ast
    for c in json.loads((NBS/nb).read_text(encoding='utf-8'))['cells']:
        if c['cell_type'] != 'code': continue
        try: tree = ast.parse('\n'.join(l for l in ''.join(c['source']).splitlines() if not l.startswith('#|')))
        except SyntaxError: continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return eval(compile(ast.Expression(node.value), nb, 'eval'), {})
    raise KeyError(f"nbs/{nb}: no top-level assignment to {name}")

def ladder_col(col:int, role:str):
    "One assumption of 08_scoring's cost model (`LADDER[role]`: model, mean tokens, tokens/s per GPU)."
    return lambda p: nb_const('08_scoring.ipynb', 'LADDER')[role][col]

def plateau_steps(p):
    "Steps before a plateau rule can fire: window + patience - 1 evaluations after the step-0 one, `eval.every` apart."
    pl = p('paper-1.5b').stages[0].plateau
    return (pl.window + pl.patience - 1) * p('paper-1.5b').eval.every

QUOTES = {
    'tutorials/score_and_filter.ipynb': [
        ('the pool has a handful of problems and k is {}', ('smoke', 'scoring.k')),
        ('k = {} samples at temperature {}, and {} new tokens',
         ('smoke', 'scoring.k'), ('smoke', 'scoring.sampling.temperature'), ('smoke', 'scoring.sampling.max_new_tokens')),
        ('a random {:.0%} of the math and {:.0%} of the code problems large solves',
         ('smoke', 'filtering.keep_math_solved'), ('smoke', 'filtering.keep_code_solved')),
        ("**k** (`scoring.k`, the paper's {})", ('paper-1.5b', 'scoring.k')),
        ('That is {:.0%} for q = 0.1 and k = {}', lambda p: 0.9 ** p('paper-1.5b').scoring.k, ('paper-1.5b', 'scoring.k')),
        ('(`scoring.sampling`: temperature {}, `top_p` {}, `max_new_tokens` {} in the preset)',
         ('paper-1.5b', 'scoring.sampling.temperature'), ('paper-1.5b', 'scoring.sampling.top_p'),
         ('paper-1.5b', 'scoring.sampling.max_new_tokens')),
    ],
    'tutorials/staged_curriculum.ipynb': [
        ('{} prompts x {} samples per step', ('smoke', 'grpo.batch_prompts'), ('smoke', 'grpo.n_samples')),
        ('With {} prompts per batch that is 3 math and 1 code', ('smoke', 'grpo.batch_prompts')),
        ('stage 1 uses sampling.max_new_tokens ({} in smoke)', ('smoke', 'sampling.max_new_tokens')),
        ('a {}-layer model warmed up for {} steps', ('smoke', 'tiny.n_layers.0'), ('smoke', 'tiny.sft_steps.0')),
        ('a few steps of {} rollouts', lambda p: p('smoke').grpo.batch_prompts * p('smoke').grpo.n_samples),
        ('k = {} for AIME and MATH-500, {} for LiveCodeBench', ('paper-1.5b', 'eval.sets.0.k'), ('paper-1.5b', 'eval.sets.2.k')),
        ('GRPO settings (lr {:sci}, {} samples per prompt, {} prompts per step, KL {})', ('paper-1.5b', 'grpo.lr'),
         ('paper-1.5b', 'grpo.n_samples'), ('paper-1.5b', 'grpo.batch_prompts'), ('paper-1.5b', 'grpo.kl_coef')),
        ('the {:k} response limit', ('paper-1.5b', 'sampling.max_new_tokens')),
        ('With `eval.every: {}`, a plateau with window {} and patience {} needs at least {} steps of stage 1',
         ('paper-1.5b', 'eval.every'), ('paper-1.5b', 'stages.0.plateau.window'), ('paper-1.5b', 'stages.0.plateau.patience'),
         plateau_steps),
        ('max_new_tokens: {}', ('paper-1.5b', 'stages.1.max_new_tokens')),
        ('the preset sets it to {}', ('paper-1.5b', 'rewards.workers')),
        ('With k = {} on {} problems the estimate is noise: one correct sample more or less moves it by 1/{} = {:.3f}',
         *[lambda p, f=f: f(page_eval('math')) for f in (lambda e: e.k, lambda e: e.limit, lambda e: e.k * e.limit, lambda e: 1 / (e.k * e.limit))]),
    ],
    '04_tiny.ipynb': [
        ('chains of up to {} steps', ('tiny-cpu', 'tiny.max_math_steps')),
        ("need more than the stage-1 budget ({} tokens) and fit stage 2's ({})",
         ('tiny-cpu', 'sampling.max_new_tokens'), ('tiny-cpu', 'stages.1.max_new_tokens')),
        ("stage-1 budget (`sampling.max_new_tokens`, {} tokens) and fit stage 2's ({})",
         ('tiny-cpu', 'sampling.max_new_tokens'), ('tiny-cpu', 'stages.1.max_new_tokens')),
        ('(`eval.sampling`: temperature {}, top-p {})', ('tiny-cpu', 'eval.sampling.temperature'), ('tiny-cpu', 'eval.sampling.top_p')),
        ('at the scoring settings: the training temperature, {})', ('tiny-cpu', 'scoring.sampling.temperature')),
        ('(`tiny.sft_steps`, {} / {} / {} / {} steps of `tiny.sft_batch` = {} sequences', *[('tiny-cpu', f'tiny.sft_steps.{i}') for i in range(4)],
         ('tiny-cpu', 'tiny.sft_batch')),
        ('checkpoints after {} / {} / {} / {} warm-up steps', *[('tiny-cpu', f'tiny.sft_steps.{i}') for i in range(4)]),
        ('At the default width ({}) and depth ({})', (None, 'tiny.hidden_sizes.0'), (None, 'tiny.n_layers.0')),
    ],
    '06_grpo.ipynb': [
        ('0.6 GiB at {} tokens', ('smoke', 'grpo.logit_chunk_tokens')),
    ],
    '08_scoring.ipynb': [
        ('(`scoring.k`, {} in `tiny-cpu`', ('tiny-cpu', 'scoring.k')),
        ('code level 3 only** (`filtering.levels_code={}`)', ('tiny-cpu', 'filtering.levels_code')),
        # the cost model's assumptions, as the bullets state them and the cell computes with them
        ('Together **{:,} problems**', lambda p: nb_const('08_scoring.ipynb', 'POOL')),
        ("**k = {}** samples per (problem, model), the paper's protocol", lambda p: nb_const('08_scoring.ipynb', 'K')),
        ('**k = {}** samples', ('paper-1.5b', 'scoring.k')),
        ('{:,} for R1-Distill-Qwen-1.5B, {:,} for 7B, {:,} for 32B, {:,} for DeepSeek-R1', *[ladder_col(1, r) for r in ROLES]),
        ('{:,} tokens/s for 1.5B, {:,} for 7B, {:,} for 32B', *[ladder_col(2, r) for r in ROLES[:3]]),
        ('{:,} for DeepSeek-R1 (FP8', ladder_col(2, 'strongest')),
    ],
    '09_filtering.ipynb': [
        ('kept with probability {} (math) or {} (code)', ('smoke', 'filtering.keep_math_solved'), ('smoke', 'filtering.keep_code_solved')),
    ],
}

def notebook_text(rel:str) -> str:
    "The sources of a notebook's markdown and code cells, whitespace runs as one space."
    cells = json.loads((NBS/rel).read_text(encoding='utf-8'))['cells']
    return re.sub(r'\s+', ' ', '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] in ('markdown', 'code')))

CASES = [(nb, q) for nb, qs in QUOTES.items() for q in qs]

@pytest.mark.parametrize('nb,quote', CASES, ids=[f"{nb}:{q[0][:40]}" for nb, q in CASES])
def test_quoted_preset_value_matches(nb, quote):
    phrase, *values = quote
    want = re.sub(r'\s+', ' ', render(phrase, values))
    assert want in notebook_text(nb), (
        f"nbs/{nb}: expected the text {want!r} (from the presets: "
        f"{', '.join('computed' if callable(v) else '.'.join(map(str, v)) for v in values)}); the notebook quotes another value: "
        "update its prose, or the preset if the prose is right")

def test_formats():
    assert _Fmt().format('{:sci} {:sci} {:k} {:k}', 1e-6, 3e-4, 16384, 24576) == '1e-6 3e-4 16k 24k'

# ---- saved outputs that the test run does not re-create say where they came from ------------------------------------
FLAGGED = re.compile(r'^#\|\s*(notest|slow|gpu)\b', re.M)  # settings.ini's tst_flags: cells nbdev_test skips
PROVENANCE_TODO = set()  # notebooks exempt from the provenance rule: none

def unmarked_outputs(cells:list) -> list:
    "Indices of flagged code cells with saved outputs that carry no provenance: neither an output line from"
    " `staged_rl.config.made_with` nor, in the next markdown cell, a note naming the commit and the preset."
    out = []
    for i, c in enumerate(cells):
        if c['cell_type'] != 'code' or not FLAGGED.search(''.join(c['source'])) or not c.get('outputs'): continue
        note = next((''.join(d['source']) for d in cells[i + 1:] if d['cell_type'] == 'markdown'), '')
        if 'made with preset' not in json.dumps(c['outputs']) and not ('commit' in note and 'preset' in note): out.append(i)
    return out

NOTEBOOKS = sorted(p.relative_to(NBS).as_posix() for p in NBS.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)

@pytest.mark.parametrize('nb', [n for n in NOTEBOOKS if n not in PROVENANCE_TODO])
def test_skipped_cells_outputs_say_where_they_came_from(nb):
    bad = unmarked_outputs(json.loads((NBS/nb).read_text(encoding='utf-8'))['cells'])
    assert not bad, (f"nbs/{nb}: cells {bad} are skipped by the test run (tst_flags) but keep outputs that do not say which "
                     "preset and commit made them: print `staged_rl.config.made_with(PRESET)` in the cell, or name both in "
                     "the markdown cell after it")

def test_unmarked_outputs_are_found():
    code = lambda src, outs: {'cell_type': 'code', 'source': src, 'outputs': outs}
    md = lambda src: {'cell_type': 'markdown', 'source': src}
    out = [{'output_type': 'stream', 'name': 'stdout', 'text': '0.5\n'}]
    assert unmarked_outputs([code('#| slow\nrun()', out), md('What it shows.')]) == [0]
    assert unmarked_outputs([code('#| slow\nrun()', out), md('Made with the `smoke` preset at commit abc1234.')]) == []
    assert unmarked_outputs([code('#| slow\nrun()', [{**out[0], 'text': 'made with preset smoke, staged-rl at commit abc1234\n'}])]) == []
    assert unmarked_outputs([code('run()', out), code('#| slow\nrun()', [])]) == []  # tested cells, and flagged cells without outputs
