"""Rollout speed: `HFEngine.generate` vs plain `model.generate`, same model, prompts, n and max_new_tokens.

Usage: python benchmarks/bench_rollout.py [--prompts 16 --n 8 --max-new-tokens 64 --repeats 5 --threads 1]
Scenarios: a random toy model that rarely stops; the same with an eos bias so lengths spread out, as a trained
model's do; and a small batch where per-step overhead dominates. Each repeat runs every generator back to back
(sampling at temperature 1, top_p 1); the script prints the median tokens/s of each and the median of the
per-repeat ratios to `model.generate`, so that a ratio compares runs made under the same machine load. Tokens are
counted up to and including the first eos of each row.
"""
import argparse, statistics, time
import torch
from staged_rl.rollout import HFEngine, SamplingParams, toy_lm


def count_hf_generate(out, prompt_len, eos):
    "Generated tokens per row of `model.generate` output, up to and including the first eos."
    comp = out[:, prompt_len:]
    hit = comp == eos
    first = torch.where(hit.any(1), hit.float().argmax(1) + 1, torch.full((comp.shape[0],), comp.shape[1]))
    return int(first.sum())


def run_generate(model, tok, prompts, n, T, seed):
    enc = tok(prompts, padding=True, padding_side='left', return_tensors='pt')
    torch.manual_seed(seed)
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=T,
                             num_return_sequences=n, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        dt = time.perf_counter() - t0
    return count_hf_generate(out, enc['input_ids'].shape[1], tok.eos_token_id), dt


def run_engine(engine, prompts, n, T, seed):
    t0 = time.perf_counter()
    res = engine.generate(prompts, n, SamplingParams(max_new_tokens=T, seed=seed))
    dt = time.perf_counter() - t0
    return sum(len(c.ids) for g in res for c in g), dt


def scenario(name, eos_bias, args, n_prompts=None, n=None):
    args = argparse.Namespace(**{**vars(args), 'prompts': n_prompts or args.prompts, 'n': n or args.n})
    model, tok = toy_lm(eos_bias=eos_bias, hidden_size=args.hidden, num_hidden_layers=args.layers)
    prompts = [f"Question {i}: what is {i} + {3 * i}? Answer:" + " think" * (i % 4) for i in range(args.prompts)]
    runners = {'model.generate': lambda s: run_generate(model, tok, prompts, args.n, args.max_new_tokens, s),
               'HFEngine(drop_frac=None)': lambda s: run_engine(HFEngine(model, tok, drop_frac=None), prompts, args.n, args.max_new_tokens, s),
               'HFEngine(drop_frac=0.25)': lambda s: run_engine(HFEngine(model, tok, drop_frac=0.25), prompts, args.n, args.max_new_tokens, s),
               'HFEngine(drop_frac=0.0)': lambda s: run_engine(HFEngine(model, tok, drop_frac=0.0), prompts, args.n, args.max_new_tokens, s)}
    for f in runners.values(): f(0)  # warm-up
    rates = {k: [] for k in runners}
    toks = {k: [] for k in runners}
    for r in range(args.repeats):
        for k, f in runners.items():
            ntok, dt = f(r + 1)
            rates[k].append(ntok / dt); toks[k].append(ntok)
    print(f"\n[{name}] {args.prompts} prompts x n={args.n}, max_new_tokens={args.max_new_tokens}, "
          f"hidden={args.hidden}, layers={args.layers}, eos_bias={eos_bias}")
    for k in runners:
        med = statistics.median(rates[k])
        ratio = statistics.median(a / b for a, b in zip(rates[k], rates['model.generate']))  # paired per repeat
        print(f"  {k:26s} {med:9.0f} tok/s  (tokens/call {statistics.mean(toks[k]):6.0f})  ratio vs generate {ratio:5.2f}x")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--prompts', type=int, default=16)
    p.add_argument('--n', type=int, default=8)
    p.add_argument('--max-new-tokens', type=int, default=64)
    p.add_argument('--hidden', type=int, default=64)
    p.add_argument('--layers', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: torch default)')
    args = p.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    scenario('random toy model (rarely stops)', 0.0, args)
    scenario('toy model with eos bias (lengths spread out)', 3.0, args)
    scenario('eos bias, small batch (per-step overhead dominates)', 3.0, args, n_prompts=4, n=4)


if __name__ == '__main__':
    main()
