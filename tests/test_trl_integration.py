"""`staged_rl.integrations.trl` with TRL's real `GRPOTrainer` on a CPU: the smoke preset's two stages, two steps each, on
the smoke ladder's weakest model with the real verifiers; TRL's loss on the first batch of each stage equals this
package's `grpo_loss` on the same batch (the golden cross-check of tests/test_grpo.py, extended from the loss function
to the integration: TRL's own generation, truncation mask, reference model and settings as `trl_args` sets them); and a
stage interrupted after its first checkpoint resumes from it without retraining the stage before. The run uses a toy
reward, deterministic in the text (the smoke policy earns 0 everywhere from the verifiers, which would leave every
advantage 0); the real verifiers through `trl_reward` are checked in test_integrations_realdata.py and the notebook."""
import json, shutil
from pathlib import Path
import pytest
import torch

pytest.importorskip('trl', reason='trl (test extra) is not installed')
from staged_rl.config import load_config
from staged_rl.data import load_problems, save_problems, level_path

torch.set_num_threads(1)

def toy_reward(problems, responses):
    "Deterministic in the text (as in test_trainer.py): the smoke policy solves nothing yet, and a loss check needs advantages that are not all 0."
    return [float(len(r) % 3 == 0) if p.domain == 'math' else (len(r) % 5) / 4 for p, r in zip(problems, responses)]

def write_levels(folder: Path):
    cfg = load_config('smoke')
    for lv in (2, 3):
        for dom, n in (('math', 12), ('code', 8)):
            save_problems(load_problems(f'tiny:{dom}', cfg=cfg)[(lv - 2) * n:(lv - 1) * n], level_path(folder, lv, dom))
    return folder

@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "Both smoke stages, two steps each, checkpoint every step; the inputs, weights and loss of each stage's first TRL loss call."
    from staged_rl.integrations.trl import train_trl
    tmp = tmp_path_factory.mktemp('trl')
    cfg = load_config('smoke', [f'data.levels_dir={write_levels(tmp/"levels")}', 'output.save_every=1', 'output.keep_last=3',
                                'rewards.workers=2', 'stages.1.max_new_tokens=24'])  # 24 tokens: some stage-2 responses are cut
    captured = []
    def hook(trainer):
        orig, box = trainer._compute_loss, {}
        captured.append(box)
        def first_call(model, inputs):
            loss = orig(model, inputs)
            if not box:
                box.update(inputs={k: v.detach().clone() if torch.is_tensor(v) else v for k, v in inputs.items()},
                           state={k: v.detach().clone() for k, v in model.state_dict().items()}, loss=loss.detach().clone())
            return loss
        trainer._compute_loss = first_call
    rows = train_trl(cfg, tmp/'run', on_trainer=hook, reward_fn=toy_reward)
    return dict(cfg=cfg, rows=rows, captured=captured, out=tmp/'run')

def test_two_steps_per_stage(run):
    rows, out = run['rows'], run['out']
    assert [(r['stage'], r['status'], r['steps']) for r in rows] == [('stage1', 'trained', 2), ('stage2', 'trained', 2)]
    assert rows[1]['from'] == rows[0]['final'] and (out/'stage2_stage2'/'final'/'config.json').exists()
    assert json.loads((out/'stages.json').read_text()) == json.loads(json.dumps(rows))
    assert any('mask_truncated' in d or 'optimizer' in d for d in rows[1]['differences'])

@pytest.mark.parametrize('i', [0, 1])
def test_trl_loss_equals_package_loss(run, i):
    "On each stage's first batch (TRL's generation), this package's loss with the stage's settings is TRL's, to float precision."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from staged_rl.grpo import grpo_loss, loss_mask, sequence_logprobs
    from staged_rl.models import resolve_model
    cfg, box = run['cfg'], run['captured'][i]
    st, g = cfg.stages[i], cfg.grpo
    init = resolve_model(cfg.model.policy, cfg)
    tok = AutoTokenizer.from_pretrained(init)
    model = AutoModelForCausalLM.from_pretrained(init); model.load_state_dict(box['state']); model.eval()
    ref = AutoModelForCausalLM.from_pretrained(init).eval()  # the initial policy: this package's reference in every stage
    x = box['inputs']
    cid = x['completion_ids']; K = cid.shape[1]
    is_end = (cid == tok.eos_token_id)
    ended = is_end.any(1)
    first = torch.where(ended, is_end.int().argmax(1), torch.full_like(ended, K - 1, dtype=torch.long))
    raw = (torch.arange(K)[None] <= first[:, None]).long()  # the completion up to and including its EOS
    mask = loss_mask(raw, ~ended, st.mask_truncated)
    assert torch.equal(mask, x['completion_mask'].long())  # TRL's truncation masking is this package's
    if i == 1: assert 0 < (~ended).sum() < len(ended)  # stage 2 really has cut and finished responses
    assert len(set(mask.sum(1).tolist())) > 2 and x['advantages'].abs().sum() > 0  # lengths and advantages vary: token-mean is not sequence-mean
    ids, att = torch.cat([x['prompt_ids'], cid], 1), torch.cat([x['prompt_mask'], raw], 1)
    T = cfg.sampling.temperature
    with torch.no_grad(): ref_lp, _ = sequence_logprobs(ref, ids, att, mask, temperature=T)
    torch.testing.assert_close(ref_lp * mask, x['ref_per_token_logps'] * mask, atol=1e-5, rtol=1e-5)  # TRL's reference is the initial policy
    lp, ent = sequence_logprobs(model, ids, att, mask, with_entropy=True, temperature=T)
    coef = g.entropy_coef if st.entropy_coef is None else st.entropy_coef
    assert coef == (0.001 if i == 0 else 0.0)
    loss, _ = grpo_loss(lp, None, ref_lp, x['advantages'], mask, clip_eps=g.clip_eps, kl_coef=g.kl_coef, entropies=ent, entropy_coef=coef)
    torch.testing.assert_close(loss, box['loss'], atol=1e-6, rtol=1e-5)
    assert box['loss'].abs() > 0

def test_resume_mid_stage(run):
    "Stage 2 interrupted after its first checkpoint: a rerun skips stage 1 and resumes stage 2 from checkpoint-1."
    from staged_rl.integrations.trl import train_trl
    s2 = run['out']/'stage2_stage2'
    shutil.rmtree(s2/'final'); shutil.rmtree(s2/'checkpoint-2')
    stamp = (run['out']/'stage1_stage1'/'final'/'model.safetensors').stat().st_mtime_ns
    rows = train_trl(run['cfg'], run['out'])
    assert [(r['stage'], r['status']) for r in rows] == [('stage1', 'done before'), ('stage2', 'resumed')]
    assert rows[1]['resumed_from'].endswith('checkpoint-1') and rows[1]['steps'] == 2
    assert (run['out']/'stage1_stage1'/'final'/'model.safetensors').stat().st_mtime_ns == stamp and (s2/'final'/'config.json').exists()
