"""Sandbox start: tiny-world code programs graded per second with the compiled bootstrap against parsing it in every sandbox.

Usage: python benchmarks/bench_sandbox_start.py [--programs 60] [--rounds 5]

Every graded program gets a fresh sandbox (bubblewrap, a new interpreter, lockdown, loading the program, the
sweep); on the tiny world's code problems (five asserts on a one-line-per-step function) that start is nearly
all of the grading. Before, the interpreter received the bootstrap (`staged_rl.sandbox.BOOT_SRC`, some 400 lines)
as `-c` source and parsed and compiled it in every sandbox; now the grading process compiles it once
(`boot_code`) and every sandbox reads the marshalled code object from its stdin (`BOOT_STUB`).

The baseline is the same path with the old work put back: the bootstrap is sent as source and the stub compiles it
(exactly what `-c BOOT_SRC` did), so the two differ only in the compile. Rounds alternate the two in one grading
process; each round grades the same programs (the problems' worked solutions, so every assert runs).

Then, for scale, the same compiled path in a child process with the cgroups switched off
(`STAGED_RL_SANDBOX_DISABLE=cgroup`): joining a sandbox's cgroups (a cgroup v1 migration) is part of every start, and
is not a lever (the cgroups cap a program's memory and processes); the line says what it costs here. Last line:
`sandbox start (compiled bootstrap vs source): R.RRx programs/s (medians)`.
"""
import argparse, os, re, statistics, subprocess, sys, time
from dataclasses import asdict
from staged_rl import sandbox as S
from staged_rl.code_reward import _judge, extract_code
from staged_rl.tiny import tiny_splits

SOURCE_STUB = S.BOOT_STUB.replace("exec(marshal.loads(", "exec(compile(").replace("_read(8), 'big'))))", "_read(8), 'big')).decode(), '<boot>', 'exec'))")


def grade_all(programs, lim) -> float:
    "Seconds to grade every program once (each in its own sandbox)."
    t = time.perf_counter()
    for code, tests in programs:
        score = _judge(code, tests, lim)[0]
        if score != 1.0: sys.exit(f"a worked solution scored {score}: the benchmark is not grading what it should")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--programs', type=int, default=60)
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--compiled-only', action='store_true', help='time the compiled path only (the child run without cgroups)')
    a = ap.parse_args()
    S.become_sandbox_host(); print('isolation layers:', S.isolation_layers())
    probs = [p for p in tiny_splits()['code']][:a.programs]
    if len(probs) < a.programs: sys.exit(f"the tiny world has {len(probs)} code problems; asked for {a.programs}")
    programs, lim = [(extract_code(p.meta['solution']), p.tests) for p in probs], asdict(S.SandboxLimits())
    compiled = (S.BOOT_STUB, S.boot_code)
    source = (SOURCE_STUB, lambda python: S.BOOT_SRC.encode())
    grade_all(programs[:5], lim)  # warm: the host probe, the first interpreter start from disk
    if a.compiled_only:
        c = statistics.median(grade_all(programs, lim) for _ in range(a.rounds))
        print(f"medians: compiled {c / len(programs) * 1e3:.1f} ms per program"); return
    t = {'compiled': [], 'source': []}
    for r in range(a.rounds):
        for name, (stub, code) in (('compiled', compiled), ('source', source)) if r % 2 == 0 else (('source', source), ('compiled', compiled)):
            S.BOOT_STUB, S.boot_code = stub, code
            t[name].append(grade_all(programs, lim))
        S.BOOT_STUB, S.boot_code = compiled
        print(f"round {r + 1}: compiled {t['compiled'][-1] / len(programs) * 1e3:.1f} ms, source {t['source'][-1] / len(programs) * 1e3:.1f} ms per program")
    c, s = statistics.median(t['compiled']), statistics.median(t['source'])
    print(f"medians: compiled {c / len(programs) * 1e3:.1f} ms, source {s / len(programs) * 1e3:.1f} ms per program ({len(programs)} programs x {a.rounds} rounds)")
    child = subprocess.run([sys.executable, __file__, '--programs', str(a.programs), '--rounds', str(a.rounds), '--compiled-only'],
                           env={**os.environ, 'STAGED_RL_SANDBOX_DISABLE': 'cgroup'}, capture_output=True, text=True)
    got = re.search(r"medians: compiled ([0-9.]+) ms", child.stdout)
    if got is None: sys.exit(f"the run without cgroups failed: {child.stderr[-500:]}")
    print(f"for scale: compiled, without the cgroups (not an option), {got.group(1)} ms per program, in a child process right after")
    print(f"sandbox start (compiled bootstrap vs source): {s / c:.2f}x programs/s (medians)")


if __name__ == '__main__':
    main()
