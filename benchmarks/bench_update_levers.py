"""The update's remaining levers on a CPU, each against today's update in the same command: what would it give?

The reference pass and the policy update are 44-49% of a training run of the published tiny-cpu reproduction
(`benchmarks/bench_reproduce_plan.py`). This script times `staged_rl.trainer.policy_update` (the reference pass, then
forward + backward + optimizer step) on one real tiny-cpu batch: the tiny ladder's `small` policy samples 8 responses
to each of 64 tiny math problems (temperature 1, at most 64 new tokens: stage 1's setting), micro-batches as the
trainer makes them (`make_micro_batches`, 64 responses each, prompts shared), one torch thread (as every run of
`staged-rl reproduce` has on a CPU). Rewards are fixed random 0/1 per response: they move the numbers, not the time.

Variants, each on its own copy of the same policy, reference and batch:
- `today`: the tiny-cpu preset as published (fp32, one response pass per micro-batch);
- `split`: `grpo.response_parts=4` (responses in up to four passes of similar length; `split_by_length`);
- `bf16 reference`: the reference model's weights in bf16 (what `model.dtype=bfloat16` gives the reference on a GPU);
- `bf16 autocast`: the reference and policy passes under `torch.autocast('cpu', torch.bfloat16)` (fp32 master weights);
- `compile`: `torch.compile(model.model, dynamic=True)` for policy and reference; its compile time is printed apart
  (every worker process pays it once per run it starts).

The variants run interleaved, `--repeats` rounds (a shared machine's load hits them alike); the first round is a
warm-up and is dropped. Seconds are the trainer's own `time/ref` and `time/update`; ratios are today's median
(reference + update) over the variant's. The bf16 variants are only fast on CPUs with bf16 matrix instructions
(`avx512_bf16` or AMX; the script prints whether this one has them).

Usage: python benchmarks/bench_update_levers.py [--repeats 6] [--prompts 64] [--no-compile]
Last line: `update levers (reference + update vs today): split <x>x, bf16 reference <x>x, bf16 autocast <x>x, compile <x>x`.
"""
import argparse, copy, contextlib, random, statistics, sys, time, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's staged_rl, not another installed copy
warnings.filterwarnings('ignore')
import torch


def cpu_bf16_flags() -> str:
    "The CPU's bf16 matrix instruction flags (empty where it has none)."
    try: flags = next(l for l in open('/proc/cpuinfo') if l.startswith('flags')).split()
    except (OSError, StopIteration): return 'unknown'
    return ', '.join(f for f in flags if f in ('avx512_bf16', 'amx_bf16', 'amx_tile')) or 'none'


def make_batch(cfg, policy, tok, n_prompts: int):
    "One step's micro-batches, as the trainer builds them from the policy's own samples."
    from staged_rl.data import load_problems
    from staged_rl.grpo import group_advantages
    from staged_rl.rollout import HFEngine, SamplingParams
    from staged_rl.trainer import make_micro_batches, rollout
    probs = load_problems('tiny:math', cfg=cfg)[:n_prompts]
    n = cfg.grpo.n_samples
    comps = rollout(HFEngine(policy, tok), probs, tok, cfg, n, SamplingParams.of(cfg.sampling, seed=0))
    rng = random.Random(0)
    adv = group_advantages(torch.tensor([float(rng.random() < 0.4) for _ in range(len(probs) * n)]), n, cfg.grpo.scale_advantages)
    return make_micro_batches(comps, adv, cfg.grpo, tok.pad_token_id, 'cpu')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=6); ap.add_argument('--prompts', type=int, default=64)
    ap.add_argument('--no-compile', action='store_true', help='leave out the torch.compile variant')
    a = ap.parse_args()
    torch.set_num_threads(1)
    from staged_rl.config import load_config
    from staged_rl.trainer import load_policy, make_optimizer, policy_update
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error(); hf_logging.disable_progress_bar()
    base = load_config('tiny-cpu')
    policy, tok = load_policy('tiny:small', base)
    ref0 = copy.deepcopy(policy).eval().requires_grad_(False)
    mbs = make_batch(base, policy.eval(), tok, a.prompts)
    real = sum(float(mb['completion_mask'].sum()) for mb in mbs); padded = sum(mb['completion_ids'].numel() for mb in mbs)
    print(f"torch {torch.__version__}, 1 thread, CPU bf16 instructions: {cpu_bf16_flags()}")
    print(f"batch: {a.prompts} prompts x {base.grpo.n_samples} samples, {len(mbs)} micro-batches, {real:.0f} response tokens "
          f"({real / padded:.0%} of the one-pass width)")

    def variant(name, overrides=(), ref_dtype=None, autocast=False, compiled=False):
        cfg = load_config('tiny-cpu', list(overrides))
        m, r = copy.deepcopy(policy).train(), copy.deepcopy(ref0)
        if ref_dtype is not None: r = r.to(ref_dtype)
        extra = ''
        if compiled:
            m.model, r.model = torch.compile(m.model, dynamic=True), torch.compile(r.model, dynamic=True)
        opt, sched = make_optimizer(m, cfg)
        ctx = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
        def step():
            with ctx(): s = policy_update(m, r, opt, sched, [dict(mb) for mb in mbs], cfg, entropy_coef=cfg.grpo.entropy_coef)
            return s['time/ref'], s['time/update']
        if compiled:
            t = time.perf_counter(); step(); extra = f" (first call, compiling: {time.perf_counter() - t:.0f} s)"
        return {'name': name, 'step': step, 'times': [], 'extra': extra}

    vs = [variant('today'), variant('split', ['grpo.response_parts=4']), variant('bf16 reference', ref_dtype=torch.bfloat16),
          variant('bf16 autocast', autocast=True)]
    if not a.no_compile: vs.append(variant('compile', compiled=True))
    for r in range(a.repeats + 1):
        for v in vs:
            t = v['step']()
            if r: v['times'].append(t)
    med = {v['name']: (statistics.median(t[0] for t in v['times']), statistics.median(t[1] for t in v['times'])) for v in vs}
    today = sum(med['today'])
    print(f"{'variant':16s} {'ref s':>7s} {'update s':>9s} {'ref+update':>11s} {'vs today':>9s}   ({a.repeats} rounds, medians)")
    for v in vs:
        r, u = med[v['name']]
        print(f"{v['name']:16s} {r:7.3f} {u:9.3f} {r + u:11.3f} {today / (r + u):8.2f}x{v['extra']}")
    ratio = lambda k: f"{today / sum(med[k]):.2f}x" if k in med else 'not run'
    print(f"update levers (reference + update vs today): split {ratio('split')}, bf16 reference {ratio('bf16 reference')}, "
          f"bf16 autocast {ratio('bf16 autocast')}, compile {ratio('compile')}")


if __name__ == '__main__': main()
