"""Online difficulty (nbs/07d_online_difficulty.ipynb): the posterior on hand-made histories, resume from a saved
state, agreement between processes, screening that never starves a stratum, and the Beta-binomial prediction."""
import numpy as np
import pytest
from staged_rl.curriculum import Stratum, StratifiedSampler
from staged_rl.data import Problem
from staged_rl.online import OnlineConfig, OnlineDifficulty, p_mixed, screen_batch, retier


def _p(pid, rate=None):
    return Problem(pid, 'math', f'question {pid}', answer='1', meta={} if rate is None else {'pass_rates': {'small': rate}})


def _history():
    "Groups (id, rewards, step) of a short run over three problems."
    return [('a', [1, 0, 0, 0], 1), ('b', [1, 1, 1, 1], 1), ('a', [1, 1, 0, 0], 2), ('c', [0, 0, 0, 0], 2), ('b', [1, 1, 1, 0], 3)]


def test_posterior_by_hand():
    est = OnlineDifficulty([_p('a', 0.25), _p('b', 0.75), _p('c')], OnlineConfig(prior_strength=4))
    for pid, r, t in _history(): est.update(pid, r, t)
    # a: prior 1 + 4*0.25 = 2, 1 + 4*0.75 = 4; + (1, 3) + (2, 2)
    assert est.params('a', 3) == (5.0, 9.0)
    # b: prior (4, 2); + (4, 0) + (3, 1)
    assert est.params('b', 3) == (11.0, 3.0)
    # c: uniform prior (no ladder rate); + (0, 4)
    assert est.params('c', 3) == (1.0, 5.0)


def test_rows_equal_groups_and_resume_mid_run():
    probs = [_p('a', 0.25), _p('b', 0.75), _p('c')]
    cfg = OnlineConfig(prior_strength=4, half_life=2.0)
    rows = [{'id': pid, 'n': len(r), 'mean_reward': float(np.mean(r)), 'step': t} for pid, r, t in _history()]
    whole = OnlineDifficulty(probs, cfg); whole.update_rows(rows)
    grouped = OnlineDifficulty(probs, cfg)
    for pid, r, t in _history(): grouped.update(pid, r, t)
    assert grouped.state_dict() == whole.state_dict()
    first = OnlineDifficulty(probs, cfg); first.update_rows(rows[:3])  # the run is killed after step 2 ...
    resumed = OnlineDifficulty(probs, cfg); resumed.load_state_dict(first.state_dict())  # ... and resumed from its state
    resumed.update_rows(rows[3:])
    assert resumed.state_dict() == whole.state_dict()
    with pytest.raises(ValueError, match='not in this run'):
        OnlineDifficulty(probs[:1], cfg).load_state_dict(whole.state_dict())


def _sampler(seed=0):
    rng = np.random.default_rng(seed)
    a = [_p(f'a{i}', float(rng.choice([0.0, 1.0, rng.uniform()]))) for i in range(40)]
    b = [_p(f'b{i}', float(rng.choice([0.0, 1.0, rng.uniform()]))) for i in range(15)]
    return a + b, StratifiedSampler([Stratum('math', 'math', a, 2.1), Stratum('code', 'math', b, 1.0)], batch_prompts=12, seed=seed)


@pytest.mark.parametrize('min_p', [0.0, 0.3, 0.9, 1.0])
def test_screening_never_starves_and_processes_agree(min_p):
    probs, sampler = _sampler()
    cfg = OnlineConfig(prior_strength=16, min_p_mixed=min_p, explore=0.1)
    ests = [OnlineDifficulty(probs, cfg) for _ in range(2)]  # two processes, each with its own estimator
    rng = np.random.default_rng(1)
    for step in range(12):
        outs = [screen_batch(sampler, e, step, step, 8, seed=3) for e in ests]
        assert outs[0] == outs[1]
        s = outs[0]
        assert [sum(j == k for _, j in s.pairs) for k in range(2)] == sampler.counts
        for p, _ in s.pairs:  # the same (gathered) outcomes reach every process
            r = [float(x) for x in rng.random(8) < 0.5]
            for e in ests: e.update(p.id, r, step + 1)
        if min_p == 0.0: assert s.skipped == 0 and s.filled == 0


def test_screening_skips_the_hopeless_and_explores():
    probs, sampler = _sampler()
    est = OnlineDifficulty(probs, OnlineConfig(prior_strength=64, min_p_mixed=0.5, explore=0.0))
    s = screen_batch(sampler, est, 0, 0, 16, seed=0)
    assert s.skipped > 0 and s.filled == 0
    assert all(0.5 <= q for q in s.p_mixed)
    always = OnlineDifficulty(probs, OnlineConfig(prior_strength=64, min_p_mixed=0.5, explore=1.0))
    s = screen_batch(sampler, always, 0, 0, 16, seed=0)
    assert s.skipped == 0 and s.explored > 0  # every screened-out prompt explored: the sampler's own batch
    assert [p.id for p, _ in s.pairs] == [p.id for p, _ in sampler.batch(0)]


def test_p_mixed_is_the_beta_binomial_chance():
    rng = np.random.default_rng(0)
    for a, b, n in [(2.0, 5.0, 4), (0.7, 0.7, 16), (9.0, 1.5, 8)]:
        p = rng.beta(a, b, 200_000)
        k = rng.binomial(n, p)
        assert abs(np.mean((k > 0) & (k < n)) - p_mixed(a, b, n)) < 0.005


def test_retier_drops_the_solved():
    probs = [_p('x', 1.0), _p('y', 0.5), _p('z', 0.0)]
    est = OnlineDifficulty(probs, OnlineConfig(prior_strength=64, solved_above=0.95))
    kept, rep = retier(probs, est, 0, 'level:3')
    assert [p.id for p in kept] == ['y', 'z'] and rep['dropped'] == 1 and rep['examples'] == ['x']
    est.update('y', [1.0] * 1000, 1)
    kept, rep = retier(probs, est, 1, 'level:3')
    assert [p.id for p in kept] == ['z'] and rep['dropped'] == 2
