"""The token-mean of the GRPO loss is over the tokens of EVERY process (issue #11, finding 6).

Two processes under `torchrun` (gloo, CPU), each with half of a batch whose halves have very different numbers of
tokens, must take the same optimizer step as one process with the whole batch. With a per-process token count
(the trainer before this test) the process with short responses weighs its tokens more and the gradients differ."""
import json, os, shutil, socket, subprocess, sys
from pathlib import Path
import pytest
import torch

SCRIPT = r'''
import json, sys, torch
sys.path.insert(0, {tests!r})
from test_distributed import batch, run_update
from accelerate import Accelerator
from staged_rl.trainer import shard_model
acc = Accelerator(cpu=True)
model, mbs = batch(acc.process_index, acc.num_processes)
if {fsdp!r}: model = shard_model(model)
grads, stats = run_update(model, mbs, acc)
stats['n_mbs'] = len(mbs)
if acc.is_main_process: torch.save({{'grads': grads, 'stats': stats}}, {out!r})
'''

def free_port() -> str:
    "A TCP port nobody listens on now (fixed ports collide with a run still closing its sockets)."
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return str(s.getsockname()[1])

def torchrun(script:Path, nproc:int=2) -> subprocess.CompletedProcess:
    "`script` under `torchrun --nproc_per_node nproc` (gloo on CPU), this checkout first on the path, one thread per process."
    if shutil.which('torchrun') is None: pytest.fail('torchrun not found (it comes with torch)')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get('PYTHONPATH', '')])}
    return subprocess.run(['torchrun', '--nproc_per_node', str(nproc), '--master_port', free_port(), str(script)], capture_output=True, text=True, timeout=600, env=env)

def batch(rank=0, world=1):
    "A toy model and plain micro-batches of this process's share: rank 0 gets the short responses, rank 1 the long ones."
    from staged_rl.config import GRPOConfig
    from staged_rl.rollout import toy_lm, HFEngine, SamplingParams
    from staged_rl.trainer import micro_batches
    torch.manual_seed(0)
    model, tok = toy_lm(seed=1, eos_bias=1.0)
    groups = HFEngine(model, tok).generate(['Q', 'Question: what is 12 + 30?', 'def add(a, b):', 'The quick brown fox'], 4,
                                           SamplingParams(max_new_tokens=24, temperature=0.9, seed=4))
    flat = sorted((c for g in groups for c in g), key=lambda c: len(c.ids))
    adv = torch.linspace(-1, 1, len(flat))
    idx = [list(range(0, len(flat) // 2)), list(range(len(flat) // 2, len(flat)))] if world == 2 else [list(range(len(flat)))]
    mine = idx[rank]
    # a token budget: the process with the long responses gets more micro-batches than the other
    return model, micro_batches([flat[i] for i in mine], adv[mine], GRPOConfig(micro_batch=3, max_tokens_per_micro_batch=60), tok.pad_token_id, 'cpu')

def run_update(model, mbs, acc=None):
    "One `policy_update` (entropy bonus on, no reference); returns the gradients the optimizer saw, and the stats."
    from staged_rl.config import load_config
    from staged_rl.trainer import policy_update
    cfg = load_config('smoke', ['grpo.max_grad_norm=1e9', 'grpo.kl_coef=0'])
    seen = []
    class Recording(torch.optim.SGD):
        def step(self, *a, **k):
            seen.append([(p.grad.full_tensor() if hasattr(p.grad, 'full_tensor') else p.grad).detach().clone()
                         for p in self.param_groups[0]['params']]); return super().step(*a, **k)
    opt = Recording(model.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    if acc is not None:
        from staged_rl.trainer import is_sharded
        if is_sharded(model): opt = acc.prepare(opt)  # FSDP2 shards the model itself; accelerate must not wrap it in DDP
        else: model, opt = acc.prepare(model, opt)
    stats = policy_update(model, None, opt, sched, mbs, cfg, entropy_coef=0.01, accelerator=acc)
    return seen[0], stats

@pytest.mark.parametrize('fsdp', [False, True])
def test_two_processes_take_the_one_process_step(tmp_path, fsdp):
    "DDP, and FSDP2 with a different number of micro-batches on each process, take the one-process step."
    torch.set_num_threads(1)
    model, mbs = batch()
    want, stats1 = run_update(model, mbs)
    halves = [batch(r, 2)[1] for r in (0, 1)]
    t0, t1 = (sum(float(mb['mask'].sum()) for mb in h) for h in halves)
    assert t1 > 1.5 * t0, (t0, t1)  # the halves differ a lot in tokens: a per-process mean would show
    script = tmp_path/'run.py'
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path/'out.pt'), fsdp=fsdp))
    p = torchrun(script)
    assert p.returncode == 0, p.stderr[-3000:]
    got = torch.load(tmp_path/'out.pt')
    assert got['stats']['n_mbs'] < len(halves[1])  # rank 0 (saved here) has fewer micro-batches than rank 1
    assert got['stats']['tokens'] == stats1['tokens']  # the global token count
    for a, b in zip(want, got['grads']): torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-4)

EVAL_SCRIPT = r'''
import json, sys, torch
sys.path.insert(0, {tests!r})
from test_distributed import eval_setup
from accelerate import Accelerator
from staged_rl.trainer import evaluate
acc = Accelerator(cpu=True)
model, tok, cfg, reward = eval_setup({folder!r})
flat = evaluate(model, tok, cfg, acc=acc, reward_fn=reward)
open(f'{folder}/rank{{acc.process_index}}.json', 'w').write(json.dumps(flat, sort_keys=True))
'''

def eval_setup(folder):
    "A toy model, an evaluation set of 5 problems (an odd number: the shards differ in size) and a reward known per problem."
    from staged_rl.config import load_config
    from staged_rl.data import Problem, save_problems
    from staged_rl.rollout import toy_lm
    torch.manual_seed(0)
    model, tok = toy_lm(seed=1, eos_bias=3.0)
    path = Path(folder)/'eval.jsonl'
    if not path.exists():  # written once, by the test process: the two ranks only read it (rewriting it there would race)
        save_problems([Problem(f'p{i}', 'math', f'What is {i} + 1?', str(i + 1)) for i in range(5)], path)
    cfg = load_config('smoke', [f'eval.sets=[{{name: toy, source: {path}, k: 3}}]', 'eval.sampling.max_new_tokens=6'])
    reward = lambda problems, responses: [float(p.id in ('p0', 'p3', 'p4')) for p in problems]  # 3 of 5 problems solved
    return model, tok, cfg, reward

def test_sharded_evaluation_covers_every_problem_once(tmp_path):
    "Two processes each evaluate their share; both end with the metrics of all 5 problems, as one process does."
    from staged_rl.trainer import evaluate
    model, tok, cfg, reward = eval_setup(tmp_path)
    one = evaluate(model, tok, cfg, reward_fn=reward)
    assert one['eval/toy/pass@1'] == pytest.approx(0.6) and one['eval/toy/pass@1_std'] == 0
    script = tmp_path/'ev.py'
    script.write_text(EVAL_SCRIPT.format(tests=str(Path(__file__).parent), folder=str(tmp_path)))
    p = torchrun(script)
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path/f'rank{r}.json').read_text()) for r in (0, 1))  # files: torchrun interleaves the two stdouts
    assert r0 == r1  # every process holds the same metrics
    assert r0['eval/toy/pass@1'] == pytest.approx(0.6)  # all 5 problems, each once (a lost shard or a duplicate would move it)
