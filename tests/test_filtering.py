"""The paper's level rules (staged_rl.filtering): every branch, reproducible subsampling, level files, the CLI."""
import json, random
from pathlib import Path
import pytest
from staged_rl.config import ROLES, FilterConfig, load_config
from staged_rl.data import Problem, load_problems, save_problems, level_path
from staged_rl.cli import main
from staged_rl.filtering import assign_levels, problem_rng, levels_for_pool, build_levels, level_counts

def R(s=None, m=None, l=None, st=None): return {k: v for k, v in zip(ROLES, (s, m, l, st)) if v is not None}

class Fixed:
    "A generator whose random() is a constant."
    def __init__(self, u): self.u = u
    def random(self): return self.u

# (rates, domain, expected levels) with rng drawing 0.99 (never keeps a solved level-3 problem)
TABLE = [
    (R(0.5, 0.5, 0, 0), 'math', set()),          # strongest == 0: discarded
    (R(0.5, 0.5, 0.5, 0), 'code', set()),
    (R(0.5, None, None, 0), 'math', set()),
    (R(0.5, 0.5, 0, 1), 'math', {1, 2, 3}),      # level 1 + level 2 (both partial) + level 3 (large fails)
    (R(0.5, 1, 0, 1), 'math', {1, 3}),           # small partial, medium full: not level 2
    (R(0.5, 0, 0, 1), 'math', {1, 3}),           # small partial, medium fails
    (R(0, 1, 0, 1), 'math', {2, 3}),             # small fails, medium full
    (R(0, 0.5, 0, 1), 'code', {2, 3}),           # small fails, medium partial
    (R(0, 0, 0, 1), 'math', {3}),                # both fail
    (R(1, 1, 0, 1), 'math', {3}),                # small full
    (R(1, 0.5, 0, 1), 'math', {3}),              # small full, medium partial: not level 2
    (R(0.5, 0.5, 1, 1), 'math', {1, 2}),         # large solves, draw 0.99 drops it from level 3
    (R(0.5, 0.5, None, 1), 'math', {1, 2}),      # no large model: no level 3
    (R(0.5, 0.5, 0), 'math', {1, 2, 3}),         # no strongest: nothing discarded
    (R(None, 0.5, 0, 1), 'math', {3}),           # no small: levels 1, 2 unavailable
    (R(0, None, 0, 1), 'math', {3}),             # no medium: level 2 unavailable
    (R(0.0625, 0.9375, 0, 0.0625), 'code', {1, 2, 3}),  # boundaries of (0, 1) are open
    ({}, 'math', set()),
]

@pytest.mark.parametrize('rates,domain,expected', TABLE)
def test_rules(rates, domain, expected):
    assert assign_levels(rates, domain, rng=Fixed(0.99)) == expected

@pytest.mark.parametrize('domain,u,kept', [('math', 0.49, True), ('math', 0.5, False), ('code', 0.09, True), ('code', 0.1, False)])
def test_level3_keep_shares(domain, u, kept):
    assert (3 in assign_levels(R(1, 1, 0.5, 1), domain, rng=Fixed(u))) == kept

def test_threshold_and_keep_parameters():
    assert assign_levels(R(1, 1, 0.25, 1), 'math', FilterConfig(large_solved_threshold=0.25), rng=Fixed(0.99)) == {3}  # <= t: not solved
    assert assign_levels(R(1, 1, 0.3, 1), 'math', FilterConfig(large_solved_threshold=0.25), rng=Fixed(0.99)) == set()
    assert assign_levels(R(1, 1, 1, 1), 'math', FilterConfig(keep_math_solved=0.0), rng=Fixed(0.0)) == set()
    assert assign_levels(R(1, 1, 1, 1), 'code', FilterConfig(keep_code_solved=1.0), rng=Fixed(0.95)) == {3}

def test_no_draw_unless_needed():
    assert assign_levels(R(0.5, 0.5, 0, 1), 'math') == {1, 2, 3}  # rng=None is fine: no draw needed
    with pytest.raises(ValueError, match='rng='): assign_levels(R(0.5, 0.5, 1, 1), 'math')

@pytest.mark.parametrize('rates,msg', [({'huge': 0.5}, 'unknown role'), ({'small': -0.1}, 'pass rate in'), ({'small': True}, 'pass rate in')])
def test_bad_rates(rates, msg):
    with pytest.raises(ValueError, match=msg): assign_levels(rates, 'math', rng=Fixed(0))

def test_shares_and_order_independence():
    pool = [Problem(f"p{i}", 'math' if i % 2 else 'code', 'q', '1' if i % 2 else None,
                    None if i % 2 else {'kind': 'stdin', 'cases': [{'input': '', 'output': '1'}]}) for i in range(6000)]
    rates = {p.id: R(1, 1, 0.5, 1) for p in pool}
    lv = levels_for_pool(pool, rates)
    math = [3 in lv[p.id] for p in pool if p.domain == 'math']; code = [3 in lv[p.id] for p in pool if p.domain == 'code']
    assert abs(sum(math) / len(math) - 0.5) < 0.03 and abs(sum(code) / len(code) - 0.1) < 0.02
    shuffled = pool[:]; random.Random(1).shuffle(shuffled)
    assert levels_for_pool(shuffled, rates) == lv
    assert levels_for_pool(pool[:100], rates) == {k: v for k, v in lv.items() if k in {p.id for p in pool[:100]}}
    assert levels_for_pool(pool, rates, FilterConfig(seed=1)) != lv

def _pool():
    code = {'kind': 'stdin', 'cases': [{'input': '', 'output': '1'}]}
    return [Problem('a', 'math', 'qa', '1'), Problem('b', 'math', 'qb', '2'), Problem('c', 'code', 'qc', None, code),
            Problem('d', 'code', 'qd', None, code), Problem('e', 'math', 'qe', '3')]

RATES = {'a': R(0.5, 0.5, 0, 1), 'b': R(0, 1, 0, 1), 'c': R(0.25, 0.75, 0, 0.5), 'd': R(0, 0, 0, 0)}  # e unscored

def test_build_levels_files_and_meta(tmp_path):
    counts = build_levels(_pool(), RATES, tmp_path)
    assert counts['level1'] == {'math': 1, 'code': 1} and counts['level2'] == {'math': 2, 'code': 1}
    assert counts['level3'] == {'math': 2, 'code': 1} and counts['discarded'] == {'math': 0, 'code': 1}
    assert counts['unscored'] == {'math': 1, 'code': 0}
    for n in (1, 2, 3):
        for d in ('math', 'code'): assert level_path(tmp_path, n, d).exists()
    l2 = load_problems('level:2', levels_dir=tmp_path)
    assert sorted(p.id for p in l2) == ['a', 'b', 'c']
    a = load_problems('level:1:math', levels_dir=tmp_path)[0]
    assert a.meta['pass_rates'] == RATES['a'] and a.meta['levels'] == [1, 2, 3] and a.meta['level'] == 1

def test_duplicate_ids(tmp_path):
    with pytest.raises(ValueError, match='duplicated'): build_levels(_pool() + _pool()[:1], RATES, tmp_path)

def test_cmd_filter(tmp_path, capsys):
    from staged_rl.scoring import role_signatures, append_records
    pool = tmp_path/'pool.jsonl'; save_problems(_pool(), pool)
    over = [f'output.dir={tmp_path/"run"}', f'data.pool=["{pool}"]', f'data.levels_dir={tmp_path/"run"/"levels"}']
    cfg = load_config('smoke', over)
    sigs = role_signatures(cfg)
    recs = [{'id': pid, 'role': role, 'sig': sigs[role], 'pass_rate': r, 'n': 4} for pid, rs in RATES.items() for role, r in rs.items()]
    recs.append({'id': 'e', 'role': 'small', 'sig': 'stale', 'pass_rate': 0.5, 'n': 4})  # other settings: ignored
    append_records(tmp_path/'run'/'scores.jsonl', recs)
    assert main(['filter', 'smoke'] + over) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last['counts']['level2'] == {'math': 2, 'code': 1} and last['counts']['unscored'] == {'math': 1, 'code': 0}
    assert sorted(p.id for p in load_problems('level:3', cfg=cfg)) == ['a', 'b', 'c']

def test_cmd_filter_without_scores(tmp_path, capsys):
    assert main(['filter', 'smoke', f'output.dir={tmp_path}']) == 2
    assert 'staged-rl score' in capsys.readouterr().err
