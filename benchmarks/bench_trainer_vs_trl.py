"""Seconds per GRPO step: staged_rl.trainer vs TRL's GRPOTrainer on the same workload, in one process.

Workload (both trainers): a tiny Qwen2 policy, 8 prompts x 8 samples per step, at most 64 new tokens at
temperature 1, a frozen reference model (KL coefficient 0.001), AdamW lr 1e-5, one optimizer step per batch, the
whole batch of 64 responses in one micro-batch, the same cheap Python reward (share of digits in the response, so
that verifier time does not dilute the comparison), CPU, float32. TRL runs with `use_cpu=True, bf16=False`,
activation checkpointing off, no logging or saving.

Two policies (`--model`): `small` (default) is the tiny ladder's weakest model (`tiny:small` of the tiny-cpu
preset, hidden 64, 2 layers, a 512-token vocabulary) on tiny math prompts in its chat template: its responses
stop at different lengths, as a policy's do. `toy` is a random Qwen2 (hidden 64, 2 layers, vocab 300,
`staged_rl.rollout.toy_lm`) on short plain prompts: it almost never stops, so every response runs to 64 tokens.

The two trainers are interleaved (rounds of `--steps` steps each, a fresh trainer each time) because the machine
is shared and noisy; the first step of every run is dropped (warm-up), and the medians over all remaining steps
are compared. Our trainer runs with its defaults otherwise (`grpo.response_parts` 4: the update runs the responses of the batch in up
to four passes of similar length, `split_by_length` in nbs/07_trainer.ipynb; `--response-parts 1` is one pass padded
to the longest response, as TRL pads its completions).

Usage: python benchmarks/bench_trainer_vs_trl.py [--model small|toy] [--rounds 4] [--steps 6] [--threads N] [--response-parts 4]
"""
import argparse, json, os, statistics, sys, tempfile, time, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's staged_rl, not another installed copy
warnings.filterwarnings('ignore')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import torch
from transformers.utils import logging as hf_logging
hf_logging.set_verbosity_error(); hf_logging.disable_progress_bar()

N_PROMPTS, N_SAMPLES, NEW_TOKENS, LR, BETA = 8, 8, 64, 1e-5, 0.001
PROMPTS = [f"Question: what is {a}+{b}? Put the answer in \\boxed{{}}." for a, b in
           [(2, 3), (7, 5), (11, 4), (9, 9), (13, 8), (6, 1), (21, 2), (4, 17), (3, 3), (8, 12), (5, 14), (10, 10)]]

def digit_share(text: str) -> float:
    "The reward of both trainers: share of digits among the characters of the response."
    if isinstance(text, list): text = ''.join(m['content'] for m in text)  # TRL's conversational completions
    return sum(ch.isdigit() for ch in text) / max(1, len(text))

def make_model(kind: str, folder: Path):
    "A policy folder (weights + tokenizer) and the 8+ prompts of the workload, as (folder, problems, chat)."
    from staged_rl.data import Problem
    if kind == 'toy':
        from staged_rl.rollout import toy_lm
        model, tok = toy_lm(seed=0)
        model.save_pretrained(folder); tok.save_pretrained(folder)
        return folder, [Problem(f'q{i}', 'math', p, '0') for i, p in enumerate(PROMPTS)], False
    from staged_rl.config import load_config
    from staged_rl.data import load_problems
    from staged_rl.models import resolve_model
    cfg = load_config('tiny-cpu')
    return Path(resolve_model('tiny:small', cfg)), load_problems('tiny:math', cfg=cfg)[:40], True

def run_ours(model_dir: Path, problems, chat: bool, steps: int, work: Path, parts: int = 4) -> list[float]:
    "Seconds per step of `staged_rl.trainer.train` (its `time/step`, first step dropped)."
    from staged_rl.config import load_config
    from staged_rl.data import save_problems
    from staged_rl.trainer import train
    data = save_problems(problems, work/'prompts.jsonl')
    fmt = [] if chat else ['data.chat_template=false', 'data.math_template="{problem}"']
    cfg = load_config('smoke', [
        f'model.policy={model_dir}', f'output.dir={work}/ours', 'output.save_every=0', 'eval.sets=[]', *fmt,
        f'grpo.lr={LR}', f'grpo.n_samples={N_SAMPLES}', f'grpo.batch_prompts={N_PROMPTS}', f'grpo.micro_batch={N_PROMPTS * N_SAMPLES}',
        f'grpo.kl_coef={BETA}', 'grpo.entropy_coef=0.0', f'sampling.max_new_tokens={NEW_TOKENS}', f'grpo.response_parts={parts}',
        f'stages=[{{name: s, data: [{{source: {data}}}], max_steps: {steps}}}]'])
    rows = train(cfg, progress=False, reward_fn=lambda problems, responses: [digit_share(r) for r in responses])
    return [r['time/step'] for r in rows if 'time/step' in r][1:]

def run_trl(model_dir: Path, problems, chat: bool, steps: int, work: Path) -> list[float]:
    "Seconds per step of TRL's GRPOTrainer (time between step ends, first step dropped)."
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    class Timer(TrainerCallback):
        def __init__(self): self.t = [time.perf_counter()]
        def on_step_end(self, args, state, control, **kw): self.t.append(time.perf_counter())
    args = GRPOConfig(output_dir=str(work/'trl'), use_cpu=True, bf16=False, gradient_checkpointing=False,
                      per_device_train_batch_size=N_PROMPTS * N_SAMPLES, gradient_accumulation_steps=1,
                      num_generations=N_SAMPLES, max_completion_length=NEW_TOKENS, temperature=1.0, beta=BETA,
                      learning_rate=LR, max_steps=steps, logging_steps=10**6, save_strategy='no', report_to=[],
                      seed=0, dataloader_num_workers=0, disable_tqdm=True)
    from staged_rl.data import format_problem
    texts = [format_problem(p) if chat else p.prompt for p in problems]  # the user message our trainer builds too
    ds = Dataset.from_dict({'prompt': [[{'role': 'user', 'content': t}] for t in texts] if chat else texts})
    timer = Timer()
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), processing_class=AutoTokenizer.from_pretrained(model_dir),
                          reward_funcs=lambda completions, **kw: [digit_share(c) for c in completions],
                          args=args, train_dataset=ds, callbacks=[timer])
    timer.t = [time.perf_counter()]
    trainer.train()
    return [b - a for a, b in zip(timer.t, timer.t[1:])][1:]

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', choices=['small', 'toy'], default='small')
    ap.add_argument('--rounds', type=int, default=4); ap.add_argument('--steps', type=int, default=6)
    ap.add_argument('--threads', type=int, default=None, help='torch threads for both trainers (default: torch default)')
    ap.add_argument('--response-parts', type=int, default=4, help="our update's response passes per micro-batch (grpo.response_parts; 1: one pass, padded to the longest response)")
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, model {a.model}, response parts {a.response_parts}")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d); model_dir, problems, chat = make_model(a.model, d/'policy')
        ours, trl = [], []
        for r in range(a.rounds):
            o = run_ours(model_dir, problems, chat, a.steps, d/f'r{r}', a.response_parts); t = run_trl(model_dir, problems, chat, a.steps, d/f'r{r}')
            ours += o; trl += t
            print(f"round {r}: staged_rl {statistics.median(o):.3f} s/step, TRL {statistics.median(t):.3f} s/step")
    mo, mt = statistics.median(ours), statistics.median(trl)
    print(f"workload: {a.model} policy, {N_PROMPTS} prompts x {N_SAMPLES} samples, <= {NEW_TOKENS} new tokens, KL to a reference, CPU")
    print(f"staged_rl.trainer: median {mo:.3f} s/step, best {min(ours):.3f} over {len(ours)} steps")
    print(f"TRL GRPOTrainer  : median {mt:.3f} s/step, best {min(trl):.3f} over {len(trl)} steps")
    print(f"speed-up (TRL / staged_rl): {mt / mo:.2f}x on medians, {min(trl) / min(ours):.2f}x on best steps")
    print(json.dumps({'ours_s_per_step': mo, 'trl_s_per_step': mt, 'ratio': mt / mo, 'ratio_best': min(trl) / min(ours)}))

if __name__ == '__main__': main()
