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


# ---- in the trainer ------------------------------------------------------------------------------------------------
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from test_trainer import smoke, toy_reward, untimed  # the trainer tests' smoke run and toy reward

ONLINE = ['online.enabled=true', 'online.min_p_mixed=0.7', 'online.explore=0.25', 'online.retier=true', 'online.solved_above=0.6',
          'online.prior_strength=4']


@pytest.fixture(scope='module')
def rated_levels(tmp_path_factory):
    "Level 2 and 3 files from the tiny pools, each problem with a ladder rate of the small model (0, 0.5 or 1)."
    from staged_rl.config import load_config
    from staged_rl.data import load_problems, save_problems, level_path
    folder, cfg = tmp_path_factory.mktemp('rated'), load_config('smoke')
    for lv in (2, 3):
        for dom, n in (('math', 12), ('code', 8)):
            ps = load_problems(f'tiny:{dom}', cfg=cfg)[(lv - 2) * n:(lv - 1) * n]
            for i, p in enumerate(ps): p.meta = {**p.meta, 'pass_rates': {'small': [0.0, 0.5, 1.0][i % 3]}}
            save_problems(ps, level_path(folder, lv, dom))
    return folder


def _pass_history(folder):
    return [json.loads(l) for l in (folder/'pass_history.jsonl').read_text().splitlines()]


def test_screening_and_retiering_in_training_resume_exactly(tmp_path, rated_levels):
    "Killed mid-stage 2 and resumed: the same metrics and pass history as a run that never stopped; batches stay full."
    from staged_rl.trainer import train
    over = ['stages.0.max_steps=3', 'stages.1.max_steps=3', 'output.save_every=2', 'eval.sets=[]', *ONLINE]
    full = train(smoke(tmp_path/'full', rated_levels, *over), progress=False, reward_fn=toy_reward)
    cfg = smoke(tmp_path/'killed', rated_levels, *over)
    train(cfg, progress=False, stop_after=5, reward_fn=toy_reward)
    resumed = train(cfg, resume=True, progress=False, reward_fn=toy_reward)
    assert untimed(resumed) == untimed(full)
    assert _pass_history(tmp_path/'killed') == _pass_history(tmp_path/'full')
    steps = [r for r in full if 'online/screened' in r]
    assert len(steps) == 6 and all(r['n_prompts'] == cfg.grpo.batch_prompts for r in steps)  # screening never starves a batch
    assert sum(r['online/screened'] for r in steps) > 0 and all(r['online/rollouts_saved'] == r['online/screened'] * cfg.grpo.n_samples for r in steps)
    assert [r.get('online/retiered') is not None for r in steps] == [False, False, False, True, False, False]
    h = _pass_history(tmp_path/'full')
    assert all(0 <= r['p_mixed'] <= 1 and isinstance(r['mixed'], bool) for r in h)


def test_resume_from_a_checkpoint_without_online_state(tmp_path, rated_levels):
    "A branch from a run without online difficulty rebuilds the posterior from the pass history: same as one kept all along."
    import torch
    from staged_rl.trainer import train
    from staged_rl.online import OnlineDifficulty, resume_online
    over = ['stages.0.max_steps=2', 'stages.1.max_steps=1', 'output.save_every=1', 'eval.sets=[]', *ONLINE]
    cfg = smoke(tmp_path/'run', rated_levels, *over)
    train(cfg, progress=False, stop_after=2, reward_fn=toy_reward)
    from staged_rl.trainer import latest_checkpoint, build_strata
    saved = torch.load(latest_checkpoint(tmp_path/'run')/'trainer.pt', weights_only=False)
    problems = [p for st in cfg.stages for s in build_strata(st, cfg) for p in s.problems]
    rebuilt = OnlineDifficulty(problems, cfg.online)
    assert resume_online(rebuilt, {'online': None}, _pass_history(tmp_path/'run')) == 'pass_history'
    assert rebuilt.state_dict() == saved['online']


DDP_ONLINE = '''
import sys, json
sys.path.insert(0, {tests!r})
from pathlib import Path
import staged_rl.trainer as T
from test_trainer import smoke, toy_reward
seen, real = [], T.screen_batch
def spy(*a, **k):
    s = real(*a, **k); seen.append([p.id for p, _ in s.pairs]); return s
T.screen_batch = spy
T.train(smoke(Path({out!r}), Path({levels!r}), 'stages.0.max_steps=2', 'stages.1.max_steps=2', 'eval.sets=[]', *{online!r}),
        progress=False, reward_fn=toy_reward)
import torch.distributed as dist
print('RANK', dist.get_rank(), json.dumps(seen))
'''


def test_two_processes_screen_the_same_prompts(tmp_path, rated_levels):
    "Under `torchrun --nproc_per_node 2` every process makes the same screening decisions (from the gathered outcomes)."
    script = tmp_path/'run.py'
    script.write_text(DDP_ONLINE.format(tests=str(Path(__file__).parent), out=str(tmp_path/'run'), levels=str(rated_levels), online=ONLINE))
    from test_distributed import torchrun
    p = torchrun(script)
    assert p.returncode == 0, p.stderr[-3000:]
    ranks = dict(l.split(' ', 2)[1:] for l in p.stdout.splitlines() if l.startswith('RANK'))
    assert set(ranks) == {'0', '1'} and ranks['0'] == ranks['1'] and len(json.loads(ranks['0'])) == 4
