"""GRPO core: golden values (from TRL 1.16, stored in tests/fixtures/grpo_golden/golden.json), live cross-checks
against TRL when it is installed, truncation masking end to end, and a short learning check on a toy model.

What part of TRL is exercised is documented in tests/fixtures/grpo_golden/make_golden.py."""
import importlib.util, json
from pathlib import Path
import pytest
import torch
from staged_rl.grpo import (collate_completions, group_advantages, grpo_loss, loss_mask, sequence_logprobs)
from staged_rl.rollout import HFEngine, SamplingParams, toy_lm

HERE = Path(__file__).parent / 'fixtures' / 'grpo_golden'
GOLDEN = json.loads((HERE / 'golden.json').read_text())
T = torch.tensor


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _harness():
    spec = importlib.util.spec_from_file_location('make_golden', HERE / 'make_golden.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def _need_trl():
    pytest.importorskip('trl', reason='trl (test extra) is not installed: live TRL cross-checks skipped')
    return _harness()


# ---- golden files ---------------------------------------------------------------------------------------------

def test_golden_advantages():
    x, adv = GOLDEN['inputs'], GOLDEN['advantages']
    r, gs, valid = T(x['rewards']), x['group_size'], T(x['valid'])
    torch.testing.assert_close(group_advantages(r, gs, eps=1e-4), T(adv['trl_eps1e4']), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(group_advantages(r, gs, scale=False), T(adv['trl_eps1e4_unscaled']), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(group_advantages(r, gs, eps=1e-4, valid=valid), T(adv['trl_eps1e4_valid']), atol=1e-6, rtol=1e-5)
    ours = GOLDEN['ours']
    torch.testing.assert_close(group_advantages(r, gs), T(ours['advantages_eps1e6']), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(group_advantages(r, gs, valid=valid), T(ours['advantages_eps1e6_valid']), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize('case', sorted(GOLDEN['cases']))
def test_golden_loss(case):
    x, c = GOLDEN['inputs'], GOLDEN['cases'][case]
    s, e = c['settings'], c['expected']
    lp = T(x['logprobs']).requires_grad_()
    loss, st = grpo_loss(lp, T(c['old_logprobs']), T(x['ref_logprobs']), T(GOLDEN['advantages']['trl_eps1e4']),
                         T(x['mask']), entropies=T(x['entropies']), **s)
    loss.backward()
    assert loss.item() == pytest.approx(e['loss'], abs=1e-6)
    torch.testing.assert_close(lp.grad, T(e['grad_logprobs']), atol=1e-7, rtol=1e-5)
    for k in ('entropy', 'clip_frac', 'clip_frac_low', 'clip_frac_high', 'kl'):
        if e[k] is not None: assert st[k] == pytest.approx(e[k], abs=1e-6), k


def test_golden_file_is_small():
    assert (HERE / 'golden.json').stat().st_size < 64_000


# ---- live TRL ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', [1, 2])
@pytest.mark.parametrize('settings', [dict(clip_eps=0.2, clip_eps_high=None, kl_coef=0.04, entropy_coef=0.01),
                                      dict(clip_eps=0.1, clip_eps_high=0.3, kl_coef=0.0, entropy_coef=0.0)])
def test_loss_matches_trl_live(seed, settings):
    mg = _need_trl()
    x = mg.make_inputs(seed)
    old = x['logprobs'] + 0.5 * x['noise']
    adv = group_advantages(x['rewards'], x['group_size'])
    want_loss, want_grad, m = mg.trl_loss(x['logprobs'], old, x['ref_logprobs'], adv, x['mask'], x['entropies'], **settings)
    lp = x['logprobs'].clone().requires_grad_()
    loss, st = grpo_loss(lp, old, x['ref_logprobs'], adv, x['mask'], entropies=x['entropies'], **settings)
    loss.backward()
    torch.testing.assert_close(loss.detach(), want_loss, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(lp.grad, want_grad, atol=1e-7, rtol=1e-5)
    assert st['clip_frac'] == pytest.approx(m['clip_ratio/region_mean'], abs=1e-6)
    assert st['entropy'] == pytest.approx(m['entropy'], abs=1e-6)
    if settings['kl_coef']: assert st['kl'] == pytest.approx(m['kl'], abs=1e-6)


def test_micro_batches_match_trl_gradient_accumulation():
    "Our n_tokens normaliser == TRL's dapo `num_items_in_batch` with 2 accumulation steps per generation."
    mg = _need_trl()
    x = mg.make_inputs(3)
    old, adv, N = x['logprobs'] + 0.3 * x['noise'], group_advantages(x['rewards'], x['group_size']), x['mask'].sum()
    kw = dict(clip_eps=0.2, clip_eps_high=None, kl_coef=0.001, entropy_coef=0.0)
    full, _ = grpo_loss(x['logprobs'], old, x['ref_logprobs'], adv, x['mask'], **kw)
    ours, theirs = 0.0, 0.0
    for sl in (slice(0, 5), slice(5, 12)):
        ours = ours + grpo_loss(x['logprobs'][sl], old[sl], x['ref_logprobs'][sl], adv[sl], x['mask'][sl], n_tokens=N, **kw)[0]
        theirs = theirs + mg.trl_loss(x['logprobs'][sl], old[sl], x['ref_logprobs'][sl], adv[sl], x['mask'][sl],
                                      n_tokens=N, grad_accum=2, **kw)[0]
    torch.testing.assert_close(ours, full); torch.testing.assert_close(theirs, full)


def test_advantages_match_trl_live():
    mg = _need_trl()
    g = torch.Generator().manual_seed(0)
    r = torch.randint(0, 3, (64,), generator=g).float() / 2
    valid = torch.rand(64, generator=g) > 0.2
    for scale in (True, False):
        torch.testing.assert_close(group_advantages(r, 8, scale=scale, eps=1e-4), mg.trl_advantages(r, 8, scale=scale))
        torch.testing.assert_close(group_advantages(r, 8, scale=scale, eps=1e-4, valid=valid),
                                   mg.trl_advantages(r, 8, scale=scale, valid=valid))


@pytest.fixture(scope='module')
def lm():
    return toy_lm(eos_bias=2.0)


def _batch(lm, n=4, T=10, temperature=1.0, seed=0):
    model, tok = lm
    res = HFEngine(model, tok).generate(["Question: 1+1?", "def f(x):", "The"], n,
                                        SamplingParams(max_new_tokens=T, temperature=temperature, seed=seed))
    return res, collate_completions(res, tok.pad_token_id)


def test_sequence_logprobs_match_trl_fused_head(lm):
    mg = _need_trl()
    model, _ = lm
    _, b = _batch(lm, temperature=0.7)
    K = b['completion_ids'].shape[1]
    with torch.no_grad():
        lp, ent = sequence_logprobs(model, b['input_ids'], b['attention_mask'], b['completion_mask'], with_entropy=True, temperature=0.7)
        tlp, tent = mg.trl_logprobs(model, b['input_ids'], b['attention_mask'], K, temperature=0.7)
    m = b['completion_mask'].bool()
    torch.testing.assert_close(lp[m], tlp[m], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent[m], tent[m], atol=1e-5, rtol=1e-5)


# ---- truncation, end to end -------------------------------------------------------------------------------------

def test_masked_truncated_rows_do_not_move_the_policy(lm):
    "With mask_truncated, the gradient equals the gradient of the batch without the truncated rows."
    model, tok = lm
    res, b = _batch(lm, n=6, T=6, seed=1)
    trunc = b['truncated']
    assert 0 < trunc.sum() < len(trunc)
    rewards = torch.rand(len(trunc))
    adv = group_advantages(rewards, 6, valid=~trunc)
    def grads(batch, adv, mask):
        model.zero_grad()
        lp, _ = sequence_logprobs(model, batch['input_ids'], batch['attention_mask'], batch['completion_mask'])
        loss, _ = grpo_loss(lp, None, None, adv, mask, kl_coef=0.0)
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}
    g_masked = grads(b, adv, loss_mask(b['completion_mask'], trunc, mask_truncated=True))
    keep = [c for g in res for c in g if not c.truncated]
    b2 = collate_completions([keep], tok.pad_token_id)
    g_kept = grads(b2, adv[~trunc], b2['completion_mask'])
    for n in g_masked: torch.testing.assert_close(g_masked[n], g_kept[n], atol=1e-6, rtol=1e-4)
    model.zero_grad()


def test_truncated_rows_have_zero_advantage_when_invalid():
    r, trunc = torch.tensor([1., 0., 1., 0.]), torch.tensor([False, True, False, False])
    a = group_advantages(r, 4, valid=~trunc)
    assert a[1] == 0 and torch.allclose(a[[0, 2, 3]].sum(), torch.tensor(0.), atol=1e-5)


# ---- does it learn? ---------------------------------------------------------------------------------------------

def test_a_few_grpo_steps_raise_a_simple_reward():
    "Reward = share of tokens in a target set; 12 on-policy steps must raise it, and every parameter moves."
    torch.manual_seed(0)
    model, tok = toy_lm(seed=3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    target = set(range(100, 200))
    prompts, n = ["Question: 1+1?", "def f(x):"], 8
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    eng = HFEngine(model, tok)
    def reward(c): return sum(t in target for t in c.ids) / len(c.ids)
    means = []
    for step in range(12):
        res = eng.generate(prompts, n, SamplingParams(max_new_tokens=8, seed=step))
        r = torch.tensor([reward(c) for g in res for c in g])
        means.append(r.mean().item())
        b = collate_completions(res, tok.pad_token_id)
        model.train()
        lp, ent = sequence_logprobs(model, b['input_ids'], b['attention_mask'], b['completion_mask'], with_entropy=True)
        loss, st = grpo_loss(lp, None, None, group_advantages(r, n), b['completion_mask'], kl_coef=0.0,
                             entropies=ent, entropy_coef=0.001)
        opt.zero_grad(); loss.backward(); opt.step()
    assert sum(means[-3:]) / 3 > sum(means[:3]) / 3 + 0.15, means
    assert all(not torch.equal(before[k], p) for k, p in model.named_parameters())
