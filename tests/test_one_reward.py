"""One grading path: `cfg.rewards` reaches every place that grades (scoring, training, evaluation, the ladder)."""
import pytest
from staged_rl.config import EvalSet, load_config
from staged_rl.data import Problem, save_problems
from staged_rl.rollout import Completion, SamplingParams
from staged_rl import scoring, tiny, trainer

SLOW = Problem('slow', 'code', 'Write inc(x) that returns x + 1.', None,
               {'kind': 'functional', 'entry_point': 'inc', 'test': 'def check(candidate):\n    assert candidate(1) == 2\n'})
SLEEPY = "```python\nimport time\ndef inc(x):\n    time.sleep(1.0)\n    return x + 1\n```"  # right, but needs a second

class CharTok:
    "One id per character, no chat template."
    def __call__(self, texts, add_special_tokens=True): return {'input_ids': [[ord(c) for c in t] for t in texts]}

class SleepyEngine:
    "Answers every prompt with the slow but correct program."
    def generate(self, prompt_ids, n, sampling): return [[Completion(list(p), [1], SLEEPY, 'stop') for _ in range(n)] for p in prompt_ids]

def seen_by_all_four(cfg, tmp_path, monkeypatch) -> dict:
    "The reward of the slow program as scoring, training, evaluation and the ladder's evaluation grade it under `cfg`."
    recs = scoring.score_pool([SLOW], cfg, tmp_path/'scores.jsonl', make_engine=lambda role, spec: (SleepyEngine(), CharTok(), lambda: None), progress=False)
    groups = trainer.sample_groups([(SLOW, 0)], SleepyEngine(), CharTok(), cfg, SamplingParams.of(cfg.sampling), seed=0)
    save_problems([SLOW], tmp_path/'slow.jsonl')
    ev = trainer.evaluate_set(SleepyEngine(), CharTok(), EvalSet('code', str(tmp_path/'slow.jsonl'), k=1), cfg)
    monkeypatch.setattr(tiny, 'sample', lambda model, tok, problems, sampling, k=1, **kw: [[Completion([1], [1], SLEEPY, 'stop')] * k for _ in problems])
    rates, _ = tiny.pass_rates(None, CharTok(), [SLOW], cfg.eval.sampling, 1, cfg.rewards)
    return {'scoring': recs[('slow', 'small')]['pass_rate'], 'training': groups.rewards[0], 'evaluation': ev['reward'], 'ladder': rates[0]}

@pytest.mark.parametrize('timeout,expected', [(0.3, 0.0), (20.0, 1.0)])
def test_rewards_config_reaches_every_grader(tmp_path, monkeypatch, timeout, expected):
    cfg = load_config('smoke', [f'output.dir={tmp_path}', 'rewards.workers=1', f'rewards.code_timeout_s={timeout}',
                                'scoring.k=1', 'scoring.round_size=1', 'scoring.roles=[small]', 'grpo.n_samples=2'])
    got = seen_by_all_four(cfg, tmp_path, monkeypatch)
    assert got == {'scoring': expected, 'training': [expected, expected], 'evaluation': expected, 'ladder': expected}, got

def test_grade_scores_each_distinct_response_once(monkeypatch):
    "Repeated (problem, response) pairs reach the verifiers once, and every response gets its own pair's grade, in order."
    import staged_rl.rewards as R
    from staged_rl.data import Problem
    a, b = Problem('a', 'math', 'What is 1+1?', '2'), Problem('b', 'math', 'What is 2+2?', '4')
    seen = []
    def fake(problems, responses, **kw):
        seen.append(list(zip([p.id for p in problems], responses)))
        return [float(r == f"\\boxed{{{p.answer}}}") for p, r in zip(problems, responses)]
    monkeypatch.setattr(R, 'score_batch', fake)
    probs = [a, a, a, b, b, a]
    resp = ['\\boxed{2}', '\\boxed{3}', '\\boxed{2}', '\\boxed{2}', '\\boxed{4}', '\\boxed{3}']
    assert R.grade(probs, resp) == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert seen == [[('a', '\\boxed{2}'), ('a', '\\boxed{3}'), ('b', '\\boxed{2}'), ('b', '\\boxed{4}')]]
