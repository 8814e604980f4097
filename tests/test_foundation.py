"""The package skeleton: import, console script, configuration errors, and the real data files."""
import json, subprocess, sys, warnings
import pytest
import staged_rl
from staged_rl.config import load_config, ConfigError, PRESETS
from staged_rl.data import load_problems, Problem

def test_version():
    out = subprocess.run([sys.executable, '-c', 'import staged_rl; print(staged_rl.__version__)'], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == staged_rl.__version__

@pytest.mark.parametrize('name,count', [('math500', 500), ('aime2024', 30), ('humaneval', 164), ('codeforces_stdin_sample', 60)])
def test_shared_files_load(shared_data, name, count):
    ps = load_problems(shared_data/f'{name}.jsonl')
    assert len(ps) == count and not ps.skipped
    assert len({p.id for p in ps}) == count, 'ids must be unique'

def test_named_benchmark_offline_override(shared_data, monkeypatch):
    monkeypatch.setenv('STAGED_RL_DATA_DIR', str(shared_data))
    assert len(load_problems('aime2024')) == 30 and len(load_problems('math500', limit=7)) == 7

def test_layouts_of_shared_files(shared_data):
    he = load_problems(shared_data/'humaneval.jsonl')[0]
    assert he.domain == 'code' and he.tests['kind'] == 'functional' and he.tests['entry_point'] == 'has_close_elements'
    cf = load_problems(shared_data/'codeforces_stdin_sample.jsonl')[0]
    assert cf.tests['kind'] == 'stdin' and cf.tests['cases'] and 'input' in cf.tests['cases'][0]
    aime = load_problems(shared_data/'aime2024.jsonl')[0]
    assert aime.domain == 'math' and aime.answer.isdigit()

@pytest.mark.parametrize('row,reason', [
    ({'problem': 'What is 2+2?'}, 'unknown row layout'),
    ({'problem': 'What is 2+2?', 'answer': ''}, 'without an answer'),
    ({'problem': '', 'answer': '4'}, 'empty prompt'),
    ({'problem': 'Echo', 'tests': [{'input': 1, 'output': '1'}]}, 'tests.cases[0]'),
    ({'task_id': 'x', 'prompt': 'def f():', 'entry_point': 'f', 'test': 'assert True'}, 'check(candidate)'),
    ({'problem': 'x', 'answer': ['4']}, 'without an answer'),
])
def test_bad_row_names_file_line_and_reason(tmp_path, row, reason):
    f = tmp_path/'pool.jsonl'
    f.write_text(json.dumps({'problem': 'ok', 'answer': '1'}) + '\n\n' + json.dumps(row) + '\n')
    with pytest.raises(ValueError, match=rf"pool.jsonl:3: .*{__import__('re').escape(reason)}"): load_problems(f)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ps = load_problems(f, strict=False)
    assert len(ps) == 1 and len(ps.skipped) == 1 and ps.skipped[0][0].endswith('pool.jsonl:3')
    assert any('skipped 1 bad row' in str(x.message) for x in w), 'skipping must be reported'

@pytest.mark.parametrize('override,field', [
    ('grpo.lr=0', 'grpo.lr'), ('grpo.lr=-1e-6', 'grpo.lr'), ('grpo.n_samples=1', 'grpo.n_samples'),
    ('sampling.top_p=0', 'sampling.top_p'), ('eval.sampling.top_p=1.2', 'eval.sampling.top_p'), ('stages.0.data=[]', 'stages.0.data'),
    ('grpo.bogus=1', 'grpo.bogus'), ('grpo.batch_prompts=many', 'grpo.batch_prompts'), ('model.dtype=fp8', 'model.dtype'),
])
def test_bad_config_errors(override, field):
    with pytest.raises(ConfigError, match=f'`{field}`'): load_config('smoke', [override])

def test_config_cli(tmp_path):
    ok = subprocess.run(['staged-rl', 'config', 'paper-1.5b', 'output.dir=runs/x'], capture_output=True, text=True)
    assert ok.returncode == 0 and 'DeepSeek-R1-Distill-Qwen-1.5B' in ok.stdout and 'dir: runs/x' in ok.stdout
    bad = subprocess.run(['staged-rl', 'config', 'smoke', 'grpo.lr=0'], capture_output=True, text=True)
    assert bad.returncode == 2 and 'grpo.lr' in bad.stderr and 'Traceback' not in bad.stderr
    f = tmp_path/'exp.yaml'; f.write_text('base: smoke\nstages:\n- name: s\n  data: []\n  max_steps: 1\n')
    bad = subprocess.run(['staged-rl', 'config', str(f)], capture_output=True, text=True)
    assert bad.returncode == 2 and 'stages.0.data' in bad.stderr

def test_presets_validate():
    for name in PRESETS: assert load_config(name).name == name
