"""The trainer end to end on the smoke config: a real run, kill-and-resume equality, stratified batches, stage
switches (step budget and plateau), masking of truncated responses, online filtering, and the two commands.

The policy is the smoke ladder's weakest model (`tiny:small`, built once into the tiny cache); level files are
written from the tiny pools into each test's folder. Tests that need a non-trivial learning signal use a toy
reward that is a deterministic function of the response text (the smoke model solves nothing yet)."""
import json, importlib.util
from pathlib import Path
import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec('staged_rl.tiny') is None or importlib.util.find_spec('staged_rl.rewards') is None,
                                reason='staged_rl.tiny / staged_rl.rewards not available')

from staged_rl.config import load_config
from staged_rl.data import load_problems, save_problems, level_path

torch.set_num_threads(1)  # tiny models on a shared 2-core box: one intra-op thread is several times faster

def toy_reward(problems, responses):
    "Deterministic in the text: math 0/1 by length, code a share; gives groups with and without spread."
    return [float(len(r) % 3 == 0) if p.domain == 'math' else (len(r) % 5) / 4 for p, r in zip(problems, responses)]

def write_levels(folder: Path, n_math=12, n_code=8):
    "Level 2 and 3 files from the tiny pools (what `staged-rl filter` would write)."
    cfg = load_config('smoke')
    for lv in (2, 3):
        for dom, n in (('math', n_math), ('code', n_code)):
            save_problems(load_problems(f'tiny:{dom}', cfg=cfg)[(lv - 2) * n:(lv - 1) * n], level_path(folder, lv, dom))
    return folder

@pytest.fixture(scope='module')
def levels(tmp_path_factory):
    return write_levels(tmp_path_factory.mktemp('levels'))

def smoke(tmp_path, levels, *over):
    "The smoke preset writing into `tmp_path`, reading the level files of `levels`, with a small evaluation."
    return load_config('smoke', [f'output.dir={tmp_path}', f'data.levels_dir={levels}', 'eval.sets.0.limit=4', 'eval.sets.1.limit=2',
                                 'rewards.workers=2', *over])

def untimed(rows): return [{k: v for k, v in r.items() if not k.startswith('time/')} for r in rows]

# ---- a real run --------------------------------------------------------------------------------------------------
def test_smoke_run_end_to_end(tmp_path, levels):
    "Two stages with the real verifiers: metrics written, every trainable parameter moved, checkpoints and policy saved."
    from staged_rl.trainer import train, load_policy
    cfg = smoke(tmp_path, levels)
    before = {k: v.clone() for k, v in load_policy(cfg.model.policy, cfg)[0].named_parameters()}
    rows = train(cfg, progress=False)
    lines = [json.loads(l) for l in (tmp_path/'metrics.jsonl').read_text().splitlines()]
    assert lines == rows
    steps = [r for r in rows if 'reward' in r]
    assert [r['step'] for r in steps] == [1, 2, 3, 4]
    for k in ('reward', 'kl', 'entropy', 'accuracy', 'clip_frac', 'grad_norm', 'trunc_frac', 'zero_std_frac', 'len_mean',
              'math/reward', 'code/accuracy', 'time/gen', 'time/score', 'time/update'):
        assert all(k in r for r in steps), k
    assert 'eval/math/pass@1' in rows[0] and 'eval/code/pass@1' in rows[-1]
    after = dict(load_policy(str(tmp_path/'policy'), cfg)[0].named_parameters())
    same = [k for k, v in before.items() if v.requires_grad and torch.equal(v, after[k])]
    assert not same, f"parameters that did not change: {same}"
    assert (tmp_path/'checkpoints').exists() and (tmp_path/'pass_history.jsonl').exists()
    hist = [json.loads(l) for l in (tmp_path/'pass_history.jsonl').read_text().splitlines()]
    assert len(hist) == 4 * cfg.grpo.batch_prompts and {'id', 'pass_rate', 'step', 'stage'} <= hist[0].keys()

# ---- resume ------------------------------------------------------------------------------------------------------
def test_kill_and_resume_equals_uninterrupted(tmp_path, levels):
    "Killed after step 5 (last checkpoint: step 4, mid-stage 2), resumed: the same rows as a run that never stopped."
    from staged_rl.trainer import train
    over = ['stages.0.max_steps=3', 'stages.1.max_steps=3', 'output.save_every=2', 'eval.every=2',
            'eval.sets=[{name: math, source: "tiny:math_heldout", k: 2, limit: 4}]']
    full = train(smoke(tmp_path/'full', levels, *over), progress=False, reward_fn=toy_reward)
    cfg = smoke(tmp_path/'killed', levels, *over)
    part = train(cfg, progress=False, stop_after=5, reward_fn=toy_reward)
    assert part[-1]['step'] == 5 and sorted(p.name for p in (tmp_path/'killed'/'checkpoints').iterdir()) == ['step_0000003', 'step_0000004']
    resumed = train(cfg, resume=True, progress=False, reward_fn=toy_reward)
    assert [r['step'] for r in resumed] == [r['step'] for r in full]  # no duplicated rows
    assert untimed(resumed) == untimed(full)
    assert any(r.get('grad_norm', 0) > 0 for r in full)  # the toy reward gave the updates something to do

# ---- batches and stages ------------------------------------------------------------------------------------------
def test_stratified_mix_and_stage_switch(tmp_path, levels):
    "Every batch holds the configured 2:1 mix; the stage switch is logged on the row of the stage's last step."
    from staged_rl.trainer import train
    stages = ('stages=[{name: mix, data: [{source: "level:2:math", weight: 2.1}, {source: "level:2:code", weight: 1.0}], max_steps: 3},'
              ' {name: second, data: [{source: "level:3"}], max_steps: 1, reset_optimizer: true}]')
    rows = train(smoke(tmp_path, levels, stages, 'grpo.batch_prompts=6', 'eval.sets=[]'), progress=False, reward_fn=toy_reward)
    mix = [r for r in rows if r['stage'] == 'mix']
    assert [(r['math/n_prompts'], r['code/n_prompts']) for r in mix] == [(4, 2)] * 3
    ends = [r for r in rows if 'stage_end' in r]
    assert [(r['step'], r['stage'], r['stage_end'], r['next_stage']) for r in ends] == [(3, 'mix', 'max_steps', 'second'), (4, 'second', 'max_steps', None)]
    assert rows[-1]['stage'] == 'second'

def test_plateau_ends_a_stage(tmp_path, levels):
    "A flat validation metric ends a plateau stage long before its step cap."
    from staged_rl.trainer import train
    stages = ('stages=[{name: a, data: [{source: "level:2"}], max_steps: 20, plateau: {metric: eval/math/pass@1, window: 1, patience: 2}},'
              ' {name: b, data: [{source: "level:3"}], max_steps: 1}]')
    rows = train(smoke(tmp_path, levels, stages, 'eval.every=1', 'eval.sets=[{name: math, source: "tiny:math_heldout", k: 1, limit: 2}]'),
                 progress=False, reward_fn=lambda ps, rs: [0.0] * len(rs))
    end = next(r for r in rows if r['stage'] == 'a' and 'stage_end' in r)
    assert (end['step'], end['stage_end']) == (2, 'plateau')  # evaluations 0, 1, 2 all equal: two without a gain
    assert [r['stage'] for r in rows if 'reward' in r] == ['a', 'a', 'b']

# ---- truncation masking and online filtering ----------------------------------------------------------------------
def test_mask_truncated(tmp_path, levels):
    "With responses cut at 1 token, a mask_truncated stage counts no token and leaves the policy as it was."
    from staged_rl.trainer import train, load_policy
    def run(name, mask):
        st = f'stages=[{{name: s, data: [{{source: "level:2"}}], max_steps: 1, max_new_tokens: 1, mask_truncated: {mask}, truncated_in_baseline: false}}]'
        return train(smoke(tmp_path/name, levels, st, 'eval.sets=[]'), progress=False, reward_fn=toy_reward)[-1]
    masked, unmasked = run('m', 'true'), run('u', 'false')
    assert masked['trunc_frac'] == 1.0 and masked['tokens'] == 0 and masked['grad_norm'] == 0
    assert unmasked['tokens'] > 0 and unmasked['grad_norm'] > 0
    cfg = load_config('smoke')
    p0, p1 = load_policy(cfg.model.policy, cfg)[0], load_policy(str(tmp_path/'m'/'policy'), cfg)[0]
    assert all(torch.equal(a, b) for a, b in zip(p0.parameters(), p1.parameters()))

def test_online_filtering_refills(tmp_path, levels):
    "filter_zero_std drops all-equal groups (every math group here) and refills from the strata that need it."
    from staged_rl.trainer import train
    reward = lambda ps, rs: [0.0 if p.domain == 'math' else (len(r) % 5) / 4 for p, r in zip(ps, rs)]
    row = train(smoke(tmp_path, levels, 'stages=[{name: s, data: [{source: "level:2"}], max_steps: 1}]',
                      'grpo.filter_zero_std=true', 'grpo.max_refill_rounds=2', 'eval.sets=[]'), progress=False, reward_fn=reward)[-1]
    assert row['filter/rounds'] == 2 and row['filter/groups_kept'] < row['n_prompts']
    assert row['math/zero_std_frac'] == 1.0  # logged for the first round, before filtering
    hist = [json.loads(l) for l in (tmp_path/'pass_history.jsonl').read_text().splitlines()]
    assert len(hist) > row['n_prompts']  # refilled prompts are in the history too

# ---- commands -----------------------------------------------------------------------------------------------------
def test_cmd_train_and_eval(tmp_path, levels, capsys):
    from staged_rl.trainer import cmd_train, cmd_eval
    over = [f'output.dir={tmp_path}', f'data.levels_dir={levels}', 'stages.0.max_steps=1', 'stages.1.max_steps=1', 'eval.sets=[]']
    assert cmd_train(['smoke', *over, 'output.save_every=1']) == 0
    assert cmd_train(['smoke', *over, '--resume']) == 0  # nothing left to do: the run is complete
    rows = [json.loads(l) for l in (tmp_path/'metrics.jsonl').read_text().splitlines()]
    assert [r['step'] for r in rows] == [1, 2]
    assert cmd_train(['smoke', 'grpo.lr=-1']) == 2
    out = tmp_path/'eval.json'
    assert cmd_eval(['smoke', f'model={tmp_path/"policy"}', f'out={out}', 'eval.sets.0.limit=3', 'eval.sets.1.limit=2']) == 0
    table = json.loads(out.read_text())
    assert set(table['benchmarks']) == {'math', 'code'} and table['protocol']['temperature'] == 0.6
    b = table['benchmarks']['math']
    assert b['k'] == 2 and b['n_problems'] == 3 and len(b['per_sample']) == 2 and 0 <= b['pass@1'] <= 1

# ---- several processes -----------------------------------------------------------------------------------------
DDP_SCRIPT = '''
import sys, json, torch
sys.path.insert(0, {tests!r})
from test_trainer import smoke, toy_reward
from pathlib import Path
from staged_rl.trainer import train
rows = train(smoke(Path({out!r}), Path({levels!r}), 'stages.0.max_steps=2', 'stages.1.max_steps=1', 'eval.sets.1.limit=1'),
             progress=False, reward_fn=toy_reward)
import torch.distributed as dist
print('RANK', dist.get_rank(), json.dumps([r['step'] for r in rows]))
'''

def test_two_processes_with_torchrun(tmp_path, levels):
    "The same trainer under `torchrun --nproc_per_node 2` (gloo on CPU): each process trains on half the prompts."
    import shutil, subprocess, sys
    if shutil.which('torchrun') is None: pytest.skip('torchrun not found')
    script = tmp_path/'run.py'
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path/'run'), levels=str(levels)))
    p = subprocess.run(['torchrun', '--nproc_per_node', '2', str(script)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(l for l in p.stdout.splitlines() if l.startswith('RANK')) == ['RANK 0 [0, 1, 2, 3]', 'RANK 1 [0, 1, 2, 3]']
    rows = [json.loads(l) for l in (tmp_path/'run'/'metrics.jsonl').read_text().splitlines()]
    assert [r.get('n_prompts') for r in rows] == [None, 4, 4, 4]  # metrics gathered from both processes
    assert (tmp_path/'run'/'policy').exists()
