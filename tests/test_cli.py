"""The `staged-rl` command line as a user meets it, through real subprocesses: every command's `--help`, bad input
reported as one line before any work, the README's pipeline run literally (on the smoke preset), and a killed
ladder build that leaves nothing behind in the cache."""
import json, os, re, shlex, signal, subprocess, sys, time
from pathlib import Path
import nbformat, pytest
from staged_rl.cli import COMMANDS
from staged_rl.data import save_problems, Problem

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, '-m', 'staged_rl.cli']

def _env(**kw):
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), 'OMP_NUM_THREADS': '1',
           'STAGED_RL_NO_PROGRESS': '1', **kw}
    return env

def cli(*args, cwd=None, timeout=600):
    "Run `staged-rl ARGS` in a fresh process; the CompletedProcess."
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, env=_env(), timeout=timeout)

def one_line_error(r, *needles):
    "The command failed with a single stderr line that names every needle, and no traceback."
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode != 0, r
    assert 'Traceback' not in r.stderr, r.stderr
    assert len(lines) == 1, r.stderr
    for n in needles: assert n in lines[0], (n, lines[0])
    return lines[0]

# ---- usage ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('cmd', list(COMMANDS))
def test_every_command_has_help(cmd):
    r = cli(cmd, '--help')
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f'usage: staged-rl {cmd}') and '--no-progress' in r.stdout

def test_top_level_help_lists_the_commands():
    r = cli('--help')
    assert r.returncode == 0 and all(c in r.stdout for c in COMMANDS)
    one_line_error(cli('frobnicate'), 'frobnicate')
    one_line_error(cli('train', 'smoke', '--bogus'), '--bogus')

def test_the_console_script_is_declared():
    assert 'staged-rl=staged_rl.cli:main' in (ROOT/'settings.ini').read_text()

# ---- bad input: one line, non-zero, no traceback, before any work ----------------------------------------------------
def test_config_error_is_one_line():
    one_line_error(cli('config', 'smoke', 'grpo.n_samples=1'), 'grpo.n_samples')

@pytest.mark.parametrize('row,why', [('{"foo": 1}', 'unknown row layout'), ('{"id": ', 'invalid JSON')])
def test_score_names_file_and_line_of_a_bad_pool_row(tmp_path, row, why):
    pool = tmp_path/'pool.jsonl'
    save_problems([Problem('a', 'math', '1+1?', '2')], pool)
    pool.write_text(pool.read_text() + row + '\n')
    r = cli('score', 'smoke', f'data.pool=["{pool}"]', f'output.dir={tmp_path/"run"}')
    one_line_error(r, f'{pool}:2', why)
    assert not (tmp_path/'run'/'scores.jsonl').exists()  # nothing was scored

def test_score_missing_pool_file(tmp_path):
    one_line_error(cli('score', 'smoke', f'data.pool=["{tmp_path}/nope.jsonl"]', f'output.dir={tmp_path}'), 'nope.jsonl')

def test_train_with_a_missing_model_folder(tmp_path):
    r = cli('train', 'smoke', 'model.policy=/no/such/dir', f'output.dir={tmp_path}')
    one_line_error(r, 'model.policy=/no/such/dir', 'no such folder')
    assert not (tmp_path/'metrics.jsonl').exists()

def test_eval_with_a_missing_model_folder(tmp_path):
    one_line_error(cli('eval', 'smoke', 'model=/no/such/dir', f'output.dir={tmp_path}'), 'model=/no/such/dir', 'no such folder')
    one_line_error(cli('eval', 'smoke', 'model=runs/nope/policy', f'output.dir={tmp_path}'), 'no such folder')

def test_train_without_level_files(tmp_path):
    r = cli('train', 'smoke', f'output.dir={tmp_path/"run"}', f'data.levels_dir={tmp_path/"levels"}')
    one_line_error(r, "stage 'stage1'", 'no level files for level:2', str(tmp_path/'levels'), 'staged-rl filter')
    assert not (tmp_path/'run'/'metrics.jsonl').exists()  # failed before the first evaluation

def test_filter_without_scores(tmp_path):
    one_line_error(cli('filter', 'smoke', f'output.dir={tmp_path}'), 'scores.jsonl', 'staged-rl score')

def test_score_import_of_a_missing_file(tmp_path):
    one_line_error(cli('score', 'smoke', '--import', str(tmp_path/'rates.jsonl'), f'output.dir={tmp_path}'), 'score --import')

def test_score_import_then_filter(tmp_path):
    "`score --import FILE` stores rates through `scoring.import_rates` (a bad row: one line naming file:line); filter reads them."
    from staged_rl.config import ROLES, load_config
    from staged_rl.filtering import load_pool
    over = [f'output.dir={tmp_path/"run"}', f'data.levels_dir={tmp_path/"levels"}', 'scoring.k=4']
    pid = load_pool(load_config('smoke', over))[0].id
    rates = tmp_path/'rates.jsonl'
    rates.write_text(json.dumps({'id': pid, 'role': 'small', 'passes': 2, 'k': 4}) + '\n' + json.dumps({'id': 'nope', 'role': 'small', 'passes': 1, 'k': 4}) + '\n')
    one_line_error(cli('score', 'smoke', '--import', str(rates), *over), f'{rates}:2', "unknown id 'nope'")
    assert not (tmp_path/'run'/'scores.jsonl').exists()  # nothing written before every row is checked
    rates.write_text(''.join(json.dumps({'id': pid, 'role': r, 'passes': v, 'k': 4}) + '\n' for r, v in zip(ROLES, (2, 4, 0, 4))))
    r = cli('score', 'smoke', '--import', str(rates), *over)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])['imported']['rows'] == 4
    r = cli('filter', 'smoke', *over)
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout.strip().splitlines()[-1])['counts']
    assert counts['level1']['math'] + counts['level1']['code'] == 1  # small 2/4, medium 4/4: level 1 (and level 3)

# ---- eval writes its table next to the evaluated model ----------------------------------------------------------------
def test_eval_tables_of_two_policy_folders_stay_apart(tmp_path):
    import shutil
    from staged_rl.config import load_config
    from staged_rl.models import resolve_model
    src = Path(resolve_model('tiny:small', load_config('smoke')))  # builds the smoke ladder if it is not cached
    for run in ('a', 'b'): shutil.copytree(src, tmp_path/run/'policy')
    short = ['eval.sets.0.limit=1', 'eval.sets.1.limit=1', 'eval.sets.0.k=1', 'eval.sets.1.k=1', 'output.dir=runs/shared']
    for run in ('a', 'b'):
        r = cli('eval', 'smoke', f'model={run}/policy', *short, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip().splitlines()[-1] == f'wrote {run}/eval_policy.json', r.stdout
    for run in ('a', 'b'): assert json.loads((tmp_path/run/'eval_policy.json').read_text())['model'] == f'{run}/policy'
    assert not (tmp_path/'runs').exists()  # nothing in output.dir
    r = cli('eval', 'smoke', 'model=a/policy', 'out=t.json', *short, cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path/'t.json').exists(), r.stderr[-2000:]

# ---- --no-progress ----------------------------------------------------------------------------------------------------
def test_no_progress_reaches_the_library_and_child_processes():
    code = ("import os, sys; from staged_rl.cli import main; from staged_rl.config import show_progress; "
            "main(['--no-progress', 'config', 'smoke']); "
            "print(show_progress(), os.environ.get('TQDM_DISABLE'), file=sys.stderr)")
    env = {k: v for k, v in _env().items() if k not in ('STAGED_RL_NO_PROGRESS', 'TQDM_DISABLE')}
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    assert r.stderr.strip().splitlines()[-1] == 'False 1', r.stderr
    r = subprocess.run([sys.executable, '-c', code.replace("'--no-progress', ", '')], capture_output=True, text=True, env=env)
    assert r.stderr.strip().splitlines()[-1] == 'True None', r.stderr

# ---- the README's pipeline, literally, on the smoke preset ------------------------------------------------------------
SHORT = {  # overrides that keep each step to seconds; the commands themselves are the README's
    'ladder': ['eval.sampling.max_new_tokens=32'],
    'score': ['scoring.sampling.max_new_tokens=32'], 'filter': ['scoring.sampling.max_new_tokens=32'],  # the same scoring settings: the same store
    'train': ['stages.0.max_steps=1', 'stages.1.max_steps=1', 'eval.sets.0.limit=2', 'eval.sets.1.limit=2'],
    'eval': ['eval.sets.0.limit=2', 'eval.sets.1.limit=2'],
}

def readme_pipeline() -> list[str]:
    "The command block under 'The pipeline, command by command' in README.md (and the same block in nbs/index.ipynb)."
    text = (ROOT/'README.md').read_text()
    block = re.search(r'## The pipeline, command by command\s+```sh\n(.*?)```', text, re.S).group(1)
    index = ''.join(''.join(c['source']) for c in json.loads((ROOT/'nbs'/'index.ipynb').read_text())['cells'])
    assert block in index, 'README.md is out of date with nbs/index.ipynb: run `make readme`'
    return [l for l in block.splitlines() if l.strip()]

def _fake_experiments(folder:Path):
    "Stand-ins for the experiment notebooks (the real ones run in test_reproduce_smoke.py): a figure and a claim each."
    from staged_rl.reproduce import EXPERIMENTS
    folder.mkdir()
    for name in EXPERIMENTS:
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell("preset = 'smoke'\nout_dir = '.'\nseeds = [0]\noverrides = []"); params.metadata['tags'] = ['parameters']
        body = ("import json, pathlib, sys, base64\nprint('[runs] 1/1 done', file=sys.stderr)\n"
                "pathlib.Path('fig.png').write_bytes(base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII='))\n"
                "pathlib.Path('claims.json').write_text(json.dumps([{'claim': 'c', 'paper': 'p', 'ours': preset, 'held': True}]))")
        nb.cells = [params, nbformat.v4.new_code_cell(body)]
        nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'python3', 'language': 'python'}
        nbformat.write(nb, folder/f'{name}.ipynb')

def test_readme_pipeline_runs_as_written(tmp_path):
    lines = readme_pipeline()
    assert [l.split()[1] for l in lines] == ['ladder', 'score', 'filter', 'train', 'eval', 'export', 'reproduce']
    _fake_experiments(tmp_path/'experiments')
    for line in lines:
        words = shlex.split(line, comments=True)
        assert words[0] == 'staged-rl', line
        args = ['smoke' if w == 'tiny-cpu' else w for w in words[1:]]
        args += SHORT.get(args[0], []) + (['--nbs', str(tmp_path/'experiments')] if args[0] == 'reproduce' else [])
        t0 = time.time(); r = cli(*args, cwd=tmp_path)
        print(f"{time.time() - t0:5.1f}s  staged-rl {' '.join(args)}")
        assert r.returncode == 0, f"{line}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        if args[0] == 'filter': levels = json.loads(r.stdout.strip().splitlines()[-1])
        if args[0] == 'train': assert 'done: 2 steps' in r.stdout
        if args[0] == 'reproduce': tail, last = r.stdout + r.stderr, r.stdout.strip().splitlines()[-1]
    assert levels['levels_dir'] == 'runs/smoke/levels' and (tmp_path/'runs'/'smoke'/'levels'/'level2_math.jsonl').exists()
    assert (tmp_path/'runs'/'x'/'policy'/'config.json').exists() and (tmp_path/'runs'/'x'/'eval_policy.json').exists()  # next to the model
    assert list((tmp_path/'runs'/'verl').glob('*.parquet')) and 'def compute_score' in (tmp_path/'runs'/'verl'/'reward.py').read_text()
    assert '[runs] 1/1 done' in tail  # the notebooks' progress lines reach the log
    assert f"figures of 01_ladder_and_scoring: runs/smoke/01_ladder_and_scoring/ (fig.png)" in tail
    assert last == '[reproduce] results table: runs/smoke/results.md'

# ---- a killed ladder build leaves no temporary folder -------------------------------------------------------------------
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_killed_ladder_build_leaves_no_tmp(tmp_path, sig):
    cache = tmp_path/'cache'
    # A shell starts background jobs with SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the
    # build is given the default disposition that a terminal's Ctrl-C finds, however this test suite was launched.
    p = subprocess.Popen([*CLI, 'ladder', 'smoke', f'tiny.cache_dir={cache}', 'tiny.sft_steps=[4000,4000,4000,4000]'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        t0 = time.time()
        while not list(cache.glob('ladder-*.tmp-*/tokenizer')):  # the build is under way
            assert p.poll() is None, p.communicate()
            assert time.time() - t0 < 300, 'the build did not start'
            time.sleep(0.2)
        time.sleep(1 if sig == signal.SIGTERM else 5)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None: p.kill(); p.wait()
    assert p.returncode == (-signal.SIGTERM if sig == signal.SIGTERM else 130), (p.returncode, err[-2000:])
    assert list(cache.iterdir()) == [], list(cache.iterdir())
    if sig == signal.SIGINT: one_line_error(subprocess.CompletedProcess([], p.returncode, out, err), 'interrupted')

def test_stale_tmp_of_a_dead_build_is_removed(tmp_path):
    from staged_rl.tiny import remove_stale_builds
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()
    stale, live = tmp_path/f'ladder-abc.tmp-{dead.pid}-x1', tmp_path/f'ladder-abc.tmp-{os.getpid()}-x2'
    for d in (stale, live): (d/'tokenizer').mkdir(parents=True)
    assert remove_stale_builds(tmp_path) == [stale]
    assert not stale.exists() and live.exists()

# ---- export ---------------------------------------------------------------------------------------------------------
def test_export_help_lists_verl():
    r = cli('export', '--help')
    assert r.returncode == 0 and '{verl}' in r.stdout and '--out' in r.stdout

def test_export_verl_smoke_in_an_empty_folder(tmp_path):
    "No level files yet: the tiny world's are built first (said in one stderr line), then the parquet files and reward.py."
    fast = ['scoring.k=2', 'scoring.round_size=2', 'scoring.sampling.max_new_tokens=32']  # a smaller scoring run than the preset's
    r = cli('export', 'verl', 'smoke', *fast, '--out', 'out', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "building the tiny world's level files first" in r.stderr and (tmp_path/'runs'/'smoke'/'levels'/'level2_math.jsonl').exists()
    assert sorted(p.name for p in (tmp_path/'out').glob('*.parquet')) == ['stage1_stage1.parquet', 'stage2_stage2.parquet', 'val_code.parquet', 'val_math.parquet']
    assert 'def compute_score(data_source, solution_str, ground_truth, extra_info=None' in (tmp_path/'out'/'reward.py').read_text()
    assert json.loads(r.stdout.strip().splitlines()[-1])['stages'][1]['config'] == 'stage2_stage2.yaml'
    import pyarrow.parquet as pq
    info = [r['extra_info'] for r in pq.read_table(tmp_path/'out'/'stage2_stage2.parquet').to_pylist()]
    assert {e['level'] for e in info} == {3} and all(set(e['pass_rates']) == {'small', 'medium', 'large', 'strongest'} for e in info)
    assert all(e['pass_rates']['strongest'] is not None for e in info)  # the ladder's rates from the scoring run, per problem
    r = cli('export', 'verl', 'smoke', *fast, '--out', 'again', cwd=tmp_path)  # the level files now exist: nothing is built
    assert r.returncode == 0 and 'building' not in r.stderr and (tmp_path/'again'/'reward.py').exists()
