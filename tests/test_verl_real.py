"""The verl export against verl's own code (verl 0.9.1, CPU): the exported parquet loads in verl's `RLHFDataset` and
verl tokenizes its prompts to exactly this package's prompt ids (the tiny world's tokenizer and chat template); verl's
reward manager scores a batch through the exported `reward.py` with this package's rewards; every stage config
composes with Hydra over verl's own `ppo_trainer` tree, names only options verl has, and verl's config dataclasses
accept it; `StagedSampler` is loaded and instantiated the way verl's data-sampler hook does it and drives verl's
stateful dataloader (resumed mid-stage) through the trainer's batches.

verl conflicts with the main environment (it pins transformers < 5.11), so `make test-verl` runs this file with
verl's own virtualenv and STAGED_RL_REQUIRE_VERL=1; without verl (the main suite) it is skipped, and with that variable
set a missing verl fails instead."""
import asyncio, importlib.util, json, os
from pathlib import Path
import pytest

HAVE_VERL = importlib.util.find_spec('verl') is not None
pytestmark = pytest.mark.skipif(not HAVE_VERL and not os.environ.get('STAGED_RL_REQUIRE_VERL'),
                                reason='needs verl (run `make test-verl`)')

from staged_rl.config import load_config
from staged_rl.data import load_problems, save_problems, level_path, prompt_ids
from staged_rl.rewards import grade

MIX = 'stages.0.data=[{source: "level:2:math", weight: 2.1}, {source: "level:3:code", weight: 1.0}]'

@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "An export of the smoke preset (stage 1 mixes math level 2 and code level 3 at 2.1:1) and the tiny tokenizer."
    from transformers import AutoTokenizer
    from staged_rl.models import resolve_model
    from staged_rl.integrations.verl import export_verl
    tmp = tmp_path_factory.mktemp('verl')
    cfg0 = load_config('smoke')
    for lv in (2, 3):
        for dom, n in (('math', 12), ('code', 8)):
            save_problems(load_problems(f'tiny:{dom}', cfg=cfg0)[(lv - 2) * n:(lv - 1) * n], level_path(tmp/'levels', lv, dom))
    cfg = load_config('smoke', [f'data.levels_dir={tmp/"levels"}', 'grpo.batch_prompts=6', 'stages.0.max_steps=3', MIX])
    summ = export_verl(cfg, tmp/'out')
    tok = AutoTokenizer.from_pretrained(resolve_model('tiny:small', cfg))
    return dict(cfg=cfg, out=tmp/'out', summ=summ, tok=tok, model_dir=resolve_model('tiny:small', cfg))

def compose(out:Path, name:str):
    "verl's config for one exported stage, composed by Hydra as `python -m verl.trainer.main_ppo --config-path OUT --config-name NAME` does."
    from hydra import compose as hcompose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(out), version_base=None): return hcompose(config_name=name)

def verl_base():
    "verl's own `ppo_trainer` config, untouched."
    import verl.trainer.config as vc
    return compose(Path(vc.__file__).parent, 'ppo_trainer')

def _flat(d, prefix=''):
    for k, v in d.items():
        if isinstance(v, dict): yield from _flat(v, f'{prefix}{k}.')
        else: yield f'{prefix}{k}', v

# ---- configs ------------------------------------------------------------------------------------------------------
def test_stage_configs_compose_over_verls_tree(world):
    "Every key the export sets exists in verl's ppo_trainer (no typo silently adds a new one), with the stage's value."
    import yaml
    from omegaconf import OmegaConf
    base = OmegaConf.to_container(verl_base())
    for st, (i, stage) in zip(world['summ']['stages'], enumerate(world['cfg'].stages)):
        mine = yaml.safe_load((world['out']/st['config']).read_text())
        mine.pop('hydra'), mine.pop('defaults')
        c = compose(world['out'], Path(st['config']).stem)
        for key, val in _flat(mine):
            node = base
            for part in key.split('.'): assert isinstance(node, dict) and part in node, f"{st['config']}: {key} is not an option of verl {world['summ']['verl']}"; node = node[part]
            assert OmegaConf.select(c, key) == val, key
        a = c.actor_rollout_ref.actor
        assert (a.kl_loss_type, a.kl_loss_coef, a.use_kl_loss, c.actor_rollout_ref.rollout.n) == ('low_var_kl', 0.001, True, 4)
        assert a.entropy_coeff == (0.001 if i == 0 else 0.0) and c.data.max_response_length == (48 if i == 0 else 64)
        assert c.data.train_batch_size == 6 and c.trainer.total_training_steps == stage.max_steps and 'hf_model' in a.checkpoint.save_contents
        # verl's own check of a config before training (main_ppo calls it), with what launch.sh adds on the command line
        from verl.utils.config import validate_config
        OmegaConf.update(c, 'trainer.n_gpus_per_node', 1); OmegaConf.update(c, 'actor_rollout_ref.model.path', str(world['model_dir']))
        validate_config(c, use_reference_policy=True, use_critic=False)

def test_launch_script_chains_stages(world):
    "Stage 2 starts from the Hugging Face copy of stage 1's newest checkpoint (the folder layout verl 0.9.1 writes)."
    import subprocess
    text = (world['out']/'launch.sh').read_text()
    assert subprocess.run(['bash', '-n', str(world['out']/'launch.sh')]).returncode == 0
    ck = world['out']/'checkpoints'/'stage1_stage1'
    (ck/'global_step_3'/'actor'/'huggingface').mkdir(parents=True); (ck/'latest_checkpointed_iteration.txt').write_text('3')
    # run the script with `python3` replaced by a recorder: the two verl commands it would run, in order
    fake = world['out']/'bin'; fake.mkdir(); (fake/'python3').write_text('#!/bin/sh\necho "$@" >> "$CALLS"\n'); (fake/'python3').chmod(0o755)
    calls = world['out']/'calls.txt'
    r = subprocess.run(['bash', str(world['out']/'launch.sh'), 'trainer.logger=console'], capture_output=True, text=True,
                       env={**os.environ, 'PATH': f"{fake}:{os.environ['PATH']}", 'CALLS': str(calls), 'MODEL': '/models/init'})
    assert r.returncode == 0, r.stderr
    one, two = calls.read_text().splitlines()
    assert '--config-name=stage1_stage1' in one and 'actor_rollout_ref.model.path=/models/init' in one and one.endswith('trainer.logger=console')
    assert '--config-name=stage2_stage2' in two and f"actor_rollout_ref.model.path={ck}/global_step_3/actor/huggingface" in two
    assert 'verl.trainer.main_ppo' in text

# ---- dataset --------------------------------------------------------------------------------------------------------
def test_rlhf_dataset_loads_export_with_the_package_prompts(world, monkeypatch):
    "verl's RLHFDataset reads every exported file; verl's prompt tokenization gives this package's prompt ids, token for token."
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
    monkeypatch.chdir(world['out'])  # the configs name their files relative to the export folder (launch.sh runs there)
    c = compose(world['out'], 'stage1_stage1')
    tok, cfg = world['tok'], world['cfg']
    train = create_rl_dataset(c.data.train_files, c.data, tok, None, is_train=True)
    val = create_rl_dataset(c.data.val_files, c.data, tok, None, is_train=False)
    assert len(train) == world['summ']['stages'][0]['rows'] and len(val) == sum(v['rows'] for v in world['summ']['val'].values())
    builder = create_continuous_token_builder(tok, hf_model_type=json.loads((Path(world['model_dir'])/'config.json').read_text())['model_type'])
    by_id = {p.id: p for src in ('tiny:math', 'tiny:code', 'tiny:math_heldout', 'tiny:code_heldout') for p in load_problems(src, cfg=cfg)}
    for ds in (train, val):
        for i in range(len(ds)):
            item = ds[i]
            p = by_id[item['extra_info']['id']]
            assert item['data_source'] == f'staged_rl/{p.domain}' and item['reward_model']['style'] == 'rule'
            assert list(builder.build_initial_tokens(list(item['raw_prompt']))) == prompt_ids([p], tok, cfg.data)[0], p.id
    assert {k for k in train[0]['extra_info']} >= {'id', 'level', 'pass_rates', 'stratum', 'weight', 'pos', 'index'}

# ---- reward -----------------------------------------------------------------------------------------------------------
def test_reward_manager_scores_through_the_exported_module(world, monkeypatch):
    "verl's reward manager (loaded from the stage config, as the trainer does) gives this package's rewards on a batch."
    import numpy as np, torch
    from verl import DataProto
    from verl.trainer.ppo.reward import load_reward_manager
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    monkeypatch.chdir(world['out'])
    c = compose(world['out'], 'stage1_stage1')
    tok, cfg = world['tok'], world['cfg']
    mgr = load_reward_manager(c, tok)
    assert isinstance(mgr, NaiveRewardManager)
    ps = load_problems('tiny:math', cfg=cfg)[:4] + load_problems('tiny:code', cfg=cfg)[:4]
    good = {p.id: p.meta['solution'] for p in ps}
    responses = [good[p.id] for p in ps] + [r'\boxed{-12345}', 'no box', "```python\ndef f(x):\n    return 0\n```",
                                          good[ps[4].id].replace('    return x\n', '    return x if x > 0 else 0\n')]  # right on the positive cases only
    probs = ps + [ps[0], ps[1], ps[4], ps[4]]
    from staged_rl.integrations.verl import verl_row
    rows = [verl_row(p, i) for i, p in enumerate(probs)]
    P, R = 8, 96
    prompts = torch.full((len(rows), P), tok.pad_token_id); resp = torch.full((len(rows), R), tok.pad_token_id)
    att = torch.zeros((len(rows), P + R), dtype=torch.long)
    for i, text in enumerate(responses):
        ids = tok(text, add_special_tokens=False)['input_ids'][:R]
        assert tok.decode(ids, skip_special_tokens=True) == text  # the tiny tokenizer round-trips, so verl decodes what we grade
        prompts[i, -1] = 1; att[i, P - 1] = 1
        resp[i, :len(ids)] = torch.tensor(ids); att[i, P:P + len(ids)] = 1
    data = DataProto.from_dict(tensors={'prompts': prompts, 'responses': resp, 'attention_mask': att},
                               non_tensors={k: np.array([r[k] for r in rows], dtype=object) for k in ('data_source', 'reward_model', 'extra_info')})
    got = [mgr.loop.run_until_complete(mgr.run_single(data[i:i + 1]))['reward_score'] for i in range(len(rows))]
    want = grade(probs, responses, cfg.rewards)
    assert got == want
    assert want[:8] == [1.0] * 8 and want[8:11] == [0.0] * 3 and 0 < want[11] < 1  # right, wrong, partial: not a constant
    scores = NaiveRewardManager.assemble_rm_scores(data, got)
    assert scores.sum(1).tolist() == torch.tensor(want).tolist()  # one score per response, at its last token (float32)

# ---- sampler --------------------------------------------------------------------------------------------------------
def test_sampler_instantiated_as_verls_hook_does(world, monkeypatch):
    """`StagedSampler` loaded by verl's own loader and built as the hook in `create_rl_sampler` (verl 0.5-0.7) builds it:
    `cls(data_source=dataset, data_config=data_config)` over verl's RLHFDataset; verl's stateful dataloader (the
    trainer's, with verl's collate_fn) then yields the trainer's batches at 2.1:1, and resumes mid-stage."""
    from omegaconf import open_dict
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils.dataset.rl_dataset import collate_fn
    from verl.utils.import_utils import load_extern_type
    from staged_rl.curriculum import StratifiedSampler, build_strata
    monkeypatch.chdir(world['out'])
    c = compose(world['out'], 'stage1_stage1')
    with open_dict(c):  # the hook's settings (verl 0.5-0.7 have `data.sampler`; 0.9.1 dropped it)
        c.data.sampler = {'class_path': 'pkg://staged_rl.integrations.verl', 'class_name': 'StagedSampler'}; c.data.dataloader_num_workers = 0
    data_cfg = c.data
    ds = create_rl_dataset(data_cfg.train_files, data_cfg, world['tok'], None, is_train=True)
    cls = load_extern_type(data_cfg.sampler.class_path, data_cfg.sampler.class_name)
    sampler = cls(data_source=ds, data_config=data_cfg)
    from torch.utils.data import Sampler
    assert isinstance(sampler, Sampler)
    cfg = world['cfg']
    want = [[p.id for p, _ in StratifiedSampler(build_strata(cfg.stages[0], cfg), 6, cfg.seed, 0).batch(s)] for s in range(3)]
    dl = StatefulDataLoader(ds, batch_size=data_cfg.train_batch_size, sampler=sampler, num_workers=0, drop_last=True, collate_fn=collate_fn)
    it = iter(dl)
    first = next(it)
    ids = [e['id'] for e in first['extra_info']]
    assert ids == want[0] and sum(d == 'staged_rl/math' for d in first['data_source']) == 4  # 2.1:1 of 6 prompts
    state = dl.state_dict()
    second = [e['id'] for e in next(it)['extra_info']]
    assert second == want[1]
    # resume after step 1 (a fresh sampler and loader, as after a restart): the same second batch
    dl2 = StatefulDataLoader(ds, batch_size=6, sampler=cls(data_source=ds, data_config=data_cfg), num_workers=0, drop_last=True, collate_fn=collate_fn)
    dl2.load_state_dict(state)
    assert [e['id'] for e in next(iter(dl2))['extra_info']] == want[1]
    # verl 0.9.1 itself, with data.shuffle=false as exported: its sequential sampler replays the same batches
    from verl.trainer.ppo.utils import create_rl_sampler
    seq = StatefulDataLoader(ds, batch_size=6, sampler=create_rl_sampler(c.data, ds), num_workers=0, drop_last=True, collate_fn=collate_fn)
    assert [[e['id'] for e in b['extra_info']] for b, _ in zip(seq, range(3))] == want
