"""The math reward (staged_rl.math_reward) on real benchmark answers, and its time bound on pathological inputs.

Time bounds here are safety bounds only (a missing deadline runs for hours; the bounds are 10x or more what a deadline
allows), so that a loaded machine does not fail them; how long the deadlines take is measured by
`benchmarks/bench_timeouts.py`."""
import json, os, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import pytest
from staged_rl.math_reward import extract_boxed, score_math, score_math_batch, box_is_sane, DeadlinePool

def _rows(shared_data, name): return [json.loads(l) for l in open(shared_data / f'{name}.jsonl')]
def boxed(ans): return f"Let me think.\n</think>\nTherefore the final answer is $\\boxed{{{ans}}}$."

@pytest.mark.parametrize('name,count', [('math500', 500), ('aime2024', 30)])
def test_gold_answers_verify_against_themselves(shared_data, name, count):
    rows = _rows(shared_data, name)
    assert len(rows) == count
    golds = [str(r['answer']) for r in rows]
    got = score_math_batch([boxed(g) for g in golds], golds, workers=2)
    bad = [(r['id'], g) for r, g, s in zip(rows, golds, got) if s != 1.0]
    assert not bad, f"{len(bad)} gold answers do not verify against themselves: {bad[:10]}"

def _wrong(g:str) -> str|None:
    "A wrong answer for integer golds (the number plus 1)."
    try: return str(int(g.replace(',', '').replace('\\!', '')) + 1)
    except ValueError: return None

def test_wrong_numbers_score_zero(shared_data):
    rows = _rows(shared_data, 'math500') + _rows(shared_data, 'aime2024')
    pairs = [(_wrong(str(r['answer'])), str(r['answer'])) for r in rows]
    pairs = [(w, g) for w, g in pairs if w is not None]
    assert len(pairs) > 250
    got = score_math_batch([boxed(w) for w, _ in pairs], [g for _, g in pairs], workers=2)
    assert [p for p, s in zip(pairs, got) if s != 0.0] == []

def test_missing_box_scores_zero(shared_data):
    rows = _rows(shared_data, 'math500')[:100]
    golds = [str(r['answer']) for r in rows]
    resp = [f"The final answer is ${g}$." for g in golds] + [f"<think>\\boxed{{{g}}} and then I ran out of tokens" for g in golds]
    assert score_math_batch(resp, golds * 2, workers=2) == [0.0] * 200

@pytest.mark.parametrize('text,want', [
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"), (r"a \boxed{1} b \boxed{2}", "2"), (r"$\boxed 7$", "7"),
    (r"\fbox{x+1}", "x+1"), (r"\boxed{\{1, 2\}}", r"\{1, 2\}"), (r"\boxed{a{b}c}", "a{b}c"),
    (r"<think>\boxed{1}</think>\boxed{3}", "3"), (r"<think>\boxed{1}</think>none", None), (r"<think>\boxed{1}", None),
    (r"\boxed{open", None), ("", None)])
def test_extract_boxed(text, want):
    assert extract_boxed(text) == want

def test_equivalent_forms():
    cases = [(r"\frac{1}{2}", "0.5"), (r"\dfrac{14}{3}", r"\frac{14}{3}"), (r"2\sqrt{3}", r"\sqrt{12}"), ("x=5", "5"),
             (r"\text{(C)}", "C"), (r"[-2, 7)", "[-2,7)"), (r"30^\circ", "30"), (r"\{1,2\}", r"\{2,1\}")]
    assert score_math_batch([boxed(a) for _, a in cases], [g for g, _ in cases]) == [1.0] * len(cases)
    wrong = [(r"\left( 3, \frac{\pi}{2} \right)", r"(3, \pi)"), ("p - q", "q - p"), (r"[-2,7)", "(-2,7)"), (r"\text{(C)}", "D")]
    assert score_math_batch([boxed(a) for _, a in wrong], [g for g, _ in wrong]) == [0.0] * len(wrong)

EVIL = [r"9^{9^{9^{9}}}", r"10^{10^{10}}", r"2^{100000000}", r"100000!", r"(9999!)!", r"\sum_{k=1}^{10^{9}} k^{9}",
        "(" * 3000 + "1" + ")" * 3000, r"\frac{1}{" * 200 + "2" + "}" * 200, "1+" * 50000 + "1"]

def test_pathological_inputs_are_bounded_in_threads():
    score_math(boxed("1"), "1")  # warm the shared worker
    t0 = time.monotonic()
    with ThreadPoolExecutor(3) as ex: got = list(ex.map(lambda e: score_math(boxed(e), "5", timeout_s=2), EVIL))
    dt = time.monotonic() - t0
    assert got == [0.0] * len(EVIL)
    assert dt < 10 * 2 * len(EVIL), f"took {dt:.1f}s: 10x the deadlines of all the inputs one after the other"
    assert score_math(boxed("5"), "5") == 1.0  # the pool recovered

def test_pathological_batch_is_bounded_and_ordered():
    resp = [boxed(e) for e in EVIL] + [boxed("7"), "x" * (1 << 20) + boxed("7"), "y" * (1 << 20)]
    t0 = time.monotonic()
    got = score_math_batch(resp, ["5"] * len(EVIL) + ["7", "7", "7"], workers=2, timeout_s=2)
    assert got == [0.0] * len(EVIL) + [1.0, 1.0, 0.0]
    assert time.monotonic() - t0 < 10 * 2 * len(resp)  # 10x the deadlines one after the other

def test_bounded_inside_a_worker_process():
    "score_math is bounded in a worker process too (its own pool), and in that process's threads."
    code = ("import threading, time\nfrom staged_rl.math_reward import score_math\nout = []\n"
            "t = threading.Thread(target=lambda: out.append(score_math(r'\\boxed{(9999!)!}', '5', timeout_s=2))); t0 = time.monotonic(); t.start(); t.join()\n"
            "print(out, time.monotonic() - t0 < 10 * 2 + 60)")  # 10x the deadline, plus the worker's start (imports)
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "[0.0] True", r.stderr[-2000:]

def test_guards():
    for e in EVIL[:4] + EVIL[6:]: assert not box_is_sane(e), e
    for ok in [r"\frac{1}{2}", r"2^{10}", r"x^{2^n}", r"10!", r"\left( 3, \frac{\pi}{2} \right)"]: assert box_is_sane(ok), ok

def test_batch_errors():
    with pytest.raises(ValueError, match='2 responses but 1 golds'): score_math_batch(["a", "b"], ["1"])
    with pytest.raises(ValueError, match=r'golds\[0\] must be a string'): score_math_batch(["a"], [1])

def test_deadline_pool_replaces_late_workers():
    with DeadlinePool(2, warmup_s=1) as pool:
        t0 = time.monotonic()
        out = pool.run([('time:sleep', (300,), 0.5)] * 3 + [('math:sqrt', (4,), 5)], default=-1)
        assert out == [-1, -1, -1, 2.0] and time.monotonic() - t0 < 120  # far above the deadlines, far below the sleeps
