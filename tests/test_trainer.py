"""The trainer end to end on the smoke config: a real run, kill-and-resume equality, stratified batches, stage
switches (step budget and plateau), masking of truncated responses, online filtering, and the two commands.

The policy is the smoke ladder's weakest model (`tiny:small`, built once into the tiny cache); level files are
written from the tiny pools into each test's folder. Tests that need a non-trivial learning signal use a toy
reward that is a deterministic function of the response text (the smoke model solves nothing yet)."""
import json, os
from pathlib import Path
import pytest
import torch

from staged_rl.config import load_config
from staged_rl.data import load_problems, save_problems, level_path

torch.set_num_threads(1)  # tiny models on a shared 2-core box: one intra-op thread is several times faster

def toy_reward(problems, responses):
    "Deterministic in the text: math 0/1 by length, code a share; gives groups with and without spread."
    return [float(len(r) % 3 == 0) if p.domain == 'math' else (len(r) % 5) / 4 for p, r in zip(problems, responses)]

def write_levels(folder: Path, n_math=12, n_code=8):
    "Level 2 and 3 files from the tiny pools (what `staged-rl filter` would write)."
    cfg = load_config('smoke')
    for lv in (2, 3):
        for dom, n in (('math', n_math), ('code', n_code)):
            save_problems(load_problems(f'tiny:{dom}', cfg=cfg)[(lv - 2) * n:(lv - 1) * n], level_path(folder, lv, dom))
    return folder

@pytest.fixture(scope='module')
def levels(tmp_path_factory):
    return write_levels(tmp_path_factory.mktemp('levels'))

def smoke(tmp_path, levels, *over):
    "The smoke preset writing into `tmp_path`, reading the level files of `levels`, with a small evaluation."
    return load_config('smoke', [f'output.dir={tmp_path}', f'data.levels_dir={levels}', 'eval.sets.0.limit=4', 'eval.sets.1.limit=2',
                                 'rewards.workers=2', *over])

def untimed(rows): return [{k: v for k, v in r.items() if not k.startswith(('time/', 'perf/'))} for r in rows]

# ---- a real run --------------------------------------------------------------------------------------------------
def test_smoke_run_end_to_end(tmp_path, levels):
    "Two stages with the real verifiers: metrics written, every trainable parameter moved, checkpoints and policy saved."
    from staged_rl.trainer import train, load_policy
    cfg = smoke(tmp_path, levels)
    before = {k: v.clone() for k, v in load_policy(cfg.model.policy, cfg)[0].named_parameters()}
    rows = train(cfg, progress=False)
    lines = [json.loads(l) for l in (tmp_path/'metrics.jsonl').read_text().splitlines()]
    assert lines == rows
    steps = [r for r in rows if 'reward' in r]
    assert [r['step'] for r in steps] == [1, 2, 3, 4]
    for k in ('reward', 'kl', 'entropy', 'accuracy', 'clip_frac', 'grad_norm', 'trunc_frac', 'zero_std_frac', 'len_mean',
              'math/reward', 'code/accuracy', 'time/gen', 'time/score', 'time/update'):
        assert all(k in r for r in steps), k
    assert 'eval/math/pass@1' in rows[0] and 'eval/code/pass@1' in rows[-1]
    after = dict(load_policy(str(tmp_path/'policy'), cfg)[0].named_parameters())
    same = [k for k, v in before.items() if v.requires_grad and torch.equal(v, after[k])]
    assert not same, f"parameters that did not change: {same}"
    assert (tmp_path/'checkpoints').exists() and (tmp_path/'pass_history.jsonl').exists()
    hist = [json.loads(l) for l in (tmp_path/'pass_history.jsonl').read_text().splitlines()]
    assert len(hist) == 4 * cfg.grpo.batch_prompts and {'id', 'pass_rate', 'step', 'stage'} <= hist[0].keys()

def test_engine_wakes_weights_syncs_then_kv_cache(tmp_path, levels, monkeypatch):
    """After each update: the engine slept through it; the allocator's cache is released, then the sync (which wakes the
    weights only), then `wake()` brings the KV cache back: TRL's and verl's order, so vLLM maps its memory into a free card."""
    import staged_rl.trainer as T
    log = []
    class Recorder:  # the real transformers engine inside, every call of the engine interface recorded
        def __init__(self, inner): self.inner = inner
        def generate(self, *a, **k): log.append('generate'); return self.inner.generate(*a, **k)
        def sleep(self, *a, **k): log.append('sleep'); return self.inner.sleep(*a, **k)
        def wake(self, *a, **k): log.append('wake'); return self.inner.wake(*a, **k)
        def sync_weights(self, m): log.append('sync_weights'); return self.inner.sync_weights(m)
    make, update, release = T.make_engine, T.policy_update, T.release_cached_memory
    monkeypatch.setattr(T, 'make_engine', lambda *a, **k: Recorder(make(*a, **k)))
    monkeypatch.setattr(T, 'policy_update', lambda *a, **k: log.append('update') or update(*a, **k))
    monkeypatch.setattr(T, 'release_cached_memory', lambda: log.append('release') or release())
    T.train(smoke(tmp_path, levels, 'eval.sets=[]', 'stages.0.max_steps=2', 'output.save_every=0'), progress=False, stop_after=2, reward_fn=toy_reward)
    steps = [s for s in ' '.join(log).split('generate') if s.strip()]
    assert [s.split() for s in steps] == [['sleep', 'update', 'release', 'sync_weights', 'wake']] * 2, log

# ---- the policy gradient itself -----------------------------------------------------------------------------------
def _len_reward(sign):
    "Reward in [0, 1] linear in the response's length in characters: sign +1 rewards long responses, -1 short ones."
    return lambda ps, rs: [(min(len(r), 200) / 200) if sign > 0 else 1 - min(len(r), 200) / 200 for r in rs]

def test_policy_gradient_follows_the_reward(tmp_path, levels):
    """With KL and entropy terms off, only the advantage-weighted term moves the policy: rewarding short responses
    must shorten them and rewarding long ones lengthen them (same seeds, so both runs start from the same batch).
    A sign error in the advantage or a dropped policy-gradient term fails here (the smoke run above cannot tell)."""
    from staged_rl.trainer import train
    over = ['stages=[{name: s, data: [{source: "level:2"}], max_steps: 8}]', 'grpo.kl_coef=0', 'grpo.entropy_coef=0',
            'grpo.lr=1e-3', 'grpo.batch_prompts=8', 'eval.sets=[]']
    lens = {}
    for name, sign in (('short', -1), ('long', 1)):
        rows = [r for r in train(smoke(tmp_path/name, levels, *over), progress=False, reward_fn=_len_reward(sign)) if 'reward' in r]
        assert len(rows) == 8 and all(r['grad_norm'] > 0 for r in rows), name
        lens[name] = [r['len_mean'] for r in rows]
    assert lens['short'][0] == lens['long'][0]  # the first batch is sampled before any update: identical
    first = lens['short'][0]
    end = {k: sum(v[-2:]) / 2 for k, v in lens.items()}  # mean response length (tokens) over the last two steps
    # measured: 25.4 tokens at step 1 -> 10.0 (short) and 39.0 (long) at steps 7-8; the bounds leave a wide margin
    assert end['short'] < 0.8 * first and end['long'] > 1.2 * first, lens

# ---- resume ------------------------------------------------------------------------------------------------------
def test_kill_and_resume_equals_uninterrupted(tmp_path, levels):
    "Killed after step 5 (last checkpoint: step 4, mid-stage 2), resumed: the same rows as a run that never stopped."
    from staged_rl.trainer import train
    over = ['stages.0.max_steps=3', 'stages.1.max_steps=3', 'output.save_every=2', 'eval.every=2',
            'eval.sets=[{name: math, source: "tiny:math_heldout", k: 2, limit: 4}]']
    full = train(smoke(tmp_path/'full', levels, *over), progress=False, reward_fn=toy_reward)
    cfg = smoke(tmp_path/'killed', levels, *over)
    part = train(cfg, progress=False, stop_after=5, reward_fn=toy_reward)
    assert part[-1]['step'] == 5 and sorted(p.name for p in (tmp_path/'killed'/'checkpoints').iterdir()) == ['step_0000003', 'step_0000004']
    resumed = train(cfg, resume=True, progress=False, reward_fn=toy_reward)
    assert [r['step'] for r in resumed] == [r['step'] for r in full]  # no duplicated rows
    assert untimed(resumed) == untimed(full)
    assert any(r.get('grad_norm', 0) > 0 for r in full)  # the toy reward gave the updates something to do

# ---- batches and stages ------------------------------------------------------------------------------------------
def test_stratified_mix_and_stage_switch(tmp_path, levels):
    "Every batch holds the configured 2:1 mix; the stage switch is logged on the row of the stage's last step."
    from staged_rl.trainer import train
    stages = ('stages=[{name: mix, data: [{source: "level:2:math", weight: 2.1}, {source: "level:2:code", weight: 1.0}], max_steps: 3},'
              ' {name: second, data: [{source: "level:3"}], max_steps: 1, reset_optimizer: true}]')
    rows = train(smoke(tmp_path, levels, stages, 'grpo.batch_prompts=6', 'eval.sets=[]'), progress=False, reward_fn=toy_reward)
    mix = [r for r in rows if r['stage'] == 'mix']
    assert [(r['math/n_prompts'], r['code/n_prompts']) for r in mix] == [(4, 2)] * 3
    ends = [r for r in rows if 'stage_end' in r]
    assert [(r['step'], r['stage'], r['stage_end'], r['next_stage']) for r in ends] == [(3, 'mix', 'max_steps', 'second'), (4, 'second', 'max_steps', None)]
    assert rows[-1]['stage'] == 'second'

def test_plateau_ends_a_stage(tmp_path, levels):
    "A flat validation metric ends a plateau stage long before its step cap."
    from staged_rl.trainer import train
    stages = ('stages=[{name: a, data: [{source: "level:2"}], max_steps: 20, plateau: {metric: eval/math/pass@1, window: 1, patience: 2}},'
              ' {name: b, data: [{source: "level:3"}], max_steps: 1}]')
    rows = train(smoke(tmp_path, levels, stages, 'eval.every=1', 'eval.sets=[{name: math, source: "tiny:math_heldout", k: 1, limit: 2}]'),
                 progress=False, reward_fn=lambda ps, rs: [0.0] * len(rs))
    end = next(r for r in rows if r['stage'] == 'a' and 'stage_end' in r)
    assert (end['step'], end['stage_end']) == (2, 'plateau')  # evaluations 0, 1, 2 all equal: two without a gain
    assert [r['stage'] for r in rows if 'reward' in r] == ['a', 'a', 'b']

# ---- truncation masking and online filtering ----------------------------------------------------------------------
def test_mask_truncated(tmp_path, levels):
    "With responses cut at 1 token, a mask_truncated stage counts no token and leaves the policy as it was."
    from staged_rl.trainer import train, load_policy
    def run(name, mask):
        st = f'stages=[{{name: s, data: [{{source: "level:2"}}], max_steps: 1, max_new_tokens: 1, mask_truncated: {mask}, truncated_in_baseline: false}}]'
        return train(smoke(tmp_path/name, levels, st, 'eval.sets=[]'), progress=False, reward_fn=toy_reward)[-1]
    masked, unmasked = run('m', 'true'), run('u', 'false')
    assert masked['trunc_frac'] == 1.0 and masked['tokens'] == 0 and masked['grad_norm'] == 0
    assert unmasked['tokens'] > 0 and unmasked['grad_norm'] > 0
    cfg = load_config('smoke')
    p0, p1 = load_policy(cfg.model.policy, cfg)[0], load_policy(str(tmp_path/'m'/'policy'), cfg)[0]
    assert all(torch.equal(a, b) for a, b in zip(p0.parameters(), p1.parameters()))

def test_online_filtering_refills(tmp_path, levels):
    "filter_zero_std drops all-equal groups (every math group here) and refills from the strata that need it."
    from staged_rl.trainer import train
    reward = lambda ps, rs: [0.0 if p.domain == 'math' else (len(r) % 5) / 4 for p, r in zip(ps, rs)]
    row = train(smoke(tmp_path, levels, 'stages=[{name: s, data: [{source: "level:2"}], max_steps: 1}]',
                      'grpo.filter_zero_std=true', 'grpo.max_refill_rounds=2', 'eval.sets=[]'), progress=False, reward_fn=reward)[-1]
    assert row['filter/rounds'] == 2 and row['filter/groups_kept'] < row['n_prompts']
    assert row['math/zero_std_frac'] == 1.0  # logged for the first round, before filtering
    hist = [json.loads(l) for l in (tmp_path/'pass_history.jsonl').read_text().splitlines()]
    assert len(hist) > row['n_prompts']  # refilled prompts are in the history too

# ---- commands -----------------------------------------------------------------------------------------------------
def test_cmd_train_and_eval(tmp_path, levels, capsys):
    from staged_rl.cli import main
    over = [f'output.dir={tmp_path}', f'data.levels_dir={levels}', 'stages.0.max_steps=1', 'stages.1.max_steps=1', 'eval.sets=[]']
    assert main(['train', 'smoke', *over, 'output.save_every=1']) == 0
    assert main(['train', 'smoke', *over, '--resume']) == 0  # nothing left to do: the run is complete
    rows = [json.loads(l) for l in (tmp_path/'metrics.jsonl').read_text().splitlines()]
    assert [r['step'] for r in rows] == [1, 2]
    assert main(['train', 'smoke', 'grpo.lr=-1']) == 2
    out = tmp_path/'eval.json'
    assert main(['eval', 'smoke', f'model={tmp_path/"policy"}', f'out={out}', 'eval.sets.0.limit=3', 'eval.sets.1.limit=2']) == 0
    table = json.loads(out.read_text())
    assert set(table['benchmarks']) == {'math', 'code'} and table['protocol']['temperature'] == 0.6
    b = table['benchmarks']['math']
    assert b['k'] == 2 and b['n_problems'] == 3 and len(b['per_sample']) == 2 and 0 <= b['pass@1'] <= 1

# ---- several processes -----------------------------------------------------------------------------------------
DDP_SCRIPT = '''
import sys, json, torch
sys.path.insert(0, {tests!r})
from test_trainer import smoke, toy_reward
from pathlib import Path
from staged_rl.trainer import train
rows = train(smoke(Path({out!r}), Path({levels!r}), 'stages.0.max_steps=2', 'stages.1.max_steps=1', 'eval.sets.1.limit=1'),
             progress=False, reward_fn=toy_reward)
import torch.distributed as dist
print('RANK', dist.get_rank(), json.dumps([r['step'] for r in rows]))
'''

def test_two_processes_with_torchrun(tmp_path, levels):
    "The same trainer under `torchrun --nproc_per_node 2` (gloo on CPU): each process trains on half the prompts."
    script = tmp_path/'run.py'
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path/'run'), levels=str(levels)))
    from test_distributed import torchrun
    p = torchrun(script)
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(l for l in p.stdout.splitlines() if l.startswith('RANK')) == ['RANK 0 [0, 1, 2, 3]', 'RANK 1 [0, 1, 2, 3]']
    rows = [json.loads(l) for l in (tmp_path/'run'/'metrics.jsonl').read_text().splitlines()]
    assert [r.get('n_prompts') for r in rows] == [None, 4, 4, 4]  # metrics gathered from both processes
    assert (tmp_path/'run'/'policy').exists()

# ---- prompt sharing in the update ---------------------------------------------------------------------------------
def _update_batches(mask_truncated):
    "Groups of 4 prompts of different lengths x 4 responses (some cut at 8 tokens), with plain and shared micro-batches."
    from staged_rl.rollout import toy_lm, HFEngine, SamplingParams
    from staged_rl.config import GRPOConfig
    from staged_rl.trainer import micro_batches, group_micro_batches
    model, tok = toy_lm(seed=1, eos_bias=3.0)
    prompts = ['Q', 'Question: what is 12 + 30? Answer with a number.', 'def add(a, b):', 'The quick brown fox jumps']
    groups = HFEngine(model, tok).generate(prompts, 4, SamplingParams(max_new_tokens=8, temperature=0.7, seed=3))
    flat = [c for g in groups for c in g]
    assert len({len(c.prompt_ids) for c in flat}) == 4 and len({len(c.ids) for c in flat}) > 2
    assert any(c.truncated for c in flat) and not all(c.truncated for c in flat)
    adv = torch.randn(len(flat), generator=torch.Generator().manual_seed(0))
    plain = micro_batches(flat, adv, GRPOConfig(micro_batch=3), tok.pad_token_id, 'cpu', mask_truncated)  # 6 micro-batches, mixed prompts
    shared = group_micro_batches(groups, adv, GRPOConfig(micro_batch=8), tok.pad_token_id, 'cpu', mask_truncated)  # 2 micro-batches of 2 groups
    assert len(shared) == 2 and all('n' in mb for mb in shared) and not any('n' in mb for mb in plain)
    return model, plain, shared

def _rows(mbs, *vals):
    "Per response (key: its unpadded prompt + response tokens): its loss mask, advantage and per-token values."
    out = {}
    for i, mb in enumerate(mbs):
        for r in range(mb['completion_ids'].shape[0]):
            k = int(mb['completion_mask'][r].sum())
            key = (tuple(mb['prompt_ids'][r][mb['prompt_mask'][r].bool()].tolist()) if mb['prompt_ids'].shape[0] == mb['completion_ids'].shape[0]
                   else tuple(mb['prompt_ids'][r // mb['n']][mb['prompt_mask'][r // mb['n']].bool()].tolist()),
                   tuple(mb['completion_ids'][r, :k].tolist()))
            out[key] = [mb['mask'][r, :k], mb['advantages'][r:r+1]] + [v[i][r, :k] for v in vals]
    return out

@pytest.mark.parametrize('mask_truncated', [False, True])
def test_shared_prompt_logprobs_match_plain(mask_truncated):
    "Each prompt once per group gives the plain forward's log-probs, entropies and gradients (left padding, truncation)."
    from staged_rl.trainer import mb_logprobs
    from staged_rl.grpo import sequence_logprobs
    model, plain, shared = _update_batches(mask_truncated)
    model.train()
    res = {}
    for name, mbs in (('plain', plain), ('shared', shared)):
        model.zero_grad()
        lps, ents = zip(*[mb_logprobs(model, mb, with_entropy=True, temperature=0.7) for mb in mbs])
        n_tok = sum(float(mb['mask'].sum()) for mb in mbs)
        sum((lp * mb['advantages'][:, None] + 0.1 * e).sum() for lp, e, mb in zip(lps, ents, mbs)).div(n_tok).backward()
        res[name] = _rows(mbs, [lp.detach() for lp in lps], [e.detach() for e in ents]), [p.grad.clone() for p in model.parameters()]
    (rp, gp), (rs, gs) = res['plain'], res['shared']
    assert rp.keys() == rs.keys() and len(rp) > 8
    for k in rp:
        for a, b in zip(rp[k], rs[k]): torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    if mask_truncated: assert any(float(v[0].sum()) == 0 for v in rs.values())  # truncated responses count for nothing
    for a, b in zip(gp, gs): torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    # the plain forward over the full sequences, row by row, without any micro-batch padding, agrees too
    for mb_i, mb in enumerate(shared[:1]):
        lp = mb_logprobs(model, mb, temperature=0.7)[0].detach()
        for r in range(mb['completion_ids'].shape[0]):
            k = int(mb['completion_mask'][r].sum())
            if not k: continue
            p_ids = mb['prompt_ids'][r // mb['n']][mb['prompt_mask'][r // mb['n']].bool()]
            ids = torch.cat([p_ids, mb['completion_ids'][r, :k]])[None]
            ref = sequence_logprobs(model, ids, torch.ones_like(ids), k, temperature=0.7)[0].detach()[0]
            torch.testing.assert_close(lp[r, :k] * mb['mask'][r, :k], ref * mb['mask'][r, :k], atol=1e-5, rtol=1e-5)

def test_shared_prompt_policy_update_matches_plain():
    "policy_update (KL to a reference, entropy bonus, 2 updates per batch, accumulation) steps the same way on both."
    import copy
    from staged_rl.rollout import toy_lm
    from staged_rl.trainer import policy_update
    model, plain, shared = _update_batches(True)
    ref = toy_lm(seed=2, eos_bias=3.0)[0].eval().requires_grad_(False)  # another model: a clearly non-zero KL
    cfg = load_config('smoke', ['grpo.kl_coef=0.05', 'grpo.updates_per_batch=2', 'sampling.temperature=0.7', 'grpo.max_grad_norm=1000'])
    class Recording(torch.optim.SGD):
        def step(self, *a, **k):
            self.grads.append([p.grad.clone() for p in model_of[self].parameters()]); return super().step(*a, **k)
    model_of, out = {}, {}
    for name, mbs in (('plain', plain), ('shared', shared)):
        m = copy.deepcopy(model)
        opt = Recording(m.parameters(), lr=0.05); opt.grads = []; model_of[opt] = m
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        stats = policy_update(m, ref, opt, sched, mbs, cfg, entropy_coef=0.01)
        out[name] = stats, opt.grads, [p.detach() for p in m.parameters()]
    (sp, gp, pp), (ss, gs, ps) = out['plain'], out['shared']
    assert sp['kl'] > 1e-3 and sp['grad_norm'] > 0 and len(gp) == len(gs) == 2
    for k in ('loss', 'kl', 'entropy', 'pg_loss', 'grad_norm', 'tokens'): assert ss[k] == pytest.approx(sp[k], rel=1e-4, abs=1e-6), k
    for a, b in zip(sum(gp, []), sum(gs, [])): torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    for a, b in zip(pp, ps): torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)

def test_policy_update_splits_responses_by_length(monkeypatch):
    "grpo.response_parts reaches every pass of the update (reference, old, policy): split by length, it steps as one pass does."
    import copy
    import staged_rl.trainer as T
    model, _, shared = _update_batches(True)
    calls, real = [], T.split_by_length
    def cheap_split(lengths, parts):  # every pass free: split wherever lengths differ (these batches are small)
        out = real(lengths, parts, part_cost=0); calls.append((parts, len(out))); return out
    monkeypatch.setattr(T, 'split_by_length', cheap_split)
    for kl, updates, passes in ((0, 1, 1), (0.05, 2, 4)):  # per micro-batch: the policy's; then reference + old + the policy's twice
        out = {}
        for parts in (1, 3):
            cfg = load_config('smoke', [f'grpo.kl_coef={kl}', f'grpo.updates_per_batch={updates}', 'sampling.temperature=0.7', 'grpo.max_grad_norm=1000', f'grpo.response_parts={parts}'])
            m = copy.deepcopy(model); opt = torch.optim.SGD(m.parameters(), lr=0.05)
            ref = copy.deepcopy(model).eval().requires_grad_(False) if kl else None
            calls.clear()
            stats = T.policy_update(m, ref, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), [dict(mb) for mb in shared], cfg, entropy_coef=0.01)
            out[parts] = stats, [p.detach() for p in m.parameters()], list(calls)
        assert out[1][2] == []  # one pass: never split
        assert len(out[3][2]) == passes * len(shared) and all(p == 3 for p, _ in out[3][2]) and any(k > 1 for _, k in out[3][2])
        for k in ('loss', 'entropy', 'pg_loss', 'grad_norm', 'tokens'): assert out[3][0][k] == pytest.approx(out[1][0][k], rel=1e-4, abs=1e-6), k
        for a, b in zip(out[1][1], out[3][1]): torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)

def test_shared_prompt_refused_under_checkpointing():
    "Activation checkpointing drops the cache in training mode: the trainer chooses plain micro-batches, the shared path refuses."
    from staged_rl.config import GRPOConfig
    from staged_rl.trainer import mb_logprobs, shared_prefix_logprobs, make_micro_batches
    model, plain, shared = _update_batches(False)
    model.train()
    want = mb_logprobs(model, shared[0])[0].detach()
    from staged_rl.trainer import enable_checkpointing; enable_checkpointing(model)
    mb = shared[0]
    with pytest.raises(ValueError, match='checkpointing'):
        shared_prefix_logprobs(model, mb['prompt_ids'], mb['prompt_mask'], mb['completion_ids'], mb['completion_mask'], mb['n'])
    with pytest.raises(ValueError, match='checkpointing'): mb_logprobs(model, mb)
    model.eval()  # no checkpointing outside training: the shared path again
    torch.testing.assert_close(mb_logprobs(model, shared[0])[0].detach(), want, atol=1e-5, rtol=1e-5)

def test_token_budget_bounds_every_micro_batch():
    "With max_tokens_per_micro_batch, every micro-batch's padded tensor stays within it (unless one response alone is longer)."
    from staged_rl.config import GRPOConfig
    from staged_rl.trainer import make_micro_batches
    from staged_rl.rollout import toy_lm, HFEngine, SamplingParams
    model, tok = toy_lm(seed=1, eos_bias=2.0)
    groups = HFEngine(model, tok).generate(['Q', 'Question: what is 12 + 30?', 'def add(a, b):'], 4, SamplingParams(max_new_tokens=16, seed=1))
    adv = torch.zeros(12)
    for budget in (24, 40, 100):
        mbs = make_micro_batches(groups, adv, GRPOConfig(micro_batch=64, max_tokens_per_micro_batch=budget), tok.pad_token_id, 'cpu')
        assert sum(mb['completion_ids'].shape[0] for mb in mbs) == 12
        for mb in mbs:
            assert mb['input_ids'].numel() <= budget or mb['input_ids'].shape[0] == 1, (budget, tuple(mb['input_ids'].shape))
    assert all('n' in mb for mb in make_micro_batches(groups, adv, GRPOConfig(micro_batch=64), tok.pad_token_id, 'cpu'))

def test_live_metrics_with_tensorboard(tmp_path, levels):
    "`output.log_with=[tensorboard]` writes the metrics rows as TensorBoard scalars through accelerate's trackers."
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from staged_rl.trainer import train
    cfg = smoke(tmp_path, levels, 'stages.0.max_steps=1', 'stages.1.max_steps=1', 'eval.sets=[]', 'output.log_with=[tensorboard]')
    rows = train(cfg, progress=False, reward_fn=toy_reward)
    events = list((tmp_path/'trackers').rglob('events.out.tfevents.*'))
    assert events, sorted(p.name for p in tmp_path.rglob('*'))
    ea = EventAccumulator(str(events[0].parent)); ea.Reload()
    tags = set(ea.Tags()['scalars'])
    assert {'reward', 'loss', 'entropy', 'time/step'} <= tags, tags
    assert [e.step for e in ea.Scalars('reward')] == [1, 2]
    assert ea.Scalars('reward')[1].value == pytest.approx(rows[-1]['reward'])

# ---- the step-0 evaluation, shared by runs from the same policy -------------------------------------------------
def test_step0_evaluation_shared(tmp_path, levels, monkeypatch):
    "Runs that start from the same policy with the same seed evaluate step 0 once: the others read the record, identical."
    import staged_rl.trainer as T
    monkeypatch.setattr(T, 'initial_eval_cache', lambda cfg, acc=None, reward_fn=None: tmp_path/'evals')
    one = lambda name, *o: T.train(smoke(tmp_path/name, levels, 'output.save_every=0',
                                         'stages=[{name: s, data: [{source: "level:2:math"}], max_steps: 1}]', *o), progress=False)
    ev = lambda rows: {k: v for k, v in rows[0].items() if k.startswith('eval/')}
    a = one('a')
    files = sorted((tmp_path/'evals').iterdir())
    assert len(files) == 2  # one record per evaluation set (math, code)
    b = one('b', 'grpo.lr=1e-3')  # another run (another learning rate) from the same policy and seed
    assert ev(a) == ev(b) and sorted((tmp_path/'evals').iterdir()) == files  # read back, nothing written again
    rec = json.loads(files[0].read_text()); rec['pass@1'] = 0.123456; files[0].write_text(json.dumps(rec))
    assert 0.123456 in ev(one('c')).values()  # the step-0 row comes from the record
    one('d', 'seed=1')
    assert len(list((tmp_path/'evals').iterdir())) == 4  # another seed samples otherwise: its own records
