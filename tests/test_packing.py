"""Packed (padding-free) micro-batches against the padded ones they replace, and the update's FLOP count and metrics.

The padded path (`collate_completions` + `sequence_logprobs`) is the reference: on batches of mixed prompt and
response lengths, with truncated responses masked or not and the entropy term on, the packed path
(`pack_completions` + `packed_logprobs`) must give the same log-probs, entropies, gradients and `policy_update`
steps. The model is a toy Qwen2 (grouped-query attention, tied and biased LM head) in float64, so the agreement is
limited by the LM head's fp32 only."""
import copy
import pytest
import torch

from staged_rl.config import ConfigError, GRPOConfig, load_config

torch.set_num_threads(1)  # tiny models on a shared 2-core box

PROMPTS = ['Q', 'Question: what is 12 + 30? Answer with a number.', 'def add(a, b):', 'The quick brown fox jumps']

def _groups(n=4, max_new_tokens=12):
    "Groups of `n` responses to prompts of four lengths, sampled from a toy model: mixed lengths, some cut at the limit."
    from staged_rl.rollout import toy_lm, HFEngine, SamplingParams
    model, tok = toy_lm(seed=1, eos_bias=3.0)
    groups = HFEngine(model, tok).generate(PROMPTS, n, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.7, seed=3))
    flat = [c for g in groups for c in g]
    assert len({len(c.prompt_ids) for c in flat}) == 4 and len({len(c.ids) for c in flat}) > 3
    assert any(c.truncated for c in flat) and not all(c.truncated for c in flat)
    return model.double(), tok, groups, flat

def _both(model, flat, mask_truncated):
    "The padded and the packed batch of the same completions, with their loss masks."
    from staged_rl.grpo import collate_completions, pack_completions, loss_mask
    pad, pk = collate_completions(flat, 0), pack_completions(flat)
    for b in (pad, pk): b['mask'] = loss_mask(b['completion_mask'], b['truncated'], mask_truncated)
    return pad, pk

def _grad(model, fn, adv):
    "Log-probs, entropies and the gradient of a loss that uses both (per-token weights differ along the response)."
    model.zero_grad()
    lp, ent = fn()
    w = torch.linspace(0.5, 1.5, lp.shape[1])
    (lp * adv[:, None] * w + 0.1 * ent * w).sum().backward()
    return lp.detach(), ent.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

def _padded_fn(model, pad):
    from staged_rl.grpo import sequence_logprobs
    return lambda: sequence_logprobs(model, pad['input_ids'], pad['attention_mask'], pad['mask'], with_entropy=True, temperature=0.7, chunk_tokens=5)

def _packed_fn(model, pk):
    from staged_rl.grpo import packed_logprobs
    return lambda: packed_logprobs(model, pk['input_ids'], pk['position_ids'], pk['cu_seqlens'], pk['max_len'], pk['completion_ids'],
                                   pk['index'], pk['mask'], with_entropy=True, temperature=0.7, chunk_tokens=5)

def test_pack_completions_layout():
    "One row, no padding; positions restart per sequence; `index` points at the position before each response token."
    from staged_rl.grpo import pack_completions
    _, _, _, flat = _groups()
    pk = pack_completions(flat)
    lens = [len(c.prompt_ids) + len(c.ids) - 1 for c in flat if c.ids]
    assert pk['input_ids'].shape == (1, sum(lens)) and pk['cu_seqlens'].diff().tolist() == lens and pk['max_len'] == max(lens)
    assert pk['position_ids'][0].tolist() == [t for L in lens for t in range(L)]
    for b, c in enumerate(flat):
        seq = c.prompt_ids + c.ids
        s = int(pk['cu_seqlens'][b])
        assert pk['input_ids'][0, s:s + len(seq) - 1].tolist() == seq[:-1]
        k = len(c.ids)  # the token before response token t is what predicts it
        assert [int(pk['input_ids'][0, i]) for i in pk['index'][b, :k]] == seq[len(c.prompt_ids) - 1:-1]
        assert pk['completion_ids'][b, :k].tolist() == c.ids and int(pk['completion_mask'][b].sum()) == k
    with pytest.raises(ValueError, match='empty prompt'): pack_completions([type(flat[0])([], [1, 2], 'x', 'stop')])

@pytest.mark.parametrize('mask_truncated', [False, True])
def test_packed_logprobs_equal_padded(mask_truncated):
    "Log-probs, entropies and gradients of the packed row equal the padded batch's (float64 body, fp32 head)."
    model, _, _, flat = _groups()
    model.train()
    pad, pk = _both(model, flat, mask_truncated)
    assert torch.equal(pad['mask'], pk['mask'][:, :pad['mask'].shape[1]])
    adv = torch.randn(len(flat), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lp0, e0, g0 = _grad(model, _padded_fn(model, pad), adv)
    lp1, e1, g1 = _grad(model, _packed_fn(model, pk), adv)
    m = pad['mask'].bool()
    assert int(m.sum()) > 40 and (lp0[m] != 0).all() and (e0[m] > 0).all()
    if mask_truncated: assert any(c.truncated for c in flat) and not m[[c.truncated for c in flat]].any()
    torch.testing.assert_close(lp1, lp0, atol=1e-6, rtol=1e-6); torch.testing.assert_close(e1, e0, atol=1e-6, rtol=1e-6)
    assert g0.keys() == g1.keys() and 'lm_head.bias' in g0
    for n in g0: torch.testing.assert_close(g1[n], g0[n], atol=1e-6, rtol=1e-6, msg=n)

def test_packed_under_activation_checkpointing():
    "Checkpointing recomputes each layer with the same keyword arguments: the packed gradients stay those of the padded batch."
    model, _, _, flat = _groups()
    pad, pk = _both(model, flat, False)
    adv = torch.randn(len(flat), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model.train()
    _, _, g0 = _grad(model, _padded_fn(model, pad), adv)
    from staged_rl.trainer import enable_checkpointing; enable_checkpointing(model)
    _, _, g1 = _grad(model, _packed_fn(model, pk), adv)
    for n in g0: torch.testing.assert_close(g1[n], g0[n], atol=1e-6, rtol=1e-6, msg=n)

def test_generation_unchanged_by_packed_attention(tmp_path):
    "`sdpa_packed` is transformers' SDPA when no boundaries are given: sampled tokens and their log-probs do not change."
    from staged_rl.rollout import toy_lm, HFEngine, SamplingParams
    from staged_rl.grpo import use_packed_attention
    model, tok = toy_lm(seed=2)
    sp = SamplingParams(max_new_tokens=10, temperature=0.8, seed=5, logprobs=True)
    before = HFEngine(model, tok).generate(PROMPTS, 3, sp)
    use_packed_attention(model)
    assert model.config._attn_implementation == 'sdpa_packed'
    after = HFEngine(model, tok).generate(PROMPTS, 3, sp)
    assert [[c.ids for c in g] for g in after] == [[c.ids for c in g] for g in before]
    torch.testing.assert_close(torch.tensor([x for g in after for c in g for x in c.logprobs]),
                               torch.tensor([x for g in before for c in g for x in c.logprobs]), atol=1e-6, rtol=1e-6)
    model.save_pretrained(tmp_path)  # a saved policy does not name the attention function (vLLM and a fresh process load it)
    assert 'sdpa_packed' not in (tmp_path/'config.json').read_text()
    model.set_attn_implementation('eager')
    with pytest.raises(ValueError, match="'eager'"): use_packed_attention(model)

def test_layout_is_validated_and_chosen():
    "`grpo.micro_batch_layout` is packed or padded; `make_micro_batches` builds packed rows where prompts are not shared."
    from staged_rl.trainer import make_micro_batches
    with pytest.raises(ConfigError, match='micro_batch_layout'): GRPOConfig(micro_batch_layout='flat')
    assert load_config('smoke', ['grpo.micro_batch_layout=padded']).grpo.micro_batch_layout == 'padded'
    assert GRPOConfig().micro_batch_layout == 'packed'
    _, tok, groups, flat = _groups()
    adv = torch.zeros(len(flat))
    for budget in (30, 60, None):
        packed = make_micro_batches(groups, adv, GRPOConfig(micro_batch=64, max_tokens_per_micro_batch=budget), tok.pad_token_id, 'cpu', share_prompts=False)
        padded = make_micro_batches(groups, adv, GRPOConfig(micro_batch=64, max_tokens_per_micro_batch=budget, micro_batch_layout='padded'),
                                    tok.pad_token_id, 'cpu', share_prompts=False)
        assert all('cu_seqlens' in mb and mb['input_ids'].shape[0] == 1 for mb in packed) and not any('cu_seqlens' in mb for mb in padded)
        assert sum(len(mb['advantages']) for mb in packed) == len(flat)
        if budget: assert all(mb['input_ids'].numel() <= budget or len(mb['advantages']) == 1 for mb in packed)
        assert len(packed) <= len(padded)  # the same budget holds more real tokens without padding
    assert all('n' in mb for mb in make_micro_batches(groups, adv, GRPOConfig(micro_batch=64), tok.pad_token_id, 'cpu'))  # shared prompts first

def test_policy_update_packed_equals_padded():
    "Whole `policy_update` steps (KL to a reference, entropy bonus, truncated masked, 2 updates, several micro-batches) agree."
    from staged_rl.rollout import toy_lm
    from staged_rl.trainer import make_micro_batches, policy_update
    model, tok, groups, flat = _groups()
    ref = toy_lm(seed=2, eos_bias=3.0)[0].double().eval().requires_grad_(False)  # another model: a clearly non-zero KL
    adv = torch.randn(len(flat), generator=torch.Generator().manual_seed(2))
    cfg = load_config('smoke', ['grpo.kl_coef=0.05', 'grpo.updates_per_batch=2', 'sampling.temperature=0.7', 'grpo.max_grad_norm=1000'])
    class Recording(torch.optim.SGD):
        def step(self, *a, **k):
            self.grads.append([p.grad.clone() for p in self.model.parameters()]); return super().step(*a, **k)
    out = {}
    for layout in ('padded', 'packed'):
        g = GRPOConfig(micro_batch=64, max_tokens_per_micro_batch=60, micro_batch_layout=layout)
        mbs = make_micro_batches(groups, adv, g, tok.pad_token_id, 'cpu', mask_truncated=True, share_prompts=False)
        assert len(mbs) > 2
        m = copy.deepcopy(model)
        opt = Recording(m.parameters(), lr=0.05); opt.grads, opt.model = [], m
        stats = policy_update(m, ref, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), mbs, cfg, entropy_coef=0.01)
        out[layout] = stats, opt.grads, [p.detach() for p in m.parameters()]
    (sp, gp, pp), (sk, gk, pk) = out['padded'], out['packed']
    assert sp['kl'] > 1e-3 and sp['grad_norm'] > 0 and len(gp) == len(gk) == 2
    for k in ('loss', 'kl', 'entropy', 'pg_loss', 'grad_norm', 'tokens'): assert sk[k] == pytest.approx(sp[k], rel=1e-6, abs=1e-9), k
    for a, b in zip(sum(gp, []), sum(gk, [])): torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)
    for a, b in zip(pp, pk): torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)
    for st in (sp, sk):  # the health of the step: MFU and tokens per second of the update and the reference
        assert {'perf/mfu/update', 'perf/update_tokens_per_s_per_gpu', 'perf/ref_tokens_per_s_per_gpu'} <= st.keys()
        assert all(st[k] > 0 for k in ('perf/mfu/update', 'perf/update_tokens_per_s_per_gpu', 'perf/ref_tokens_per_s_per_gpu'))

def test_update_flops_by_hand():
    "6 x (N_body x sum L + N_head x T_head + n_layers x d_attn x sum L^2), counted from a small Qwen2 by hand."
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from staged_rl.trainer import update_flops
    q = Qwen2ForCausalLM(Qwen2Config(vocab_size=10, hidden_size=4, intermediate_size=6, num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=1, tie_word_embeddings=False))
    # embedding 40 and head 40 (10 x 4); q 16 + 4, k 8 + 2, v 8 + 2, o 16; MLP 3 x 24; norms 3 x 4: N_body = 140; d_attn = 2 x 2
    assert update_flops(q, [3, 5], head_tokens=4) == 6 * (140 * (3 + 5) + 40 * 4 + 1 * 4 * (3 * 3 + 5 * 5)) == 8496
    assert update_flops(q, [3, 5], 4, passes=1) == 8496 / 3
    tied = Qwen2ForCausalLM(Qwen2Config(vocab_size=10, hidden_size=4, intermediate_size=6, num_hidden_layers=1, num_attention_heads=2,
                                        num_key_value_heads=1, tie_word_embeddings=True))
    assert update_flops(tied, [3, 5], 4) == 8496  # a tied head is counted once, as the head

def test_peak_measurement_is_cached_and_leaves_the_rng_alone():
    "The matmul rate is measured once per process and draws from its own generator (a resumed run samples the same)."
    from staged_rl.trainer import matmul_peak_flops, _PEAK
    _PEAK.clear()
    state = torch.get_rng_state()
    peak = matmul_peak_flops('cpu')
    assert peak > 0 and torch.equal(torch.get_rng_state(), state)
    assert matmul_peak_flops('cpu') == peak and len(_PEAK) == 1

def test_seq_lens_agree_across_layouts():
    "The FLOP count sees the same sequences (no padding) whether a micro-batch is packed, padded or shares its prompts."
    from staged_rl.trainer import make_micro_batches, mb_seq_lens
    _, tok, groups, flat = _groups()
    want = sorted(len(c.prompt_ids) + len(c.ids) - 1 for c in flat if c.ids)
    adv = torch.zeros(len(flat))
    for layout, share in (('packed', False), ('padded', False), ('packed', True)):
        mbs = make_micro_batches(groups, adv, GRPOConfig(micro_batch=8, micro_batch_layout=layout), tok.pad_token_id, 'cpu', share_prompts=share)
        assert sorted(L for mb in mbs for L in mb_seq_lens(mb)) == want, layout

def test_train_rows_carry_perf_metrics(tmp_path):
    "A real step on the packed path (checkpointing rules out shared prompts) logs MFU and the per-GPU rate of every phase."
    from staged_rl.data import load_problems, save_problems, level_path
    from staged_rl.trainer import train
    cfg0 = load_config('smoke')
    for lv in (2, 3):
        for dom, n in (('math', 4), ('code', 4)):
            save_problems(load_problems(f'tiny:{dom}', cfg=cfg0)[(lv - 2) * n:(lv - 1) * n], level_path(tmp_path/'levels', lv, dom))
    cfg = load_config('smoke', [f'output.dir={tmp_path}/run', f'data.levels_dir={tmp_path}/levels', 'eval.sets=[]', 'eval.every=0',
                                'model.gradient_checkpointing=true', 'rewards.workers=1', 'output.save_every=0'])
    rows = train(cfg, progress=False, stop_after=1)
    step = [r for r in rows if 'reward' in r][0]
    for k in ('perf/mfu/update', 'perf/gen_tokens_per_s_per_gpu', 'perf/ref_tokens_per_s_per_gpu', 'perf/update_tokens_per_s_per_gpu'):
        assert step[k] > 0, k

# ---- several processes: DDP and FSDP2 on packed micro-batches take the one-process padded step ----------------------
SCRIPT = r'''
import sys, torch
sys.path.insert(0, {tests!r})
from test_packing import dist_batch
from test_distributed import run_update
from accelerate import Accelerator
from staged_rl.trainer import shard_model
acc = Accelerator(cpu=True)
model, mbs = dist_batch(acc.process_index, acc.num_processes, 'packed')
if {fsdp!r}: model = shard_model(model)
grads, stats = run_update(model, mbs, acc)
if acc.is_main_process: torch.save({{'grads': grads, 'stats': stats}}, {out!r})
'''

def dist_batch(rank=0, world=1, layout='packed'):
    "A toy model and this process's micro-batches (rank 0 the short responses, rank 1 the long ones) in `layout`."
    from staged_rl.rollout import toy_lm, HFEngine, SamplingParams
    from staged_rl.trainer import make_micro_batches
    torch.manual_seed(0)
    model, tok = toy_lm(seed=1, eos_bias=1.0)
    groups = HFEngine(model, tok).generate(PROMPTS, 4, SamplingParams(max_new_tokens=24, temperature=0.9, seed=4))
    flat = sorted((c for g in groups for c in g), key=lambda c: len(c.ids))
    adv = torch.linspace(-1, 1, len(flat))
    mine = list(range(len(flat)))[rank * len(flat) // world:(rank + 1) * len(flat) // world]
    g = GRPOConfig(micro_batch=3, max_tokens_per_micro_batch=60, micro_batch_layout=layout)
    return model, make_micro_batches([[flat[i]] for i in mine], adv[mine], g, tok.pad_token_id, 'cpu', share_prompts=False)

@pytest.mark.parametrize('fsdp', [False, True])
def test_two_processes_packed_take_the_one_process_padded_step(tmp_path, fsdp):
    "DDP and FSDP2 (gradients reduced once, a global token count) on packed rows give the padded one-process gradients."
    from pathlib import Path
    from test_distributed import run_update, torchrun
    model, mbs = dist_batch(layout='padded')
    want, stats1 = run_update(model, mbs)
    script = tmp_path/'run.py'
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path/'out.pt'), fsdp=fsdp))
    p = torchrun(script)
    assert p.returncode == 0, p.stderr[-3000:]
    got = torch.load(tmp_path/'out.pt')
    assert got['stats']['tokens'] == stats1['tokens']
    for a, b in zip(want, got['grads']): torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-4)

def test_head_weight_grad_in_compute_dtype():
    "`grpo.head_grad_dtype=compute`: under bf16 autocast the head weight's gradient is within 1% (norm) of fp32's, the rest identical."
    from staged_rl.trainer import mb_logprobs, make_micro_batches
    with pytest.raises(ConfigError, match='head_grad_dtype'): GRPOConfig(head_grad_dtype='bf16')
    model, tok, groups, flat = _groups()
    model = model.float().train()
    mb = make_micro_batches(groups, torch.zeros(len(flat)), GRPOConfig(micro_batch=64), tok.pad_token_id, 'cpu', share_prompts=False)[0]
    def grads(lowp, autocast=True):
        model.zero_grad()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            lp, ent = mb_logprobs(model, mb, with_entropy=True, temperature=0.7, lowp_weight_grad=lowp)
        (lp.sum() + ent.sum()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}
    g32, g16 = grads(False), grads(True)
    w = 'model.embed_tokens.weight'  # the toy's head is tied to the embedding
    rel = ((g16[w] - g32[w]).norm() / g32[w].norm()).item()
    assert 0 < rel < 1e-2, rel
    for n in g32:
        if n != w: assert torch.equal(g16[n], g32[n]), n
    a, b = grads(False, autocast=False), grads(True, autocast=False)  # no autocast: fp32 either way
    assert all(torch.equal(a[n], b[n]) for n in a)
