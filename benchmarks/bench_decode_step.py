"""Decode step: `HFEngine` with `StaticDecoder` (preallocated KV cache, in-place writes, two-matmul attention) against
the transformers step (`static=False`: the `DynamicCache` forward the engine used before), same model, prompts and seeds.

Usage: python benchmarks/bench_decode_step.py [--repeats 5 --threads 1]
Shapes of the tiny-cpu preset (Qwen2, hidden 64, 2 layers, 2 heads, vocabulary 512): a training batch (64 prompts x 8
samples, 64 new tokens, temperature 1) and an evaluation of the math held-out set (200 prompts x 16 samples, 128 new
tokens, temperature 0.6, top_p 0.95). A random model, made peaked (final norm scaled by 16: about 0.24 nats per
token at temperature 1; the trained tiny-cpu policy logs 0.11-0.14) and with an eos bias, stands in for the trained
policy (tens of tokens per response, as it writes). It measures the decode step and the top-p filter together. Each repeat runs both engines back to back. The script checks that
the static decoder repeats itself exactly, reports the share of rows where both engines sampled the same tokens (float
rounding of the attention can move a draw across a boundary), and prints the median of the per-repeat ratios of CPU
time (`time.process_time`, one thread; paired repeats, so that a shared machine's load affects both sides alike; wall
time on a busy machine mostly measures the neighbours).
Last line: `decode step speed-up: <x>x (training batch), <y>x (evaluation)`.
"""
import argparse, statistics, time
import torch
from staged_rl.rollout import HFEngine, SamplingParams, toy_lm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--eval-prompts', type=int, default=200)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, tok = toy_lm(hidden_size=64, num_hidden_layers=2, vocab_size=512, eos_bias=10.0)
    with torch.no_grad(): model.model.norm.weight.fill_(16.0)  # peaked, as a trained policy is (about 0.24 nats per token; tiny-cpu's trained policy: 0.11-0.14)
    prompts = [tok(f"Question {i}: what is {i} + {3 * i}? Answer:" + " think" * (i % 5))['input_ids'] for i in range(max(64, a.eval_prompts))]
    shapes = {'training batch': (prompts[:64], 8, SamplingParams(max_new_tokens=64, temperature=1.0, top_p=1.0)),
              'evaluation': (prompts[:a.eval_prompts], 16, SamplingParams(max_new_tokens=128, temperature=0.6, top_p=0.95))}
    engines = {'transformers step': HFEngine(model, tok, static=False, top_p_k=0), 'static decoder': HFEngine(model, tok, static=True)}
    ratios = {}
    for name, (ps, n, sp) in shapes.items():
        times, same = {k: [] for k in engines}, []
        for r in range(a.repeats + 1):  # the first repeat warms up
            outs = {}
            for k, e in engines.items():
                t0 = time.process_time(); outs[k] = e.generate(ps, n, SamplingParams(**{**vars(sp), 'seed': r})); dt = time.process_time() - t0
                if r: times[k].append(dt)
            a_, b_ = ([c.ids for g in o for c in g] for o in outs.values())
            same.append(sum(x == y for x, y in zip(a_, b_)) / len(a_))
            again = [c.ids for g in engines['static decoder'].generate(ps, n, SamplingParams(**{**vars(sp), 'seed': r})) for c in g] if r == 0 else b_
            if again != b_: raise SystemExit(f"{name}: the static decoder gave other tokens on the same call")
        toks = sum(len(c.ids) for g in outs['static decoder'] for c in g)
        ratios[name] = statistics.median(x / y for x, y in zip(times['transformers step'], times['static decoder']))
        print(f"[{name}] {len(ps)} prompts x n={n}, {sp.max_new_tokens} new tokens, {toks} tokens: "
              + ', '.join(f"{k} {statistics.median(v):.2f} s" for k, v in times.items()) + f"; ratio {ratios[name]:.2f}x; identical rows {min(same):.2%} (the rest: float rounding of the attention moves a draw across a boundary)")
    print(f"decode step speed-up: {ratios['training batch']:.2f}x (training batch), {ratios['evaluation']:.2f}x (evaluation)")


if __name__ == '__main__':
    main()
