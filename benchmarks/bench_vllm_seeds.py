"""Per-request seeds against one engine seed per call, on the real vLLM (its CPU build: run with `.venv-vllm/bin/python`).

vLLM gives a request with a seed of its own a private generator, which takes its sampler off the batched path (V1: a
per-request loop in `vllm/v1/sample/ops/topk_topp_sampler.py`). `VLLMEngine.generate` therefore reseeds the engine once
per call and sends one request of `n` samples per prompt. This script times both ways on the same engine, prompts and
lengths (every response runs to `--tokens`: `ignore_eos`), interleaved, and prints the median of each and their ratio.

    .venv-vllm/bin/python benchmarks/bench_vllm_seeds.py [--prompts 16] [--n 16] [--tokens 64] [--rounds 5] [--top-p 0.95]
"""
import argparse, os, statistics, sys, tempfile, time
from pathlib import Path
os.environ.setdefault('VLLM_ENABLE_V1_MULTIPROCESSING', '0')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--prompts', type=int, default=16); ap.add_argument('--n', type=int, default=16)
    ap.add_argument('--tokens', type=int, default=64); ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--top-p', type=float, default=0.95); ap.add_argument('--hidden', type=int, default=64)
    a = ap.parse_args()
    import torch
    from transformers import Qwen2Config, AutoModelForCausalLM
    from staged_rl.config import derive_seed
    from staged_rl.rollout import make_engine, toy_tokenizer, _seed_rpc
    d = Path(tempfile.mkdtemp())
    tok = toy_tokenizer(300)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=a.hidden, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=2 * a.hidden, max_position_embeddings=512, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0); AutoModelForCausalLM.from_config(cfg).save_pretrained(d); tok.save_pretrained(d)
    eng = make_engine('vllm', None, tok, model_path=str(d), gpu_memory_utilization=0.05, max_model_len=256,
                      max_num_batched_tokens=8192, enforce_eager=True)
    vllm, llm = eng._vllm, eng.llm
    prompts = [{'prompt_token_ids': [5 + i, 6, 7, 8]} for i in range(a.prompts)]
    base = dict(temperature=1.0, top_p=a.top_p, max_tokens=a.tokens, ignore_eos=True, detokenize=False)
    def engine_seed(seed):
        llm.collective_rpc(_seed_rpc, args=(seed,))
        return llm.generate(prompts, vllm.SamplingParams(n=a.n, **base), use_tqdm=False)
    def per_request(seed):
        reqs = [p for p in prompts for _ in range(a.n)]
        sps = [vllm.SamplingParams(n=1, seed=derive_seed(seed, 'sample', i, j), **base) for i in range(a.prompts) for j in range(a.n)]
        return llm.generate(reqs, sps, use_tqdm=False)
    t = {'engine seed (one per call)': [], 'per-request seeds': []}
    for r in range(a.rounds + 1):  # round 0 warms up
        for name, f in (('engine seed (one per call)', engine_seed), ('per-request seeds', per_request)):
            t0 = time.perf_counter(); outs = f(r); dt = time.perf_counter() - t0
            assert sum(len(c.token_ids) for o in outs for c in o.outputs) == a.prompts * a.n * a.tokens
            if r: t[name].append(dt)
    print(f"vllm {vllm.__version__}, {a.prompts} prompts x n={a.n}, {a.tokens} tokens each, top_p={a.top_p}, hidden={a.hidden}, {a.rounds} rounds")
    for name, xs in t.items(): print(f"  {name:28s} median {statistics.median(xs):.3f} s  ({a.prompts * a.n * a.tokens / statistics.median(xs):,.0f} tok/s)")
    print(f"  per-request / engine seed: {statistics.median(t['per-request seeds']) / statistics.median(t['engine seed (one per call)']):.2f}x")

if __name__ == '__main__': main()
