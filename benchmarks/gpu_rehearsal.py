"""GPU rehearsal of the paper's training setting: one step per stage of the real `paper-1.5b` preset at its lengths.

A randomly initialised model with the architecture of DeepSeek-R1-Distill-Qwen-1.5B (written from its published
config, no download) and a local word-level tokenizer of the same vocabulary size (151,936) go through
`staged_rl.trainer.train` with the `paper-1.5b` preset: gradient checkpointing, bf16 autocast over fp32 master
weights, a bf16 reference for the KL, the token-budget micro-batches, the chunked LM-head loss, stage 1 at 16,384
tokens and stage 2 at 24,576 tokens with truncated responses masked and no entropy term, and an evaluation at
the start, at each stage end and at the end. What it prints per stage: seconds split into generation / scoring /
reference / update / sync, peak GPU memory, update tokens per second, the update's MFU (`perf/mfu/update`), and
the projected time of a full 128 x 16 step.

What differs from a real run, and why:
- **Responses are extended to the stage's limit.** A random model rarely stops, so every response runs to the
  limit: the worst case for memory and time of the update. Generating 16k-24k tokens one by one is minutes per
  stage with the transformers engine (vLLM is not installed on the lent GPU machine, and a call there is limited
  to a few minutes), so the engine samples `--gen-tokens` tokens for real and the rest of each response is random
  token ids up to the limit, ending in eos (so that stage 2's masking of truncated responses keeps them in the
  loss). Generation time at full length is therefore projected from the measured per-token rate, not measured.
- **No checkpoints** unless `--checkpoints`: at 1.5B a stage-end checkpoint (fp32 weights and AdamW state) is
  about 21 GB of disk, which a lent GPU machine can ill afford; the final policy is still saved.
- **Fewer prompts** (`--prompts`, default 1 group of 16 samples) than the paper's 128 per step: the projection
  scales the measured reference and update times to 256 responses per GPU (128 x 16 over 8 GPUs).

With `--length-mix` it then times the update alone (reference log-probs, then forward + backward + optimizer step, as
`train` runs them) at each stage's limit on two batches of `--prompts` x 16 responses: every response at the limit
(the case above), and a realistic mix drawn with `--mix-seed`: 20% of the responses cut at the limit (finish
'length', masked in stage 2), the others of a length uniform on [1, 3/4 of the limit] ending in eos, so the mean
is half the limit. Real batches look like this (DeepScaleR reports mean lengths far below the limit); a padded
batch of them is mostly padding, the trainer's packed micro-batches have none. It reports the update's tokens per
second (prompt + response tokens the forward runs over) and its MFU: model FLOPs (the formula is printed; see
`staged_rl.trainer.update_flops`) over the matmul rate the script measures on this device in the update's dtype
(bf16 on a GPU, fp32 on a CPU). It also checks once that the packed and the padded layouts give the same log-probs
on this device (on a GPU the packed one runs PyTorch's varlen flash kernel).

    python benchmarks/gpu_rehearsal.py            # on a GPU: the 1.5B architecture at the paper's lengths
    python benchmarks/gpu_rehearsal.py --tiny     # on a CPU: a tiny model and short lengths, the same code path
    python benchmarks/gpu_rehearsal.py --tiny --length-mix   # ... and the update alone on a length mix and at full length

Writes `rehearsal.json` (and the run folder) under `--out`.
"""
import argparse, json, os, platform, sys, time
from pathlib import Path

import torch

R1_DISTILL_1P5B = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                       num_key_value_heads=2, max_position_embeddings=131072, rope_theta=10000.0, rms_norm_eps=1e-6,
                       tie_word_embeddings=False, hidden_act='silu')  # deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B config.json
TINY = dict(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=1024, rope_theta=10000.0, rms_norm_eps=1e-6,
            tie_word_embeddings=False, hidden_act='silu')

def word_tokenizer(vocab_size:int):
    "A local byte-level BPE tokenizer with `vocab_size` ids (the 256 byte symbols, then `t<i>` fillers, eos and pad last)."
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({f't{i}': i for i in range(len(alphabet), vocab_size - 2)})
    vocab.update({'<|pad|>': vocab_size - 2, '<|end|>': vocab_size - 1})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token='<|end|>', pad_token='<|pad|>')

def build_model(folder:Path, arch:dict, device:str):
    "Random weights of the given Qwen2 architecture, saved with the tokenizer (bf16 on GPUs) to `folder`."
    from transformers import Qwen2Config, AutoModelForCausalLM
    tok = word_tokenizer(arch['vocab_size'])
    cfg = Qwen2Config(**arch, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device): model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16 if device == 'cuda' else torch.float32)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder); tok.save_pretrained(folder)
    n = sum(p.numel() for p in model.parameters())
    del model
    if device == 'cuda': torch.cuda.empty_cache()
    return n

MIX = "20% at the limit (finish 'length'), 80% uniform on [1, 3/4 limit] ending in eos: mean 1/2 of the limit"

def draw_lengths(limit:int, n:int, seed:int) -> tuple[list[int], list[bool]]:
    "`n` response lengths of the `MIX` distribution, and which are cut at the limit."
    import numpy as np
    rng = np.random.default_rng(seed)
    cut = rng.random(n) < 0.2
    return [limit if c else int(x) for c, x in zip(cut, rng.integers(1, 3 * limit // 4 + 1, n))], [bool(c) for c in cut]

def synthetic_groups(prompt:list[int], groups:int, n:int, lengths:list[int], cut:list[bool], vocab:int, eos:int, seed:int):
    "`groups` x `n` completions of one prompt with the given response lengths (random ids; eos last unless cut)."
    from staged_rl.rollout import Completion
    g = torch.Generator().manual_seed(seed)
    cs = [Completion(list(prompt), torch.randint(0, vocab - 2, (L - (not c),), generator=g).tolist() + ([] if c else [eos]), '', 'length' if c else 'stop')
          for L, c in zip(lengths, cut)]
    return [cs[i * n:(i + 1) * n] for i in range(groups)]

def update_benchmark(cfg, model_dir:Path, limits, prompt:list[int], seed:int, vocab:int, eos:int) -> dict:
    "Time `policy_update` (reference included) on a full-length and a mixed-length batch at each stage's limit."
    import staged_rl.trainer as trainer
    from staged_rl.grpo import group_advantages
    acc = trainer.setup_accelerator(cfg)
    dev = acc.device
    policy, tok = trainer.load_policy(str(model_dir), cfg, dev)
    ref = trainer.load_policy(str(model_dir), cfg, dev, cfg.model.dtype)[0].eval().requires_grad_(False)
    if cfg.model.gradient_checkpointing: trainer.enable_checkpointing(policy)
    optimizer, scheduler = trainer.make_optimizer(policy, cfg)
    policy, optimizer = acc.prepare(policy, optimizer)
    share = acc.num_processes == 1 and not cfg.model.gradient_checkpointing  # `train`'s rule
    peak = trainer.matmul_peak_flops(dev, trainer.compute_dtype(cfg, dev))
    n, G = cfg.grpo.n_samples, cfg.grpo.batch_prompts
    out = {'mix': MIX, 'seed': seed, 'formula': trainer.FLOPS_FORMULA, 'peak_flops': peak, 'dtype': str(trainer.compute_dtype(cfg, dev)), 'cases': []}
    for stage, limit in zip(cfg.stages, limits):
        for case in ('full', 'mix'):
            lengths, cut = ([limit] * (G * n), [False] * (G * n)) if case == 'full' else draw_lengths(limit, G * n, seed)
            groups = synthetic_groups(prompt, G, n, lengths, cut, vocab, eos, seed)
            rewards = torch.rand(G * n, generator=torch.Generator().manual_seed(seed))
            adv = group_advantages(rewards, n, cfg.grpo.scale_advantages)
            mbs = trainer.make_micro_batches(groups, adv, cfg.grpo, tok.pad_token_id, dev, stage.mask_truncated, share)
            ent = cfg.grpo.entropy_coef if stage.entropy_coef is None else stage.entropy_coef
            if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
            st = trainer.policy_update(policy, ref, optimizer, scheduler, mbs, cfg, ent, acc)
            row = {'stage': stage.name, 'limit': limit, 'case': case, 'responses': G * n, 'mean_len': sum(lengths) / len(lengths),
                   'cut': sum(cut), 'micro_batches': len(mbs), 'layout': cfg.grpo.micro_batch_layout if 'n' not in mbs[0] else 'shared',
                   'tokens': sum(L for mb in mbs for L in trainer.mb_seq_lens(mb)), 'loss_tokens': st['tokens'],
                   'ref_s': st['time/ref'], 'update_s': st['time/update'], 'update_tokens_per_s': st['perf/update_tokens_per_s_per_gpu'],
                   'mfu': st['perf/mfu/update'], 'peak_gib': torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == 'cuda' else None}
            out['cases'].append(row)
            print(f"update {row['stage']} limit={limit} {case}: {row['responses']} responses (mean {row['mean_len']:.0f} tokens, {row['cut']} cut), "
                  f"{row['tokens']:,} tokens in {row['micro_batches']} {row['layout']} micro-batches; ref {row['ref_s']:.2f} s, update {row['update_s']:.2f} s, "
                  f"{row['update_tokens_per_s']:,.0f} tokens/s, mfu={100 * row['mfu']:.1f}%", flush=True)
            if case == 'mix':  # the same log-probs from the packed and the padded layout on this device: the 4 shortest responses
                from dataclasses import replace
                g = replace(cfg.grpo, micro_batch=4, max_tokens_per_micro_batch=None)
                padded = trainer.make_micro_batches(groups, adv, replace(g, micro_batch_layout='padded'), tok.pad_token_id, dev, False, False)[0]
                packed = trainer.make_micro_batches(groups, adv, replace(g, micro_batch_layout='packed'), tok.pad_token_id, dev, False, False)[0]
                with torch.no_grad(), acc.autocast():
                    a = trainer.mb_logprobs(policy, padded, temperature=cfg.sampling.temperature)[0]
                    b = trainer.mb_logprobs(policy, packed, temperature=cfg.sampling.temperature)[0]
                key = lambda mb: [tuple(r[m.bool()].tolist()) for r, m in zip(mb['completion_ids'], mb['completion_mask'])]
                ia = {k: i for i, k in enumerate(key(padded))}
                order = [ia[k] for k in key(packed)]
                m = packed['mask'].bool()
                d = (b - a[order][:, :b.shape[1]])[m].abs().max().item()
                out.setdefault('packed_vs_padded_max_abs_diff', {})[stage.name] = d
                print(f"  packed vs padded log-probs of the 4 shortest responses ({int(m.sum())} tokens): max |diff| = {d:.2e}", flush=True)
    print("MFU formula: " + trainer.FLOPS_FORMULA)
    print(f"measured matmul rate of this device ({out['dtype']}): {peak / 1e12:.3f} TFLOP/s")
    return out

class ExtendToLimit:
    "Wraps the trainer's engine: samples `gen_tokens` for real, then random ids up to the stage's limit, ending in eos."
    def __init__(self, inner, gen_tokens:int, vocab:int, eos:int):
        self.inner, self.gen_tokens, self.vocab, self.eos, self.log = inner, gen_tokens, vocab, eos, []
    def __getattr__(self, name): return getattr(self.inner, name)
    def generate(self, prompts, n=1, sampling=None):
        from dataclasses import replace
        limit = sampling.max_new_tokens
        if limit <= self.gen_tokens: return self.inner.generate(prompts, n, sampling)  # evaluation: real samples
        t0 = time.perf_counter()
        out = self.inner.generate(prompts, n, replace(sampling, max_new_tokens=self.gen_tokens))
        dt = time.perf_counter() - t0
        g = torch.Generator().manual_seed(sampling.seed or 0)
        real = 0
        for grp in out:
            for c in grp:
                real += len(c.ids)
                if c.ids and c.ids[-1] == self.eos: c.ids = c.ids[:-1]
                c.ids = c.ids + torch.randint(0, self.vocab - 2, (limit - 1 - len(c.ids),), generator=g).tolist() + [self.eos]
                c.finish_reason = 'stop'
                if c.logprobs is not None: c.logprobs = None
        self.log.append({'limit': limit, 'sampled_tokens': real, 'rows': sum(len(x) for x in out), 'seconds': dt})
        return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--tiny', action='store_true', help='tiny model and lengths on the CPU (the test suite runs this)')
    ap.add_argument('--prompts', type=int, default=1, help='prompts per step (paper: 128), each with 16 samples')
    ap.add_argument('--gen-tokens', type=int, default=None, help='tokens sampled for real per response (default: 512 GPU, 8 tiny)')
    ap.add_argument('--eval-tokens', type=int, default=None, help='max new tokens of the evaluation (default: 256 GPU, 8 tiny)')
    ap.add_argument('--micro-tokens', type=int, default=None, help="grpo.max_tokens_per_micro_batch (default: the preset's 32,768 GPU, 256 tiny)")
    ap.add_argument('--checkpoints', action='store_true', help='also write the stage-end checkpoints (fp32 policy + AdamW: ~21 GB each at 1.5B)')
    ap.add_argument('--length-mix', action='store_true', help='then time the update alone on a length mix and at full length (tokens/s, MFU)')
    ap.add_argument('--mix-seed', type=int, default=0, help='seed of the length mix')
    ap.add_argument('--out', default=os.environ.get('OUT', 'runs/gpu_rehearsal'), help='output folder')
    a = ap.parse_args()
    from staged_rl.config import load_config, config_data
    from staged_rl.data import Problem, save_problems, level_path
    import staged_rl.trainer as trainer

    cuda = torch.cuda.is_available() and not a.tiny
    if not a.tiny and not cuda: sys.exit("gpu_rehearsal: no CUDA GPU here; run with --tiny on a CPU")
    arch = TINY if a.tiny else R1_DISTILL_1P5B
    lengths = (64, 96) if a.tiny else (16384, 24576)
    gen_tokens = a.gen_tokens or (8 if a.tiny else 512)
    eval_tokens = a.eval_tokens or (8 if a.tiny else 256)
    out = Path(a.out).resolve(); out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    n_params = build_model(out/'model', arch, 'cuda' if cuda else 'cpu')
    t_build = time.perf_counter() - t_start

    probs = [Problem(f'r{i}', 'math', f'What is {i} + {i + 1}? Put the final answer in \\boxed{{}}.', str(2 * i + 1)) for i in range(8)]
    for lv in (2, 3): save_problems(probs, level_path(out/'levels', lv, 'math'))
    save_problems(probs[:2], out/'eval_math.jsonl')
    data = config_data('paper-1.5b')
    data['model'].update(policy=str(out/'model'), engine='hf', device='cuda' if cuda else 'cpu')
    data['data'].update(levels_dir=str(out/'levels'))
    data['grpo'].update(batch_prompts=a.prompts)
    if a.tiny: data['grpo'].update(max_tokens_per_micro_batch=256)
    if a.micro_tokens: data['grpo'].update(max_tokens_per_micro_batch=a.micro_tokens)
    data['sampling']['max_new_tokens'] = lengths[0]
    for s, src, L in zip(data['stages'], ('level:2:math', 'level:3:math'), lengths):
        s.update(data=[{'source': src, 'weight': 1.0}], max_steps=1, plateau=None, max_new_tokens=L)
    data['eval'].update(sets=[{'name': 'math', 'source': str(out/'eval_math.jsonl'), 'k': 2}], every=0)
    data['eval'].setdefault('sampling', {})['max_new_tokens'] = eval_tokens
    data['rewards'].update(workers=2)
    data['output'].update(dir=str(out/'run'), save_every=0, keep_last=1)
    cfg = load_config(data)

    wrapped = {}
    make = trainer.make_engine
    def make_engine(*args, **kw):
        inner = make(*args, **kw)
        wrapped['engine'] = ExtendToLimit(inner, gen_tokens, arch['vocab_size'], arch['vocab_size'] - 1)
        return wrapped['engine']
    trainer.make_engine = make_engine
    if not a.checkpoints:  # a lent GPU machine has little disk and few minutes: the update is what this rehearses
        trainer.save_checkpoint = lambda *args, **kw: None
    if cuda: torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    rows = trainer.train(cfg, progress=False)
    t_train = time.perf_counter() - t0

    steps = [r for r in rows if 'reward' in r]
    evals = [r for r in rows if 'time/eval' in r]
    gens = wrapped['engine'].log
    dev = torch.cuda.get_device_name(0) if cuda else platform.processor() or 'cpu'
    report = {'device': dev, 'gpu_total_gib': torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
              'torch': torch.__version__, 'params': n_params, 'arch': 'R1-Distill-Qwen-1.5B (random weights)' if not a.tiny else 'tiny',
              'prompts': a.prompts, 'micro_batch_tokens': cfg.grpo.max_tokens_per_micro_batch, 'samples': cfg.grpo.n_samples, 'gen_tokens_sampled': gen_tokens, 'build_s': t_build, 'train_s': t_train,
              'eval_s': [r['time/eval'] for r in evals], 'stages': []}
    world, full = 8, 128 * 16
    print(f"device: {dev}; torch {torch.__version__}; model {report['arch']}, {n_params / 1e9:.2f}B params; built in {t_build:.0f} s; "
          f"micro-batch budget {cfg.grpo.max_tokens_per_micro_batch:,} tokens")
    print(f"{'stage':<7}{'tokens':>7}{'resp':>5}{'gen s':>8}{'score s':>8}{'ref s':>7}{'upd s':>7}{'sync s':>7}{'step s':>8}{'peak GiB':>9}{'upd tok/s':>10}{'MFU':>7}")
    for r, g in zip(steps, gens):
        rows_n = g['rows']
        tok_per_row = g['limit']
        upd_tokens = r['tokens']
        st = {'stage': r['stage'], 'limit': g['limit'], 'responses': rows_n, 'gen_s': r['time/gen'], 'sampled_tokens': g['sampled_tokens'],
              'score_s': r['time/score'], 'ref_s': r.get('time/ref', 0.0), 'update_s': r.get('time/update', 0.0), 'sync_s': r.get('time/sync', 0.0),
              'step_s': r['time/step'], 'peak_gib': r.get('perf/gpu_peak_gib'), 'update_tokens': upd_tokens,
              'update_tokens_per_s': upd_tokens / max(r.get('time/update', 0.0), 1e-9), 'mfu': r.get('perf/mfu/update')}
        # projection: 256 responses per GPU at this length; generation from the measured per-step rate of the HF engine
        per_gpu = full // world
        scale = per_gpu / rows_n
        gen_step_s = g['seconds'] / max(gen_tokens, 1)  # one decoding step for `rows_n` rows
        st['projected'] = {'responses_per_gpu': per_gpu, 'ref_s': st['ref_s'] * scale, 'update_s': st['update_s'] * scale,
                           'hf_generation_s_lower_bound': gen_step_s * tok_per_row * scale}
        report['stages'].append(st)
        print(f"{st['stage']:<7}{g['limit']:>7}{rows_n:>5}{st['gen_s']:>8.1f}{st['score_s']:>8.1f}{st['ref_s']:>7.1f}{st['update_s']:>7.1f}"
              f"{st['sync_s']:>7.2f}{st['step_s']:>8.1f}{(st['peak_gib'] or 0):>9.1f}{st['update_tokens_per_s']:>10.0f}{100 * (st['mfu'] or 0):>6.1f}%")
    for st in report['stages']:
        p = st['projected']
        print(f"projected full step ({full} responses on {world} GPUs, {p['responses_per_gpu']} per GPU) at {st['limit']} tokens: "
              f"reference {p['ref_s']:.0f} s + update {p['update_s']:.0f} s per GPU; generation with this HF engine >= "
              f"{p['hf_generation_s_lower_bound']:.0f} s (not measured at full length; vLLM is the engine meant for it)")
    print(f"evaluations: {', '.join(f'{x:.1f}' for x in report['eval_s'])} s ({len(probs[:2])} problems x 2 samples, {eval_tokens} tokens)")
    if a.length_mix:
        import gc
        from staged_rl.data import prompt_ids
        wrapped.clear(); gc.collect()  # the trained policy (held by the engine) leaves the GPU first
        if cuda: torch.cuda.empty_cache()
        prompt = prompt_ids(probs[:1], word_tokenizer(arch['vocab_size']), cfg.data)[0]
        report['length_mix'] = update_benchmark(cfg, out/'model', lengths, prompt, a.mix_seed, arch['vocab_size'], arch['vocab_size'] - 1)
    (out/'rehearsal.json').write_text(json.dumps(report, indent=1))
    print(f"rehearsal done in {time.perf_counter() - t_start:.0f} s; report: {out/'rehearsal.json'}")

if __name__ == '__main__':
    main()
