"""The tiny world end to end at smoke scale: problems, tokenizer, a freshly built ladder, the real verifiers."""
import json, random
import pytest
from staged_rl.config import load_config, ROLES
from staged_rl.data import Problem, load_problems, build_prompt
from staged_rl import tiny
from staged_rl.models import load_model, resolve_model

TEXTS = ["x  y\n\n\\boxed{3}", "```python\ndef f(x):\n    x = max(x, 10)\n\treturn x\n```\n",
         "Start with 7, then apply: +3.\\n {a}{{b}} \\\\frac{1}{2}  \n \n", "  leading and trailing  ", "é ü 漢字 ∑ — “q”"]


@pytest.fixture(scope='module')
def cfg(tmp_path_factory):
    return load_config('smoke', [f"tiny.cache_dir={tmp_path_factory.mktemp('tinycache')}"])


def rebuild_forbidden(*a, **k): raise AssertionError("build_ladder trained again: the cached ladder was not reused")

@pytest.fixture(scope='module')
def ladder(cfg):
    paths = tiny.build_ladder(cfg)
    build, tiny._build = tiny._build, rebuild_forbidden  # a second call must come from the cache, without training
    try: assert tiny.build_ladder(cfg) == paths
    finally: tiny._build = build
    return paths

def arch(folder):
    "(hidden size, layers, parameter count) of a saved model."
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(folder)
    return m.config.hidden_size, m.config.num_hidden_layers, sum(p.numel() for p in m.parameters())


def test_sources_deterministic_and_disjoint(cfg):
    sp = {s: load_problems(f"tiny:{s}", cfg=cfg) for s in tiny.SPLITS}
    assert [len(sp[s]) for s in tiny.SPLITS] == [cfg.tiny.n_math, cfg.tiny.n_code, cfg.tiny.n_heldout, cfg.tiny.n_heldout]
    for d in ('math', 'code'):
        assert not {p.prompt for p in sp[d]} & {p.prompt for p in sp[f"{d}_heldout"]}
        assert all(p.domain == d for p in sp[d] + sp[f"{d}_heldout"])
    assert [p.to_dict() for p in load_problems('tiny:math', cfg=cfg)] == [p.to_dict() for p in sp['math']]
    other = load_config('smoke', ['tiny.seed=1'])
    assert [p.prompt for p in load_problems('tiny:math', cfg=other)] != [p.prompt for p in sp['math']]
    assert len(load_problems('tiny:math')) == 600  # cfg None: TinyConfig defaults
    with pytest.raises(ValueError, match='tiny:math'): load_problems('tiny:physics', cfg=cfg)


def test_files_load_with_auto_classes(ladder, cfg):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    weights = []
    for r in ROLES:
        m, t = AutoModelForCausalLM.from_pretrained(ladder[r]), AutoTokenizer.from_pretrained(ladder[r])
        assert m.config.model_type == 'qwen2' and t.eos_token == '<|im_end|>' and t.pad_token == '<|endoftext|>'
        assert m.generation_config.eos_token_id == t.eos_token_id
        weights.append(m.model.embed_tokens.weight.detach())
    # the smoke roles share one architecture (checked for every role in test_ladder_roles_are_the_configured_models)
    # and differ by their SFT steps only: every role's weights are its own checkpoint
    assert all(not w.equal(v) for i, w in enumerate(weights) for v in weights[i + 1:])
    m, t = load_model('tiny:small', cfg=cfg)
    assert resolve_model('tiny:small', cfg) == str(ladder['small'])
    assert type(m).__name__ == 'Qwen2ForCausalLM'


def test_ladder_roles_are_the_configured_models(ladder, cfg, tmp_path):
    "Each role is the (hidden, layers) the config gives it: on the smoke ladder, and on a ladder of four different sizes."
    tc = cfg.tiny
    assert [arch(ladder[r])[:2] for r in ROLES] == list(zip(tc.hidden_sizes, tc.n_layers))
    # a few SFT steps are enough to check that the sizes reach the files and that bigger roles have more parameters
    mixed = load_config('smoke', [f"tiny.cache_dir={tmp_path}", 'tiny.hidden_sizes=[16,32,32,48]', 'tiny.n_layers=[1,1,2,2]',
                                  'tiny.sft_steps=[2,3,2,2]', 'tiny.sft_problems=64', 'tiny.sft_batch=4'])
    paths = tiny.build_ladder(mixed, verbose=False)
    got = [arch(paths[r]) for r in ROLES]
    assert [g[:2] for g in got] == [(16, 1), (32, 1), (32, 2), (48, 2)]
    sizes = [g[2] for g in got]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4, sizes
    runs = json.loads((tiny.ladder_dir(mixed)/'ladder.json').read_text())['build']['runs']
    assert sorted((r['hidden'], r['layers'], r['params']) for r in runs) == sorted(got)


def test_tokenizer_round_trip_through_model_folder(ladder, cfg):
    from transformers import AutoTokenizer
    t = AutoTokenizer.from_pretrained(ladder['small'])
    sp = tiny.tiny_splits(cfg.tiny)
    texts = TEXTS + [p.meta['solution'] for p in sp['math'][:5] + sp['code'][:5]]
    for s in texts: assert t.decode(t.encode(s, add_special_tokens=False)) == s, repr(s)
    p = sp['math'][0]
    prompt = build_prompt(p, t)
    assert prompt.startswith('<|im_start|>user\n') and prompt.endswith('<|im_start|>assistant\n') and p.prompt in prompt
    ids = t.encode(prompt, add_special_tokens=False)
    assert ids[0] == t.convert_tokens_to_ids('<|im_start|>') and t.decode(ids) == prompt
    assert t.decode(t.encode(p.meta['solution']) + [t.eos_token_id], skip_special_tokens=True) == p.meta['solution']


def test_real_verifiers_grade_generated_problems(cfg):
    from staged_rl import rewards
    sp = tiny.tiny_splits(cfg.tiny)
    probs = sp['math'][:6] + sp['code'][:6]
    gold = [p.meta['solution'] for p in probs]
    wrong = [f"{p.meta['solution'].rsplit(chr(10), 1)[0]}\n\\boxed{{{int(p.answer) + 1}}}" if p.domain == 'math'
             else "```python\ndef f(x):\n    return 12345\n```" for p in probs]
    assert rewards.score_batch(probs, gold, workers=2) == [1.0]*len(probs)
    assert rewards.score_batch(probs, wrong, workers=2) == [0.0]*len(probs)
    # one clause off: partial credit per assert is possible, full credit is not
    p = next(q for q in sp['code'] if 'max(' in q.meta['solution'] or 'min(' in q.meta['solution'])
    bad = p.meta['solution'].replace('max(', 'min(') if 'max(' in p.meta['solution'] else p.meta['solution'].replace('min(', 'max(')
    assert 0 <= rewards.score_batch([p], [bad], workers=1)[0] < 1


def test_cmd_ladder_orders_the_roles(ladder, cfg, capsys):
    from staged_rl.cli import main
    assert main(['ladder', 'smoke', f"tiny.cache_dir={cfg.tiny.cache_dir}"]) == 0
    acc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(acc) == list(ROLES)
    print(acc)
    assert acc['strongest'] >= acc['small'] + 0.15, acc
    assert 0 < acc['small'] < 1, acc
    vals = [acc[r] for r in ROLES]
    assert all(b >= a - 0.1 for a, b in zip(vals, vals[1:])), acc  # non-strict: noise of a small held-out set


def test_load_model_accepts_folders_and_rejects_bad_roles(ladder, cfg):
    m, t = load_model(str(ladder['strongest']), dtype='bfloat16')
    assert next(m.parameters()).dtype.__str__() == 'torch.bfloat16' and t.pad_token_id is not None
    with pytest.raises(ValueError, match='tiny:small'): resolve_model('tiny:huge', cfg)
    assert resolve_model('deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B') == 'deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B'
