"""`staged-rl reproduce` mechanics on throwaway notebooks: parameters reach the notebook, finished steps are
skipped, --force re-runs, and a failing cell stops the run naming the notebook, the cell and the error."""
import json, subprocess
import nbformat
from staged_rl.reproduce import EXPERIMENTS
from staged_rl.experiments import registered_seeds

def _nb(path, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("preset = 'smoke'\nout_dir = '.'\nseeds = [0]"); params.metadata['tags'] = ['parameters']
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'python3', 'language': 'python'}
    nbformat.write(nb, path)

def _run(*args):
    return subprocess.run(['staged-rl', 'reproduce', *args], capture_output=True, text=True)

def test_reproduce_runs_skips_and_reports_failure(tmp_path):
    nbs, out = tmp_path/'nbs', tmp_path/'out'; nbs.mkdir()
    _nb(nbs/f'{EXPERIMENTS[0]}.ipynb', "import json, pathlib\npathlib.Path('claims.json').write_text(json.dumps("
        "[{'claim': 'c', 'paper': 'p', 'ours': str(seeds), 'held': True}]))\npathlib.Path('seen.txt').write_text(preset + out_dir)")
    _nb(nbs/f'{EXPERIMENTS[1]}.ipynb', "x = 1\nraise RuntimeError('boom in the ablation')")
    r = _run('--preset', 'tiny-cpu', '--out', str(out), '--nbs', str(nbs), '--only', '01')
    assert r.returncode == 0, r.stderr
    assert (out/EXPERIMENTS[0]/'seen.txt').read_text() == 'tiny-cpu' + str(out.resolve())
    assert str(registered_seeds()) in (out/'results.md').read_text()  # tiny-cpu trains the seeds registered in claims.yaml
    done = json.loads((out/EXPERIMENTS[0]/'done.json').read_text())  # the notebook that ran, and its git state (null outside a repository)
    assert done['notebook'].endswith(f'{EXPERIMENTS[0]}.ipynb') and 'git' in done and done['history'][0]['notebook'] == done['notebook'], done
    r = _run('--preset', 'tiny-cpu', '--out', str(out), '--nbs', str(nbs), '--only', '01')
    assert 'skipped' in r.stdout
    r = _run('--preset', 'tiny-cpu', '--out', str(out), '--nbs', str(nbs), '--only', '01', '--force')
    assert 'skipped' not in r.stdout and r.returncode == 0
    r = _run('--preset', 'tiny-cpu', '--out', str(out), '--nbs', str(nbs), '--only', '02')
    assert r.returncode == 1
    assert f'{EXPERIMENTS[1]}.ipynb failed in cell' in r.stderr and 'RuntimeError: boom in the ablation' in r.stderr
    assert not (out/EXPERIMENTS[1]/'done.json').exists()

def test_reproduce_rejects_unknown_experiment(tmp_path):
    r = _run('--preset', 'smoke', '--out', str(tmp_path), '--only', '99')
    assert r.returncode == 1 and 'no such experiment' in r.stderr
