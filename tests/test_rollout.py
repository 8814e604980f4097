"""Rollout engines: correctness of the HF sampling loop against the model itself, reproducibility, stopping,
and the vLLM engine's pure helpers (the engine itself runs against the real vLLM: tests/test_vllm_real.py)."""
import sys
import pytest
import torch
from staged_rl.rollout import (Completion, HFEngine, SamplingParams, VLLMEngine, make_engine, sample_tokens, toy_lm)

PROMPTS = ["Question: what is 2+3?", "def add(a, b):", "The quick brown fox jumps over"]


pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='module')
def lm():
    return toy_lm()


@pytest.fixture(scope='module')
def stopping_lm():
    return toy_lm(eos_bias=3.0)


def ids_of(res): return [[c.ids for c in g] for g in res]


def test_same_seed_same_completions(lm):
    model, tok = lm
    eng = HFEngine(model, tok)
    sp = SamplingParams(max_new_tokens=16, seed=7, top_p=0.9, temperature=0.8)
    a, b = eng.generate(PROMPTS, 4, sp), eng.generate(PROMPTS, 4, sp)
    assert ids_of(a) == ids_of(b)
    c = eng.generate(PROMPTS, 4, SamplingParams(max_new_tokens=16, seed=8, top_p=0.9, temperature=0.8))
    assert ids_of(a) != ids_of(c)
    assert len({tuple(c.ids) for c in a[0]}) > 1  # the n samples of a prompt differ


def test_greedy_matches_model_generate(lm):
    model, tok = lm
    res = HFEngine(model, tok).generate(PROMPTS, 2, SamplingParams(temperature=0, max_new_tokens=12))
    for p, g in zip(PROMPTS, res):  # one prompt at a time: no padding in the reference
        enc = tok([p], return_tensors='pt')
        ref = model.generate(**enc, do_sample=False, max_new_tokens=12, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)[0, enc['input_ids'].shape[1]:].tolist()
        if tok.eos_token_id in ref: ref = ref[:ref.index(tok.eos_token_id) + 1]
        assert g[0].ids == g[1].ids == ref


def test_first_token_distribution_matches_model(lm):
    "Prefill + repeat of the cache + sampler: first-token frequencies follow the model's softmax."
    model, tok = lm
    p = PROMPTS[1]
    N, temp = 3000, 0.1  # the random model is nearly uniform; a low temperature gives a peaked target
    res = HFEngine(model, tok).generate([PROMPTS[0], p], N, SamplingParams(max_new_tokens=1, seed=0, temperature=temp))
    with torch.no_grad(): logits = model(**tok([p], return_tensors='pt')).logits[0, -1]
    probs = (logits / temp).softmax(-1)
    freq = torch.bincount(torch.tensor([c.ids[0] for c in res[1]]), minlength=len(probs)).float() / N
    top = probs.argsort(descending=True)[:6]
    assert ((freq[top] - probs[top]).abs() <= 4 * (probs[top] * (1 - probs[top]) / N).sqrt() + 1e-3).all()
    probs = logits.softmax(-1)
    res = HFEngine(model, tok).generate([p], 500, SamplingParams(max_new_tokens=1, seed=0, top_p=0.5))
    sp, si = probs.sort(descending=True)
    nucleus = set(si[:int(((sp.cumsum(0) - sp) < 0.5).sum())].tolist())
    assert {c.ids[0] for c in res[0]} <= nucleus


def test_sampling_logprobs_match_a_full_forward(stopping_lm):
    "KV cache, left padding and row dropping leave the model's predictions unchanged."
    model, tok = stopping_lm
    res = HFEngine(model, tok, drop_frac=0.0).generate(PROMPTS, 4, SamplingParams(max_new_tokens=20, seed=1, logprobs=True, temperature=0.9))
    for g in res:
        for c in g:
            full = torch.tensor([c.prompt_ids + c.ids])
            with torch.no_grad(): lg = model(full).logits[0, len(c.prompt_ids) - 1:-1] / 0.9
            want = lg.log_softmax(-1).gather(-1, torch.tensor(c.ids)[:, None])[:, 0]
            assert torch.allclose(torch.tensor(c.logprobs), want, atol=1e-4)


def test_finish_reasons_and_text(stopping_lm):
    model, tok = stopping_lm
    res = HFEngine(model, tok).generate(PROMPTS, 8, SamplingParams(max_new_tokens=10, seed=0))
    flat = [c for g in res for c in g]
    assert {c.finish_reason for c in flat} == {'stop', 'length'}
    for c in flat:
        assert isinstance(c, Completion) and 1 <= len(c.ids) <= 10
        if c.finish_reason == 'stop': assert c.ids[-1] == tok.eos_token_id and not c.truncated
        else: assert len(c.ids) == 10 and tok.eos_token_id not in c.ids and c.truncated
        assert tok.eos_token_id not in c.ids[:-1]
        assert c.text == tok.decode(c.ids, skip_special_tokens=True) and '<|im_end|>' not in c.text
        assert c.logprobs is None


def test_row_dropping_and_chunking_do_not_change_samples(stopping_lm):
    model, tok = stopping_lm
    sp = SamplingParams(max_new_tokens=16, seed=3)
    keep = HFEngine(model, tok, drop_frac=None).generate(PROMPTS, 6, sp)
    assert ids_of(HFEngine(model, tok, drop_frac=0.0).generate(PROMPTS, 6, sp)) == ids_of(keep)
    assert ids_of(HFEngine(model, tok, drop_frac=0.5).generate(PROMPTS, 6, sp)) == ids_of(keep)
    greedy = SamplingParams(max_new_tokens=16, temperature=0)
    assert ids_of(HFEngine(model, tok, max_batch_rows=4).generate(PROMPTS, 2, greedy)) == \
           ids_of(HFEngine(model, tok).generate(PROMPTS, 2, greedy))


def test_tokenizer_without_pad_token(lm):
    model, tok = lm
    import copy
    t = copy.deepcopy(tok); t.pad_token = None
    assert t.pad_token_id is None
    res = HFEngine(model, t).generate(PROMPTS, 2, SamplingParams(temperature=0, max_new_tokens=6))
    assert ids_of(res) == ids_of(HFEngine(model, tok).generate(PROMPTS, 2, SamplingParams(temperature=0, max_new_tokens=6)))


def test_bad_inputs(lm):
    model, tok = lm
    eng = HFEngine(model, tok)
    with pytest.raises(ValueError, match='list of token-id lists'): eng.generate('a prompt', 1)
    with pytest.raises(ValueError, match=r'prompts\[1\]'): eng.generate(['a', None], 1)
    with pytest.raises(ValueError, match='n=0'): eng.generate(['a'], 0)
    with pytest.raises(ValueError, match='top_p'): SamplingParams(top_p=1.5)
    with pytest.raises(ValueError, match='kind'): make_engine('tgi', model, tok)


def test_sample_tokens_greedy_and_seeded():
    logits = torch.randn(16, 50)
    assert torch.equal(sample_tokens(logits, temperature=0), logits.argmax(-1))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(sample_tokens(logits, generator=g1), sample_tokens(logits, generator=g2))


# ---- vLLM engine: what can be checked without vLLM (the engine itself: tests/test_vllm_real.py, `make test-vllm`) ----

def test_vllm_kwargs_use_every_setting():
    from staged_rl.config import VLLMConfig
    from staged_rl.rollout import vllm_kwargs
    v = VLLMConfig(gpu_memory_utilization=0.4, max_model_len=1000, enable_prefix_caching=False,
                   enable_sleep_mode=True, max_num_batched_tokens=777, enforce_eager=True, seed=5, extra={'max_num_seqs': 9})
    kw = vllm_kwargs(v, torch.bfloat16, rank=3, world_size=4)
    assert kw == dict(gpu_memory_utilization=0.4, max_model_len=1000, tensor_parallel_size=1, dtype='bfloat16',
                      enable_prefix_caching=False, enable_sleep_mode=True, max_num_batched_tokens=777, enforce_eager=True,
                      seed=5 + 3, logprobs_mode='processed_logprobs', distributed_executor_backend='external_launcher',
                      max_num_seqs=9)  # rank 3's own engine
    one = vllm_kwargs(VLLMConfig(), torch.float32)
    assert one['dtype'] == 'float32' and 'distributed_executor_backend' not in one and 'max_model_len' not in one
    assert vllm_kwargs(VLLMConfig(dtype='bfloat16'), torch.float32)['dtype'] == 'bfloat16'  # explicit: allowed
    with pytest.raises(ValueError, match='dtype'): vllm_kwargs(VLLMConfig(), torch.int8)


def test_tensor_parallel_engines_are_refused_by_the_config():
    "Under external_launcher every rank of a TP group would have to submit the same prompts; the config says no, in one line."
    from staged_rl.config import load_config, ConfigError
    with pytest.raises(ConfigError, match=r'`vllm.tensor_parallel_size`: got 2; allowed: 1 \(one engine per training process') as e:
        load_config('paper-1.5b', ['vllm.tensor_parallel_size=2'])
    assert '\n' not in str(e.value)
    assert load_config('paper-1.5b', ['scoring.tensor_parallel_size=2']).scoring.tensor_parallel_size == 2  # scoring: its own, one process


def test_checkpoint_shapes_of_a_hub_id_come_from_the_cache(tmp_path):
    "The name/shape check before a sync also runs for hub ids: their safetensors are found in the Hugging Face cache."
    from safetensors.torch import save_file
    from staged_rl.rollout import _checkpoint_shapes
    snap = tmp_path/'models--org--tiny'/'snapshots'/('a' * 40)
    snap.mkdir(parents=True)
    save_file({'model.embed_tokens.weight': torch.zeros(7, 4), 'lm_head.weight': torch.zeros(7, 4)}, str(snap/'model.safetensors'))
    (tmp_path/'models--org--tiny'/'refs').mkdir(); (tmp_path/'models--org--tiny'/'refs'/'main').write_text('a' * 40)
    assert _checkpoint_shapes('org/tiny', cache_dir=str(tmp_path)) == {'model.embed_tokens.weight': (7, 4), 'lm_head.weight': (7, 4)}
    assert _checkpoint_shapes('org/absent', cache_dir=str(tmp_path)) is None
    assert _checkpoint_shapes(str(snap)) == _checkpoint_shapes('org/tiny', cache_dir=str(tmp_path))  # the folder itself


class _Shard:
    "Stands for an FSDP2 DTensor: full shape and size known, `full_tensor()` gathers (logged)."
    def __init__(self, name, t, log): self.name, self.t, self.log, self.shape = name, t, log, t.shape
    def numel(self): return self.t.numel()
    def element_size(self): return self.t.element_size()
    def detach(self): return self
    def full_tensor(self): self.log.append(('gather', self.name)); return self.t.clone()


def test_weight_sync_streams_in_buckets_of_whole_layers():
    "Full tensors are gathered a bucket at a time, each bucket loaded before the next is gathered, layers never split."
    from staged_rl.rollout import VLLMEngine, _weight_buckets
    m = toy_lm(seed=0)[0]
    log, loaded = [], {}
    shards = [(k, _Shard(k, v.detach(), log)) for k, v in m.named_parameters()]
    class LLM:
        def collective_rpc(self, f, args=()):
            log.append(('load', len(args[0]))); loaded.update({k: v for k, v in args[0]}); return [True]
        def reset_prefix_cache(self): log.append(('reset',))
    eng = object.__new__(VLLMEngine)
    eng.llm, eng.cpu, eng.tied, eng._shapes, eng._stale, eng._sleeping, eng.model_path = LLM(), False, False, None, False, set(), 'x'
    layer = sum(v.numel() * 4 for k, v in m.named_parameters() if '.layers.0.' in k)
    eng.sync_weights(shards, bucket_bytes=layer)
    assert set(loaded) == {k for k, _ in m.named_parameters()} and all(torch.equal(loaded[k], v) for k, v in m.named_parameters())
    live, peak = 0, 0
    for e in log:  # full tensors alive between their gather and their bucket's load
        if e[0] == 'gather': live += dict(m.named_parameters())[e[1]].numel() * 4; peak = max(peak, live)
        elif e[0] == 'load': live = 0
    biggest = max(v.numel() * 4 for _, v in m.named_parameters())
    assert peak <= max(layer, biggest) and sum(e[0] == 'load' for e in log) > 2 and log[-1] == ('reset',)
    for b in _weight_buckets(list(m.named_parameters()), 1):  # the smallest buckets: one layer (or one other tensor) each
        assert len({k.split('.layers.')[1].split('.')[0] if '.layers.' in k else k for k, _ in b}) == 1


def test_prompts_as_token_ids(lm):
    model, tok = lm
    eng = HFEngine(model, tok)
    ids = [tok(p)['input_ids'] for p in PROMPTS]
    sp = SamplingParams(max_new_tokens=6, seed=2)
    a = eng.generate(ids, 3, sp)
    assert ids_of(a) == ids_of(eng.generate(PROMPTS, 3, sp)) and [g[0].prompt_ids for g in a] == ids
    bos = [[tok.pad_token_id] + ids[0]]  # ids are used as given (no tokenizer round trip that could add or drop a token)
    assert eng.generate(bos, 1, sp)[0][0].prompt_ids == bos[0]
    same = eng.generate([ids[0], ids[0]], 4, sp)
    assert all(same[0][j].ids != same[1][j].ids for j in range(4))  # sample j of two identical prompts differ
    with pytest.raises(ValueError, match=r'prompts\[1\]'): eng.generate([ids[0], [1.5]], 1)
    with pytest.raises(ValueError, match=r'prompts\[0\] has no tokens'): eng.generate([[]], 1)


def test_vllm_missing_gives_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'vllm', None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match=r'pip install'):
        VLLMEngine('some/model')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_hf_engine_on_gpu(lm):
    model, tok = toy_lm()
    model = model.cuda()
    sp = SamplingParams(max_new_tokens=12, seed=0)
    a, b = HFEngine(model, tok).generate(PROMPTS, 4, sp), HFEngine(model, tok).generate(PROMPTS, 4, sp)
    assert ids_of(a) == ids_of(b)
