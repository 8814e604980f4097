"""Rewards on the real benchmark files: HumanEval canonical solutions, deliberate bugs, the Codeforces stdin sample,
and a mixed math + code batch through staged_rl.rewards."""
import json, re
import pytest
from staged_rl.data import Problem, load_problems
from staged_rl.code_reward import score_code_batch, extract_code
from staged_rl.rewards import score, score_batch, sandbox_limits

def _he(shared_data): return list(load_problems(str(shared_data / 'humaneval.jsonl')))
def _block(code): return f"Here is my solution.\n```python\n{code}```\n"

def test_humaneval_canonical_solutions_all_pass(shared_data):
    probs = _he(shared_data)
    assert len(probs) == 164
    resp = [_block(p.tests['prelude'] + p.meta['canonical_solution']) for p in probs]
    got = score_batch(probs, resp, workers=2)
    assert [p.id for p, g in zip(probs, got) if g != 1.0] == []

def test_humaneval_buggy_solutions_score_below_one(shared_data):
    probs = _he(shared_data)
    # the body replaced by `return None`: no HumanEval problem accepts that everywhere
    got = score_batch(probs, [_block(p.tests['prelude'] + "    return None\n") for p in probs], workers=2)
    assert all(g < 1.0 for g in got)
    # an off-by-one in HumanEval/0 (`<` becomes `<=`, `abs` dropped): partial credit, neither 0 nor 1
    p0 = probs[0]
    bug = p0.meta['canonical_solution'].replace('distance = abs(elem - elem2)', 'distance = elem - elem2')
    assert bug != p0.meta['canonical_solution']
    assert 0.0 < score(p0, _block(p0.tests['prelude'] + bug)) < 1.0

def test_humaneval_solution_without_prompt_and_noise(shared_data):
    "A response with prose, the function alone (imports missing but in the prelude) and a stray main block."
    p = _he(shared_data)[0]
    code = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n" + p.meta['canonical_solution'] + \
           "\nif __name__ == '__main__':\n    print(has_close_elements(input(), 1))\n"
    assert score(p, "I think this works:\n" + _block(code) + "\nDone.") == 1.0

def test_codeforces_sample_runs_without_grader_errors(shared_data):
    rows = [json.loads(l) for l in open(shared_data / 'codeforces_stdin_sample.jsonl')]
    probs = list(load_problems(str(shared_data / 'codeforces_stdin_sample.jsonl')))
    assert len(probs) == 60 and all(p.tests['kind'] == 'stdin' for p in probs)
    # no reference solutions exist: a program that prints case 0's expected output
    cheat = [_block(f"import sys\nsys.stdout.write({r['tests'][0]['output']!r})\n") for r in rows]
    got = score_batch(probs, cheat, workers=2)
    for r, g in zip(rows, got):
        outs = [c['output'].strip() for c in r['tests']]
        n_same = sum(o == outs[0] for o in outs)
        assert g == pytest.approx(n_same / len(outs)), r['id']
    assert any(0.0 < g < 1.0 for g in got)
    # wrong, crashing and hanging programs score 0 on every problem
    for prog in ["print(-123456789)\n", "raise RuntimeError('boom')\n"]:
        assert score_batch(probs, [_block(prog)] * len(probs), workers=2) == [0.0] * len(probs)
    assert score_batch(probs[:8], [_block("import time\ntime.sleep(100)\n")] * 8, workers=2, limits=sandbox_limits(timeout_s=0.3)) == [0.0] * 8

def test_mixed_batch_math_and_code(shared_data):
    math = list(load_problems(str(shared_data / 'math500.jsonl'), limit=20)) + list(load_problems(str(shared_data / 'aime2024.jsonl'), limit=10))
    code = _he(shared_data)[:20]
    probs = [x for pair in zip(math, code) for x in pair] + math[20:]
    resp = [rf"</think>The answer is $\boxed{{{p.answer}}}$" if p.domain == 'math' else _block(p.tests['prelude'] + p.meta['canonical_solution']) for p in probs]
    assert score_batch(probs, resp, workers=2) == [1.0] * len(probs)
    wrong = [r"\boxed{-999999}" if p.domain == 'math' else "no code here" for p in probs]
    assert score_batch(probs, wrong, workers=2) == [0.0] * len(probs)

def test_sandbox_limits_from_config():
    class R: code_timeout_s, code_memory_mb = 3.0, 256
    lim = sandbox_limits(R(), timeout_s=0.5)
    assert (lim.total_timeout_s, lim.memory_mb, lim.timeout_s) == (3.0, 256, 0.5)
