"""The tiny world end to end at smoke scale: problems, tokenizer, a freshly built ladder, the real verifiers."""
import json, random, time
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


@pytest.fixture(scope='module')
def ladder(cfg):
    t0 = time.time(); paths = tiny.build_ladder(cfg); built = time.time() - t0
    t0 = time.time(); again = tiny.build_ladder(cfg); reused = time.time() - t0
    assert again == paths and reused < 2, f"second build_ladder call should hit the cache (took {reused:.1f}s)"
    print(f"smoke ladder built in {built:.1f}s")
    return paths


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
    sizes = []
    for r in ROLES:
        m, t = AutoModelForCausalLM.from_pretrained(ladder[r]), AutoTokenizer.from_pretrained(ladder[r])
        assert m.config.model_type == 'qwen2' and t.eos_token == '<|im_end|>' and t.pad_token == '<|endoftext|>'
        assert m.generation_config.eos_token_id == t.eos_token_id
        sizes.append(sum(p.numel() for p in m.parameters()))
    assert sizes == sorted(sizes)
    m, t = load_model('tiny:small', cfg=cfg)
    assert resolve_model('tiny:small', cfg) == str(ladder['small'])
    assert type(m).__name__ == 'Qwen2ForCausalLM'


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
    assert tiny.cmd_ladder(['smoke', f"tiny.cache_dir={cfg.tiny.cache_dir}"]) == 0
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
