"""Packed vs padded micro-batches: time of one `policy_update` on a mixed-length batch, on a CPU.

The smoke ladder's weakest model (`tiny:small`: Qwen2, hidden 64, 2 layers), `--prompts` tiny-math prompts x 8
samples whose response lengths follow the GPU rehearsal's mix (`benchmarks/gpu_rehearsal.py --length-mix`: 20% at
the limit, the rest uniform on [1, 3/4 limit], mean half the limit), and the same batch at full length as a control.
Each arm builds the trainer's micro-batches (`make_micro_batches`, token budget `--budget`) in one layout and runs one
update (forward, backward, optimizer step; no reference); the arms alternate, `--reps` times each, and the medians
are compared, in wall time and in the process's CPU time (one torch thread: CPU time is what the update costs, and
it is far less disturbed than wall time when other jobs share the cores). On a shared machine, compare only the
ratios printed by one run.

    python benchmarks/bench_packing.py [--limit 256] [--reps 7]
"""
import argparse, statistics, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_rehearsal import MIX, draw_lengths, synthetic_groups

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--limit', type=int, default=256, help='response length limit (tokens)')
    ap.add_argument('--prompts', type=int, default=4, help='prompts, each with 8 samples')
    ap.add_argument('--budget', type=int, default=4096, help='grpo.max_tokens_per_micro_batch')
    ap.add_argument('--reps', type=int, default=7, help='updates per arm (alternating)')
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    from dataclasses import replace
    from staged_rl.config import load_config
    from staged_rl.data import load_problems, prompt_ids
    from staged_rl.grpo import group_advantages
    import staged_rl.trainer as trainer
    torch.set_num_threads(1)
    cfg = load_config('smoke', ['grpo.kl_coef=0', 'grpo.lr=1e-9', 'grpo.n_samples=8', f'grpo.max_tokens_per_micro_batch={a.budget}', 'grpo.micro_batch=64'])
    model, tok = trainer.load_policy(cfg.model.policy, cfg)
    vocab, eos = model.config.vocab_size, tok.eos_token_id
    probs = load_problems('tiny:math', cfg=cfg)[:a.prompts]
    opt, sched = trainer.make_optimizer(model, cfg)
    n, G = cfg.grpo.n_samples, a.prompts
    print(f"model {cfg.model.policy} ({sum(p.numel() for p in model.parameters()):,} parameters), {G} prompts x {n} samples, limit {a.limit}, "
          f"budget {a.budget} tokens per micro-batch; mix: {MIX}; shared machine, one thread")
    for case in ('mix', 'full'):
        lengths, cut = draw_lengths(a.limit, G * n, a.seed) if case == 'mix' else ([a.limit] * (G * n), [False] * (G * n))
        groups = [gr for i, p in enumerate(prompt_ids(probs, tok, cfg.data))
                  for gr in synthetic_groups(p, 1, n, lengths[i * n:(i + 1) * n], cut[i * n:(i + 1) * n], vocab, eos, a.seed + i)]
        adv = group_advantages(torch.rand(G * n, generator=torch.Generator().manual_seed(a.seed)), n)
        arms = {'padded': (replace(cfg.grpo, micro_batch_layout='padded'), False), 'packed': (cfg.grpo, False), 'shared prompts': (cfg.grpo, True)}
        times, cpu = {k: [] for k in arms}, {k: [] for k in arms}
        for _ in range(a.reps):
            for name, (g, share) in arms.items():
                mbs = trainer.make_micro_batches(groups, adv, g, tok.pad_token_id, 'cpu', False, share)
                t0, c0 = time.perf_counter(), time.process_time()
                trainer.policy_update(model, None, opt, sched, mbs, replace(cfg, grpo=g), entropy_coef=0.001)
                times[name].append(time.perf_counter() - t0); cpu[name].append(time.process_time() - c0)
        tokens = sum(len(c.prompt_ids) + len(c.ids) for gr in groups for c in gr)
        padded_tokens = sum(mb['input_ids'].numel() for mb in trainer.make_micro_batches(groups, adv, arms['padded'][0], tok.pad_token_id, 'cpu', False, False))
        med, cmed = ({k: statistics.median(v) for k, v in d.items()} for d in (times, cpu))
        print(f"{case}: mean response {sum(lengths) / len(lengths):.0f} tokens, {sum(cut)} cut; {tokens:,} real tokens, "
              f"{padded_tokens:,} in the padded micro-batches")
        for k, v in med.items():
            print(f"  {k:<15} wall median {v:.3f} s (min {min(times[k]):.3f}), CPU median {cmed[k]:.3f} s over {a.reps}; "
                  f"padded / {k}: wall {med['padded'] / v:.2f}x, CPU {cmed['padded'] / cmed[k]:.2f}x")

if __name__ == '__main__':
    main()
