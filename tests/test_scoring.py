"""Difficulty scoring (staged_rl.scoring): stopping rules, the store, resume after a kill, adaptive mode."""
import itertools, json, random
from pathlib import Path
import pytest
from staged_rl.config import ROLES, FilterConfig, load_config
from staged_rl.data import Problem, build_prompt, save_problems
from staged_rl.rollout import Completion
from staged_rl import scoring
from staged_rl.scoring import (needed_fact, settled, adaptive_levels, read_scores, append_records, rates_from_records,
                               score_pool, summarize, compare_levels, role_signatures, cmd_score)

# ---- a fake ladder: problem i is right with probability P[prompt][role], drawn from the call's seed -------------
P = {}

class CharTok:
    "One token id per character and no chat template: the fake engine reads the prompt back from its ids."
    def __call__(self, texts, add_special_tokens=True): return {'input_ids': [[ord(c) for c in t] for t in texts]}

def text_of(ids): return ''.join(map(chr, ids))

class FakeEngine:
    def __init__(self, role): self.role, self.calls = role, []
    def generate(self, prompts, n, sp):
        g = random.Random(sp.seed); prompts = [text_of(p) for p in prompts]; self.calls.append((prompts, n))
        def one(pr):
            u, p = g.random(), P[pr][self.role]
            return 'right' if u < p else 'half' if (u < p + 0.15 and 'python' in pr) else 'wrong'
        return [[Completion([0], [1, 2], one(pr), 'stop') for _ in range(n)] for pr in prompts]

def fake_score(problems, texts): return [{'right': 1.0, 'half': 0.5}.get(t, 0.0) for t in texts]
def fake_factory(role, spec): return FakeEngine(role), CharTok(), lambda: None

def fake_pool(n=30, seed=0):
    r, out = random.Random(seed), []
    for i in range(n):
        if i % 3: p = Problem(f"m{i}", 'math', f"math problem {i}", '1')
        else: p = Problem(f"c{i}", 'code', f"code problem {i}", None, {'kind': 'stdin', 'cases': [{'input': '', 'output': '1'}]})
        base = r.choice([0.0, 0.05, 0.3, 0.7, 1.0])
        P[build_prompt(p)] = {role: 1.0 if base == 1 else min(1.0, base * (1 + j)) for j, role in enumerate(ROLES)}
        out.append(p)
    return out

CFG = ['scoring.k=8', 'scoring.batch_prompts=7']

def nosec(recs): return {k: {**r, 'seconds': 0} for k, r in recs.items()}  # wall-clock shares are the only difference

# ---- stopping rules ---------------------------------------------------------------------------------------------
def test_needed_fact():
    assert needed_fact('strongest', {'small': 0}) == 'positive'
    assert [needed_fact(r, {'strongest': 0}) for r in ('small', 'medium', 'large')] == [None] * 3
    assert [needed_fact('medium', {'small': s, 'strongest': 1}) for s in (0, 0.5, 1)] == ['positive', 'class', None]
    assert needed_fact('large', {}, FilterConfig(large_solved_threshold=0.5)) == 'above:0.5'
    with pytest.raises(ValueError, match='unknown role'): needed_fact('xl', {})

def test_needed_fact_follows_the_rules(monkeypatch):
    "The facts are derived from `assign_levels`: a changed rule changes them (here: level 2 needs medium = 1 only)."
    from staged_rl import filtering
    rules = filtering.assign_levels
    def medium_full_only(rates, domain, fcfg=None, *, rng=None):
        lv = rules(rates, domain, fcfg, rng=rng)
        return lv - {2} if rates.get('medium') is not None and rates['medium'] < 1 and rates.get('small') == 0 else lv
    monkeypatch.setattr(scoring, 'assign_levels', medium_full_only); scoring._fact.cache_clear()
    try: assert needed_fact('medium', {'small': 0, 'strongest': 1}) == 'full'
    finally: monkeypatch.undo(); scoring._fact.cache_clear()
    assert needed_fact('medium', {'small': 0, 'strongest': 1}) == 'positive'

def test_rules_see_classes_only():
    "`needed_fact` assumes `assign_levels` tells rates apart only by class (0, (0, t], (t, 1), 1)."
    r = random.Random(1)
    for _ in range(3000):
        t, u = r.choice([0.0, 0.25, 0.5, 1.0]), r.random()
        f = FilterConfig(large_solved_threshold=t)
        rates = {role: r.choice([0.0, 1.0, r.random()]) for role in ROLES if r.random() < 0.9}
        rep = {role: scoring._class_rate(v, t) for role, v in rates.items()}
        for dom in ('math', 'code'):
            assert scoring.assign_levels(rates, dom, f, rng=scoring._Draw(u)) == scoring.assign_levels(rep, dom, f, rng=scoring._Draw(u)), (rates, t)

@pytest.mark.parametrize('fact,scores,k,expected', [
    ('positive', [0, 0, 1], 16, True), ('positive', [0] * 15, 16, False), ('positive', [0] * 16, 16, True),
    ('class', [1, 0], 16, True), ('class', [0.25], 16, True), ('class', [1] * 15, 16, False), ('class', [0] * 15, 16, False),
    ('above:0.0', [0, 0.5], 16, True), ('above:0.0', [0] * 15, 16, False),
    ('above:0.5', [1] * 9, 16, True), ('above:0.5', [1] * 8, 16, False), ('above:0.5', [0] * 8, 16, True),
    ('above:0.5', [0] * 7 + [1], 16, False), (None, [1] * 15, 16, False), (None, [1] * 16, 16, True)])
def test_settled(fact, scores, k, expected):
    assert settled(fact, scores, k) == expected

@pytest.mark.parametrize('threshold', [0.0, 0.25, 0.5])
def test_adaptive_gives_the_levels_of_the_full_stream(threshold):
    rng, k, drawn = random.Random(threshold), 16, 0
    for i in range(3000):
        dom = 'math' if i % 2 else 'code'
        ps = [rng.choice([0, 0, 0.02, 0.3, 0.6, 0.95, 1]) for _ in ROLES]
        partial = dom == 'code' and rng.random() < 0.5
        streams = {r: [1.0 if rng.random() < p else (rng.choice([0.0, 0.25, 0.5]) if partial else 0.0) for _ in range(k)] for r, p in zip(ROLES, ps)}
        full, adaptive, n = adaptive_levels(streams, dom, k, FilterConfig(large_solved_threshold=threshold), pid=f"p{i}")
        assert full == adaptive, (streams, full, adaptive)
        drawn += n
    assert drawn < 0.7 * 3000 * 4 * k

# ---- the store -------------------------------------------------------------------------------------------------
def test_store_cut_line(tmp_path):
    p = tmp_path/'s.jsonl'
    append_records(p, [{'id': 'a', 'role': 'small', 'sig': 'x', 'pass_rate': 0.5}])
    with open(p, 'a') as f: f.write('{"id": "b", "ro')
    with pytest.warns(UserWarning, match='cut last line'): assert list(read_scores(p)) == [('a', 'small')]
    append_records(p, [{'id': 'b', 'role': 'small', 'sig': 'x', 'pass_rate': None}])
    assert sorted(read_scores(p)) == [('a', 'small'), ('b', 'small')]
    assert rates_from_records(read_scores(p)) == {'a': {'small': 0.5}, 'b': {}}
    with open(p, 'a') as f: f.write('garbage\n{"id": "c", "role": "small", "sig": "x", "pass_rate": 1}\n')
    with pytest.raises(ValueError, match='invalid JSON'): read_scores(p)

def test_signatures_change_with_settings():
    a, b = role_signatures(load_config('smoke')), role_signatures(load_config('smoke', ['scoring.k=8']))
    assert all(a[r] != b[r] for r in ROLES)
    d = role_signatures(load_config('smoke', ['rewards.code_timeout_s=30']))  # other reward settings: other grades
    assert all(a[r] != d[r] for r in ROLES) and role_signatures(load_config('smoke', ['rewards.workers=7'])) == a
    c = role_signatures(load_config('smoke', ['ladder.large=other/model']))
    assert [a[r] == c[r] for r in ROLES] == [True, True, False, True]

# ---- scoring a pool, fixed and adaptive ---------------------------------------------------------------------------
def test_fixed_k_records(tmp_path):
    pool, cfg = fake_pool(), load_config('smoke', CFG)
    recs = score_pool(pool, cfg, tmp_path/'s.jsonl', make_engine=fake_factory, score_fn=fake_score, progress=False)
    assert len(recs) == 30 * 4 and all(r['n'] == 8 for r in recs.values())
    r = recs[('c0', 'small')]
    assert r['pass_rate'] == r['score_sum'] / 8 and 0 <= r['n_full'] <= r['n_pos'] <= 8
    assert read_scores(tmp_path/'s.jsonl', role_signatures(cfg)) == recs
    again = score_pool(pool, cfg, tmp_path/'s.jsonl', make_engine=lambda *a: pytest.fail('nothing left to score'), score_fn=fake_score, progress=False)
    assert again == recs
    assert summarize(recs, 30, 8, list(ROLES))['saved'] == 0

def killing_factory(after, seen):
    "Engines that record every prompt they get and raise after `after` generate calls in total."
    def make(role, spec):
        eng, calls = FakeEngine(role), []
        gen = eng.generate
        def generate(prompts, n, sp):
            if len(seen) >= after: raise KeyboardInterrupt('killed')
            seen.append((role, tuple(text_of(p) for p in prompts))); return gen(prompts, n, sp)
        eng.generate = generate
        return eng, CharTok(), lambda: None
    return make

@pytest.mark.parametrize('adaptive,after', [(False, 3), (False, 6), (True, 5), (True, 12)])
def test_resume_after_kill(tmp_path, adaptive, after):
    pool = fake_pool()
    cfg = load_config('smoke', CFG + [f'scoring.adaptive={str(adaptive).lower()}', 'scoring.round_size=2'])
    full = score_pool(pool, cfg, tmp_path/'a.jsonl', make_engine=fake_factory, score_fn=fake_score, progress=False)
    seen = []
    with pytest.raises(KeyboardInterrupt): score_pool(pool, cfg, tmp_path/'b.jsonl', make_engine=killing_factory(after, seen), score_fn=fake_score, progress=False)
    first = read_scores(tmp_path/'b.jsonl')
    assert 0 < len(first) < len(full)
    seen2 = []
    resumed = score_pool(pool, cfg, tmp_path/'b.jsonl', make_engine=killing_factory(10**9, seen2), score_fn=fake_score, progress=False)
    prompt_of = {p.id: build_prompt(p) for p in pool}
    finished = {(role, prompt_of[pid]) for (pid, role), r in first.items() if r['n'] > 0}
    asked = {(role, pr) for role, prs in seen2 for pr in prs}
    assert not finished & asked  # no finished (problem, model) went back to an engine
    assert nosec(resumed) == nosec(full)
    assert len(Path(tmp_path/'b.jsonl').read_text().splitlines()) == len(full)  # nothing written twice

def test_adaptive_saves_rollouts(tmp_path):
    pool = fake_pool(60, seed=1)
    fixed = score_pool(pool, load_config('smoke', CFG), tmp_path/'f.jsonl', make_engine=fake_factory, score_fn=fake_score, progress=False)
    acfg = load_config('smoke', CFG + ['scoring.adaptive=true', 'scoring.round_size=2'])
    ad = score_pool(pool, acfg, tmp_path/'a.jsonl', make_engine=fake_factory, score_fn=fake_score, progress=False)
    s = summarize(ad, 60, 8, list(ROLES))
    assert s['saved'] > 0 and s['rollouts'] == sum(r['n'] for r in ad.values())
    discarded = [pid for (pid, role), r in ad.items() if role == 'strongest' and r['pass_rate'] == 0]
    assert all(ad[(pid, r)]['skipped'].startswith('discarded') for pid in discarded for r in ('small', 'medium', 'large'))
    agree = compare_levels(pool, rates_from_records(fixed), rates_from_records(ad))
    assert agree['problems'] == 60 and agree['identical'] > 0.5

def test_bad_grader_and_ids(tmp_path):
    pool, cfg = fake_pool(4), load_config('smoke', CFG)
    with pytest.raises(ValueError, match='unique'): score_pool(pool + pool[:1], cfg, tmp_path/'s.jsonl', make_engine=fake_factory, score_fn=fake_score)
    with pytest.raises(ValueError, match=r'in \[0, 1\]'):
        score_pool(pool, cfg, tmp_path/'s.jsonl', make_engine=fake_factory, score_fn=lambda ps, ts: [3.0] * len(ts), progress=False)

# ---- the real engine on a random tiny Qwen2: reproducible and resumable ---------------------------------------------
def test_resume_with_hf_engine(tmp_path):
    "The default engine factory on a saved random Qwen2 folder: same records with and without a kill."
    from staged_rl.rollout import HFEngine, toy_lm
    model, tok = toy_lm(eos_bias=3.0)
    model.save_pretrained(tmp_path/'m'); tok.save_pretrained(tmp_path/'m')
    pool = fake_pool(6, seed=2)
    def grade(problems, texts): return [float(len(t) % 3 == 0) if p.domain == 'math' else (len(t) % 5) / 4 for p, t in zip(problems, texts)]
    cfg = load_config('smoke', ['scoring.k=4', 'scoring.batch_prompts=3', 'scoring.sampling.max_new_tokens=12', 'scoring.roles=[small]',
                                f'ladder.small={tmp_path/"m"}', 'model.device=cpu'])
    factory = scoring.default_engine_factory(cfg)
    full = score_pool(pool, cfg, tmp_path/'a.jsonl', make_engine=factory, score_fn=grade, progress=False)
    assert {r['n'] for r in full.values()} == {4} and sum(r['tokens'] for r in full.values()) > 0
    calls = []
    def killing(role, spec):
        eng, t, close = factory(role, spec); gen = eng.generate
        def generate(prompts, n, sp):
            if len(calls) >= 1: raise KeyboardInterrupt
            calls.append(1); return gen(prompts, n, sp)
        eng.generate = generate
        return eng, t, close
    with pytest.raises(KeyboardInterrupt): score_pool(pool, cfg, tmp_path/'b.jsonl', make_engine=killing, score_fn=grade, progress=False)
    resumed = score_pool(pool, cfg, tmp_path/'b.jsonl', make_engine=factory, score_fn=grade, progress=False)
    assert nosec(resumed) == nosec(full)

# ---- the CLI --------------------------------------------------------------------------------------------------------
def test_cmd_score_with_fakes(tmp_path, capsys, monkeypatch):
    pool = fake_pool(12)
    src = tmp_path/'pool.jsonl'; save_problems(pool, src)
    monkeypatch.setattr(scoring, 'default_engine_factory', lambda cfg: fake_factory)
    monkeypatch.setattr(scoring, 'grade', lambda ps, ts, rewards_cfg, reward_fn=None: fake_score(ps, ts))  # the verifiers' stand-in
    over = [f'output.dir={tmp_path}', f'data.pool=["{src}"]', 'scoring.adaptive=true', 'scoring.round_size=2', 'scoring.k=8']
    assert cmd_score(['smoke'] + over) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last['problems'] == 12 and last['budget'] == 12 * 4 * 8 and last['rollouts'] + last['saved'] == last['budget']
    from staged_rl.scoring import cmd_filter
    assert cmd_filter(['smoke'] + over) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])['counts']
    assert counts['unscored'] == {'math': 0, 'code': 0}

# ---- the smoke ladder with the real verifiers ------------------------------------------------------------------------
def test_adaptive_on_smoke_ladder(tmp_path):
    from staged_rl.filtering import load_pool
    base = [f'output.dir={tmp_path}', 'rewards.workers=2', 'scoring.sampling.max_new_tokens=32']
    cfg = load_config('smoke', base)
    pool = load_pool(cfg)[::6]  # 12 of the 72 smoke problems keep this test short
    fixed = score_pool(pool, cfg, tmp_path/'fixed.jsonl', progress=False)
    acfg = load_config('smoke', base + ['scoring.adaptive=true'])
    ad = score_pool(pool, acfg, tmp_path/'adaptive.jsonl', progress=False)
    s = summarize(ad, len(pool), acfg.scoring.k, list(ROLES))
    agree = compare_levels(pool, rates_from_records(fixed), rates_from_records(ad), cfg.filtering)
    print('smoke ladder: saved', s['saved'], 'of', s['budget'], 'rollouts; agreement', agree)
    assert s['budget'] == len(pool) * len(ROLES) * acfg.scoring.k and s['saved'] > 0 and s['rollouts'] + s['saved'] == s['budget']
    assert compare_levels(pool, rates_from_records(fixed), rates_from_records(fixed), cfg.filtering) == \
        {'problems': len(pool), 'identical': 1.0, 'level1': 1.0, 'level2': 1.0, 'level3': 1.0, 'discarded': 1.0}
    assert agree['problems'] == len(pool) and abs(agree['identical'] * len(pool) - round(agree['identical'] * len(pool))) < 1e-2  # k of 12
    # identical level sets agree on every level and on discarding: no per-level agreement can be below the overall one
    assert all(agree[k] >= agree['identical'] for k in ('level1', 'level2', 'level3', 'discarded')), agree

def test_compare_levels_values():
    "Hand-made rates: which problems keep the same level set, per level and for discarding (levels by the paper's rules)."
    pool = [Problem(i, 'math', f"problem {i}", '1') for i in 'abcde']
    full = dict(small=0.0, medium=0.0, large=0.0, strongest=1.0)
    a = {'a': {**full, 'small': 0.5, 'medium': 0.5},  # {1, 2, 3}
         'b': {**full, 'medium': 1.0},                  # {2, 3}
         'c': {**full, 'strongest': 0.0},               # discarded
         'd': {**full, 'strongest': 0.5},               # {3}
         'e': full}                                     # only in the first table: not compared
    b = {**a, 'b': {**full, 'small': 0.5, 'medium': 1.0},  # {1, 3}: levels 1 and 2 differ
         'c': {**full, 'strongest': 0.25}}                 # {3}: level 3 and discarding differ
    del b['e']
    assert compare_levels(pool, a, b) == {'problems': 4, 'identical': 0.5, 'level1': 0.75, 'level2': 0.75, 'level3': 0.75, 'discarded': 0.75}
    assert compare_levels(pool, a, a)['identical'] == 1.0 and compare_levels(pool, a, {}) == {'problems': 0, 'identical': None}
