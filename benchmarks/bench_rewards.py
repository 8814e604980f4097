"""Reward throughput: math responses verified per second, and code samples graded per second against a naive baseline.

Usage: python benchmarks/bench_rewards.py [--he-subset 40] [--repeats 1]

Math: the MATH-500 self-check (each gold answer written as a response ending in `\\boxed{gold}`) through a fresh
`DeadlinePool` with 1 and then 2 workers, each warmed first (SymPy imported) so that import time is not counted;
a first pass (gold parses not cached yet) and a second pass (cached, as in GRPO where each gold is scored for a
group of samples).

Code: HumanEval canonical solutions (prompt + canonical_solution in a ```python block) graded by `score_code_batch`
(one sandbox per sample, all its asserts through one interpreter) with 1 and 2 workers, against a naive grader run
in the same process: one plain `python -c` subprocess (the real interpreter, no shell, no sandbox, no pyenv shim)
per test case, i.e. per top-level assert of `check`, with the same number of concurrent processes. Both use the
same subset of problems; the ratio is samples/s of ours over the baseline's. The baseline runs reference solutions
only (trusted code), which is why it may run outside the sandbox.

Also printed: Codeforces stdin programs graded per second (one sandbox per sample, one fork per case).
"""
import argparse, ast, json, os, resource, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from staged_rl.math_reward import DeadlinePool, extract_boxed, shared_pool
from staged_rl.code_reward import score_code_batch, _compile_check
from staged_rl.sandbox import isolation_layers

_ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get('STAGED_RL_DATA_DIR') or next((d for d in (_ROOT / 'data', _ROOT.parent / 'shared' / 'data') if d.exists()), _ROOT / 'data'))


def rows(name): return [json.loads(l) for l in open(DATA / f'{name}.jsonl')]


def cpu_s(pids=()) -> float:
    "CPU seconds used so far by this process, its reaped children, and the given processes with their reaped children."
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    tot = a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
    for p in pids:
        try: tot += sum(int(x) for x in open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[11:15]) / os.sysconf('SC_CLK_TCK')
        except OSError: pass
    return tot


def bench_math(workers: int) -> tuple:
    "(first-pass responses/s, cached-gold responses/s, all correct) on the MATH-500 self-check."
    rs = rows('math500')
    tasks = [('staged_rl.math_reward:verify_box', (extract_boxed(f"The answer is $\\boxed{{{r['answer']}}}$."), r['answer']), 30) for r in rs]
    with DeadlinePool(workers, warmup_s=120) as pool:
        pool.run([('staged_rl.math_reward:verify_box', ('1', '1'), 60)] * workers, default=0.0)
        t0 = time.perf_counter(); got = pool.run(tasks, default=0.0); t1 = time.perf_counter()
        again = pool.run(tasks, default=0.0); t2 = time.perf_counter()
    return len(tasks) / (t1 - t0), len(tasks) / (t2 - t1), sum(got) == len(rs) and sum(again) == len(rs)


def he_items(n: int) -> list:
    out = []
    for r in rows('humaneval')[:n]:
        resp = f"```python\n{r['prompt']}{r['canonical_solution']}```"
        tests = {'kind': 'functional', 'entry_point': r['entry_point'], 'test': r['test'], 'prelude': r['prompt']}
        out.append((r, resp, tests))
    return out


def naive_programs(r) -> list:
    "One standalone program per test case: solution + test module + a check() holding the set-up and that one case."
    tree = ast.parse(r['test'])
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == 'check'][-1]
    mod = ast.unparse(ast.Module([n for n in tree.body if n is not fn], []))
    setup, progs = [], []
    for st in fn.body:
        if any(isinstance(x, ast.Assert) for x in ast.walk(st)):
            body = '\n'.join('    ' + l for l in ast.unparse(ast.Module(setup + [st], [])).splitlines())
            progs.append(f"{r['prompt']}{r['canonical_solution']}\n{mod}\ndef check({fn.args.args[0].arg}):\n{body}\ncheck({r['entry_point']})\n")
        else: setup.append(st)
    return progs


def bench_naive(items, workers: int) -> tuple:
    "(samples/s, cases run, all passed) for one plain subprocess per test case."
    progs = [(i, p) for i, (r, _, _) in enumerate(items) for p in naive_programs(r)]
    def run(ip):
        return ip[0], subprocess.run([sys.executable, '-c', ip[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30).returncode == 0
    t0, c0 = time.perf_counter(), cpu_s()
    with ThreadPoolExecutor(workers) as ex: res = list(ex.map(run, progs))
    dt = time.perf_counter() - t0
    return len(items) / dt, len(progs), all(ok for _, ok in res), 1e3 * (cpu_s() - c0) / len(items)


def bench_ours(items, workers: int) -> tuple:
    resp, tests = [x[1] for x in items], [x[2] for x in items]
    score_code_batch(resp[:workers * 2], tests[:workers * 2], workers=workers)  # warm: workers started, isolation probed
    pids = [w.proc.pid for w in shared_pool().ws]
    t0, c0 = time.perf_counter(), cpu_s(pids)
    got = score_code_batch(resp, tests, workers=workers)
    dt = time.perf_counter() - t0
    return len(items) / dt, sum(got) == len(items), 1e3 * (cpu_s(pids) - c0) / len(items)


def bench_stdin(workers: int) -> tuple:
    rs = rows('codeforces_stdin_sample')
    resp = ["```python\nimport sys\nsys.stdout.write(%r)\n```" % r['tests'][0]['output'] for r in rs]
    tests = [{'kind': 'stdin', 'cases': r['tests']} for r in rs]
    score_code_batch(resp[:4], tests[:4], workers=workers)
    t0 = time.perf_counter(); score_code_batch(resp, tests, workers=workers); dt = time.perf_counter() - t0
    return len(rs) / dt, sum(len(r['tests']) for r in rs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--he-subset', type=int, default=40, help='HumanEval problems for the ours-vs-naive comparison')
    args = ap.parse_args()
    print(f"isolation layers: {isolation_layers()}")
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}")
    print("== math: MATH-500 self-check (500 responses) ==")
    for w in (1, 2):
        cold, warm, ok = bench_math(w)
        print(f"workers={w}: {cold:7.1f} responses/s (first pass), {warm:7.1f} responses/s (gold parses cached), all verified: {ok}")
    print(f"== code: HumanEval canonical solutions ==")
    full = he_items(164)
    for w in (1, 2):
        sps, ok, cms = bench_ours(full, w)
        print(f"ours  workers={w}: {sps:6.1f} samples/s on all 164 ({cms:5.1f} CPU ms/sample), all scored 1.0: {ok}")
    sub = full[:args.he_subset]
    for w in (1, 2):
        ours, ok1, c1 = bench_ours(sub, w)
        naive, ncases, ok2, c2 = bench_naive(sub, w)
        print(f"subset of {len(sub)} ({ncases} test cases), {w} concurrent: ours {ours:6.1f} samples/s ({c1:5.1f} CPU ms/sample), "
              f"naive 1 subprocess/case {naive:5.1f} samples/s ({c2:5.1f} CPU ms/sample): ratio {ours / naive:4.1f}x wall, "
              f"{c2 / c1:4.1f}x CPU (all passed: {ok1 and ok2})")
    sps, ncases = bench_stdin(2)
    print(f"== stdin: Codeforces sample (60 programs, {ncases} cases), workers=2: {sps:6.1f} programs/s ==")


if __name__ == '__main__':
    main()
