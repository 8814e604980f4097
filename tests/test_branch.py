"""Branching a run (`branch_run`): a stage-1 run continued in a second folder by a config with more stages trains
exactly like one run with all the stages; branches from one checkpoint start alike; a branch resumes after a kill.

One module-level source run `src` (stage A, 3 steps, checkpoints at steps 2 and 3, a final evaluation) and one
uninterrupted run `full` (stages A then B) are shared by the tests; the toy reward of `test_trainer` gives the
updates something to do."""
import json
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file

from test_trainer import smoke, toy_reward, untimed, write_levels

A = '{name: A, data: [{source: "level:2"}], max_steps: 3}'
B = '{name: B, data: [{source: "level:3"}], max_steps: %d, max_new_tokens: 64, entropy_coef: 0.0, mask_truncated: true%s}'
OVER = ['output.save_every=2', 'eval.every=2', 'eval.sets=[{name: math, source: "tiny:math_heldout", k: 2, limit: 2}]',
        'eval.final_sets=[{name: fin, source: "tiny:math_heldout", k: 1, limit: 2}]']

def cfg_of(out:Path, levels:Path, stages:list[str], *over):
    return smoke(out, levels, f"stages=[{', '.join(stages)}]", *OVER, *over)

def rows_of(f:Path) -> list[dict]: return [json.loads(l) for l in f.read_text().splitlines()]
def weights(run:Path) -> dict: return load_file(run/'policy'/'model.safetensors')

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "`src`: stage A alone (3 steps); `full`: A then B (2 steps) in one run; the same seed."
    from staged_rl.trainer import train
    root = tmp_path_factory.mktemp('branch')
    levels = write_levels(root/'levels')
    train(cfg_of(root/'src', levels, [A]), progress=False, reward_fn=toy_reward)
    full = train(cfg_of(root/'full', levels, [A, B % (2, '')]), progress=False, reward_fn=toy_reward)
    return root, levels, full

@pytest.mark.parametrize('step', [None, 2])
def test_branch_continues_like_one_run(runs, step):
    """A run of stage A, branched at its end (or at step 2, mid-stage) and trained on with stages [A, B], logs the same
    rows and ends with the same weights as [A, B] run at once. At the switch the branch takes src's stage-end
    evaluation (no second evaluation of step 3) and not src's final one."""
    from staged_rl.trainer import train, branch_run
    root, levels, full = runs
    src, dst = root/'src', root/f'from_{step}'
    assert sorted(p.name for p in (src/'checkpoints').iterdir()) == ['step_0000002', 'step_0000003']
    assert any(r.get('final') for r in rows_of(src/'metrics.jsonl'))  # src's final evaluation, not to be copied
    assert branch_run(src, dst, step) == dst
    n = step or 3
    for f in ('metrics.jsonl', 'pass_history.jsonl'):
        want = [r for r in rows_of(src/f) if r['step'] <= n and not r.get('final')]
        assert rows_of(dst/f) == want and want, f
    assert [p.name for p in (dst/'checkpoints').iterdir()] == [f'step_{n:07d}']
    assert json.loads((dst/'branch.json').read_text()) == {'from': str(src), 'step': n}
    assert (dst/'parent_config.yaml').read_text() == (src/'config.yaml').read_text()
    rows = train(cfg_of(dst, levels, [A, B % (2, '')]), resume=True, progress=False, reward_fn=toy_reward)
    assert [r['step'] for r in rows] == [0, 1, 2, 3, 4, 5, 5]  # step 5 twice: the last training row, the final evaluation
    assert untimed(rows) == untimed(full)
    assert [r['step'] for r in rows if 'eval/math/pass@1' in r] == [0, 2, 3, 4, 5]
    assert all(r['grad_norm'] > 0 for r in rows if r['stage'] == 'B')
    wb, wf = weights(dst), weights(root/'full')
    assert wb.keys() == wf.keys() and all(torch.equal(wb[k], wf[k]) for k in wf)
    assert 'name: B' in (dst/'config.yaml').read_text()  # the branch's own config

def test_stage1_continued(runs):
    "The control arm: stage A continued as a second stage on A's data (its own shuffle) is a branch like any other."
    from staged_rl.trainer import train, branch_run
    root, levels, _ = runs
    stages = [A, '{name: A-continued, data: [{source: "level:2"}], max_steps: 2}']
    full = train(cfg_of(root/'full_cont', levels, stages), progress=False, reward_fn=toy_reward)
    rows = train(cfg_of(branch_run(root/'src', root/'cont'), levels, stages), resume=True, progress=False, reward_fn=toy_reward)
    assert [r['stage'] for r in rows if 'reward' in r] == ['A'] * 3 + ['A-continued'] * 2 and untimed(rows) == untimed(full)
    wb, wf = weights(root/'cont'), weights(root/'full_cont')
    assert all(torch.equal(wb[k], wf[k]) for k in wf)

def test_branches_start_alike(runs):
    """Two branches of src's end, one with B of 2 steps, one with B of 1 step and a fresh optimizer: the same first row of
    B (its rollouts and loss come before the update), and the reset really reset (Adam's step count)."""
    from staged_rl.trainer import train, branch_run
    root, levels, full = runs
    one = root/'from_None' if (root/'from_None'/'policy').exists() else None
    if one is None:  # when run alone
        one = branch_run(root/'src', root/'b1')
        train(cfg_of(one, levels, [A, B % (2, '')]), resume=True, progress=False, reward_fn=toy_reward)
    two = branch_run(root/'src', root/'b2')
    rows = train(cfg_of(two, levels, [A, B % (1, ', reset_optimizer: true')]), resume=True, progress=False, reward_fn=toy_reward)
    first = lambda rs: {k: v for k, v in untimed(rs)[4].items() if k not in ('stage_end', 'next_stage')}
    assert untimed(rows)[4]['step'] == 4 and first(rows) == first(rows_of(one/'metrics.jsonl'))
    adam_steps = lambda run: int(torch.load(run/'checkpoints'/'step_0000004'/'trainer.pt', weights_only=False)['optimizer']['state'][0]['step'])
    assert (adam_steps(one), adam_steps(two)) == (4, 1)

def test_branch_killed_and_resumed(runs):
    "A branch killed between checkpoints is branched again (nothing happens) and resumed: the rows of the uninterrupted run."
    from staged_rl.trainer import train, branch_run
    root, levels, full = runs
    dst = branch_run(root/'src', root/'killed')
    cfg = cfg_of(dst, levels, [A, B % (2, '')], 'output.save_every=0')  # checkpoints at stage ends only: step 3 (copied), 5
    part = train(cfg, resume=True, progress=False, stop_after=4, reward_fn=toy_reward)
    assert part[-1]['step'] == 4 and [p.name for p in (dst/'checkpoints').iterdir()] == ['step_0000003']
    before = (dst/'metrics.jsonl').read_text()
    assert branch_run(root/'src', dst) == dst and (dst/'metrics.jsonl').read_text() == before  # idempotent: step 4's row stays
    rows = train(cfg, resume=True, progress=False, reward_fn=toy_reward)
    assert untimed(rows) == untimed(full)

def test_branch_errors_and_idempotence(runs, tmp_path):
    "No such checkpoint: one line naming the folder and the steps there. A folder with a checkpoint is left alone."
    from staged_rl.trainer import branch_run
    root, _, _ = runs
    with pytest.raises(FileNotFoundError, match=r"^branch_run: no checkpoint of step 1 in .*src/checkpoints \(there: 2, 3\)$"):
        branch_run(root/'src', tmp_path/'a', step=1)
    (tmp_path/'empty').mkdir()
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in .*empty/checkpoints \(there: none\)"):
        branch_run(tmp_path/'empty', tmp_path/'b')
    assert not (tmp_path/'a'/'checkpoints').exists() and not (tmp_path/'b').exists()
    dst = branch_run(root/'src', tmp_path/'c', step=2)
    (dst/'metrics.jsonl').write_text('')
    assert branch_run(root/'src', dst) == dst and (dst/'metrics.jsonl').read_text() == ''  # not copied again (nor step 3)
    assert [p.name for p in (dst/'checkpoints').iterdir()] == ['step_0000002']
