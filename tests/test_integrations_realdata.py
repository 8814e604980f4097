"""Both engine adapters give this package's rewards exactly on the real benchmark files: MATH-500 gold answers (500/500)
and HumanEval canonical solutions (164/164). The verl side goes the way verl goes: rows written to parquet and read
back, the exported `reward.py` loaded from its file, `compute_score` called once per row with the row's fields; the
TRL side calls `trl_reward` on the batch with the dataset's `problem` column, as `GRPOTrainer` does."""
import importlib.util, json
import pytest
from staged_rl.config import load_config
from staged_rl.data import load_problems
from staged_rl.rewards import grade

def _block(code): return f"Here is my solution.\n```python\n{code}```\n"

def gold_responses(shared_data):
    "MATH-500 with its gold answers boxed, HumanEval with its canonical solutions."
    math = list(load_problems(str(shared_data/'math500.jsonl')))
    code = list(load_problems(str(shared_data/'humaneval.jsonl')))
    assert (len(math), len(code)) == (500, 164)
    return {'math': (math, [rf"</think>The answer is $\boxed{{{p.answer}}}$" for p in math]),
            'code': (code, [_block(p.tests['prelude'] + p.meta['canonical_solution']) for p in code])}

_PACKAGE = {}

@pytest.fixture
def package(shared_data):
    "This package's own rewards (one parallel `grade` call per benchmark, computed once), and the config whose reward settings are exported."
    if not _PACKAGE:
        cfg = load_config('smoke', ['rewards.workers=2'])
        data = gold_responses(shared_data)
        _PACKAGE['v'] = cfg, data, {k: grade(ps, rs, cfg.rewards) for k, (ps, rs) in data.items()}
    return _PACKAGE['v']

@pytest.mark.parametrize('bench', ['math', 'code'])
def test_verl_reward_module_is_exact(shared_data, package, bench, tmp_path):
    import pyarrow.parquet as pq
    from staged_rl.integrations.verl import verl_row, write_parquet, write_reward_module
    cfg, data, want = package
    ps, rs = data[bench]
    assert want[bench] == [1.0] * len(ps)  # every gold answer / canonical solution earns full reward here
    rows = pq.read_table(write_parquet([verl_row(p, i, 'test', cfg.data) for i, p in enumerate(ps)], tmp_path/'b.parquet')).to_pylist()
    spec = importlib.util.spec_from_file_location('reward', write_reward_module(tmp_path/'reward.py', cfg))
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    got = [mod.compute_score(r['data_source'], resp, r['reward_model']['ground_truth'], r['extra_info']) for r, resp in zip(rows, rs)]
    assert [r['extra_info']['id'] for r in rows] == [p.id for p in ps]
    assert got == want[bench], [p.id for p, a, b in zip(ps, got, want[bench]) if a != b][:10]
    # and a wrong response is not rewarded through the same path (the adapter is not a constant)
    wrong = r"\boxed{-987654}" if bench == 'math' else _block("def nothing():\n    return None\n")
    assert mod.compute_score(rows[0]['data_source'], wrong, rows[0]['reward_model']['ground_truth'], rows[0]['extra_info']) == 0.0

@pytest.mark.parametrize('bench', ['math', 'code'])
def test_trl_reward_is_exact(shared_data, package, bench):
    from staged_rl.integrations.trl import trl_reward
    cfg, data, want = package
    ps, rs = data[bench]
    fn = trl_reward(cfg.rewards)
    got = fn([[{'role': 'assistant', 'content': r}] for r in rs], [json.dumps(p.to_dict()) for p in ps])
    assert got == want[bench] == [1.0] * len(ps)
    assert fn(['no answer'], [json.dumps(ps[0].to_dict())]) == [0.0]
