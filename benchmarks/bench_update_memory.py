"""Peak memory of the GRPO update's log-probs + entropy + loss + backward for ONE long response, on CPU.

Issue #11: the loss used to materialise full-vocabulary fp32 logits for the whole micro-batch, then softmax,
log-softmax and entropy over them: about 5x one (length x vocab) fp32 tensor, 47 GiB for a 16,384-token response
at R1-Distill-Qwen's vocabulary of 151,936. The trainer now computes per-token log-probs and entropies in chunks
(`staged_rl.grpo.token_stats_head`). This script measures both in fresh processes, with a small hidden size so
that the vocabulary dominates, as the growth of the process's peak resident memory (VmHWM) over the memory held
before the computation starts:

- `chunked`: the trainer's path (`staged_rl.trainer.mb_logprobs` + `grpo_loss` + backward) at the full length;
- `full-logits`: the textbook path (full logits, log_softmax, entropy) at a shorter length that fits in RAM, and
  linearly extrapolated to the full length (its memory is linear in the length).

    python benchmarks/bench_update_memory.py [--tokens 16384] [--vocab 151936] [--hidden 64]

Last line: `peak_gib=<float>`, the chunked path at the full length.
"""
import argparse, json, os, subprocess, sys

def _rss_kib(field):
    for line in open('/proc/self/status'):
        if line.startswith(field): return int(line.split()[1])
    raise RuntimeError(field)

def _child(variant, tokens, vocab, hidden, chunk):
    import torch
    from transformers import Qwen2Config, AutoModelForCausalLM
    from staged_rl.config import GRPOConfig
    from staged_rl.grpo import grpo_loss
    from staged_rl.trainer import micro_batches, mb_logprobs
    from staged_rl.rollout import Completion
    torch.manual_seed(0); torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '2')))
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=2 * hidden, max_position_embeddings=tokens + 128, tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(cfg).train()
    comp = Completion(list(range(1, 65)), torch.randint(0, vocab, (tokens,)).tolist(), '', 'stop')
    mb = micro_batches([comp], torch.tensor([1.0]), GRPOConfig(), 0, 'cpu')[0]
    base = _rss_kib('VmRSS')
    try: open('/proc/self/clear_refs', 'w').write('5')  # reset the high-water mark to the current RSS
    except OSError: pass
    if variant == 'chunked':
        lp, ent = mb_logprobs(model, mb, with_entropy=True, chunk_tokens=chunk)
    else:  # the textbook computation the trainer used before
        K = mb['completion_ids'].shape[1]
        am = mb['attention_mask']
        logits = model(input_ids=mb['input_ids'], attention_mask=am, position_ids=(am.cumsum(-1) - 1).clamp(min=0), logits_to_keep=K + 1).logits
        logits = logits[:, :-1].float()
        lse = logits.logsumexp(-1)
        lp = logits.gather(-1, mb['completion_ids'][..., None]).squeeze(-1) - lse
        ent = lse - (logits.softmax(-1) * logits).sum(-1)
    loss, _ = grpo_loss(lp, None, None, mb['advantages'], mb['mask'], kl_coef=0.0, entropies=ent, entropy_coef=0.001)
    loss.backward()
    peak = _rss_kib('VmHWM')
    print(json.dumps({'variant': variant, 'tokens': tokens, 'peak_gib': (peak - base) / 2**20}))

def measure(variant, tokens, vocab, hidden, chunk) -> float:
    out = subprocess.run([sys.executable, __file__, '--child', variant, '--tokens', str(tokens), '--vocab', str(vocab),
                          '--hidden', str(hidden), '--chunk', str(chunk)], capture_output=True, text=True)
    if out.returncode: raise SystemExit(f"{variant} at {tokens} tokens failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])['peak_gib']

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--tokens', type=int, default=16384); ap.add_argument('--vocab', type=int, default=151936)
    ap.add_argument('--hidden', type=int, default=64); ap.add_argument('--chunk', type=int, default=512)
    ap.add_argument('--baseline-tokens', type=int, default=1024, help='length at which the full-logits path is measured')
    ap.add_argument('--child', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child: _child(a.child, a.tokens, a.vocab, a.hidden, a.chunk); sys.exit(0)
    print(f"one response, vocabulary {a.vocab}, hidden {a.hidden}; log-probs + entropy + loss + backward; peak RSS growth")
    fl = measure('full-logits', a.baseline_tokens, a.vocab, a.hidden, a.chunk)
    one = a.baseline_tokens * a.vocab * 4 / 2**30
    print(f"full-logits at {a.baseline_tokens} tokens: {fl:.2f} GiB = {fl / one:.1f}x one fp32 (length x vocab) tensor; "
          f"extrapolated to {a.tokens} tokens: {fl * a.tokens / a.baseline_tokens:.1f} GiB")
    ch_small = measure('chunked', a.baseline_tokens, a.vocab, a.hidden, a.chunk)
    print(f"chunked     at {a.baseline_tokens} tokens: {ch_small:.2f} GiB")
    ch = measure('chunked', a.tokens, a.vocab, a.hidden, a.chunk)
    print(f"chunked     at {a.tokens} tokens: {ch:.2f} GiB (chunks of {a.chunk} tokens); "
          f"{fl * a.tokens / a.baseline_tokens / ch:.0f}x less than the extrapolated full-logits path")
    print(f"peak_gib={ch:.3f}")
