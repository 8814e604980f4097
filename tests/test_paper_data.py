"""The paper's data loaders on small local files in the upstream layouts (tests/fixtures), offline errors, the
LiveCodeBench contest_date window, and the paper-1.5b preset that trains on AM-Math-Difficulty-RL's levels."""
from pathlib import Path
import pytest
from staged_rl.config import EvalSet, load_config, ConfigError
from staged_rl.data import load_problems, load_livecodebench, load_eval_problems, load_am_math, load_eurus_code

FIX = Path(__file__).parent/'fixtures'

@pytest.fixture
def offline(monkeypatch):
    for v in ('STAGED_RL_AM_MATH', 'STAGED_RL_EURUS_CODE', 'STAGED_RL_LIVECODEBENCH', 'STAGED_RL_DATA_DIR'): monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1'); monkeypatch.setenv('HF_DATASETS_OFFLINE', '1')
    return monkeypatch

def test_am_math_levels(offline):
    offline.setenv('STAGED_RL_AM_MATH', str(FIX/'am_math_difficulty_rl.jsonl'))
    l2 = load_problems('a-m-team/AM-Math-Difficulty-RL:level2')
    assert [(p.id, p.domain, p.meta['level']) for p in l2] == [('am-math-1', 'math', 2), ('am-math-3', 'math', 2)]
    assert [p.meta['level'] for p in load_problems('am-math:all')] == [1, 2, 3, 2, 1, 3]
    with pytest.raises(ValueError, match='level1, level2, level3'): load_problems('am-math:hard')

def test_am_math_from_data_dir_folder(offline, tmp_path):
    (tmp_path/'am_math').mkdir(); (tmp_path/'am_math'/'train.jsonl').write_text((FIX/'am_math_difficulty_rl.jsonl').read_text())
    offline.setenv('STAGED_RL_DATA_DIR', str(tmp_path))
    assert len(load_am_math((3,))) == 2

def test_offline_errors_name_the_variable(offline):
    with pytest.raises(RuntimeError, match='STAGED_RL_AM_MATH'): load_problems('am-math:level2')
    with pytest.raises(RuntimeError, match='STAGED_RL_EURUS_CODE'): load_problems('PRIME-RL/Eurus-2-RL-Data:code')
    with pytest.raises(RuntimeError, match='STAGED_RL_LIVECODEBENCH'): load_problems('livecodebench')
    offline.setenv('STAGED_RL_AM_MATH', '/no/such/file.jsonl')
    with pytest.raises(FileNotFoundError, match='STAGED_RL_AM_MATH=/no/such'): load_problems('am-math:level1')

def test_eurus_code_rows(offline):
    offline.setenv('STAGED_RL_EURUS_CODE', str(FIX/'eurus_2_rl_data.jsonl'))
    stdin, fn = load_problems('PRIME-RL/Eurus-2-RL-Data:code')
    assert stdin.tests == {'kind': 'stdin', 'cases': [{'input': '3\n', 'output': '6\n'}, {'input': '10\n', 'output': '20\n'}]}
    assert fn.tests['kind'] == 'functional' and fn.tests['entry_point'] == 'add' and fn.tests['cases'][0] == {'input': '1\n2', 'output': '3'}
    assert stdin.id == 'eurus-dummy-1' and stdin.meta['data_source'] == 'taco' and 'ASSESS' not in stdin.prompt

def test_eurus_tests_are_gradable(offline):
    "The converted tests run in the sandbox: a right program scores 1, a wrong one 0."
    from staged_rl.rewards import score_batch
    offline.setenv('STAGED_RL_EURUS_CODE', str(FIX/'eurus_2_rl_data.jsonl'))
    stdin, fn = load_eurus_code()
    good = ["```python\nprint(2*int(input()))\n```", "```python\ndef add(a, b):\n    return a + b\n```"]
    bad = ["```python\nprint(3)\n```", "```python\ndef add(a, b):\n    return a - b\n```"]
    assert score_batch([stdin, fn, stdin, fn], good + bad, workers=1) == [1.0, 1.0, 0.0, 0.0]

def test_livecodebench_window(offline):
    offline.setenv('STAGED_RL_LIVECODEBENCH', str(FIX/'livecodebench'))
    assert [p.id for p in load_livecodebench()] == ['q1', 'q2', 'q3', 'q4']  # test.jsonl then test2.jsonl, q2 once
    assert [p.id for p in load_livecodebench('2024-08-10', '2025-01-31')] == ['q2', 'q3']  # both bounds inclusive
    es = load_config('paper-1.5b').eval.sets[2]
    assert [p.id for p in load_eval_problems(es)] == ['q2', 'q3']
    assert [p.id for p in load_eval_problems(EvalSet('l', 'livecodebench', 1, limit=1, date_from='2024-09-01'))] == ['q3']  # window before limit

def test_paper_preset_resolves():
    cfg = load_config('paper-1.5b')
    y = cfg.to_yaml()
    assert 'your-pool' not in y and 'a-m-team/AM-Math-Difficulty-RL' in y
    assert [s.data[0].source for s in cfg.stages] == ['a-m-team/AM-Math-Difficulty-RL:level2', 'a-m-team/AM-Math-Difficulty-RL:level3']
    assert [(s.name, s.date_from, s.date_to) for s in cfg.eval.sets] == [('aime2024', '', ''), ('math500', '', ''), ('livecodebench', '2024-08-01', '2025-01-31')]
    assert load_config('paper-1.5b', ['scoring.engine=openai']).scoring.engine == 'openai'
    with pytest.raises(ConfigError, match='date_from'): load_config('paper-1.5b', ['eval.sets.2.date_from=2024-02-30'])
