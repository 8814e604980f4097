"""Difficulty scoring (staged_rl.scoring): stopping rules, the store, resume after a kill, adaptive mode."""
import itertools, json, random
from pathlib import Path
import pytest
from staged_rl.config import ROLES, FilterConfig, load_config
from staged_rl.data import Problem, build_prompt, save_problems
from staged_rl.rollout import Completion
from staged_rl import scoring
from staged_rl.scoring import (needed_fact, settled, adaptive_levels, read_scores, append_records, rates_from_records,
                               score_pool, summarize, compare_levels, role_signatures)

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
    over = [f'output.dir={tmp_path}', f'data.pool=["{src}"]', f'data.levels_dir={tmp_path/"levels"}', 'scoring.adaptive=true', 'scoring.round_size=2', 'scoring.k=8']
    from staged_rl.cli import main
    assert main(['score', 'smoke'] + over) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last['problems'] == 12 and last['budget'] == 12 * 4 * 8 and last['rollouts'] + last['saved'] == last['budget']
    assert main(['filter', 'smoke'] + over) == 0
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

# ---- same reward settings as training ------------------------------------------------------------------------------
def test_signature_includes_reward_settings():
    a = role_signatures(load_config('smoke'))
    assert all(a[r] != b for r, b in role_signatures(load_config('smoke', ['rewards.code_timeout_s=30'])).items())
    assert all(a[r] != b for r, b in role_signatures(load_config('smoke', ['rewards.code_memory_mb=1024'])).items())
    assert role_signatures(load_config('smoke', ['rewards.workers=7'])) == a  # parallelism does not change a grade

# ---- engines from the config ------------------------------------------------------------------------------------------
def test_engine_kind_and_vllm_overrides():
    assert scoring.engine_kind(load_config('smoke')) == 'hf'
    assert scoring.engine_kind(load_config('smoke', ['model.engine=vllm'])) == 'vllm'
    assert scoring.engine_kind(load_config('smoke', ['model.engine=vllm', 'scoring.engine=openai'])) == 'openai'
    cfg = load_config('paper-1.5b', ['scoring.tensor_parallel_size=4', 'scoring.gpu_memory_utilization=0.85'])
    over = scoring.scoring_vllm_overrides(cfg)
    assert over == {'tensor_parallel_size': 4, 'gpu_memory_utilization': 0.85, 'enable_sleep_mode': False, 'max_model_len': 34816}
    from staged_rl.rollout import vllm_kwargs  # the one translation of the `vllm` section; scoring's settings win over it
    kw = {**vllm_kwargs(cfg.vllm, cfg.model.dtype), **over}
    assert (kw['dtype'], kw['tensor_parallel_size'], kw['gpu_memory_utilization'], kw['max_model_len']) == ('bfloat16', 4, 0.85, 34816)
    with pytest.raises(ValueError, match='scoring.engine'): load_config('smoke', ['scoring.engine=grpc'])

# ---- a local OpenAI-compatible stub server (real HTTP on 127.0.0.1) for the client's failure paths ---------------------
import http.server, threading, time as _time

class Stub(http.server.BaseHTTPRequestHandler):
    plan, seen = [], []
    def log_message(self, *a): pass
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers['Content-Length']))); Stub.seen.append(req)
        what = Stub.plan.pop(0) if Stub.plan else '200'
        if what == 'hang': _time.sleep(1.0); return
        if what != '200':
            self.send_response(int(what)); self.send_header('Retry-After', '0'); self.end_headers(); self.wfile.write(b'{"error":"x"}'); return
        text = ''.join(map(chr, req['prompt'])) if isinstance(req['prompt'], list) else req['prompt']
        g = random.Random(req['seed'])
        ch = [{'index': j, 'text': 'right' if g.random() < P.get(text, {}).get(req['model'], 0.5) else 'wrong', 'finish_reason': 'stop'} for j in range(req['n'])]
        body = json.dumps({'choices': ch}).encode()
        self.send_response(200); self.send_header('Content-Type', 'application/json'); self.end_headers(); self.wfile.write(body)

class CharTok1(CharTok):  # also single texts (the client tokenises one prompt at a time) and decoding
    bos_token = None
    def __call__(self, texts, add_special_tokens=True):
        return {'input_ids': [ord(c) for c in texts]} if isinstance(texts, str) else super().__call__(texts)
    def decode(self, ids): return ''.join(map(chr, ids))

@pytest.fixture(scope='module')
def stub_url():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Stub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()

def test_openai_client_retries(stub_url):
    from staged_rl.rollout import SamplingParams
    eng = scoring.OpenAIEngine(stub_url, 'small', tokenizer=CharTok1(), concurrency=2, max_retries=3, timeout_s=0.5, backoff_s=0.01)
    Stub.plan[:] = ['429', '503', 'hang']; Stub.seen.clear()
    out = eng.generate(['ab'], 4, SamplingParams(seed=3))
    assert len(out[0]) == 4 and eng.stats['retries'] == 3 and Stub.seen[-1]['prompt'] == [97, 98] and Stub.seen[-1]['n'] == 4
    Stub.plan[:] = ['500'] * 4
    with pytest.raises(scoring.ServerError, match='gave up after 4 attempts'): eng.generate(['ab'], 1, SamplingParams(seed=3))
    Stub.plan[:] = ['404']
    with pytest.raises(scoring.ServerError, match='HTTP 404'): eng.generate(['ab'], 1, SamplingParams(seed=3))
    Stub.plan[:] = []
    one = scoring.OpenAIEngine(stub_url, 'small', tokenizer=CharTok1(), n_per_request=False)
    Stub.seen.clear(); assert len(one.generate(['ab', 'cd'], 3, SamplingParams(seed=3))[1]) == 3
    assert [r['n'] for r in Stub.seen] == [1] * 6 and len({r['seed'] for r in Stub.seen}) == 6  # a seed per (prompt, sample)
    eng.close(); one.close()

def test_server_scoring_resumes_without_loss_or_duplicates(stub_url, tmp_path):
    pool = fake_pool(15, seed=4)
    cfg = load_config('smoke', ['scoring.k=4', 'scoring.engine=openai', 'scoring.concurrency=3', 'scoring.roles=[small,strongest]', 'scoring.adaptive=true', 'scoring.round_size=2'])
    def factory(role, spec):
        e = scoring.OpenAIEngine(stub_url, role, tokenizer=CharTok1(), concurrency=3, max_retries=0)
        return e, CharTok1(), e.close
    store = tmp_path/'scores.jsonl'
    Stub.plan[:] = ['200'] * 9 + ['400'] * 200
    with pytest.raises(scoring.ServerError): score_pool(pool, cfg, store, make_engine=factory, score_fn=fake_score, progress=False)
    first = read_scores(store)
    assert 0 < len(first) < 2 * len(pool)
    Stub.plan[:] = []
    recs = score_pool(pool, cfg, store, make_engine=factory, score_fn=fake_score, progress=False)
    keys = [(r['id'], r['role']) for r in map(json.loads, store.read_text().splitlines())]
    assert len(keys) == len(set(keys)) and set(keys) == set(recs) and all(first[k] == recs[k] for k in first)
    assert {r for _, r in keys} == {'small', 'strongest'} and len({i for i, _ in keys}) == len(pool)

# ---- importing pass rates ------------------------------------------------------------------------------------------------
def test_import_rates_then_filter(tmp_path):
    from staged_rl.filtering import load_pool, build_levels
    cfg = load_config('smoke', [f'output.dir={tmp_path}', 'scoring.k=4'])
    pool = load_pool(cfg)
    ids = [p.id for p in pool[:3]]
    rows = [{'id': ids[0], 'role': r, 'passes': v, 'k': 4} for r, v in zip(ROLES, (2, 4, 0, 4))] + \
           [{'id': ids[1], 'role': r, 'rate': v, 'k': 4} for r, v in zip(ROLES, (0.0, 0.5, 0.0, 1.0))] + \
           [{'id': ids[2], 'role': 'strongest', 'rate': 0.0, 'k': 4}]
    f = tmp_path/'rates.jsonl'; f.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    got = scoring.import_rates(cfg, f)
    assert got['rows'] == 9 and got['problems'] == 3 and got['roles'] == {'small': 2, 'medium': 2, 'large': 2, 'strongest': 3}
    rates = rates_from_records(read_scores(scoring.scores_path(cfg), role_signatures(cfg)))
    assert rates[ids[1]] == {'small': 0.0, 'medium': 0.5, 'large': 0.0, 'strongest': 1.0}
    counts = build_levels(pool, rates, tmp_path/'levels', cfg.filtering)
    lv = {n: [json.loads(l)['id'] for l in (tmp_path/'levels'/f'level{n}_{pool[0].domain}.jsonl').read_text().splitlines()] for n in (1, 2, 3)}
    assert ids[0] in lv[1] and ids[0] in lv[3] and ids[1] in lv[2] and ids[1] in lv[3]  # levels from the imported rates
    assert sum(counts['discarded'].values()) == 1 and sum(counts['unscored'].values()) == len(pool) - 3

@pytest.mark.parametrize('row,msg', [
    ({'id': 'nope', 'role': 'small', 'passes': 1, 'k': 4}, r"rates.jsonl:2: unknown id 'nope'"),
    ({'id': None, 'role': 'tiny', 'passes': 1, 'k': 4}, r"rates.jsonl:2: unknown role 'tiny'"),
    ({'id': None, 'role': 'small', 'passes': 1, 'k': 16}, r'rates.jsonl:2: k = 16, but scoring.k = 4'),
    ({'id': None, 'role': 'small', 'rate': -0.1, 'k': 4}, r'rates.jsonl:2: rate = -0.1'),
    ({'id': None, 'role': 'small', 'passes': 5, 'k': 4}, r'rates.jsonl:2: passes = 5'),
    ({'id': None, 'role': 'small', 'passes': 1, 'rate': 0.25, 'k': 4}, r'exactly one of passes / rate'),
    ({'id': None, 'role': 'medium', 'passes': 1, 'k': 4}, r'rates.jsonl:2: \(.*already given')])
def test_import_rates_rejects_bad_rows(tmp_path, row, msg):
    from staged_rl.filtering import load_pool
    cfg = load_config('smoke', [f'output.dir={tmp_path}', 'scoring.k=4'])
    pid = load_pool(cfg)[0].id
    f = tmp_path/'rates.jsonl'
    f.write_text(json.dumps({'id': pid, 'role': 'medium', 'passes': 2, 'k': 4}) + '\n' + json.dumps({**row, 'id': row['id'] or pid}) + '\n')
    with pytest.raises(ValueError, match=msg): scoring.import_rates(cfg, f)
    assert not scoring.scores_path(cfg).exists()  # nothing written before every row is checked

# ---- one process per role ----------------------------------------------------------------------------------------------------
def test_roles_in_their_own_processes(tmp_path):
    "score_pool with isolate_roles: a spawned process per role writes the same records as scoring in this process."
    from staged_rl.rollout import toy_lm
    model, tok = toy_lm(eos_bias=3.0)
    model.save_pretrained(tmp_path/'m'); tok.save_pretrained(tmp_path/'m')
    pool = [Problem(f'q{i}', 'math', f'What is {i}+1?', str(i + 1)) for i in range(3)]
    cfg = load_config('smoke', ['scoring.k=2', 'scoring.sampling.max_new_tokens=8', 'scoring.roles=[small,large]', f'ladder.small={tmp_path/"m"}',
                                f'ladder.large={tmp_path/"m"}', 'model.device=cpu', 'rewards.workers=1'])
    here = score_pool(pool, cfg, tmp_path/'a.jsonl', progress=False)
    apart = score_pool(pool, cfg, tmp_path/'b.jsonl', progress=False, isolate_roles=True)
    assert nosec(apart) == nosec(here) and len(apart) == 6
    with pytest.raises(ValueError, match='isolate_roles'): score_pool(pool, cfg, tmp_path/'c.jsonl', score_fn=fake_score, isolate_roles=True)


def test_workers_store_the_same_records_in_the_same_order(tmp_path):
    "scoring.workers=2 scores a role's batches in two processes: the store holds the records one process writes, line for line."
    from staged_rl.filtering import load_pool
    base = [f'output.dir={tmp_path}', 'rewards.workers=1', 'scoring.sampling.max_new_tokens=32', 'scoring.batch_prompts=3',
            'scoring.adaptive=true', 'scoring.k=16', 'scoring.round_size=4']
    cfg = load_config('smoke', base)
    pool = load_pool(cfg)[::6]  # 12 problems: 4 batches per role, math and code
    one = score_pool(pool, cfg, tmp_path/'one.jsonl', progress=False)
    two = score_pool(pool, load_config('smoke', base + ['scoring.workers=2']), tmp_path/'two.jsonl', progress=False)
    assert nosec(two) == nosec(one) and sum(r['n'] for r in one.values()) > 0
    lines = lambda f: [{**json.loads(l), 'seconds': 0} for l in open(f)]
    assert lines(tmp_path/'two.jsonl') == lines(tmp_path/'one.jsonl')


def test_workers_refused_where_they_cannot_run(tmp_path):
    pool = fake_pool(4)
    with pytest.raises(ValueError, match='make_engine and score_fn'):
        score_pool(pool, load_config('smoke', CFG + ['scoring.workers=2']), tmp_path/'a.jsonl', make_engine=fake_factory, score_fn=fake_score, progress=False)
    with pytest.raises(ValueError, match="engine 'vllm'"):
        score_pool(pool, load_config('smoke', CFG + ['scoring.workers=2', 'model.engine=vllm']), tmp_path/'b.jsonl', progress=False)
    assert not (tmp_path/'b.jsonl').exists() or not (tmp_path/'b.jsonl').read_text()
