"""`make data` (scripts/get_data.py): the rows of the Hub / GitHub sources become files in the layout of ../shared/data.

The download itself needs the internet; here the conversion and writing run on local rows: hand-made rows in the
sources' schemas, and (when the real files are present) the real files turned back into the sources' schemas,
which must come out identical. Offline, the script stops with one line."""
import importlib.util, json, random, subprocess, sys
from pathlib import Path
import pytest
from staged_rl.data import load_problems

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('get_data', ROOT/'scripts'/'get_data.py')
gd = importlib.util.module_from_spec(spec); spec.loader.exec_module(gd)

def read(p): return [json.loads(l) for l in open(p)]
def typed(rows): return [json.dumps(r, sort_keys=True) for r in rows]  # 3 and 3.0 differ here, unlike in ==

def aime_hub(r, i):
    "An aime_2024 Hub row for one of our rows (the Hub's ids are integers; the url names the contest and problem)."
    _, c, n = r['id'].split('-')
    n = int(n) or 15  # the file numbers problem 15 as 0
    return {'id': 60 + i, 'problem': r['problem'], 'solution': r['solution'], 'answer': r['answer'],
            'url': f"https://artofproblemsolving.com/wiki/index.php/2024_AIME_{'I' * int(c)}_Problems/Problem_{n}", 'year': 2024}

def test_hand_made_rows(tmp_path):
    m = gd.math500_rows([{'problem': 'p', 'solution': 's', 'answer': '\\frac12', 'subject': 'Algebra', 'level': 3, 'unique_id': 'test/algebra/1.json'}])
    assert m == [{'id': 'test/algebra/1.json', 'problem': 'p', 'answer': '\\frac12', 'level': 3.0}]
    a = gd.aime2024_rows([aime_hub({'id': 'aime2024-2-1', 'problem': 'q2', 'answer': '7', 'solution': 's'}, 1),
                          {**aime_hub({'id': 'aime2024-1-10', 'problem': 'q10', 'answer': '', 'solution': 's'}, 0), 'answer': 33},
                          aime_hub({'id': 'aime2024-1-0', 'problem': 'q15', 'answer': '9', 'solution': 's'}, 3),
                          aime_hub({'id': 'aime2024-1-2', 'problem': 'q1', 'answer': '5', 'solution': 's'}, 2)])
    assert [(r['id'], r['answer']) for r in a] == [('aime2024-1-2', '5'), ('aime2024-1-10', '33'), ('aime2024-1-0', '9'), ('aime2024-2-1', '7')]
    with pytest.raises(ValueError, match='does not name the contest'): gd.aime2024_rows([{'id': 1, 'url': 'https://example.com'}])
    cf = gd.codeforces_rows([{'problem': 'add', 'tests': json.dumps([{'input': '1 2\n', 'output': '3\n', 'x': 0}])},
                             {'problem': 'sub', 'tests': [{'input': '3 1\n', 'output': '2\n'}]}], n=1)
    assert cf == [{'id': 'cf-0', 'problem': 'add', 'tests': [{'input': '1 2\n', 'output': '3\n'}]}]
    p = gd.write_file(m, 'math500', tmp_path, expect=1)
    assert typed(read(p)) == typed(m) and [q.answer for q in load_problems(p)] == ['\\frac12'] and sorted(x.name for x in tmp_path.iterdir()) == ['math500.jsonl']
    with pytest.raises(ValueError, match='math500: 1 rows, expected 500'): gd.write_file(m, 'math500', tmp_path, expect=500)
    with pytest.raises(ValueError, match='empty prompt'): gd.write_file([{**m[0], 'problem': ''}], 'math500', tmp_path/'bad')
    assert not list((tmp_path/'bad').iterdir())  # nothing half-written is left behind

def test_real_files_round_trip(shared_data, tmp_path):
    "The real files, turned back into the sources' rows (shuffled where the source's order differs), come out identical."
    src = {n: read(shared_data/f"{n}.jsonl") for n in gd.COUNTS}
    hub_math = [{'problem': r['problem'], 'solution': '...', 'answer': r['answer'], 'subject': 'x', 'level': int(r['level']), 'unique_id': r['id']} for r in src['math500']]
    hub_aime = [aime_hub(r, i) for i, r in enumerate(src['aime2024'])]; random.Random(0).shuffle(hub_aime)
    hub_he = [{**r, 'extra': 1} for r in src['humaneval']]
    rllm_cf = [{'problem': r['problem'], 'tests': json.dumps(r['tests']) if i % 2 else r['tests'], 'difficulty': 'x'} for i, r in enumerate(src['codeforces_stdin_sample'])]
    rllm_cf += [{'problem': 'beyond the sample', 'tests': []}] * 5
    made = {'math500': gd.math500_rows(hub_math), 'aime2024': gd.aime2024_rows(hub_aime), 'humaneval': gd.humaneval_rows(hub_he),
            'codeforces_stdin_sample': gd.codeforces_rows(rllm_cf)}
    for n, rows in made.items():
        p = gd.write_file(rows, n, tmp_path, gd.COUNTS[n])
        assert typed(read(p)) == typed(src[n]), n
        assert [q.to_dict() for q in load_problems(p)] == [q.to_dict() for q in load_problems(shared_data/f"{n}.jsonl")], n

def test_offline_is_one_line(tmp_path):
    "No connection: exit status 1 and one line on stderr naming what was unreachable; nothing written."
    env = {'PATH': '/usr/bin:/bin', 'HF_ENDPOINT': 'https://127.0.0.1:9', 'PYTHONPATH': str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT/'scripts'/'get_data.py'), '--out', str(tmp_path/'d'), '--timeout', '2'],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and r.stdout == '' and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith('make data: cannot reach 127.0.0.1') and 'STAGED_RL_DATA_DIR' in r.stderr
    assert not (tmp_path/'d').exists()
    r = subprocess.run([sys.executable, str(ROOT/'scripts'/'get_data.py')], capture_output=True, text=True, env={**env, 'HF_HUB_OFFLINE': '1'}, timeout=60)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and 'HF_HUB_OFFLINE' in r.stderr

def test_changed_upstream_schema_is_one_line(tmp_path, monkeypatch, capsys):
    "A source row without a field the layout needs: exit status 1, one line naming the file and the field; nothing written."
    pytest.importorskip('datasets', reason='`make data` needs the datasets package')
    monkeypatch.setattr(gd, 'reachable', lambda *a: None)
    monkeypatch.setattr(gd, 'hub_rows', lambda name: [{'problem': 'p', 'answer': '1'}])  # MATH-500 without unique_id, level
    assert gd.main(['--out', str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["make data: math500: KeyError: 'unique_id'"] and not list(tmp_path.iterdir())
