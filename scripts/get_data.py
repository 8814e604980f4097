"""`make data`: download the real benchmark files that the tests and notebooks read, in the layout of ../shared/data.

Usage: python scripts/get_data.py [--out data] [--timeout 10]

Writes four JSONL files (one JSON object per line) into `--out` (default `data/` at the repository root, where
tests/conftest.py and the notebooks look when STAGED_RL_DATA_DIR is not set):

| file | rows | fields | source |
|---|---|---|---|
| math500.jsonl | 500 | id, problem, answer, level (float) | Hub: HuggingFaceH4/MATH-500 (id = unique_id) |
| aime2024.jsonl | 30 | id (aime2024-<I=1, II=2>-<n mod 15>), problem, answer (str), solution | Hub: HuggingFaceH4/aime_2024 |
| humaneval.jsonl | 164 | task_id, prompt, entry_point, canonical_solution, test | Hub: openai/openai_humaneval |
| codeforces_stdin_sample.jsonl | 60 | id (cf-<i>), problem, tests [{input, output}] | GitHub: agentica-project/rllm, rllm/data/test/code/codeforces.json (first 60 rows) |

The Hub ids are those of `staged_rl.data.HUB_BENCHMARKS` (what `load_benchmark` reads online). Offline, the
script stops at once with one line saying what it could not reach. Each file is checked (row count, and every
row loads through `staged_rl.data.load_problems`) before it replaces anything in `--out`.
"""
import argparse, json, os, re, socket, sys, tempfile, urllib.parse, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODEFORCES_URL = 'https://raw.githubusercontent.com/agentica-project/rllm/main/rllm/data/test/code/codeforces.json'
COUNTS = {'math500': 500, 'aime2024': 30, 'humaneval': 164, 'codeforces_stdin_sample': 60}
HE_FIELDS = ('task_id', 'prompt', 'entry_point', 'canonical_solution', 'test')

# ---- rows of the sources -> rows of the files (pure functions; tests/test_get_data.py runs them on local rows) -----
def math500_rows(rows: list) -> list:
    "HuggingFaceH4/MATH-500 rows (problem, solution, answer, subject, level, unique_id) -> id, problem, answer, level."
    return [{'id': r['unique_id'], 'problem': r['problem'], 'answer': str(r['answer']), 'level': float(r['level'])} for r in rows]

def _aime_key(r: dict) -> tuple:
    "(contest 1 or 2, problem number) from the AoPS url of an aime_2024 row, e.g. .../2024_AIME_II_Problems/Problem_4."
    m = re.search(r'AIME_(I{1,2})_Problems/Problem_(\d+)', str(r.get('url', '')))
    if not m: raise ValueError(f"aime_2024 row {r.get('id')!r}: url {r.get('url')!r} does not name the contest (AIME_I/II) and problem")
    return len(m.group(1)), int(m.group(2))

def aime2024_rows(rows: list) -> list:
    "HuggingFaceH4/aime_2024 rows (id, problem, solution, answer, url, year) -> id, problem, answer, solution; AIME I first."
    keyed = sorted(((_aime_key(r), r) for r in rows), key=lambda kr: kr[0])
    # ids as in the rllm copy of ../shared/data: problem 15 of each contest is numbered 0 (aime2024-1-0 follows aime2024-1-14)
    return [{'id': f"aime2024-{c}-{n % 15}", 'problem': r['problem'], 'answer': str(r['answer']), 'solution': r['solution']} for (c, n), r in keyed]

def humaneval_rows(rows: list) -> list:
    "openai/openai_humaneval rows: the five fields, in the order of the file."
    return [{k: r[k] for k in HE_FIELDS} for r in rows]

def codeforces_rows(rows: list, n: int = 60) -> list:
    "rllm codeforces.json rows (problem, tests as a list or a JSON string of {input, output}) -> id cf-<i>, problem, tests; the first n."
    out = []
    for i, r in enumerate(rows[:n]):
        tests = json.loads(r['tests']) if isinstance(r['tests'], str) else r['tests']
        out.append({'id': f"cf-{i}", 'problem': r['problem'], 'tests': [{'input': t['input'], 'output': t['output']} for t in tests]})
    return out

def write_file(rows: list, name: str, out: Path, expect: int | None = None) -> Path:
    "Check `rows` (count, and that `load_problems` reads every one), then write out/<name>.jsonl atomically."
    from staged_rl.data import load_problems
    if expect is not None and len(rows) != expect: raise ValueError(f"{name}: {len(rows)} rows, expected {expect}")
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix='.jsonl', dir=out)
    try:
        with os.fdopen(fd, 'w') as f:
            for r in rows: f.write(json.dumps(r, ensure_ascii=True) + '\n')
        load_problems(tmp)  # raises with the file, the line and the field on a row the loaders would refuse
        os.replace(tmp, out/f"{name}.jsonl")
    finally:
        if os.path.exists(tmp): os.unlink(tmp)
    return out/f"{name}.jsonl"

# ---- downloads --------------------------------------------------------------------------------------------------
def reachable(url: str, timeout: float) -> str | None:
    "None when the host of `url` accepts a connection on its port (443 by default), else why not."
    u = urllib.parse.urlparse(url)
    try: socket.create_connection((u.hostname, u.port or 443), timeout=timeout).close(); return None
    except OSError as e: return f"{type(e).__name__}: {e}"

def hub_rows(name: str) -> list:
    "All rows of benchmark `name` from the Hub, through `datasets` (ids from staged_rl.data.HUB_BENCHMARKS)."
    import datasets
    from staged_rl.data import HUB_BENCHMARKS
    hub_id, conf, split = HUB_BENCHMARKS[name]
    return list(datasets.load_dataset(hub_id, conf, split=split))

def codeforces_sample() -> list:
    "The first 60 rows of rllm's codeforces.json, in the file's layout."
    with urllib.request.urlopen(CODEFORCES_URL, timeout=60) as r: return codeforces_rows(json.load(r), COUNTS['codeforces_stdin_sample'])

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT/'data'), help='folder to write the four files into (default: data/)')
    ap.add_argument('--timeout', type=float, default=10.0, help='seconds to wait for a connection')
    a = ap.parse_args(argv)
    out = Path(a.out)
    if os.environ.get('HF_HUB_OFFLINE') == '1' or os.environ.get('HF_DATASETS_OFFLINE') == '1':
        print("make data: HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set; unset it to download (or set STAGED_RL_DATA_DIR to a folder with the files)", file=sys.stderr); return 1
    for url in (os.environ.get('HF_ENDPOINT', 'https://huggingface.co'), CODEFORCES_URL):
        why = reachable(url, a.timeout)
        if why: print(f"make data: cannot reach {urllib.parse.urlparse(url).netloc} ({why}); offline? copy the files and set STAGED_RL_DATA_DIR instead", file=sys.stderr); return 1
    try: import datasets  # noqa: F401
    except ImportError: print("make data: needs the `datasets` package: pip install datasets", file=sys.stderr); return 1
    convert = {'math500': lambda: math500_rows(hub_rows('math500')), 'aime2024': lambda: aime2024_rows(hub_rows('aime2024')),
               'humaneval': lambda: humaneval_rows(hub_rows('humaneval')), 'codeforces_stdin_sample': codeforces_sample}
    for name, rows in convert.items():
        try: print(write_file(rows(), name, out, COUNTS[name]))
        except (KeyError, ValueError, TypeError, OSError) as e:  # a changed upstream schema or a failed download: one line
            print(f"make data: {name}: {type(e).__name__}: {e}", file=sys.stderr); return 1
    print(f"done: tests and notebooks read {out} (or export STAGED_RL_DATA_DIR={out.resolve()})")
    return 0

if __name__ == '__main__':
    sys.exit(main())
